//! `framecache quantize`: post-training int8 quantization of a float model, calibrated on
//! frames of real clips, written as an int8 model file ([`framecache::quant::file`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use framecache::quant::{file, Calibration, Method};
use framecache::{ModelConfig, Plan, Session, SessionOptions};

use crate::clip::{Clip, RgbFrame};
use crate::model::Model;

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// The float model (ONNX or TFLite).
    pub model: PathBuf,
    /// Clips to calibrate on: folders of numbered PNG/JPEG frames or .y4m files.
    #[arg(long, required = true, num_args = 1..)]
    pub calibrate: Vec<PathBuf>,
    /// Frames per clip, spread evenly over it.
    #[arg(long, default_value_t = 32)]
    pub frames: usize,
    /// How each input's range is chosen from what the frames showed: minmax (the extremes
    /// seen), mse (the range that minimises the expected squared quantization error) or
    /// percentile (0.01% clipped at each end). minmax agreed best with fp32 on held-out clips
    /// (docs/results-int8.md).
    #[arg(long, default_value = "minmax")]
    pub method: Method,
    /// The fidelity int8 full inference must reach against fp32 full inference on the
    /// calibration frames (top-1 agreement, or mean mask IoU) before no more layers go back to
    /// float: `skip2` (fp32 skip-2's own fidelity on the same frames, each frame against the
    /// one before it) or a number in (0, 1], such as 0.97.
    #[arg(long, default_value = "skip2")]
    pub floor: Floor,
    /// The int8 file (default: beside the model, `NAME.int8.safetensors`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Preprocessing sidecar (TOML) to use instead of the model's own.
    #[arg(long)]
    pub preprocess: Option<PathBuf>,
    /// Input size WxH for models with dynamic spatial input dims (or an ONNX model run at
    /// another size than its own).
    #[arg(long, value_parser = crate::args::parse_size)]
    pub input_size: Option<(usize, usize)>,
    /// Quantization-aware training: after calibration, this many epochs over the calibration
    /// frames fine-tune the int8 convolutions (fake quantization, straight-through gradient)
    /// towards the float model's output (0: post-training quantization only).
    #[cfg(feature = "train")]
    #[arg(long, default_value_t = 0)]
    pub qat_epochs: usize,
    /// Quantization-aware training's learning rate (AdamW).
    #[cfg(feature = "train")]
    #[arg(long, default_value_t = 1e-5)]
    pub qat_lr: f64,
}

/// What int8 must agree with fp32 on ([`fall_back`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Floor {
    /// As well as fp32 skip-2 agrees with fp32 full on the same frames.
    Skip2,
    /// At least this fidelity.
    Value(f64),
}

impl std::str::FromStr for Floor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "skip2" {
            return Ok(Floor::Skip2);
        }
        match s.parse::<f64>() {
            Ok(v) if v > 0.0 && v <= 1.0 => Ok(Floor::Value(v)),
            _ => Err(format!("{s:?} is neither skip2 nor a fidelity in (0, 1]")),
        }
    }
}

