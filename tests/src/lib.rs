//! Shared helpers of the cross-crate tests: locating `../shared/data`, decoding real clips
//! and running tract (the app's baseline runner) as the independent reference.

use std::path::{Path, PathBuf};

pub mod fuzz;
pub mod onnx;
pub mod tflite;

use anyhow::Result;
use framecache::Preprocess;

pub use framecache_app::baseline::TractModel;

/// Runs `framecache COMMAND ARGS...` in this process, as the binary would.
pub fn cli(command: &str, args: &[&str]) -> Result<()> {
    use clap::Parser;
    let argv = ["framecache", command].into_iter().chain(args.iter().copied());
    framecache_app::cli::run(framecache_app::cli::Cli::try_parse_from(argv)?)
}

/// A fresh folder under the system's temporary directory for one test (`framecache-NAME-PID`).
/// It is removed when the test passes, and kept when it fails (dropped while panicking), so
/// that what the test wrote can be looked at.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("framecache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Self(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `../shared/data` relative to the workspace root, if present.
pub fn shared_data() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let p = root.join("../shared/data");
    p.is_dir().then(|| p.canonicalize().unwrap_or(p))
}

/// The workspace root (where `assets/` is).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Returns the shared data folder, or prints why the test is skipped and returns `None`.
/// With `FRAMECACHE_REQUIRE_SHARED=1` (set by `.ci/run`) a missing folder fails the test.
pub fn shared_data_or_skip(test: &str) -> Option<PathBuf> {
    let d = shared_data();
    if d.is_none() {
        assert!(
            std::env::var_os("FRAMECACHE_REQUIRE_SHARED").is_none(),
            "{test}: ../shared/data is required here (FRAMECACHE_REQUIRE_SHARED) but absent"
        );
        eprintln!("SKIPPED {test}: ../shared/data is absent (real models and clips live there)");
    }
    d
}

pub use framecache_app::clip::{decode_image as load_png, RgbFrame as Rgb};
pub use framecache_app::model::argmax;

/// The frames of a clip of `../shared/data/video`, in order.
pub fn clip(data: &Path, name: &str) -> Result<Vec<Rgb>> {
    framecache_app::clip::Clip::open(&data.join("video").join(name))?.decode_all(None, || {})
}

/// The three models of the engine-core issue, with their preprocessing.
pub fn core_models(data: &Path) -> Vec<(PathBuf, Preprocess)> {
    let m = data.join("models");
    vec![
        (m.join("imagenet/mobilenet_v2.onnx"), Preprocess::imagenet()),
        (m.join("imagenet/efficientnet_lite0.onnx"), Preprocess::tf_symmetric()),
        (m.join("mediapipe/selfie_segmentation.onnx"), Preprocess::default()),
    ]
}

/// `graph` written as ONNX by [`framecache::export`], loaded back by tract and run on the NHWC
/// tensor `input` (the graph's input shape): every output, flat.
pub fn exported_in_tract(graph: &framecache::graph::Graph, input: &[f32]) -> Result<Vec<Vec<f32>>> {
    let bytes = framecache::export::to_onnx(graph, "framecache tests")?;
    let s = graph.input_shape();
    TractModel::from_bytes(&bytes)?.run_nhwc(input, s.h, s.w, s.c)
}

/// Largest absolute difference, and the largest absolute value of `reference` (for relative
/// tolerances).
pub fn max_abs_diff(a: &[f32], reference: &[f32]) -> (f32, f32) {
    assert_eq!(a.len(), reference.len());
    let d = a.iter().zip(reference).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    let s = reference.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    (d, s)
}

/// The `q` quantile (0..=1) of the absolute differences between `a` and `reference`.
pub fn percentile_abs_diff(a: &[f32], reference: &[f32], q: f64) -> f32 {
    assert_eq!(a.len(), reference.len());
    let mut d: Vec<f32> = a.iter().zip(reference).map(|(x, y)| (x - y).abs()).collect();
    d.sort_by(f32::total_cmp);
    d[((d.len() - 1) as f64 * q).round() as usize]
}

/// A real background with a real moving patch pasted in: frame 1 of the vtest clip, with a
/// 40x40 crop of the cockatoo clip's frame `i` pasted at a position that moves 3 px per frame.
/// Frames repeat every 8th step, so exact reuse of whole frames happens too.
pub fn pasted_sequence(data: &Path, n: usize) -> Result<Vec<Rgb>> {
    let background = clip(data, "static_vtest_pedestrians")?.swap_remove(0);
    let birds = clip(data, "handheld_cockatoo")?;
    let mut out: Vec<Rgb> = Vec::new();
    for i in 0..n {
        if i % 8 == 7 {
            let prev = &out[i - 1];
            out.push(Rgb { width: prev.width, height: prev.height, data: prev.data.clone() });
            continue;
        }
        let mut f = Rgb { width: background.width, height: background.height, data: background.data.clone() };
        let src = &birds[i % birds.len()];
        let (px, py) = (20 + 3 * i, 60 + (i % 10) * 2);
        for y in 0..40 {
            for x in 0..40 {
                let (dy, dx) = (py + y, (px + x) % f.width);
                let d = (dy * f.width + dx) * 3;
                let s = ((70 + y) * src.width + 140 + x) * 3;
                f.data[d..d + 3].copy_from_slice(&src.data[s..s + 3]);
            }
        }
        out.push(f);
    }
    Ok(out)
}

/// The C ABI loads the model file at `model` (its sidecar beside it) and runs a grey 64x48
/// RGBA frame through it.
pub fn c_abi_runs(model: &Path) {
    use framecache_ffi::*;
    let path = std::ffi::CString::new(model.to_str().expect("a UTF-8 path")).expect("no NUL in the path");
    let mut e = 0;
    // SAFETY: a NUL-terminated path, null sidecar and options (defaults), a writable handle.
    let status = unsafe { fc_engine_create(path.as_ptr(), std::ptr::null(), std::ptr::null(), &mut e) };
    // SAFETY: fc_last_error returns a NUL-terminated string owned by the library.
    assert_eq!(status, FcStatus::Ok, "{:?}", unsafe { std::ffi::CStr::from_ptr(fc_last_error()) });
    let rgba = vec![128u8; 64 * 48 * 4];
    // SAFETY: 64x48 RGBA rows of 256 bytes.
    assert_eq!(unsafe { fc_engine_push_rgba(e, rgba.as_ptr(), 64, 48, 256, FC_PIXEL_RGBA, 0) }, FcStatus::Ok);
    assert_eq!(fc_engine_destroy(e), FcStatus::Ok);
}
