//! `framecache compress`: the compression toolbox. Each method writes a model file that every
//! engine path runs (a graph file, [`framecache::import::graph_file`]) with a sidecar beside
//! it (the source model's, its labels path rewritten to resolve from the new folder), and a
//! JSON report. Fidelity and speed against the source are measured by
//! `framecache bench --model SOURCE --variant OUT`, on the same frames in one run.
//!
//! - `cluster`: a k-means codebook per layer, stored as the codebook and bit-packed indices
//!   ([`framecache_train::cluster`]).
//! - `wavelet`: the input as Haar subbands and the first convolution rewritten onto them
//!   ([`framecache_train::wavelet`]); with fewer bands, the first convolution refitted on the
//!   `--fit` clips.
//! - `qat`: quantization-aware training, through `quantize` (an int8 file).
//! - `prune`: expansion channels of inverted-residual blocks removed, ranked and recovered on
//!   the `--calibrate` clips ([`framecache_train::prune`]).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use framecache::import::graph_file;
use framecache::{ModelConfig, Plan};
use framecache_train::cluster::{self, Centroids};
use framecache_train::finetune::{finetune, float_layers, FinetuneOptions, Loss};
use framecache_train::prune;
use framecache_train::wavelet::{self, Band};

use crate::args::{sidecar_for, with_ext};
use crate::clip::Clip;
use crate::quantize::each_frame;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// Weight clustering: each layer's weights become a codebook (16 to 256 values, chosen per
    /// layer by `--max-error`, or `--centroids` for all) and bit-packed indices.
    Cluster,
    /// Wavelet input: a Haar transform of the input and the first convolution rewritten onto
    /// the subbands `--bands` (all four: exact), refitted on `--fit` clips when bands are
    /// dropped.
    Wavelet,
    /// Quantization-aware training: post-training int8 quantization calibrated on
    /// `--calibrate` frames (as `quantize`), then `--epochs` of fine-tuning of the int8
    /// convolutions towards the float model's output on the same frames; writes an int8 file.
    Qat,
    /// Structured pruning: `--ratio` of the expansion channels of every inverted-residual block
    /// removed (those sending the least energy into the projection on `--calibrate` frames),
    /// each projection refitted by least squares to the original's output.
    Prune,
}

/// `--recover` of `--method prune` ([`prune::Recovery`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Recover {
    None,
    Mean,
    LeastSquares,
}

impl From<Recover> for prune::Recovery {
    fn from(r: Recover) -> Self {
        match r {
            Recover::None => Self::None,
            Recover::Mean => Self::Mean,
            Recover::LeastSquares => Self::LeastSquares,
        }
    }
}

