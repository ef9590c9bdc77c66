#![no_main]
//! `cargo +nightly fuzz run graph_file`: the body is `framecache_tests::fuzz::graph_file`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| framecache_tests::fuzz::graph_file(data));
