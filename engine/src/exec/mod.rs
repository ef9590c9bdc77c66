//! Execution: the immutable [`Plan`] and the per-stream [`Session`].
//!
//! A `Plan` is the compiled model (IR, preprocessing, per-node costs). It is `Send + Sync` and
//! can be shared by any number of sessions. A `Session` owns everything that belongs to one
//! stream: every node's cached output, the reference input of every tile, the statistics and
//! the worker pool.

mod options;
mod plan;
mod pool;
mod session;

pub use options::{
    Mode, SessionOptions, DEFAULT_DENSE_CROSSOVER, DEFAULT_MODE, DEFAULT_REFRESH, DEFAULT_TILE, GATE_MACS_PER_VALUE,
    MAX_THREADS,
};
pub use plan::{HeadPart, Plan};
pub(crate) use session::WorkerPool;
pub use session::{Output, Session};
