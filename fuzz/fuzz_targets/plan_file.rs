#![no_main]
//! `cargo +nightly fuzz run plan_file`: the body is `framecache_tests::fuzz::plan_file`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| framecache_tests::fuzz::plan_file(data));
