//! # framecache
//!
//! A frame-cache inference engine. It compares each new frame with the inputs its cache was
//! computed from, tile by tile, recomputes convolutions only where the picture changed and
//! reuses cached outputs everywhere else. In exact mode the result equals full inference.
//!
//! ```no_run
//! use framecache::{Frame, Plan, Preprocess, Session, SessionOptions};
//! # fn main() -> framecache::Result<()> {
//! let plan = Plan::from_onnx("mobilenet_v2.onnx", Preprocess::imagenet())?;
//! let mut session = Session::new(plan, SessionOptions::default())?;
//! let pixels = vec![0u8; 320 * 240 * 3];
//! let outputs = session.process(&Frame::rgb(320, 240, &pixels))?;
//! println!("{} logits, hit rate {:.2}", outputs[0].data.len(),
//!          session.last_stats().unwrap().input_hit_rate());
//! # Ok(()) }
//! ```
//!
//! Module map: [`config`] (model sidecars), [`model`] (multi-task bundles: a cached backbone
//! shared by several heads), [`heads`] (decoders: classes, masks, SSD boxes, keypoints), [`graph`] (IR, geometry, cost), [`import`] (ONNX), [`kernels`] (fast and
//! reference kernels on rectangles), [`diff`] (change detection), [`reuse`] (mask propagation
//! and rectangle cover), [`exec`] (Plan and Session), [`frame`] (frames and preprocessing),
//! [`stats`], [`files`] (bounded reads of user files).

pub mod config;
pub mod diff;
mod error;
pub mod exec;
#[cfg(feature = "onnx")]
pub mod export;
pub mod files;
pub mod frame;
pub mod graph;
pub mod heads;
pub mod import;
pub mod kernels;
pub mod model;
pub mod quant;
pub mod reuse;
pub mod stats;

pub use config::{ModelConfig, SidecarModel, Task};
pub use error::{Error, Result};
pub use exec::{Mode, Output, Plan, Session, SessionOptions};
pub use frame::{Aspect, Fit, Frame, Image, Preprocess, Resample, YuvImage, YuvRange};
pub use model::{Bundle, BundleSession, HeadResult};
pub use stats::{FrameStats, HeadStats, HeadStatus, Reset};
