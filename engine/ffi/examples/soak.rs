//! Soak test of the C ABI: the bundled selfie segmenter, frames pushed through
//! `fc_engine_push_rgba` with a moving bar, resident memory printed every 1000 frames.
//!
//! ```text
//! cargo run --release -p framecache-ffi --example soak -- [FRAMES]
//! ```

use std::ffi::CString;
use std::path::Path;

use framecache_ffi::*;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().split(' ').next()?.parse().ok());
    kb.map_or(f64::NAN, |kb: f64| kb / 1024.0)
}

fn main() {
    let frames: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/models");
    let onnx = std::fs::read(assets.join("selfie_segmentation.onnx")).expect("bundled model");
    let sidecar = CString::new(std::fs::read_to_string(assets.join("selfie_segmentation.onnx.toml")).unwrap()).unwrap();
    let mut options = FcOptions { mode: 0, threshold: 0.0, tile: 0, threads: 0, bypass: 0 };
    // SAFETY: valid pointers for each call below.
    unsafe {
        assert_eq!(fc_options_default(&mut options), FcStatus::Ok);
        options.mode = FC_MODE_THRESHOLD;
        options.threads = 1;
        let mut engine = 0;
        let status = fc_engine_create_from_bytes(
            onnx.as_ptr(),
            onnx.len(),
            sidecar.as_ptr(),
            std::ptr::null(),
            &options,
            &mut engine,
        );
        assert_eq!(status, FcStatus::Ok);
        let (w, h) = (320u32, 180u32);
        let mut rgba = vec![60u8; (w * h * 4) as usize];
        println!("frame rss_mib");
        for i in 0..frames {
            let x0 = (i * 3) % (w as usize - 16);
            for y in 0..h as usize {
                for x in 0..w as usize {
                    let on = (x0..x0 + 16).contains(&x);
                    rgba[(y * w as usize + x) * 4] = if on { 220 } else { 60 };
                }
            }
            let status = fc_engine_push_rgba(engine, rgba.as_ptr(), w, h, w * 4, FC_PIXEL_RGBA, 0);
            assert_eq!(status, FcStatus::Ok);
            if i % 1000 == 0 || i + 1 == frames {
                println!("{i} {:.1}", rss_mib());
            }
        }
        assert_eq!(fc_engine_destroy(engine), FcStatus::Ok);
    }
}
