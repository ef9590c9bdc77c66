//! Command-line interface.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Parser, Subcommand, ValueEnum};
use framecache::{Mode, Preprocess};

#[derive(Parser, Debug)]
#[command(name = "framecache", version, about = "Frame-cache video inference: recompute only what changed")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a model over a clip with the frame cache and report reuse per frame.
    Run(crate::run::RunArgs),
    /// Print the imported graph: nodes, shapes, stride and receptive field, MACs.
    Inspect(crate::inspect::InspectArgs),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(a) => crate::run::run(a),
        Command::Inspect(a) => crate::inspect::inspect(a),
    }
}

/// Preprocessing presets, until models carry their own sidecar.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PreprocessPreset {
    /// Resize 256, centre crop, ImageNet mean/std (torchvision classifiers).
    Imagenet,
    /// Resize 256, centre crop, (p - 127) / 128 (EfficientNet-Lite).
    Tf,
    /// Stretch, p / 255 (MediaPipe segmentation, landmarks).
    Unit,
    /// Stretch, p / 127.5 - 1 (MediaPipe detectors).
    Signed,
}

impl PreprocessPreset {
    pub fn build(self) -> Preprocess {
        match self {
            Self::Imagenet => Preprocess::imagenet(),
            Self::Tf => Preprocess::tf_symmetric(),
            Self::Unit => Preprocess::default(),
            Self::Signed => Preprocess::signed_unit(),
        }
    }

    /// A guess from the model's file name.
    pub fn guess(model: &Path) -> Self {
        let name = model.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        if name.contains("efficientnet") {
            Self::Tf
        } else if name.contains("mobilenet") || name.contains("resnet") {
            Self::Imagenet
        } else if name.contains("face_detection") || name.contains("palm") {
            Self::Signed
        } else {
            Self::Unit
        }
    }
}

pub fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse().map_err(|e: framecache::Error| e.to_string())
}

/// The project's `assets/` folder: next to the executable's workspace when run with cargo, or
/// `$FRAMECACHE_ASSETS`.
pub fn assets_dir() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("FRAMECACHE_ASSETS") {
        return Ok(PathBuf::from(p));
    }
    let candidates = [
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets")),
        std::env::current_dir().ok().map(|d| d.join("assets")),
    ];
    for c in candidates.into_iter().flatten() {
        if c.join("models").is_dir() {
            return Ok(c);
        }
    }
    bail!("cannot find the bundled assets/ folder; pass --model and --clip, or set FRAMECACHE_ASSETS")
}

pub fn default_model() -> Result<PathBuf> {
    Ok(assets_dir()?.join("models/mobilenet_v2.onnx"))
}

pub fn default_clip() -> Result<PathBuf> {
    Ok(assets_dir()?.join("clips/static_coin_motion"))
}
