//! # framecache-train
//!
//! Training for framecache, on candle. The engine and the phone library never build it; the
//! command line does.
//!
//! - [`net`]: the engine's IR as a candle module. Any part of an imported model (or a head
//!   built with the engine's [`framecache::graph::GraphBuilder`]) runs forward with autograd,
//!   its weights as candle variables, and is written back into the IR.
//! - [`cluster`]: weight clustering, a codebook per layer (`framecache compress`).
//! - [`wavelet`]: the Haar input transform and the first convolution rewritten onto its
//!   subbands (`framecache compress`).
//! - [`finetune`]: a compressed model fine-tuned towards its source on unlabeled frames
//!   (quantization-aware training of an int8 model, pruned models between rounds).
//! - [`prune`]: structured pruning of inverted-residual blocks, each projection refitted by
//!   least squares ([`lsq`]).
//! - [`distill`]: distillation of a head onto a frozen backbone of the engine, against a
//!   teacher model's output on real frames.

pub mod cluster;
pub mod distill;
pub mod finetune;
pub mod lsq;
pub mod net;
pub mod prune;
pub mod wavelet;

/// The one error type of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] framecache::Error),
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// A node whose op (or attribute) the candle module does not implement.
    #[error("node '{node}' ({op}): not supported for training: {reason}")]
    Unsupported { node: String, op: String, reason: String },
    /// Something the caller gave that cannot be used (a tap, a teacher output, a clip).
    #[error("{0}")]
    Input(String),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