#[derive(Args, Debug)]
pub struct CompressArgs {
    /// The float model (ONNX, TFLite or a graph file).
    pub model: PathBuf,
    #[arg(long)]
    pub method: Method,
    /// The model file to write (`.safetensors`); its sidecar is written beside it
    /// (`OUT.toml`), and a report (`OUT.json`).
    #[arg(long)]
    pub out: PathBuf,
    /// cluster: each layer gets the fewest of 16, 32, 64, 128 and 256 centroids whose error
    /// (root mean over output channels of the relative squared error of the weights) is at
    /// most this, else 256. The default, 1%, is about what per-channel int8 weights lose
    /// (a step of max/127 is an RMS error of 0.7–1% of a channel's RMS where its max is 3–4
    /// times its RMS).
    #[arg(long, default_value_t = 0.01, conflicts_with = "centroids")]
    pub max_error: f64,
    /// cluster: this many centroids for every layer (2 to 256) instead of `--max-error`.
    #[arg(long)]
    pub centroids: Option<usize>,
    /// cluster: clips (folders of frames or .y4m) whose frames give each layer's mean input,
    /// so that each output channel's bias takes back the mean shift the clustering caused
    /// (bias correction). Without them, biases are left as they are. prune (required): the
    /// frames on which channels are ranked and projections refitted.
    #[arg(long, num_args = 1..)]
    pub calibrate: Vec<PathBuf>,
    /// prune: the fraction of each block's expansion channels to remove (above 0, below 1).
    #[arg(long, default_value_t = 0.35)]
    pub ratio: f64,
    /// qat: epochs of quantization-aware training (default 5). prune: epochs of fine-tuning
    /// after each round, every float layer trained towards the source model's output on the
    /// `--calibrate` frames and their augmented copies (default 0: no training).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// qat and prune: the learning rate (AdamW; each step moves a weight by about this much).
    /// qat's default, 1e-5, stays under the int8 grids' steps; prune's is 3e-5.
    #[arg(long)]
    pub lr: Option<f64>,
    /// prune: the rounds in which `--ratio` is reached, an equal share of each block's
    /// channels in each, each round's channels ranked on the network the round before left
    /// (fine-tuned, with `--epochs`).
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// prune: each block keeps a multiple of this many channels (the nearest to what `--ratio`
    /// leaves). The default, 8, is the float lanes of an AVX2 register (two NEON registers)
    /// and the channel block of ONNX Runtime's NCHWc layout, so that no kernel runs a
    /// remainder; 1 keeps exactly what `--ratio` leaves.
    #[arg(long, default_value_t = 8)]
    pub multiple: usize,
    /// prune: augmented copies (crop, flip, brightness, contrast) of each `--calibrate` frame
    /// that fine-tuning trains on, besides the frame itself.
    #[arg(long, default_value_t = 1)]
    pub copies: usize,
    /// prune: how each pruned projection takes back what the removed channels carried:
    /// `mean` (their mean contribution into its bias), `least-squares` (weights and bias
    /// refitted on the `--calibrate` frames) or `none`.
    #[arg(long, default_value = "mean")]
    pub recover: Recover,
    /// wavelet: the Haar subbands the model keeps, comma-separated (LL, LH, HL, HH).
    #[arg(long, value_delimiter = ',', default_value = "LL,LH,HL,HH")]
    pub bands: Vec<Band>,
    /// wavelet: clips (folders of frames or .y4m) on which the first convolution is refitted
    /// to the kept bands (least squares against the original's output).
    #[arg(long, num_args = 1..)]
    pub fit: Vec<PathBuf>,
    /// Frames per `--calibrate` or `--fit` clip, spread evenly over it.
    #[arg(long, default_value_t = 32)]
    pub frames: usize,
    /// Preprocessing sidecar (TOML) to use instead of the model's own.
    #[arg(long)]
    pub preprocess: Option<PathBuf>,
    /// Input size WxH for models with dynamic spatial input dims (or an ONNX model run at another
    /// size than its own).
    #[arg(long, value_parser = crate::args::parse_size)]
    pub input_size: Option<(usize, usize)>,
}

