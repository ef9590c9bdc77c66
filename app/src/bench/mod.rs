//! `framecache bench`: reuse hit rates, speed and fidelity of models on clips, every figure
//! measured in the same run.

pub mod measure;
pub mod plots;
pub mod reference;
pub mod report;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

pub use measure::{BenchMode, MeasureOptions, Variant};
use report::{ErrorRecord, Machine, Options, Report, RunRecord};

use crate::baseline::{self, TractModel};
use crate::clip::Clip;
use crate::model::Model;

/// What `framecache bench` measures unless told otherwise: the default mode, exact mode (the
/// correctness reference), the other approximate presets, and the baselines to beat.
pub const DEFAULT_BENCH_MODES: &str =
    "full,exact,threshold=8,block-threshold=8,delta=8,block-delta=8,skip=2,skip=3,skip=4,skip=8,gate=2";

/// Peer runtimes timed on the same frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Baseline {
    /// tract, in process, interleaved with the engine frame by frame.
    Tract,
    /// ONNX Runtime through `bench/ort_baseline.py` (needs python3 with onnxruntime).
    Ort,
    /// No peer baseline.
    None,
}

/// Numeric precisions the bench measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Precision {
    Fp32,
    Int8,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// ONNX model; repeat for several (default: the bundled MobileNetV2). Preprocessing comes
    /// from its sidecar `<file name>.toml`.
    #[arg(long = "model")]
    pub models: Vec<PathBuf>,
    /// Folder of numbered PNG/JPEG frames or a .y4m file; repeat for several (default: the
    /// bundled clip).
    #[arg(long = "clip")]
    pub clips: Vec<PathBuf>,
    /// Multi-task bundle manifest; repeat for several. Adds, per cached mode, the bundle's split,
    /// what sharing its backbone saves, cached vs full and per-head fidelity on the same clips.
    #[arg(long = "bundle")]
    pub bundles: Vec<PathBuf>,
    /// Comma-separated modes: full, exact, threshold=N, mean-threshold=N, block-threshold=N,
    /// delta=N, block-delta=N (grey levels, 0-255; the delta presets also hold back node
    /// outputs that moved less than N/255 of the node's RMS), and the baselines skip=N (full
    /// inference every Nth frame, the last result held in between) and gate=T (full inference
    /// when the frame's mean absolute difference from the last computed one exceeds T grey
    /// levels). Engine-full is always measured, as the reference, and so is the noise floor
    /// (engine-full against itself one frame earlier).
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_BENCH_MODES)]
    pub mode: Vec<BenchMode>,
    #[command(flatten)]
    pub engine: crate::args::EngineArgs,
    /// Passes over each clip; each frame's time is the median over passes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// Untimed frames run by every path before measuring.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Measure at most this many frames of each clip.
    #[arg(long)]
    pub frames: Option<usize>,
    /// Comma-separated precisions: fp32, and int8 (the model's int8 form, measured in the same
    /// interleaved run: from --calibrate, else the `NAME.int8.safetensors` beside the model
    /// that `framecache quantize` writes).
    #[arg(long, value_delimiter = ',', default_value = "fp32")]
    pub precision: Vec<Precision>,
    /// A compressed form of the model (`framecache compress`), repeatable: its full inference
    /// and cached modes are measured in the same interleaved run, with fidelity against the
    /// model's engine-full on the same frames. Needs exactly one `--model`.
    #[arg(long = "variant")]
    pub variants: Vec<PathBuf>,
    /// Clips to calibrate the int8 form on, in memory (32 frames each, min/max ranges).
    #[arg(long, num_args = 1..)]
    pub calibrate: Vec<PathBuf>,
    /// Comma-separated peer baselines.
    #[arg(long, value_delimiter = ',', default_value = "tract")]
    pub baseline: Vec<Baseline>,
    /// Folders with reference outputs (`*<clip>.top5.tsv`) or labels (`<clip>.labels.json`).
    /// Default: a `reference/` folder beside the clip's folder, as in ../shared/data.
    #[arg(long)]
    pub reference: Vec<PathBuf>,
    /// Folder for the PNG plots and a copy of the report.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where to write the JSON report.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Measure nothing: print and plot (with --out) a JSON report written earlier.
    #[arg(long, value_name = "JSON")]
    pub replot: Option<PathBuf>,
}

