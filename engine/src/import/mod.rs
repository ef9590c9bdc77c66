//! ONNX import: protobuf parsing by `tract-onnx`, conversion into the engine's IR here.
//!
//! tract parses and decodes the protobuf and the initializers; this module walks the nodes in
//! their (topological) file order and builds a [`crate::graph::Graph`]. Every attribute of every supported
//! op is checked: an attribute or value we do not implement is an
//! [`crate::Error::UnsupportedAttribute`] naming the node, never a silently different result.
//! BatchNormalization is folded into the Conv before it, and pointwise activations are fused
//! into their producer where the producer has no other consumer (counted per IR node, over all
//! its names). Every node is checked against the engine's size limits as it is added
//! ([`crate::graph::check_node`]), before anything is allocated for it.

pub mod graph_file;
pub(crate) mod manifested;
#[cfg(feature = "onnx")]
mod onnx;
pub mod plan_file;
#[cfg(feature = "tflite")]
mod tflite;

use std::path::Path;

#[cfg(feature = "onnx")]
pub use onnx::{load_onnx, load_onnx_bytes};

/// Whether `bytes` are a TFLite flatbuffer (the `TFL3` identifier at byte 4).
pub fn is_tflite(bytes: &[u8]) -> bool {
    bytes.get(4..8) == Some(b"TFL3")
}

use crate::error::{Error, Result};
use crate::graph::Graph;

/// How the importer fixes what the file leaves open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// `(width, height)` of a model whose input has dynamic spatial dims (fully convolutional
    /// models such as MTCNN's P-Net or a text detector). In an ONNX model it replaces static
    /// spatial dims too: a classifier that ends in a global pool runs at any size (a TFLite
    /// model's static dims must equal it). A dynamic batch dim is always 1.
    pub input_size: Option<(usize, usize)>,
    /// The frames' `(width, height)`: the size of dynamic spatial dims when `input_size` is
    /// `None`, each side rounded down to a multiple of `multiple` (at least one multiple).
    /// Ignored for static dims.
    pub frame_size: Option<(usize, usize)>,
    /// The multiple a model's dynamic sides must be (its total stride; 0 and 1: any size).
    pub multiple: usize,
}

impl ImportOptions {
    /// The size for dynamic spatial dims, and whether it was given explicitly.
    pub fn dynamic_size(&self) -> Option<((usize, usize), bool)> {
        let m = self.multiple.max(1);
        let round = |n: usize| (n / m * m).max(m);
        self.input_size.map(|s| (s, true)).or(self.frame_size.map(|(w, h)| ((round(w), round(h)), false)))
    }
}

/// Loads a model file, ONNX, TFLite, int8, a graph file or a plan file (told apart by
/// content: a TFLite flatbuffer carries the `TFL3` identifier, an int8 file is safetensors with
/// [`crate::quant::file::KEY`], a graph file with [`graph_file::KEY`], a plan file with
/// [`plan_file::KEY`]), with `options` fixing its dynamic input dims (graph and plan files
/// have none), then through the fusion passes of [`fused`].
pub fn load_model(path: impl AsRef<Path>, options: ImportOptions) -> Result<Graph> {
    let path = path.as_ref();
    let bytes =
        crate::files::read(path, crate::files::MAX_MODEL_BYTES).map_err(|e| Error::model_file(path, "I/O error", e))?;
    load_model_bytes(&bytes, path, options)
}

/// [`load_model`] from memory; `path` names the model in errors (and, for ONNX, is where
/// external data is looked up; for an int8 file, where its float model is).
pub fn load_model_bytes(bytes: &[u8], path: &Path, options: ImportOptions) -> Result<Graph> {
    let graph = if crate::quant::file::is_int8(bytes) {
        crate::quant::file::load(bytes, path, options)
    } else {
        load_unfused(bytes, path, options)
    }?;
    Ok(fused(graph))
}

/// An imported graph after the passes that every loaded model goes through: whole-map average
/// pools become global ones ([`crate::graph::fuse::global_pools`]), the global average of a sum
/// the sum of the averages ([`crate::graph::fuse::pools_of_sums`]), inverted-residual blocks
/// one node each ([`crate::graph::fuse::bottlenecks`]), linear pointwise convolutions of an
/// upsampled map move before the resize ([`crate::graph::fuse::pointwise_before_resize`]), and
/// residual adds go into the convolution producing one side
/// ([`crate::graph::fuse::residual_adds`]).
pub fn fused(mut graph: Graph) -> Graph {
    crate::graph::fuse::global_pools(&mut graph);
    crate::graph::fuse::pools_of_sums(&mut graph);
    crate::graph::fuse::bottlenecks(&mut graph);
    crate::graph::fuse::pointwise_before_resize(&mut graph);
    crate::graph::fuse::residual_adds(&mut graph);
    graph
}

/// An ONNX, TFLite or graph file model as imported, before the fusion passes: every
/// convolution is its own node (what [`crate::quant`] calibrates and quantizes, and
/// `framecache compress` rewrites).
pub fn load_unfused(bytes: &[u8], path: &Path, options: ImportOptions) -> Result<Graph> {
    #[cfg(not(any(feature = "onnx", feature = "tflite")))]
    let _ = options; // a graph file has no dynamic dims
    if graph_file::is_graph_file(bytes) {
        graph_file::load(bytes, path)
    } else if plan_file::is_plan_file(bytes) {
        plan_file::load(bytes, path).map(|p| p.graph)
    } else if is_tflite(bytes) {
        #[cfg(feature = "tflite")]
        return tflite::load_tflite_bytes(bytes, path, options);
        #[cfg(not(feature = "tflite"))]
        return Err(not_built(path, "a TFLite model", "tflite"));
    } else {
        #[cfg(feature = "onnx")]
        return onnx::load_bytes(bytes, path, options);
        #[cfg(not(feature = "onnx"))]
        return Err(not_built(path, "not a plan, graph or int8 file (ONNX?)", "onnx"));
    }
}

/// The error for a model format whose importer this build leaves out (the phone library reads
/// compiled plans only).
#[cfg(not(all(feature = "onnx", feature = "tflite")))]
fn not_built(path: &Path, what: &str, feature: &str) -> Error {
    Error::ModelFile {
        path: path.to_owned(),
        reason: format!(
            "{what}, and this build of framecache reads compiled plans only (no cargo feature `{feature}`): \
             compile the model with `framecache compile` and load the plan"
        ),
        source: None,
    }
}