pub fn run(args: CompressArgs) -> Result<()> {
    if args.out.extension().is_none_or(|e| e != "safetensors") {
        bail!("--out {} must end in .safetensors", args.out.display());
    }
    if args.frames == 0 {
        bail!("--frames must be at least 1");
    }
    if args.out.exists() && crate::quantize::same_file(&args.out, &args.model) {
        bail!("--out {} is the model itself", args.out.display());
    }
    if args.method == Method::Qat {
        let epochs = args.epochs.unwrap_or(5);
        if args.calibrate.is_empty() || epochs == 0 {
            bail!("--method qat needs --calibrate CLIP... and --epochs at least 1");
        }
        return crate::quantize::run(crate::quantize::QuantizeArgs {
            model: args.model,
            calibrate: args.calibrate,
            frames: args.frames,
            method: framecache::quant::Method::MinMax,
            floor: crate::quantize::Floor::Skip2,
            out: Some(args.out),
            preprocess: args.preprocess,
            input_size: args.input_size,
            qat_epochs: epochs,
            qat_lr: args.lr.unwrap_or(1e-5),
        });
    }
    let (sidecar, config, bytes) = crate::quantize::read_model(&args.model, args.preprocess.as_deref())?;
    let options = config.import_options(args.input_size, None);
    let mut graph = framecache::import::load_unfused(&bytes, &args.model, options)?;

    let (model_bytes, report) = match args.method {
        Method::Cluster => {
            let how = match args.centroids {
                Some(k) => Centroids::Fixed(k),
                None => Centroids::ByError(args.max_error),
            };
            let float_bytes = weight_bytes(&graph);
            // The clips are read before the clustering, so that a bad one fails first.
            let means = if args.calibrate.is_empty() {
                None
            } else {
                let plan = Plan::new(graph.clone(), config.preprocess.clone())?;
                Some(input_means(plan, &open_clips(&args.calibrate)?, args.frames)?)
            };
            let original = graph.clone();
            let (books, layers) = cluster::cluster(&mut graph, how)?;
            if let Some(means) = &means {
                let n = cluster::correct_biases(&original, &mut graph, |i| means.get(&i).cloned())?;
                eprintln!("bias correction on {n} layers from {} frames", args.frames * args.calibrate.len());
            }
            let description = format!("framecache compress --method cluster ({how:?}) of {}", args.model.display());
            let out = graph_file::to_bytes_clustered(&graph, &description, &books)?;
            // Codebooks, packed indices and per-channel scales.
            let clustered_bytes: usize = books
                .values()
                .map(|c| 4 * (c.codebook.len() + c.scales.len()) + (c.indices.len() * c.bits() as usize).div_ceil(8))
                .sum();
            let clustered_floats: usize = books.values().map(|c| 4 * c.indices.len()).sum();
            let stays_float = float_bytes - clustered_floats;
            let mut sizes = std::collections::BTreeMap::<String, usize>::new();
            for l in &layers {
                *sizes.entry(l.centroids.map_or("float".into(), |k| k.to_string())).or_default() += 1;
            }
            eprintln!(
                "clustered {} of {} weighted layers ({}); weights {:.2} MB -> {:.2} MB ({:.2}x); worst layer error {:.4}",
                books.len(),
                layers.len(),
                sizes.iter().map(|(k, n)| format!("{n} x {k}")).collect::<Vec<_>>().join(", "),
                float_bytes as f64 / 1e6,
                (clustered_bytes + stays_float) as f64 / 1e6,
                float_bytes as f64 / (clustered_bytes + stays_float).max(1) as f64,
                layers.iter().filter(|l| l.centroids.is_some()).map(|l| l.error).fold(0.0, f64::max),
            );
            let report = serde_json::json!({
                "method": "cluster", "centroids": format!("{how:?}"), "calibrate": args.calibrate,
                "weight_bytes_float": float_bytes, "weight_bytes": clustered_bytes + stays_float,
                "layers": layers,
            });
            (out, report)
        }
        Method::Qat => unreachable!("delegated to quantize above"),
        Method::Prune => {
            if !(args.ratio > 0.0 && args.ratio < 1.0) {
                bail!("--ratio {}: the fraction of channels to remove is above 0 and below 1", args.ratio);
            }
            if args.calibrate.is_empty() {
                bail!("--method prune needs --calibrate CLIP...");
            }
            if args.rounds == 0 {
                bail!("--rounds must be at least 1");
            }
            let blocks = prune::blocks(&graph);
            if blocks.is_empty() {
                bail!(
                    "{} has no inverted-residual block (a pointwise expansion read only by a depthwise convolution \
                     read only by a pointwise projection) to prune",
                    args.model.display()
                );
            }
            let mut images = Vec::new();
            each_frame(&open_clips(&args.calibrate)?, args.frames, |f| {
                images.push(f.clone());
                Ok(())
            })?;
            let frames: Vec<framecache::Frame<'_>> = images.iter().map(|f| f.as_frame()).collect();
            let source = Plan::new(graph.clone(), config.preprocess.clone())?;
            let epochs = args.epochs.unwrap_or(0);
            let pairs = if epochs > 0 {
                let pairs = crate::quantize::teacher_pairs(&source, &images, args.copies)?;
                eprintln!("fine-tuning on {} inputs ({} frames and their copies)", pairs.inputs.len(), images.len());
                Some(pairs)
            } else {
                None
            };
            let options = FinetuneOptions {
                loss: fine_tuning_loss(&graph, &config),
                epochs,
                batch: 8,
                learning_rate: args.lr.unwrap_or(3e-5),
                seed: 1,
            };
            let channels = prune::channels(&graph, &blocks);
            let mut rounds = Vec::new();
            for round in 1..=args.rounds {
                let keep = prune::keep_counts(&channels, args.ratio * round as f64 / args.rounds as f64, args.multiple);
                let blocks_report =
                    prune::prune_network(&mut graph, &blocks, &config.preprocess, &frames, &keep, args.recover.into())?;
                let mut curve = Vec::new();
                if let Some(p) = &pairs {
                    let started = std::time::Instant::now();
                    let (trained, losses) =
                        finetune(graph, p.output, &p.inputs, &p.targets, float_layers, options, |epoch, loss| {
                            eprintln!("round {round} epoch {}/{epochs}: loss {loss:.5}", epoch + 1);
                        })?;
                    eprintln!(
                        "round {round}/{}: fine-tuned, loss {:.5} -> {:.5}, {:.0} s",
                        args.rounds,
                        losses[0],
                        losses[losses.len() - 1],
                        started.elapsed().as_secs_f64()
                    );
                    (graph, curve) = (trained, losses);
                }
                rounds.push(serde_json::json!({
                    "round": round, "keep": keep, "blocks": blocks_report, "loss": curve,
                }));
            }
            let macs_before = source.total_macs();
            let macs_after = Plan::new(graph.clone(), config.preprocess.clone())?.total_macs();
            let (had, kept) = (channels.iter().sum::<usize>(), prune::channels(&graph, &blocks).iter().sum::<usize>());
            eprintln!(
                "pruned {} blocks by {:.0}% of their expansion channels ({:.1}% with each block's count a multiple \
                 of {}): {:.1} -> {:.1} MMACs ({:.1}% fewer)",
                blocks.len(),
                100.0 * args.ratio,
                100.0 * (1.0 - kept as f64 / had as f64),
                args.multiple,
                macs_before as f64 / 1e6,
                macs_after as f64 / 1e6,
                100.0 * (1.0 - macs_after as f64 / macs_before as f64)
            );
            let report = serde_json::json!({
                "method": "prune", "ratio": args.ratio, "multiple": args.multiple,
                "recover": prune::Recovery::from(args.recover),
                "calibrate": args.calibrate, "frames": frames.len(), "copies": args.copies,
                "finetune": options, "rounds": rounds,
            });
            let description = format!(
                "framecache compress --method prune --ratio {} --multiple {} --rounds {} --epochs {epochs} of {}",
                args.ratio,
                args.multiple,
                args.rounds,
                args.model.display()
            );
            (graph_file::to_bytes(&graph, &description)?, report)
        }
        Method::Wavelet => {
            let mut rewritten = wavelet::rewrite(&graph, &args.bands)?;
            let fit = if args.fit.is_empty() {
                None
            } else {
                let plan = Plan::new(graph.clone(), config.preprocess.clone())?;
                let shape = plan.graph().input_shape();
                let mut inputs = Vec::new();
                each_frame(&open_clips(&args.fit)?, args.frames, |frame| {
                    let (mut resampled, mut nhwc) = (Vec::new(), vec![0.0; shape.len()]);
                    plan.preprocess().resample(frame.as_frame(), shape, &mut resampled);
                    plan.preprocess().normalize(&resampled, &mut nhwc);
                    inputs.push(nhwc);
                    Ok(())
                })?;
                Some(wavelet::fit_stem(&graph, &mut rewritten, &args.bands, &inputs)?)
            };
            if let Some((before, after)) = fit {
                eprintln!("first convolution refitted to the kept bands: relative RMS error {before:.4} -> {after:.4}");
            }
            let description =
                format!("framecache compress --method wavelet --bands {:?} of {}", args.bands, args.model.display());
            let out = graph_file::to_bytes(&rewritten, &description)?;
            let report = serde_json::json!({
                "method": "wavelet", "bands": args.bands,
                "fit_clips": args.fit, "fit_error_before": fit.map(|f| f.0), "fit_error_after": fit.map(|f| f.1),
            });
            (out, report)
        }
    };

    // The written model must load and compile before anything is written.
    let check = framecache::import::load_model_bytes(&model_bytes, &args.out, options)
        .and_then(|g| Plan::new(g, config.preprocess.clone()))
        .context("the compressed model does not load")?;
    let sidecar_out = with_ext(&args.out, ".toml");
    let sidecar_text = sidecar_for(&sidecar, &config, &args.model, &args.out, "compress")?;
    let report = serde_json::json!({
        "source": args.model, "source_bytes": bytes.len(), "bytes": model_bytes.len(),
        "source_macs": framecache::import::load_model_bytes(&bytes, &args.model, options)?.total_macs(),
        "macs": check.total_macs(), "result": report,
    });
    framecache::files::write_atomic(&args.out, &model_bytes)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let rest = framecache::files::write_atomic(&sidecar_out, sidecar_text.as_bytes()).and_then(|()| {
        framecache::files::write_atomic(
            &with_ext(&args.out, ".json"),
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )
    });
    if let Err(e) = rest {
        let _ = std::fs::remove_file(&args.out);
        let _ = std::fs::remove_file(&sidecar_out);
        return Err(anyhow::Error::new(e).context(format!("cannot write beside {}", args.out.display())));
    }
    eprintln!(
        "wrote {} ({:.2} MB; the source {:.2} MB) and its sidecar {}",
        args.out.display(),
        model_bytes.len() as f64 / 1e6,
        bytes.len() as f64 / 1e6,
        sidecar_out.display()
    );
    Ok(())
}

