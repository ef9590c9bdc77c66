#![no_main]
//! `cargo +nightly fuzz run bundle_file`: the body is `framecache_tests::fuzz::bundle_file`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| framecache_tests::fuzz::bundle_file(data));
