//! `framecache distill`: trains a dense head on a frozen backbone to reproduce a teacher
//! model's output map ([`framecache_train::distill`]), and writes it as a graph file with a
//! bundle manifest that attaches it to the backbone.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;
use framecache::graph::Activation;
use framecache::heads::Decoder;
use framecache::model::Bundle;
use framecache::{Fit, Preprocess, Resample};
use framecache_train::distill::{self, Clip, FitOptions, HeadSpec, Image, Models, Rng, Samples, Teacher};
use framecache_train::net::Net;
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::{relative, with_ext};
use crate::model::Model;

#[derive(Args, Debug)]
pub struct DistillArgs {
    /// The teacher: a model (its sidecar gives its preprocessing), or a bundle manifest
    /// (`.toml`) whose box detector head `--teacher-output` names: the head then learns a map
    /// that is 1 inside the teacher's boxes, and is measured by boxes matched at IoU 0.5.
    #[arg(long)]
    pub teacher: PathBuf,
    /// The teacher's output to reproduce (default: its first), or its head in a bundle.
    #[arg(long)]
    pub teacher_output: Option<String>,
    /// The backbone model (frozen; its sidecar gives its preprocessing, but for `--fit`).
    #[arg(long)]
    pub backbone: PathBuf,
    /// The backbone tensors the head reads (`framecache inspect` lists them): a coarse one for
    /// context first, then finer ones for detail (repeat `--tap`).
    #[arg(long, required = true)]
    pub tap: Vec<String>,
    /// The backbone's input size WxH (default: its own). An ONNX backbone runs at it even where
    /// its file fixes another (288x160 keeps a 16:9 frame's aspect at about 224² pixels); the
    /// bundle written beside the head says it as `input_size`.
    #[arg(long, value_parser = crate::args::parse_size)]
    pub input_size: Option<(usize, usize)>,
    /// How the frame fits the backbone's input: `stretch` sees the whole frame, as a camera
    /// preview shows it; `sidecar` keeps the backbone sidecar's own fit.
    #[arg(long, default_value = "stretch")]
    pub fit: String,
    /// Training clips (folders of frames or .y4m files).
    #[arg(long, required = true, num_args = 1..)]
    pub train: Vec<PathBuf>,
    /// Held-out clips: never trained on, measured against the teacher.
    #[arg(long, num_args = 1..)]
    pub holdout: Vec<PathBuf>,
    /// Every `stride`-th frame of each training clip.
    #[arg(long, default_value_t = 2)]
    pub stride: usize,
    /// Augmented copies of each training frame (crop, flip, brightness and contrast).
    #[arg(long, default_value_t = 2)]
    pub copies: usize,
    /// Head width (channels of its 3x3 convolutions).
    #[arg(long, default_value_t = 32)]
    pub channels: usize,
    /// 2x upsampling steps of the head.
    #[arg(long, default_value_t = 1)]
    pub upsample: usize,
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The head file to write (a graph file, `.safetensors`). Beside it: `.json` (recipe, loss
    /// curve, held-out figures), `.loss.png`, `.bundle.toml`, and `.ckpt` while training.
    #[arg(long)]
    pub out: PathBuf,
    /// Where the backbone features and teacher targets are kept (default: beside `--out`).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Continue from the checkpoint beside `--out` (the head's weights and its epoch).
    #[arg(long)]
    pub resume: bool,
}

fn open_clips(paths: &[PathBuf], stride: usize) -> Result<Vec<Clip>> {
    paths
        .iter()
        .map(|p| {
            let clip = crate::clip::Clip::open(p)?;
            if clip.is_empty() {
                bail!("clip {} has no frames", p.display());
            }
            let frames = (0..clip.len())
                .step_by(stride.max(1))
                .map(|i| clip.decode(i).map(|f| Image { width: f.width, height: f.height, data: f.data }))
                .collect::<Result<Vec<_>>>()?;
            Ok(Clip { name: clip.name.clone(), frames })
        })
        .collect()
}

fn preprocess_toml(p: &Preprocess) -> String {
    let fit = match p.fit {
        Fit::Stretch => "fit = \"stretch\"".to_string(),
        Fit::CenterCrop { shorter: Some(s) } => format!("fit = \"center-crop\"\nresize_shorter = {s}"),
        Fit::CenterCrop { shorter: None } => "fit = \"center-crop\"".to_string(),
    };
    let resample = match p.resample {
        Resample::Area => "area",
        Resample::Pil => "pil",
        Resample::MediaPipe => "mediapipe",
    };
    format!("{fit}\nmean = {:?}\nstd = {:?}\nresample = \"{resample}\"", p.mean, p.std)
}

pub fn run(args: DistillArgs) -> Result<()> {
    let started = Instant::now();
    if args.out.extension().is_none_or(|e| e != "safetensors") {
        bail!("--out {} must end in .safetensors", args.out.display());
    }
    // Everything the user gave is checked before anything is computed or written.
    let backbone = Model::load(&args.backbone, None, args.input_size, None).context("the backbone")?;
    let (teacher, teacher_name, last) = if args.teacher.extension().is_some_and(|e| e == "toml") {
        let bundle = Bundle::load(&args.teacher, &crate::bundle::model_dirs(&[]))
            .with_context(|| format!("the teacher bundle {}", args.teacher.display()))?;
        let head = args.teacher_output.clone().context("a teacher bundle needs --teacher-output HEAD")?;
        let (b, k) = bundle
            .find_head(&head)
            .with_context(|| format!("the teacher bundle {} has no head '{head}'", args.teacher.display()))?;
        if !matches!(bundle.backbones[b].heads[k].decoder, Decoder::DetectSsd(_) | Decoder::DetectGrid(_)) {
            bail!("the teacher's head '{head}' is no box detector (give a segmentation model as --teacher)");
        }
        (Teacher::Boxes { bundle, backbone: b, head: k }, head, Activation::Sigmoid)
    } else {
        let teacher = Model::load(&args.teacher, None, None, None).context("the teacher")?;
        let teacher_graph = teacher.plan.graph();
        let teacher_out = match &args.teacher_output {
            Some(name) => teacher_graph
                .outputs
                .iter()
                .find(|o| &o.name == name)
                .with_context(|| format!("the teacher {} has no output '{name}'", args.teacher.display()))?,
            None => teacher_graph.outputs.first().context("the teacher has no output")?,
        };
        let (node, ts) = (teacher_out.node, teacher_graph.nodes[teacher_out.node].shape);
        if ts.h < 2 || ts.w < 2 {
            bail!("the teacher's output '{}' is {ts}, not a map: distill trains dense heads", teacher_out.name);
        }
        let last = match teacher_graph.nodes[node].op.activation() {
            Activation::Sigmoid => Activation::Sigmoid,
            _ => Activation::Identity,
        };
        let name = teacher_out.name.clone();
        (Teacher::Map { plan: teacher.plan.clone(), node }, name, last)
    };
    let teacher_channels = teacher.channels();
    let mut preprocess = backbone.config.preprocess.clone();
    match args.fit.as_str() {
        "stretch" => preprocess.fit = Fit::Stretch,
        "sidecar" => {}
        other => bail!("--fit {other}: expected stretch or sidecar"),
    }
    let graph = framecache::import::load_model(&args.backbone, backbone.config.import_options(args.input_size, None))?;
    let taps = args
        .tap
        .iter()
        .map(|t| {
            graph.tensors.get(t).copied().with_context(|| {
                format!("the backbone {} has no tensor '{t}' (framecache inspect lists them)", args.backbone.display())
            })
        })
        .collect::<Result<Vec<usize>>>()?;
    let tap_shapes: Vec<_> = taps.iter().map(|&t| graph.nodes[t].shape).collect();
    let spec = HeadSpec { channels: args.channels, upsample: args.upsample };
    let mut rng = Rng::new(args.seed);
    let head = distill::build_head(&tap_shapes, teacher_channels, last, spec, &mut rng)?;
    let out_shape = head.nodes[head.outputs[0].node].shape;
    let train = open_clips(&args.train, args.stride)?;
    let holdout = open_clips(&args.holdout, 1)?;
    if let Some(c) = train.iter().find(|c| holdout.iter().any(|h| h.name == c.name)) {
        bail!("clip {} is both a training and a held-out clip", c.name);
    }
    let backbone_plan = framecache::Plan::new(graph.clone(), preprocess.clone())?;
    // The files the teacher's targets come from: a bundle's manifest and its models.
    let mut teacher_files = vec![args.teacher.clone()];
    if let Teacher::Boxes { bundle, backbone, .. } = &teacher {
        teacher_files.extend(bundle.backbones[*backbone].models.iter().cloned());
    }
    let teacher_macs = teacher.plan().total_macs();
    let models = Models { backbone: backbone_plan, taps: taps.clone(), teacher, grid: (out_shape.h, out_shape.w) };

    // 1. Features and targets, computed once and kept on disk.
    let crc = |p: &Path| -> Result<String> {
        Ok(framecache::quant::file::crc32(&std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?))
    };
    let key = format!(
        "backbone {} {} size {:?} taps {:?} fit {} teacher {} {} output {} grid {:?} clips {:?} stride {} copies {} seed {}",
        args.backbone.display(),
        crc(&args.backbone)?,
        args.input_size,
        args.tap,
        args.fit,
        args.teacher.display(),
        teacher_files.iter().map(|f| crc(f)).collect::<Result<Vec<_>>>()?.join(" "),
        teacher_name,
        models.grid,
        train.iter().map(|c| (&c.name, c.frames.len())).collect::<Vec<_>>(),
        args.stride,
        args.copies,
        args.seed
    );
    let cache = args.cache.clone().unwrap_or_else(|| with_ext(&args.out, ".samples"));
    let samples = match Samples::load(&cache, &key) {
        Some(s) => {
            eprintln!("features and targets: {} samples from {}", s.n, cache.display());
            s
        }
        None => {
            let frames: Vec<&Image> = train.iter().flat_map(|c| &c.frames).collect();
            let t = Instant::now();
            let s = distill::samples(&models, &frames, args.copies, &mut rng)?;
            eprintln!(
                "features and targets: {} samples ({} frames, {} copies each) in {:.1} s, kept in {}",
                s.n,
                frames.len(),
                args.copies,
                t.elapsed().as_secs_f64(),
                cache.display()
            );
            s.save(&cache, &key)?;
            s
        }
    };

    // 2. Training, resumable from the checkpoint.
    let ckpt = with_ext(&args.out, ".ckpt");
    let ckpt_meta = with_ext(&args.out, ".ckpt.json");
    let (head, mut curve) = if args.resume && ckpt.exists() {
        let g = framecache::import::load_model(&ckpt, Default::default())
            .with_context(|| format!("cannot resume from {}", ckpt.display()))?;
        let shape = g.outputs.first().map(|o| g.nodes[o.node].shape);
        let inputs: Vec<_> = g.nodes[..g.inputs()].iter().map(|n| n.shape).collect();
        if inputs != tap_shapes || shape.is_none_or(|s| s.c != teacher_channels || (s.h, s.w) != models.grid) {
            bail!(
                "the checkpoint {} reads {inputs:?} and writes {shape:?}; this run's head reads {tap_shapes:?} and writes {out_shape}",
                ckpt.display(),
            );
        }
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&ckpt_meta)?)?;
        let curve: Vec<f32> = serde_json::from_value(meta["loss"].clone())?;
        eprintln!("resuming after epoch {} from {}", curve.len(), ckpt.display());
        (g, curve)
    } else {
        (head, Vec::new())
    };
    let net = Net::new(head, &Device::Cpu)?;
    let options =
        FitOptions { epochs: 1, batch: args.batch, learning_rate: args.lr, weight_decay: 1e-4, seed: args.seed };
    let bar =
        ProgressBar::new((args.epochs.saturating_sub(curve.len()) * samples.n.div_ceil(args.batch.max(1))) as u64);
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]")?);
    let t_train = Instant::now();
    for epoch in curve.len()..args.epochs {
        let opts = FitOptions { seed: options.seed.wrapping_add(epoch as u64), ..options };
        let loss = distill::fit(&net, &samples, &opts, |_, _, _, l| {
            bar.inc(1);
            bar.set_message(format!("epoch {}/{} loss {l:.4}", epoch + 1, args.epochs));
        })?;
        curve.push(loss[0]);
        let g = net.to_graph()?;
        framecache::files::write_atomic(&ckpt, &framecache::import::graph_file::to_bytes(&g, "checkpoint")?)?;
        framecache::files::write_atomic(
            &ckpt_meta,
            serde_json::to_string(&serde_json::json!({ "loss": curve }))?.as_bytes(),
        )?;
    }
    bar.finish_and_clear();
    let train_secs = t_train.elapsed().as_secs_f64();

    // 3. The head file, then the held-out figures from the engine running it.
    let trained = net.to_graph()?;
    let description = format!(
        "framecache distill: teacher {} ({}), backbone {} at {:?}, head {:?}, {} epochs",
        args.teacher.display(),
        teacher_name,
        args.backbone.display(),
        args.tap,
        spec,
        args.epochs
    );
    let bytes = framecache::import::graph_file::to_bytes(&trained, &description)?;
    let check = framecache::import::load_model_bytes(&bytes, &args.out, Default::default())?;
    let (student, output) = distill::attach(graph, preprocess.clone(), check, &taps)?;
    let metrics =
        holdout.iter().map(|c| distill::evaluate(&student, output, &models, c)).collect::<Result<Vec<_>, _>>()?;
    let head_macs = trained.total_macs();
    for m in &metrics {
        if let Some(b) = &m.boxes {
            eprintln!(
                "held out {}: boxes: teacher {}, head {}, matched at IoU 0.5 {} (the head's grid allows {})",
                m.clip, b.teacher, b.student, b.matched, b.grid_matched
            );
        }
        eprintln!(
            "held out {}: {} frames, {} with a teacher mask >= 1%: mean IoU {} (the head's grid allows {}), \
             cover teacher {:.3} student {:.3}",
            m.clip,
            m.frames,
            m.frames_with_mask,
            m.mean_iou.map_or("-".into(), |v| format!("{v:.3}")),
            m.grid_ceiling_iou.map_or("-".into(), |v| format!("{v:.3}")),
            m.teacher_cover,
            m.student_cover
        );
    }
    framecache::files::write_atomic(&args.out, &bytes)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let bundle = with_ext(&args.out, ".bundle.toml");
    let manifest = format!(
        "# Written by framecache distill: the backbone with the distilled head at {tap_name}.\n\
         name = \"{name}\"\n\n[[backbone]]\nmodel = \"{model}\"\n{size}[backbone.preprocess]\n{pre}\n\n\
         [[backbone.head]]\nname = \"{name}\"\nmodel = \"{head}\"\ninput = {tap_list}\ndecoder = \"segment\"\noutputs = [\"mask\"]\n",
        tap_name = args.tap.join(", "),
        tap_list = serde_json::to_string(&args.tap)?,
        name = args.out.file_stem().map_or("head".into(), |s| s.to_string_lossy().replace(".head", "")),
        model = relative(&args.backbone, &bundle),
        size = args.input_size.map_or(String::new(), |(w, h)| format!("input_size = [{w}, {h}]\n")),
        pre = preprocess_toml(&preprocess),
        head = args.out.file_name().map_or(String::new(), |s| s.to_string_lossy().into_owned()),
    );
    framecache::files::write_atomic(&bundle, manifest.as_bytes())?;
    let report = serde_json::json!({
        "teacher": args.teacher, "teacher_output": teacher_name, "backbone": args.backbone, "tap": args.tap,
        "input_size": args.input_size, "fit": args.fit, "head": spec, "head_macs": head_macs, "teacher_macs": teacher_macs,
        "train_clips": train.iter().map(|c| &c.name).collect::<Vec<_>>(), "samples": samples.n,
        "stride": args.stride, "copies": args.copies,
        "fit_options": FitOptions { epochs: args.epochs, ..options },
        "loss": curve, "train_seconds": train_secs, "total_seconds": started.elapsed().as_secs_f64(),
        "holdout": metrics,
    });
    framecache::files::write_atomic(&with_ext(&args.out, ".json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    crate::bench::plots::loss_curve(&with_ext(&args.out, ".loss.png"), &curve)?;
    let _ = std::fs::remove_file(&ckpt);
    let _ = std::fs::remove_file(&ckpt_meta);
    eprintln!(
        "wrote {} ({} MMACs per frame, the teacher {}), {}; trained {} epochs in {:.0} s",
        args.out.display(),
        head_macs as f64 / 1e6,
        teacher_macs as f64 / 1e6,
        bundle.display(),
        args.epochs,
        train_secs
    );
    Ok(())
}
