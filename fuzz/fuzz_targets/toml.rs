#![no_main]
//! `cargo +nightly fuzz run toml`: the body is `framecache_tests::fuzz::toml`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| framecache_tests::fuzz::toml(data));
