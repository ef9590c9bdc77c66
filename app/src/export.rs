//! `framecache export`: a model the engine runs (ONNX, TFLite, or a graph file: a pruned,
//! clustered, wavelet or distilled model) written as an ONNX file ([`framecache::export`]), with
//! its sidecar beside it, for other runtimes. Before anything is written, tract loads the file
//! and runs it on the tensor the engine runs, and the outputs must agree.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use framecache::import::ImportOptions;
use framecache::{ModelConfig, Plan, Session, SessionOptions};

use crate::args::{sidecar_for, with_ext};
use crate::baseline::TractModel;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The model: ONNX, TFLite or a graph file (int8 files have no ONNX form here).
    pub model: PathBuf,
    /// The ONNX file to write (`.onnx`, written whole or not at all); the model's sidecar,
    /// if it has one, is written beside it (`OUT.toml`).
    #[arg(long)]
    pub out: PathBuf,
    /// Preprocessing sidecar (TOML) to use instead of the model's own.
    #[arg(long)]
    pub preprocess: Option<PathBuf>,
    /// Input size WxH for a model with dynamic spatial input dims (or an ONNX model run at
    /// another size than its own).
    #[arg(long, value_parser = crate::args::parse_size)]
    pub input_size: Option<(usize, usize)>,
}

/// Outputs of tract and of the engine may differ by this much of the output's scale (the
/// tolerance of the engine's own tests against tract).
const TOLERANCE: f32 = 1e-4;

pub fn run(args: ExportArgs) -> Result<()> {
    if args.out.extension().is_none_or(|e| e != "onnx") {
        bail!("--out {} must end in .onnx", args.out.display());
    }
    let sidecar_out = with_ext(&args.out, ".toml");
    for input in std::iter::once(&args.model).chain(&args.preprocess) {
        if [&args.out, &sidecar_out].iter().any(|o| crate::quantize::same_file(input, o)) {
            bail!("--out {} would overwrite {}", args.out.display(), input.display());
        }
    }
    let sidecar = match &args.preprocess {
        Some(p) => Some(p.clone()),
        None => ModelConfig::find(&args.model, &crate::model::sidecar_dirs()),
    };
    let config = sidecar.as_deref().map(ModelConfig::load).transpose()?;
    let bytes = framecache::files::read(&args.model, framecache::files::MAX_MODEL_BYTES)
        .with_context(|| format!("cannot read model {}", args.model.display()))?;
    if framecache::quant::file::is_int8(&bytes) {
        bail!("{} is an int8 model, which has no ONNX form here: export its float model", args.model.display());
    }
    let options = match &config {
        Some(c) => c.import_options(args.input_size, None),
        None => ImportOptions { input_size: args.input_size, ..Default::default() },
    };
    let graph = framecache::import::load_unfused(&bytes, &args.model, options)?;
    let onnx = framecache::export::to_onnx(&graph, &format!("framecache export {}", args.model.display()))?;
    let preprocess = config.as_ref().map(|c| c.preprocess.clone()).unwrap_or_default();
    let tract = TractModel::from_bytes(&onnx).context("the exported model does not load in tract")?;
    // A head that reads several taps runs only attached to its backbone.
    let worst = if graph.inputs() > 1 {
        None
    } else {
        let plan = Plan::new(framecache::import::fused(graph), preprocess)?;
        Some(check(&tract, plan)?)
    };
    let sidecar_text = match (&sidecar, &config) {
        (Some(path), Some(c)) => Some(sidecar_for(path, c, &args.model, &args.out, "export")?),
        _ => None,
    };
    framecache::files::write_atomic(&args.out, &onnx)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    if let Some(text) = sidecar_text {
        if let Err(e) = framecache::files::write_atomic(&sidecar_out, text.as_bytes()) {
            let _ = std::fs::remove_file(&args.out);
            return Err(anyhow::Error::new(e).context(format!("cannot write {}", sidecar_out.display())));
        }
    }
    let checked = match worst {
        Some(d) => format!("tract's outputs within {d:.1e} of the engine's scale"),
        None => "loaded by tract (a head with several inputs: not run)".into(),
    };
    eprintln!(
        "wrote {} ({:.2} MB, ONNX opset {}; {checked})",
        args.out.display(),
        onnx.len() as f64 / 1e6,
        framecache::export::OPSET
    );
    Ok(())
}

/// Runs `tract` (the exported model) on the tensor that the engine's full inference of `plan`
/// reads from a test frame; each output must be within [`TOLERANCE`] of the engine's scale.
/// Returns the worst difference relative to the scale.
fn check(tract: &TractModel, plan: std::sync::Arc<Plan>) -> Result<f32> {
    let s = plan.graph().input_shape();
    // A test frame: a horizontal gradient, stripes every 8 rows, a different mix per channel.
    let (w, h) = (s.w.max(1), s.h.max(1));
    let value = |i: usize| {
        let (x, y, channel) = (i / 3 % w, i / 3 / w, i % 3);
        ((x * 255 / w) ^ (y % 8 * 29) ^ (channel * 80)) as u8
    };
    let data: Vec<u8> = (0..w * h * 3).map(value).collect();
    let mut session = Session::new(plan, SessionOptions { threads: Some(1), ..Default::default() })?;
    let ours = session.run_full(framecache::Frame::rgb(w, h, &data))?;
    let theirs = tract.run_nhwc(session.activation(0), s.h, s.w, s.c)?;
    let mut worst = 0.0f32;
    for (o, t) in ours.iter().zip(&theirs) {
        if o.data.len() != t.len() {
            bail!(
                "the exported model's output {} has {} values in tract, {} in the engine",
                o.name,
                t.len(),
                o.data.len()
            );
        }
        let scale = o.data.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1.0);
        let mut diffs: Vec<f32> = o.data.iter().zip(t).map(|(a, b)| (a - b).abs() / scale).collect();
        diffs.sort_by(f32::total_cmp);
        let d = diffs.last().copied().unwrap_or(0.0);
        let p99 = diffs.get(diffs.len() * 99 / 100).copied().unwrap_or(d);
        // As the engine's tests against tract allow: ill-conditioned outputs (BlazePose's
        // segmentation logits) may reach 10x the tolerance at their worst value, when 99% of
        // the values are within it.
        if !(d <= TOLERANCE || (p99 <= TOLERANCE && d <= 10.0 * TOLERANCE)) {
            bail!("the exported model's output {} differs from the engine's by {d:.2e} of its scale in tract", o.name);
        }
        worst = worst.max(d);
    }
    Ok(worst)
}