pub fn run(args: QuantizeArgs) -> Result<()> {
    if args.frames == 0 {
        bail!("--frames must be at least 1");
    }
    let out = args.out.clone().unwrap_or_else(|| default_out(&args.model));
    if out.exists() && same_file(&out, &args.model) {
        bail!("--out {} is the model itself", out.display());
    }
    let clips: Vec<Clip> = args.calibrate.iter().map(|p| Clip::open(p)).collect::<Result<_>>()?;
    let (sidecar, config, bytes) = read_model(&args.model, args.preprocess.as_deref())?;
    let first = clips[0].decode(0)?;
    let options = config.import_options(args.input_size, Some((first.width, first.height)));
    let (graph, calibration) =
        calibrate(&bytes, &args.model, &config, options, &clips, args.frames, args.method, args.floor)?;
    #[cfg(feature = "train")]
    let graph = if args.qat_epochs > 0 {
        qat(graph, &bytes, &args.model, &config, options, &clips, args.frames, args.qat_epochs, args.qat_lr)?
    } else {
        graph
    };
    let (source, source_bytes) = (source_path(&args.model, &out)?, bytes.len() as u64);
    let manifest = file::Manifest {
        format: "framecache-int8".into(),
        version: file::VERSION,
        source,
        source_bytes,
        source_crc32: file::crc32(&bytes),
        method: args.method.name().into(),
        calibration_frames: calibration.frames(),
        calibration_clips: clips.iter().map(|c| c.name.clone()).collect(),
        layer: Vec::new(),
    };
    let int8 = file::to_bytes(&graph, manifest)?;
    // The int8 file must load: its float model found from where it is written, every layer
    // valid. Checked before anything is written.
    let check = framecache::import::load_model_bytes(&int8, &out, options)
        .and_then(|g| Plan::new(g, config.preprocess.clone()))
        .context("the int8 model does not load")?;
    framecache::files::write_atomic(&out, &int8).with_context(|| format!("cannot write {}", out.display()))?;
    let (int8_macs, total) = int8_share(&check);
    let layers = graph.nodes.iter().filter(|n| matches!(&n.op, framecache::graph::Op::Conv(c) if c.quant.is_some()));
    println!(
        "{}: {} int8 convolutions ({:.1}% of {:.1} MMACs), ranges by {} over {} frames of {}; {:.2} MB (float model {:.2} MB)",
        out.display(),
        layers.count(),
        100.0 * int8_macs as f64 / total.max(1) as f64,
        total as f64 / 1e6,
        args.method.name(),
        calibration.frames(),
        clips.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
        int8.len() as f64 / 1e6,
        source_bytes as f64 / 1e6,
    );
    println!("its preprocessing is the float model's sidecar, {}", sidecar.display());
    Ok(())
}

/// Calls `f` on `frames` frames of each clip, spread evenly over it, each at the size of the
/// clip's first frame: the frames that calibration, quantization-aware training and
/// `compress` learn from.
pub(crate) fn each_frame(clips: &[Clip], frames: usize, mut f: impl FnMut(&RgbFrame) -> Result<()>) -> Result<()> {
    for clip in clips {
        if clip.is_empty() {
            bail!("clip {} has no frames", clip.path.display());
        }
        let n = frames.min(clip.len());
        let first = clip.decode(0)?;
        for k in 0..n {
            f(&clip.decode_sized(k * clip.len() / n, (first.width, first.height))?)?;
        }
    }
    Ok(())
}

/// The unfused graph of the float model `bytes` (read from `path`) with its int8 convolutions
/// quantized: input ranges by `method` over `frames` frames of each clip (spread evenly), run
/// through fp32 full inference twice (extremes, then histograms); then layers go back to float
/// until int8 reaches `floor` ([`fall_back`]).
#[allow(clippy::too_many_arguments)]
pub fn calibrate(
    bytes: &[u8],
    path: &Path,
    config: &ModelConfig,
    options: framecache::import::ImportOptions,
    clips: &[Clip],
    frames: usize,
    method: Method,
    floor: Floor,
) -> Result<(framecache::graph::Graph, Calibration)> {
    let mut graph = framecache::import::load_unfused(bytes, path, options)?;
    framecache::quant::dense_as_conv(&mut graph);
    let plan = Plan::new(graph.clone(), config.preprocess.clone())?;
    let mut session = Session::new(plan, SessionOptions::default())?;
    let mut calibration = Calibration::new(&graph);
    if calibration.nodes.is_empty() {
        bail!("{} has no convolution that runs in int8 (pointwise, dense or grouped)", path.display());
    }
    for histograms in [false, true] {
        each_frame(clips, frames, |frame| {
            session.run_full(frame.as_frame())?;
            calibration.observe(histograms, |j| session.activation(j));
            Ok(())
        })?;
    }
    calibration.apply(&mut graph, method);
    let float = fall_back(&mut graph, &mut session, config, clips, floor)?;
    if !graph.nodes.iter().any(|n| matches!(&n.op, framecache::graph::Op::Conv(c) if c.quant.is_some())) {
        bail!(
            "int8 does not reach the fidelity floor ({floor:?}) on these calibration frames even with a single \
             layer in int8: all {} went back to float, so the int8 model would be the float model",
            float.len()
        );
    }
    if !float.is_empty() {
        let names: Vec<&str> = float.iter().map(|&i| graph.nodes[i].name.as_str()).collect();
        eprintln!("kept float for fidelity: {} layer(s): {}", float.len(), names.join(", "));
    }
    Ok((graph, calibration))
}

