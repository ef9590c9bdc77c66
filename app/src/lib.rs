//! The `framecache` command line as a library, so that its tests share clip reading, model
//! loading and the baselines with the binary.
//!
//! Commands: [`run`] (one model over a clip), [`bench`] (reuse, speed and fidelity),
//! [`inspect`] (the imported graph), [`distill`] (heads trained onto a shared backbone), [`compress`] (the compression toolbox), [`compile`] (plan files for the phones), [`demo`] (live video in a window), [`bundle`] (multi-task
//! bundles: split, sharing, cached vs full). Shared parts: [`clip`] (PNG/JPEG folders and Y4M),
//! [`model`] (plan + sidecar), [`baseline`] (tract and ONNX Runtime), [`args`] (engine options
//! and the bundled assets); [`cli`] dispatches the commands.

pub mod args;
pub mod baseline;
pub mod bench;
pub mod bundle;
pub mod cli;
pub mod clip;
pub mod compile;
#[cfg(feature = "train")]
pub mod compress;
pub mod demo;
#[cfg(feature = "train")]
pub mod distill;
pub mod inspect;
pub mod model;
pub mod quantize;
pub mod run;
