//! `framecache run`: a model over a clip, with the frame cache, frame by frame.

use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use framecache::{Mode, Session};

use crate::clip::Clip;
use crate::model::Model;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// ONNX model (default: the bundled MobileNetV2).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Folder of numbered PNG/JPEG frames, one image or a .y4m file (default: the bundled
    /// clip).
    #[arg(long)]
    pub clip: Option<PathBuf>,
    /// exact (the correctness reference), threshold=N, mean-threshold=N, block-threshold=N,
    /// delta=N or block-delta=N (grey levels, 0-255).
    #[arg(long, default_value_t = framecache::exec::DEFAULT_MODE, value_parser = crate::args::parse_mode)]
    pub mode: Mode,
    #[command(flatten)]
    pub engine: crate::args::EngineArgs,
    /// Class names, one per line (default: the labels its sidecar names).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Process at most this many frames.
    #[arg(long)]
    pub frames: Option<usize>,
    /// Recompute every frame in full (the reference path) instead of using the cache.
    #[arg(long)]
    pub full: bool,
}

/// Runs and prints; a reader that closes the pipe early (`| head`) ends the run quietly, and a
/// failed write (`> /dev/full`) is an error, never a panic.
pub fn run(args: RunArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match run_to(args, &mut out) {
        Err(e)
            if e.chain()
                .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == ErrorKind::BrokenPipe)) =>
        {
            Ok(())
        }
        other => other,
    }
}

fn run_to(args: RunArgs, out: &mut impl Write) -> Result<()> {
    let write_err = |e: std::io::Error| anyhow::Error::new(e).context("cannot write the results to stdout");
    let model = match args.model {
        Some(m) => m,
        None => crate::args::default_model()?,
    };
    let clip = match args.clip {
        Some(c) => c,
        None => crate::args::default_clip()?,
    };
    let source = Clip::open(&clip)?;
    // A fully convolutional model without an input size runs at the frame's.
    let first = if source.is_empty() { None } else { Some(source.decode(0)?) };
    let frame_size = first.map(|f| (f.width, f.height));
    let loaded = Model::load(&model, args.engine.preprocess.as_deref(), args.engine.input_size, frame_size)?;
    let labels = match &args.labels {
        Some(p) => Some(read_lines(p)?),
        None => loaded.labels.clone(),
    };
    let plan = loaded.plan.clone();
    let options = args.engine.session_options(args.mode);
    let mut session = Session::new(plan.clone(), options)?;
    let count = args.frames.map_or(source.len(), |n| n.min(source.len()));
    writeln!(
        out,
        "model {} ({:.0} MMACs), clip {} ({} frames), mode {}, tile {}, preprocess {}",
        model.display(),
        plan.total_macs() as f64 / 1e6,
        clip.display(),
        count,
        args.mode,
        args.engine.tile,
        loaded.config.path.display()
    )
    .map_err(write_err)?;
    writeln!(out, "{:>6} {:>8} {:>8} {:>8}  result", "frame", "hit", "MACsave", "ms").map_err(write_err)?;
    let (mut hits, mut savings, mut times) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..count {
        let frame = source.decode(i)?;
        let t = Instant::now();
        let outputs =
            if args.full { session.run_full(frame.as_frame())? } else { session.process(frame.as_frame())? };
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let stats = session.last_stats().expect("stats after a frame");
        let summary = outputs.iter().map(|o| describe(o, labels.as_deref())).collect::<Vec<_>>().join("; ");
        let note = match stats.reset {
            Some(r) if i > 0 && !args.full => format!(" [cache reset: {r:?}]"),
            _ => String::new(),
        };
        writeln!(
            out,
            "{:>6} {:>7.1}% {:>7.1}% {:>8.2}  {summary}{note}",
            i + 1,
            100.0 * stats.input_hit_rate(),
            100.0 * stats.mac_saving(),
            ms
        )
        .map_err(write_err)?;
        if i > 0 {
            hits.push(stats.input_hit_rate());
            savings.push(stats.mac_saving());
            times.push(ms);
        }
    }
    if !times.is_empty() {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        times.sort_by(f64::total_cmp);
        writeln!(
            out,
            "after the first frame: mean input hit rate {:.1}%, mean MAC saving {:.1}%, median {:.2} ms/frame",
            100.0 * mean(&hits),
            100.0 * mean(&savings),
            times[times.len() / 2]
        )
        .map_err(write_err)?;
    }
    Ok(())
}

fn read_lines(path: &std::path::Path) -> Result<Vec<String>> {
    let text = framecache::files::read_text(path).with_context(|| format!("reading labels {}", path.display()))?;
    Ok(text.lines().map(str::to_owned).collect())
}

/// One line per output: top-1 for class vectors, value range and coverage for maps.
fn describe(o: &framecache::Output, labels: Option<&[String]>) -> String {
    if o.shape.len() == 2 {
        let i = crate::model::argmax(&o.data);
        let v = o.data.get(i).copied().unwrap_or(f32::NAN);
        let name = labels.filter(|l| l.len() == o.data.len()).map_or_else(|| format!("class {i}"), |l| l[i].clone());
        format!("{}: {name} ({v:.2})", o.name)
    } else {
        let mean = o.data.iter().sum::<f32>() / o.data.len() as f32;
        let above = o.data.iter().filter(|&&v| v > 0.5).count() as f32 / o.data.len() as f32;
        format!("{} {:?}: mean {mean:.3}, {:.1}% > 0.5", o.name, o.shape, 100.0 * above)
    }
}