/// Returned when Ctrl-C stopped the bench after reporting what was measured.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

pub fn run(args: BenchArgs) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // A second Ctrl-C while the report is written falls through to the default handler.
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    }
    let mut report: Report = match &args.replot {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not a bench report", path.display()))?
        }
        None => bench(&args, &stop)?,
    };
    report.verdicts = report::verdicts(&report.runs);
    let md = report::markdown(&report);
    // The report goes to stdout; a closed pipe is not an error, a failed write is.
    match writeln!(std::io::stdout().lock(), "{md}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(anyhow::Error::new(e).context("cannot write the report to stdout"))
        }
        _ => {}
    }
    if let Some(json) = &args.json {
        write_json(&report, json)?;
        eprintln!("wrote {}", json.display());
    }
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        std::fs::write(out.join("report.md"), &md)?;
        write_json(&report, &out.join("report.json"))?;
        let files = plots::render_all(&report, out)?;
        eprintln!("wrote {} plots and the report to {}", files.len(), out.display());
    }
    if report.interrupted {
        return Err(Interrupted.into());
    }
    if !report.errors.is_empty() {
        // Errors go to stderr in full: with stdout redirected, the report's "Not measured"
        // list is not where the user looks.
        let list: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
        anyhow::bail!(
            "{} problem(s); {} run(s) measured. Not measured:\n{}",
            report.errors.len(),
            report.runs.len(),
            list.join("\n")
        );
    }
    Ok(())
}

