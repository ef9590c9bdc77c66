//! Command-line interface.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use framecache::Mode;

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
    /// Measure reuse hit rates, speed and fidelity of models on clips.
    Bench(crate::bench::BenchArgs),
    /// Print the imported graph: nodes, shapes, stride and receptive field, MACs.
    Inspect(crate::inspect::InspectArgs),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(a) => crate::run::run(a),
        Command::Bench(a) => crate::bench::run(a),
        Command::Inspect(a) => crate::inspect::inspect(a),
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
