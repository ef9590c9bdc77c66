#![no_main]
//! `cargo +nightly fuzz run tflite`: the body is `framecache_tests::fuzz::tflite`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| framecache_tests::fuzz::tflite(data));
