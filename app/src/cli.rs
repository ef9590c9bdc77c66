//! Command-line interface: the subcommands and their dispatch. What the commands share (engine
//! options, the bundled model and clip) is in [`crate::args`], which imports no command.

use anyhow::Result;
use clap::{Parser, Subcommand};

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
    /// Live video through the frame cache in a window: a camera, or the bundled clip.
    Demo(crate::demo::DemoArgs),
    /// Print the imported graph: nodes, shapes, stride and receptive field, MACs.
    Inspect(crate::inspect::InspectArgs),
    /// A multi-task bundle (backbone + heads) over clips: split, sharing, cached vs full.
    Bundle(crate::bundle::BundleArgs),
    /// Post-training int8 quantization, calibrated on frames of clips: writes an int8 model
    /// file that every command runs.
    Quantize(crate::quantize::QuantizeArgs),
    /// Compile a model and its sidecar (preprocessing, task, labels) into one plan file: what
    /// the phone library loads, without an ONNX parser.
    Compile(crate::compile::CompileArgs),
    /// Write a model (ONNX, TFLite, or a graph file such as a pruned or clustered model) as an
    /// ONNX file that other runtimes load, checked against the engine in tract first.
    Export(crate::export::ExportArgs),
    #[cfg(feature = "train")]
    /// Distil a dense head onto a frozen backbone from a teacher model's output on real clips:
    /// writes the head (a graph file) and a bundle that runs it on the shared backbone.
    Distill(crate::distill::DistillArgs),
    #[cfg(feature = "train")]
    /// Compress a float model (weight clustering, structured pruning, wavelet input): writes a
    /// model file that every command runs, its sidecar and a report; `bench --variant`
    /// measures it against the source.
    Compress(crate::compress::CompressArgs),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(a) => crate::run::run(a),
        Command::Bench(a) => crate::bench::run(a),
        Command::Inspect(a) => crate::inspect::inspect(a),
        Command::Demo(a) => crate::demo::run(a),
        Command::Bundle(a) => crate::bundle::run(a),
        Command::Quantize(a) => crate::quantize::run(a),
        Command::Compile(a) => crate::compile::run(a),
        Command::Export(a) => crate::export::run(a),
        #[cfg(feature = "train")]
        Command::Distill(a) => {
            crate::training_allocator();
            crate::distill::run(a)
        }
        #[cfg(feature = "train")]
        Command::Compress(a) => {
            crate::training_allocator();
            crate::compress::run(a)
        }
    }
}
