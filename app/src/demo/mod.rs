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

/// The source to start with, opened on the capture thread.
pub struct Start {
    pub open: pipeline::Opener,
    /// The user named no source: when the first camera cannot be listed or opened, play the
    /// bundled clip (the window says why).
    pub fallback: Option<PathBuf>,
}

/// `--source` if given; else the first camera the system lists, with the bundled clip as the
/// fallback. The cameras are listed on the capture thread, not here: listing can wait for the
/// user to grant camera access (macOS), and the window must open first.
pub fn choose_source(asked: Option<SourceSpec>, fps: Option<f64>) -> Result<Start> {
    if let Some(spec) = asked {
        return Ok(Start { open: source::opener(spec, fps), fallback: None });
    }
    let clip = crate::args::default_clip()?;
    let clip = clip.canonicalize().unwrap_or(clip);
    Ok(Start { open: source::first_camera(), fallback: Some(clip) })
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
