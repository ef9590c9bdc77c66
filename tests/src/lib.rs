//! Shared helpers of the cross-crate tests: locating `../shared/data`, decoding real clips
//! and running tract (the app's baseline runner) as the independent reference.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use framecache::Preprocess;

pub use framecache_app::baseline::TractModel;

/// `../shared/data` relative to the workspace root, if present.
pub fn shared_data() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let p = root.join("../shared/data");
    p.is_dir().then(|| p.canonicalize().unwrap_or(p))
}

/// Returns the shared data folder, or prints why the test is skipped and returns `None`.
pub fn shared_data_or_skip(test: &str) -> Option<PathBuf> {
    let d = shared_data();
    if d.is_none() {
        eprintln!("SKIPPED {test}: ../shared/data is absent (real models and clips live there)");
    }
    d
}

pub use framecache_app::clip::{decode_image as load_png, RgbFrame as Rgb};

/// The frames of a clip folder, in order.
pub fn clip(data: &Path, name: &str) -> Result<Vec<Rgb>> {
    let dir = data.join("video").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    files.iter().map(|p| load_png(p)).collect()
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

/// Largest absolute difference, and the largest absolute value of `reference` (for relative
/// tolerances).
pub fn max_abs_diff(a: &[f32], reference: &[f32]) -> (f32, f32) {
    assert_eq!(a.len(), reference.len());
    let d = a.iter().zip(reference).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    let s = reference.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    (d, s)
}

pub fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| if x > bv { (i, x) } else { (bi, bv) }).0
}