/// How a model's fine-tuning compares its output with its source's: a classifier's logits
/// (its first output not a softmax already) as distributions at temperature 2, a common
/// choice for distillation and not tuned here; any other output value by value.
fn fine_tuning_loss(graph: &framecache::graph::Graph, config: &ModelConfig) -> Loss {
    let logits =
        graph.outputs.first().is_some_and(|o| !matches!(graph.nodes[o.node].op, framecache::graph::Op::Softmax));
    if config.task == framecache::Task::Classify && logits {
        Loss::Softmax { temperature: 2.0 }
    } else {
        Loss::Mse
    }
}

/// The clips at `paths`.
fn open_clips(paths: &[PathBuf]) -> Result<Vec<Clip>> {
    paths.iter().map(|p| Clip::open(p)).collect()
}

/// The mean of each channel of each weighted layer's input (by node), over `frames` frames of
/// each clip, from full inference of `plan` (the float, unfused model).
fn input_means(plan: std::sync::Arc<Plan>, clips: &[Clip], frames: usize) -> Result<HashMap<usize, Vec<f64>>> {
    use framecache::graph::Op;
    let layers: Vec<(usize, usize)> = plan
        .graph()
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.op, Op::Conv(_) | Op::Dense(_)))
        .map(|(i, n)| (i, n.inputs[0]))
        .collect();
    let mut sums: HashMap<usize, (Vec<f64>, usize)> = HashMap::new();
    let mut session = framecache::Session::new(plan.clone(), framecache::SessionOptions::default())?;
    each_frame(clips, frames, |frame| {
        session.run_full(frame.as_frame())?;
        for &(i, j) in &layers {
            let c = plan.graph().nodes[j].shape.c;
            let (sum, count) = sums.entry(i).or_insert_with(|| (vec![0.0; c], 0));
            for (k, &v) in session.activation(j).iter().enumerate() {
                sum[k % c] += f64::from(v);
            }
            *count += session.activation(j).len() / c;
        }
        Ok(())
    })?;
    Ok(sums.into_iter().map(|(i, (sum, n))| (i, sum.into_iter().map(|s| s / n.max(1) as f64).collect())).collect())
}

/// Bytes of every convolution, transposed convolution and dense layer's weights as `f32`.
fn weight_bytes(graph: &framecache::graph::Graph) -> usize {
    use framecache::graph::Op;
    graph
        .nodes
        .iter()
        .map(|n| match &n.op {
            Op::Conv(c) => c.weights.len(),
            Op::ConvTranspose(c) => c.weights.len(),
            Op::Dense(d) => d.weights.len(),
            _ => 0,
        })
        .sum::<usize>()
        * 4
}