/// Quantization-aware training of the calibrated int8 `graph` ([`framecache_train::finetune`]):
/// its int8 convolutions fine-tuned for `epochs` on `frames` frames of each clip, towards the
/// float model's (`bytes`) first output on the same frames.
#[cfg(feature = "train")]
#[allow(clippy::too_many_arguments)]
fn qat(
    graph: framecache::graph::Graph,
    bytes: &[u8],
    path: &Path,
    config: &ModelConfig,
    options: framecache::import::ImportOptions,
    clips: &[Clip],
    frames: usize,
    epochs: usize,
    learning_rate: f64,
) -> Result<framecache::graph::Graph> {
    use framecache_train::finetune::{finetune, int8_convolutions, FinetuneOptions, Loss};
    crate::training_allocator();
    let float = Plan::new(framecache::import::load_unfused(bytes, path, options)?, config.preprocess.clone())?;
    let mut images = Vec::new();
    each_frame(clips, frames, |frame| {
        images.push(frame.clone());
        Ok(())
    })?;
    let TeacherPairs { output, inputs, targets } = teacher_pairs(&float, &images, 0)?;
    let options = FinetuneOptions { loss: Loss::Mse, epochs, batch: 8, learning_rate, seed: 1 };
    let started = std::time::Instant::now();
    let (trained, curve) = finetune(graph, output, &inputs, &targets, int8_convolutions, options, |epoch, loss| {
        eprintln!("qat epoch {}/{epochs}: loss {loss:.5}", epoch + 1);
    })?;
    eprintln!(
        "quantization-aware training: loss {:.5} -> {:.5} over {} frames, {:.0} s",
        curve[0],
        curve[curve.len() - 1],
        inputs.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(trained)
}

/// Training pairs for fine-tuning a compressed model towards `teacher` (its source, float):
/// each of `frames`, and `copies` augmented copies of each (crop, flip, brightness and
/// contrast: [`framecache_train::distill::augment`], seeded), as the student's input tensor
/// (NHWC, preprocessed as the teacher's plan does) and the teacher's first output on it.
#[cfg(feature = "train")]
pub(crate) fn teacher_pairs(
    teacher: &std::sync::Arc<Plan>,
    frames: &[RgbFrame],
    copies: usize,
) -> Result<TeacherPairs> {
    use framecache_train::distill::{augment, Image, Rng};
    let output = teacher.graph().outputs.first().context("the model has no output")?.node;
    let shape = teacher.graph().input_shape();
    let mut session = Session::new(teacher.clone(), SessionOptions::default())?;
    let (mut inputs, mut targets) = (Vec::new(), Vec::new());
    let mut rng = Rng::new(1);
    for f in frames {
        let image = Image { width: f.width, height: f.height, data: f.data.clone() };
        let augmented: Vec<Image> = (0..copies).map(|_| augment(&image, &mut rng)).collect();
        for img in std::iter::once(&image).chain(&augmented) {
            let (mut resampled, mut nhwc) = (Vec::new(), vec![0.0; shape.len()]);
            teacher.preprocess().resample(img.frame(), shape, &mut resampled);
            teacher.preprocess().normalize(&resampled, &mut nhwc);
            session.run_full(img.frame())?;
            targets.push(session.activation(output).to_vec());
            inputs.push(nhwc);
        }
    }
    Ok(TeacherPairs { output, inputs, targets })
}

/// What [`teacher_pairs`] gives: the teacher's output node, and the inputs and its outputs.
#[cfg(feature = "train")]
pub(crate) struct TeacherPairs {
    pub output: usize,
    pub inputs: Vec<Vec<f32>>,
    pub targets: Vec<Vec<f32>>,
}

/// Frames per clip on which [`fall_back`] measures fidelity: each with the frame before it.
const FIDELITY_FRAMES: usize = 16;

/// Mixed precision where int8 loses too much: on calibration frames, int8 full inference must
/// agree with fp32 full inference at least as well as `floor` says: by default as well as fp32
/// skip-2 does (each frame against the frame before it), the floor the int8 issue sets for
/// classifiers. Until it does, the int8 layer whose
/// quantization alone moves the output most goes back to float, then the next. Returns the
/// layers put back, in that order; none for tasks without a fidelity metric.
fn fall_back(
    graph: &mut framecache::graph::Graph,
    float: &mut Session,
    config: &ModelConfig,
    clips: &[Clip],
    floor: Floor,
) -> Result<Vec<usize>> {
    use framecache::graph::Op;
    let agreement = |o: &[framecache::Output], r: &[framecache::Output]| {
        crate::bench::measure::agreement(config.task, config.mask_threshold, o, r)
    };
    // Frame pairs (i - 1, i), evenly spread, and fp32's outputs on them.
    let mut frames = Vec::new();
    for clip in clips.iter().filter(|c| c.len() > 1) {
        let first = clip.decode(0)?;
        let n = FIDELITY_FRAMES.min(clip.len() - 1);
        for k in 0..n {
            let i = 1 + k * (clip.len() - 1) / n;
            frames.push((
                clip.decode_sized(i - 1, (first.width, first.height))?,
                clip.decode_sized(i, (first.width, first.height))?,
            ));
        }
    }
    let mut reference = Vec::new();
    let mut skip2 = Vec::new();
    for (before, now) in &frames {
        let b = float.run_full(before.as_frame())?;
        let r = float.run_full(now.as_frame())?;
        skip2.extend(agreement(&b, &r));
        reference.push(r);
    }
    if skip2.is_empty() {
        return Ok(Vec::new());
    }
    let target = match floor {
        Floor::Skip2 => skip2.iter().sum::<f64>() / skip2.len() as f64,
        Floor::Value(v) => v,
    };
    // Mean agreement (and mean squared output error) of `g` with fp32 on the frames.
    let measure = |g: &framecache::graph::Graph| -> Result<(f64, f64)> {
        let g = framecache::import::fused(g.clone());
        let mut s = Session::new(Plan::new(g, config.preprocess.clone())?, SessionOptions::default())?;
        let (mut agree, mut err) = (0.0, 0.0);
        for ((_, now), r) in frames.iter().zip(&reference) {
            let o = s.run_full(now.as_frame())?;
            agree += agreement(&o, r).unwrap_or(1.0);
            let (a, b) = (&o[0].data, &r[0].data);
            err += a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>() / a.len().max(1) as f64;
        }
        Ok((agree / frames.len() as f64, err / frames.len() as f64))
    };
    if measure(graph)?.0 >= target {
        return Ok(Vec::new());
    }
    let int8: Vec<usize> =
        (0..graph.nodes.len()).filter(|&i| matches!(&graph.nodes[i].op, Op::Conv(c) if c.quant.is_some())).collect();
    let strip = |g: &mut framecache::graph::Graph, i: usize| {
        if let Op::Conv(c) = &mut g.nodes[i].op {
            c.quant = None;
        }
    };
    // Each layer's own damage: only it in int8.
    let mut damage = Vec::new();
    for &l in &int8 {
        let mut g = graph.clone();
        int8.iter().filter(|&&j| j != l).for_each(|&j| strip(&mut g, j));
        damage.push((measure(&g)?.1, l));
    }
    damage.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut back = Vec::new();
    for (_, l) in damage {
        strip(graph, l);
        back.push(l);
        if measure(graph)?.0 >= target {
            break;
        }
    }
    Ok(back)
}

/// The int8 form of a loaded float model, quantized in memory on `clips` (min/max ranges, 32
/// frames per clip), with the float model's preprocessing and labels.
pub fn in_memory(model: &Model, clips: &[Clip], options: framecache::import::ImportOptions) -> Result<Model> {
    let bytes = framecache::files::read(&model.path, framecache::files::MAX_MODEL_BYTES)
        .with_context(|| format!("cannot read model {}", model.path.display()))?;
    let (graph, _) = calibrate(&bytes, &model.path, &model.config, options, clips, 32, Method::MinMax, Floor::Skip2)?;
    let plan = Plan::new(framecache::import::fused(graph), model.config.preprocess.clone())?;
    let m = framecache::SidecarModel::new(plan, model.config.clone(), model.labels.clone());
    Ok(Model {
        path: model.path.clone(),
        name: format!("{}.int8", model.name),
        plan: m.plan,
        config: m.config,
        labels: m.labels,
        decoders: m.decoders,
    })
}

/// `NAME.int8.safetensors` beside `model` (`NAME` without its extension).
pub fn default_out(model: &Path) -> PathBuf {
    let stem = model.file_stem().map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    model.with_file_name(format!("{stem}.int8.safetensors"))
}

/// The model file `model`'s sidecar (`preprocess`, else the one found beside it or in the
/// assets), parsed, and the model's bytes: what `quantize` and `compress` start from.
pub(crate) fn read_model(model: &Path, preprocess: Option<&Path>) -> Result<(PathBuf, ModelConfig, Vec<u8>)> {
    let sidecar = match preprocess {
        Some(p) => p.to_owned(),
        None => ModelConfig::find(model, &crate::model::sidecar_dirs())
            .with_context(|| format!("no sidecar for model {}: pass --preprocess FILE", model.display()))?,
    };
    let config = ModelConfig::load(&sidecar)?;
    let bytes = framecache::files::read(model, framecache::files::MAX_MODEL_BYTES)
        .with_context(|| format!("cannot read model {}", model.display()))?;
    Ok((sidecar, config, bytes))
}

pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// The float model as the int8 file at `out` names it: its file name when both are in one
/// folder, else its absolute path.
fn source_path(model: &Path, out: &Path) -> Result<String> {
    let abs = model.canonicalize().with_context(|| format!("cannot resolve {}", model.display()))?;
    let dir =
        |p: &Path| p.parent().map(|d| if d.as_os_str().is_empty() { Path::new(".") } else { d }).map(Path::to_owned);
    let out_dir = dir(out).and_then(|d| d.canonicalize().ok());
    let name = abs.file_name().context("the model has no file name")?.to_string_lossy().into_owned();
    Ok(if out_dir.as_deref() == abs.parent() { name } else { abs.display().to_string() })
}

/// MACs of the int8 convolutions of a compiled plan, and of the whole plan.
pub fn int8_share(plan: &Plan) -> (u64, u64) {
    use framecache::graph::Op;
    let g = plan.graph();
    let int8: u64 = g
        .nodes
        .iter()
        .map(|n| match &n.op {
            Op::Conv(c) if c.quant.is_some() => n.macs(g),
            Op::Bottleneck(b) => {
                let input = g.nodes[n.inputs[0]].shape.pixels() as u64;
                let out = n.shape.pixels() as u64;
                let ex =
                    b.expand.as_ref().filter(|e| e.quant.is_some()).map_or(0, |e| e.macs_per_output_pixel() * input);
                let pr = if b.project.quant.is_some() { b.project.macs_per_output_pixel() * out } else { 0 };
                ex + pr
            }
            _ => 0,
        })
        .sum();
    (int8, g.total_macs())
}
