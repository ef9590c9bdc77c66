#![no_main]
//! `cargo +nightly fuzz run onnx`: the body is `framecache_tests::fuzz::onnx`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| framecache_tests::fuzz::onnx(data));