fn write_json(report: &Report, path: &std::path::Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Measures every model on every clip. Failures are recorded and the rest goes on.
pub fn bench(args: &BenchArgs, stop: &AtomicBool) -> Result<Report> {
    let threads = args.engine.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // With only bundles to measure, no single model is (the default one would be).
    let model_paths = match (args.models.is_empty(), args.bundles.is_empty()) {
        (true, true) => vec![crate::args::default_model()?],
        _ => args.models.clone(),
    };
    if !args.variants.is_empty() && model_paths.len() != 1 {
        anyhow::bail!("--variant needs exactly one --model (the source it is compared with)");
    }
    let clip_paths = if args.clips.is_empty() { vec![crate::args::default_clip()?] } else { args.clips.clone() };
    let use_tract = args.baseline.contains(&Baseline::Tract);
    let use_ort = args.baseline.contains(&Baseline::Ort);
    let opts = MeasureOptions {
        tile: args.engine.tile,
        threads,
        repeat: args.repeat as usize,
        warmup: args.warmup,
        refresh: args.engine.refresh,
        bypass: !args.engine.no_bypass,
    };
    let mut report = Report {
        tool: "framecache bench".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        machine: Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            simd: format!("{:?}", framecache::kernels::SimdLevel::best()),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
        },
        options: Options {
            tile: args.engine.tile,
            // Every approximate mode gets the same interval.
            refresh: crate::args::refresh_interval(args.engine.refresh, framecache::exec::DEFAULT_MODE),
            bypass: opts.bypass,
            threads,
            repeat: opts.repeat,
            warmup: args.warmup,
            baselines: args.baseline.iter().map(|b| format!("{b:?}").to_lowercase()).collect(),
            aggregation: "Aggregates cover frames 2..N (frame 1 is a cold start); times are per-frame medians \
                          over repeats, then the mean (throughput), median, p90 and max over frames; × full (mean) \
                          is mean ms of engine-full ÷ mean ms of the mode, both from this run. skip=N and gate=T \
                          are charged engine-full's time on the frames they compute, and their own on the frames \
                          they hold."
                .into(),
        },
        ..Default::default()
    };

    let mut clips = Vec::new();
    for path in &clip_paths {
        match Clip::open(path) {
            Ok(c) => clips.push(c),
            Err(e) => report.errors.push(ErrorRecord {
                model: None,
                clip: Some(path.display().to_string()),
                message: format!("{e:#}"),
            }),
        }
    }
    // A fully convolutional model without an input size runs at the first clip's frame size.
    let frame_size =
        clips.first().filter(|c| !c.is_empty()).and_then(|c| c.decode(0).ok()).map(|f| (f.width, f.height));

    // Models: the engine's plan, and tract's when it is a baseline.
    let mut models = Vec::new();
    for path in &model_paths {
        let loaded =
            Model::load(path, args.engine.preprocess.as_deref(), args.engine.input_size, frame_size).and_then(|m| {
                let tract = if use_tract {
                    Some(TractModel::load_with_input(path, Some(m.input_dims()))?.with_threads(threads))
                } else {
                    None
                };
                Ok((m, tract))
            });
        let loaded = loaded.and_then(|(m, t)| {
            let mut variants = Vec::new();
            if args.precision.contains(&Precision::Int8) {
                variants.push(Variant {
                    name: "int8".into(),
                    model: int8_model(args, &m, frame_size)?,
                    precision: "int8",
                });
            }
            for path in &args.variants {
                let v = Model::load(path, None, args.engine.input_size, frame_size)
                    .with_context(|| format!("variant {}", path.display()))?;
                if v.input_dims() != m.input_dims() || v.task() != m.task() {
                    anyhow::bail!(
                        "variant {} takes {:?} for task {:?}; the model {} takes {:?} for {:?}",
                        path.display(),
                        v.input_dims(),
                        v.task(),
                        m.path.display(),
                        m.input_dims(),
                        m.task()
                    );
                }
                let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into());
                variants.push(Variant { name, model: v, precision: "fp32" });
            }
            Ok((m, t, variants))
        });
        match loaded {
            Ok(m) => models.push(m),
            Err(e) => report.errors.push(ErrorRecord {
                model: Some(path.display().to_string()),
                clip: None,
                message: format!("{e:#}"),
            }),
        }
    }
    let ort = if use_ort {
        match (baseline::ort_script(), baseline::ort_available()) {
            (Some(script), Ok(_)) => Some(script),
            (None, _) => {
                report.notes.push("ONNX Runtime baseline not run: bench/ort_baseline.py not found".into());
                None
            }
            (_, Err(why)) => {
                report.notes.push(format!("ONNX Runtime baseline not run: {why}"));
                None
            }
        }
    } else {
        None
    };
    for n in &report.notes {
        eprintln!("{n}");
    }

    let limit = |c: &Clip| args.frames.map_or(c.len(), |n| n.min(c.len()));
    let total: usize = clips.iter().map(|c| limit(c) * models.len() * opts.repeat).sum();
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} frames {elapsed_precise} (eta {eta}) {msg}")
            .expect("valid template"),
    );

    'clips: for clip in &clips {
        let count = limit(clip);
        let dirs = reference_dirs(&args.reference, clip);
        for (model, tract, variants) in &models {
            let what = format!("{} on {} ({count} frames)", model.name, clip.name);
            if bar.is_hidden() {
                eprintln!("measuring {what}");
            }
            bar.set_message(what);
            let measured = reference::find(&clip.path, &clip.name, &model.name, &dirs).and_then(|r| {
                measure::measure(
                    model,
                    variants,
                    tract.as_ref(),
                    clip,
                    count,
                    ort.is_some(),
                    &args.mode,
                    opts,
                    r.as_ref(),
                    &|| bar.inc(1),
                    stop,
                )
            });
            match measured {
                Ok(mut m) => {
                    if let Some(script) = ort.as_ref().filter(|_| !m.interrupted) {
                        bar.set_message(format!("{} on {}: ONNX Runtime", model.name, clip.name));
                        if let Err(e) = add_ort(&mut m, script, model, clip, count, opts) {
                            report.notes.push(format!("ONNX Runtime on {} / {}: {e:#}", model.name, clip.name));
                        }
                    }
                    report.runs.extend(m.runs);
                    if m.interrupted {
                        report.interrupted = true;
                        break 'clips;
                    }
                }
                Err(e) => report.errors.push(ErrorRecord {
                    model: Some(model.name.clone()),
                    clip: Some(clip.name.clone()),
                    message: format!("{e:#}"),
                }),
            }
        }
    }
    bar.finish_and_clear();

    for path in &args.bundles {
        for mode in args.mode.iter().filter_map(|m| match m {
            BenchMode::Cached(m) => Some(*m),
            _ => None,
        }) {
            if stop.load(Ordering::SeqCst) {
                report.interrupted = true;
                return Ok(report);
            }
            let bundle_args = crate::bundle::BundleArgs {
                bundle: path.clone(),
                clip: clip_paths.clone(),
                frames: args.frames.unwrap_or(usize::MAX),
                mode,
                model_dir: Vec::new(),
                threads: Some(threads),
                refresh: args.engine.refresh,
            };
            match crate::bundle::report(&bundle_args) {
                Ok(md) => report.bundles.push(md),
                Err(e) => report.errors.push(ErrorRecord {
                    model: Some(path.display().to_string()),
                    clip: None,
                    message: format!("{e:#}"),
                }),
            }
        }
    }
    Ok(report)
}

