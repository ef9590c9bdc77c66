//! `framecache demo`: live video through the frame cache, in a window.
//!
//! Threads ([`pipeline`]): capture → one-slot mailbox (newest frame wins) → engine worker →
//! bounded results → the window ([`gui`], behind the `gui` feature), which drains results
//! without blocking. Sources ([`source`]): a camera (`camera` feature, nokhwa) or a clip played in
//! a loop. [`state`] is what the window shows; outputs are decoded by `framecache::heads`.

#[cfg(feature = "gui")]
mod gui;
pub mod pipeline;
pub mod source;
pub mod state;

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use framecache::Mode;

use self::source::SourceSpec;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// `camera`, `camera:INDEX`, a folder of numbered frames or a .y4m file (default: the first
    /// camera, else the bundled clip).
    #[arg(long)]
    pub source: Option<SourceSpec>,
    /// ONNX model with a sidecar, or a multi-task bundle manifest (.toml, e.g.
    /// assets/bundles/camera_stream.toml) (default: the bundled MobileNetV2).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// exact (the correctness reference), threshold=N, block-threshold=N, delta=N or
    /// block-delta=N (grey levels); changeable in the window.
    #[arg(long, default_value_t = framecache::exec::DEFAULT_MODE, value_parser = crate::args::parse_mode)]
    pub mode: Mode,
    /// Tile size (changeable in the window), threads, refresh interval, preprocessing sidecar.
    #[command(flatten)]
    pub engine: crate::args::EngineArgs,
    /// Frame rate for a folder of frames (Y4M files carry their own; default 30).
    #[arg(long)]
    pub fps: Option<f64>,
    /// Stop after this many processed frames.
    #[arg(long)]
    pub frames: Option<u64>,
    /// After --frames frames (default 30): pause, save the window as this PNG (reuse overlay
    /// as set), save it again with the overlay toggled as `<name>.overlay-toggled.png`, and exit.
    #[arg(long)]
    pub screenshot: Option<PathBuf>,
    /// Start with the reuse overlay off.
    #[arg(long)]
    pub no_overlay: bool,
}

/// The source to start with, and a notice when it is not what the user would expect (no camera,
/// so the bundled clip plays).
pub struct Start {
    pub spec: SourceSpec,
    /// The user named no source: on a camera failure, fall back to the bundled clip.
    pub fallback: Option<PathBuf>,
    pub notice: Option<String>,
}

/// `--source` if given; else the first camera nokhwa lists; else the bundled clip, saying why.
pub fn choose_source(asked: Option<SourceSpec>) -> Result<Start> {
    if let Some(spec) = asked {
        return Ok(Start { spec, fallback: None, notice: None });
    }
    let clip = crate::args::default_clip()?;
    let clip = clip.canonicalize().unwrap_or(clip);
    let why = match source::cameras() {
        Ok(list) if !list.is_empty() => {
            return Ok(Start { spec: SourceSpec::Camera(list[0].0), fallback: Some(clip), notice: None })
        }
        Ok(_) => "no camera found".to_owned(),
        Err(e) => e.to_string(),
    };
    let name = clip.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(Start {
        spec: SourceSpec::Clip(clip.clone()),
        fallback: None,
        notice: Some(format!("{why}: playing the bundled clip {name}")),
    })
}

pub fn run(args: DemoArgs) -> Result<()> {
    #[cfg(feature = "gui")]
    {
        gui::run(args)
    }
    #[cfg(not(feature = "gui"))]
    {
        let _ = args;
        anyhow::bail!("this build has no window (built without the `gui` feature): use `framecache run` or rebuild with default features")
    }
}
