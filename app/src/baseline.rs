//! Peer runtimes on the same frames: tract in process, ONNX Runtime through
//! `bench/ort_baseline.py`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use tract_onnx::prelude::*;

/// tract's full run of an ONNX model: the independent reference and the in-process baseline.
pub struct TractModel {
    model: std::sync::Arc<TypedRunnableModel>,
    executor: tract_linalg::multithread::Executor,
}

impl TractModel {
    /// Loads and optimises the model; it runs single-threaded.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with_input(path, None)
    }

    /// Loads the model with its input fixed to `dims` (NCHW): the size the engine was given
    /// for a model with dynamic input dims.
    pub fn load_with_input(path: &Path, dims: Option<[usize; 4]>) -> Result<Self> {
        let model = tract_onnx::onnx().model_for_path(path);
        Self::optimise(model, dims).map_err(|e| anyhow::anyhow!("tract cannot load {}: {e:#}", path.display()))
    }

    /// [`TractModel::load`] from the bytes of an ONNX model.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let model = tract_onnx::onnx().model_for_read(&mut &bytes[..]);
        Self::optimise(model, None).map_err(|e| anyhow::anyhow!("tract cannot load the model: {e:#}"))
    }

    fn optimise(model: TractResult<InferenceModel>, dims: Option<[usize; 4]>) -> TractResult<Self> {
        let model = model
            .and_then(|m| match dims {
                Some(d) => m.with_input_fact(0, f32::fact(d).into()),
                None => Ok(m),
            })
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())?;
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

    /// Runs on an NCHW input and returns every output flat.
    pub fn run_nchw(&self, nchw: &[f32], dims: [usize; 4]) -> Result<Vec<Vec<f32>>> {
        let input = Tensor::from_shape(&dims, nchw)?;
        let out = tract_linalg::multithread::multithread_tract_scope(self.executor.clone(), || {
            self.model.run(tvec!(input.into()))
        })
        .map_err(|e| anyhow::anyhow!("tract: {e:#}"))?;
        out.iter().map(|t| Ok(t.to_plain_array_view::<f32>()?.iter().copied().collect())).collect()
    }

    /// Runs on an NHWC input (as the engine holds it).
    pub fn run_nhwc(&self, nhwc: &[f32], h: usize, w: usize, c: usize) -> Result<Vec<Vec<f32>>> {
        let nchw = framecache::graph::Shape::new(h, w, c).nhwc_to_nchw(nhwc);
        self.run_nchw(&nchw, [1, c, h, w])
    }
}

/// The ONNX Runtime baseline script: `$FRAMECACHE_ORT_SCRIPT`, or `bench/ort_baseline.py` in
/// the project.
pub fn ort_script() -> Option<PathBuf> {
    crate::args::project_path("FRAMECACHE_ORT_SCRIPT", "bench/ort_baseline.py", Path::is_file)
}

/// Checks that `python3` can import onnxruntime and numpy; returns ORT's version, or why not.
pub fn ort_available() -> Result<String, String> {
    let out = Command::new("python3")
        .args(["-c", "import numpy, onnxruntime; print(onnxruntime.__version__)"])
        .output()
        .map_err(|e| format!("cannot start python3: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "python3 cannot import onnxruntime and numpy ({}); install them with `pip install onnxruntime numpy`",
            err.lines().last().unwrap_or("no message").trim()
        ))
    }
}

/// What the script reports.
#[derive(Debug, Deserialize)]
pub struct OrtRun {
    pub onnxruntime: String,
    pub threads: usize,
    /// Per-frame wall time in ms (median over repeats), inference only.
    pub ms: Vec<f64>,
    /// The first output of every frame, flat.
    #[serde(skip)]
    pub outputs: Vec<f32>,
}

/// Times ONNX Runtime on `inputs` (NCHW tensors of shape `dims`), `threads` intra-op threads.
pub fn run_ort(
    script: &Path,
    model: &Path,
    inputs: &[Vec<f32>],
    dims: [usize; 4],
    threads: usize,
    warmup: usize,
    repeat: usize,
) -> Result<OrtRun> {
    let dir = std::env::temp_dir().join(format!("framecache-ort-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (input_file, output_file) = (dir.join("inputs.f32"), dir.join("outputs.f32"));
    let bytes: Vec<u8> = inputs.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&input_file, bytes).with_context(|| format!("writing {}", input_file.display()))?;
    let shape = dims.map(|d| d.to_string()).join(",");
    let out = Command::new("python3")
        .arg(script)
        .arg("--model")
        .arg(model)
        .arg("--input")
        .arg(&input_file)
        .args(["--shape", &shape, "--frames", &inputs.len().to_string()])
        .args(["--threads", &threads.to_string(), "--warmup", &warmup.to_string(), "--repeat", &repeat.to_string()])
        .arg("--outputs")
        .arg(&output_file)
        .output()
        .with_context(|| format!("cannot run python3 {}", script.display()))?;
    let result = (|| {
        if !out.status.success() {
            bail!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr).trim());
        }
        let mut run: OrtRun = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("{} printed no valid JSON", script.display()))?;
        let raw = std::fs::read(&output_file)?;
        run.outputs = raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        Ok(run)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