/// The int8 form of `model`: quantized in memory on `--calibrate` clips, else the int8 file
/// beside it.
fn int8_model(args: &BenchArgs, model: &Model, frame_size: Option<(usize, usize)>) -> Result<Model> {
    if !args.calibrate.is_empty() {
        let clips: Vec<Clip> = args.calibrate.iter().map(|p| Clip::open(p)).collect::<Result<_>>()?;
        let options = model.config.import_options(args.engine.input_size, frame_size);
        return crate::quantize::in_memory(model, &clips, options);
    }
    let path = crate::quantize::default_out(&model.path);
    if !path.is_file() {
        anyhow::bail!(
            "no int8 model {} beside {}: write one with `framecache quantize`, or pass --calibrate CLIP",
            path.display(),
            model.path.display()
        );
    }
    Model::load(&path, args.engine.preprocess.as_deref(), args.engine.input_size, frame_size)
}

/// Reference folders for a clip: the ones given, or `<clip folder>/../../reference`.
fn reference_dirs(given: &[PathBuf], clip: &Clip) -> Vec<PathBuf> {
    if !given.is_empty() {
        return given.to_vec();
    }
    clip.path.parent().and_then(|p| p.parent()).map(|p| vec![p.join("reference")]).unwrap_or_default()
}

/// Times ONNX Runtime on the same preprocessed frames and adds its figures to every run.
fn add_ort(
    m: &mut measure::Measured,
    script: &std::path::Path,
    model: &Model,
    clip: &Clip,
    count: usize,
    opts: MeasureOptions,
) -> Result<()> {
    // ONNX Runtime runs in its own process on every input tensor at once: this baseline holds
    // one model input per frame (bound it with --frames on long clips).
    let inputs = (0..count).map(|i| Ok(model.input_nchw(&clip.decode(i)?.as_frame()))).collect::<Result<Vec<_>>>()?;
    let ort =
        baseline::run_ort(script, &model.path, &inputs, model.input_dims(), opts.threads, opts.warmup, opts.repeat)?;
    let per = ort.outputs.len() / count.max(1);
    let diff = m
        .full_outputs
        .iter()
        .enumerate()
        .flat_map(|(i, full)| {
            full.iter().zip(&ort.outputs[i * per..(i + 1) * per]).map(|(a, b)| f64::from((a - b).abs()))
        })
        .fold(0.0, f64::max);
    for r in &mut m.runs {
        apply_ort(r, &ort.ms, diff);
    }
    Ok(())
}

fn apply_ort(r: &mut RunRecord, ms: &[f64], diff: f64) {
    let w = &ms[report::warm_frames(r.frames)];
    let (med, p90) = (report::percentile(w, 0.5), report::percentile(w, 0.9));
    r.ms_ort_median = Some(med);
    r.ms_ort_p90 = Some(p90);
    r.speedup_vs_ort = Some(med / r.ms_cached_median);
    r.speedup_vs_ort_inference = Some(med / r.ms_full_inference_median);
    r.ort_max_abs_diff = Some(diff);
    for (f, &t) in r.per_frame.iter_mut().zip(ms) {
        f.ms_ort = Some(t);
    }
}
