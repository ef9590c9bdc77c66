#![no_main]
//! `cargo +nightly fuzz run png_clip`: the body is `framecache_tests::fuzz::png_clip`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| framecache_tests::fuzz::png_clip(data));
