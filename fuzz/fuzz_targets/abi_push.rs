#![no_main]
//! `cargo +nightly fuzz run abi_push`: the body is `framecache_tests::fuzz::abi_push`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| framecache_tests::fuzz::abi_push(data));
