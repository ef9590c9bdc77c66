#![no_main]
//! `cargo +nightly fuzz run y4m`: the body is `framecache_tests::fuzz::y4m`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| framecache_tests::fuzz::y4m(data));
