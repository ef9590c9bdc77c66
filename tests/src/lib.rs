//! Shared helpers of the cross-crate tests: locating `../shared/data`, decoding real clips
//! and running tract as the independent reference.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use framecache::{Frame, Preprocess};
use tract_onnx::prelude::*;

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

/// An owned RGB frame.
#[derive(Clone)]
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Rgb {
    pub fn frame(&self) -> Frame<'_> {
        Frame::rgb(self.width, self.height, &self.data)
    }
}

pub fn load_png(path: &Path) -> Result<Rgb> {
    let img = image::open(path).with_context(|| format!("decoding {}", path.display()))?.to_rgb8();
    Ok(Rgb { width: img.width() as usize, height: img.height() as usize, data: img.into_raw() })
}

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

/// tract's full run of an ONNX model, the independent reference (and the peer baseline).
pub struct TractModel {
    model: std::sync::Arc<TypedRunnableModel>,
    executor: tract_linalg::multithread::Executor,
}

impl TractModel {
    /// Loads and optimises the model; it runs single-threaded.
    pub fn load(path: &Path) -> Result<Self> {
        let model = tract_onnx::onnx().model_for_path(path)?.into_optimized()?.into_runnable()?;
        Ok(Self { model, executor: tract_linalg::multithread::Executor::SingleThread })
    }

    /// Runs tract's matrix products on a pool of `threads` (its `multithread-mm` feature).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.executor = if threads > 1 {
            tract_linalg::multithread::Executor::multithread(threads)
        } else {
            tract_linalg::multithread::Executor::SingleThread
        };
        self
    }

    /// Runs on an NHWC input tensor (as the engine holds it) and returns every output flat.
    pub fn run_nhwc(&self, nhwc: &[f32], h: usize, w: usize, c: usize) -> Result<Vec<Vec<f32>>> {
        let mut nchw = vec![0.0f32; nhwc.len()];
        for p in 0..h * w {
            for ch in 0..c {
                nchw[ch * h * w + p] = nhwc[p * c + ch];
            }
        }
        let input = Tensor::from_shape(&[1, c, h, w], &nchw)?;
        let out = tract_linalg::multithread::multithread_tract_scope(self.executor.clone(), || {
            self.model.run(tvec!(input.into()))
        })?;
        out.iter().map(|t| Ok(t.to_plain_array_view::<f32>()?.iter().copied().collect())).collect()
    }
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
