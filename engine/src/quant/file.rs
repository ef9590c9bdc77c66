//! The int8 model file: one safetensors file.
//!
//! - Tensors: per int8 convolution `N` (its node name in the imported float model),
//!   `N.weight` (`I8`, `[rows, cout / groups]` in the engine's layout: per group, the rows of
//!   an NHWC im2col row, `[ky][kx][ci]`) and `N.weight_scale` (`F32`, `[cout]`).
//! - Metadata key `framecache.int8`: a TOML [`Manifest`]. It names the float model the file
//!   was made from (a path relative to the file, with its size and CRC-32, checked when the
//!   file loads), how it was calibrated, and each int8 layer's input scale and zero point.
//!
//! The graph itself (and every float layer: depthwise convolutions, biases, pools, heads) is
//! read from that float model, so the int8 file stays small and the float model is the one
//! source of the architecture. A model file's sidecar (`NAME.int8.safetensors.toml`) gives the
//! preprocessing, as for any model; `framecache quantize` copies the float model's.

use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::graph::{ConvQuant, Graph, Op};
use crate::import::{manifested, ImportOptions};

/// The metadata key that holds the manifest.
pub const KEY: &str = "framecache.int8";
/// The format this engine writes and reads.
pub const VERSION: u32 = 1;

/// What an int8 file says besides its tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `framecache-int8`.
    pub format: String,
    pub version: u32,
    /// The float model, relative to this file's folder.
    pub source: String,
    pub source_bytes: u64,
    /// CRC-32 of the float model, as 8 hex digits.
    pub source_crc32: String,
    /// The calibration method ([`super::Method::name`]).
    pub method: String,
    /// Frames the calibration saw, and the clips they came from (file names).
    pub calibration_frames: usize,
    pub calibration_clips: Vec<String>,
    /// The int8 layers.
    #[serde(default)]
    pub layer: Vec<Layer>,
}

/// One int8 convolution's input quantization.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub node: String,
    pub input_scale: f32,
    pub input_zero: u8,
}

/// The CRC-32 of a model file, as the manifest writes it.
pub fn crc32(bytes: &[u8]) -> String {
    format!("{:08x}", crc32fast::hash(bytes))
}

/// Whether `bytes` are an int8 model file: a safetensors header with the manifest key.
pub fn is_int8(bytes: &[u8]) -> bool {
    manifested::has_manifest(bytes, KEY)
}

/// The float model an int8 file at `path` was made from, or `None` when `path` is not a
/// readable int8 file.
pub fn source(path: &Path) -> Option<std::path::PathBuf> {
    let bytes = crate::files::read(path, crate::files::MAX_MODEL_BYTES).ok()?;
    manifest(&bytes, path).ok().map(|m| source_of(path, &m))
}

/// The manifest of an int8 file (`bytes`, read from `path`), of a format this engine reads.
fn manifest(bytes: &[u8], path: &Path) -> Result<Manifest> {
    manifested::read_manifest(bytes, path, KEY, "framecache-int8", VERSION)
}

/// Where the manifest of the int8 file at `path` says its float model is.
fn source_of(path: &Path, manifest: &Manifest) -> std::path::PathBuf {
    path.parent().unwrap_or(Path::new(".")).join(&manifest.source)
}

/// The int8 file's bytes for `graph` (an unfused graph whose int8 convolutions carry
/// [`crate::graph::Conv::quant`]) and its manifest (whose `layer` list is filled here).
pub fn to_bytes(graph: &Graph, mut manifest: Manifest) -> Result<Vec<u8>> {
    let invalid = |reason: String| Error::InvalidModel { node: "<int8 file>".into(), op: "quantize".into(), reason };
    manifest.layer.clear();
    let mut tensors: Vec<manifested::TensorBytes> = Vec::new();
    for node in &graph.nodes {
        let Op::Conv(c) = &node.op else { continue };
        let Some(q) = &c.quant else { continue };
        if graph.nodes.iter().filter(|n| n.name == node.name).count() > 1 {
            return Err(invalid(format!("node name '{}' is not unique", node.name)));
        }
        let cout_g = c.cout / c.groups;
        let bytes = q.weights.iter().map(|&w| w as u8).collect();
        tensors.push((format!("{}.weight", node.name), Dtype::I8, vec![q.weights.len() / cout_g, cout_g], bytes));
        let scales = manifested::f32_bytes(&q.weight_scale);
        tensors.push((format!("{}.weight_scale", node.name), Dtype::F32, vec![c.cout], scales));
        manifest.layer.push(Layer { node: node.name.clone(), input_scale: q.input_scale, input_zero: q.input_zero });
    }
    manifested::write(&manifest, KEY, &tensors, invalid)
}

/// Loads an int8 file (`bytes`, read from `path`): its float model, read from beside it and
/// checked against the manifest, imported unfused, with each int8 layer's quantization set.
pub fn load(bytes: &[u8], path: &Path, options: ImportOptions) -> Result<Graph> {
    let bad = |reason: String| Error::ModelFile { path: path.to_owned(), reason, source: None };
    let manifest = manifest(bytes, path)?;
    let file = SafeTensors::deserialize(bytes).map_err(|e| Error::model_file(path, "not a safetensors file", e))?;
    let source = source_of(path, &manifest);
    let model = crate::files::read(&source, crate::files::MAX_MODEL_BYTES)
        .map_err(|e| Error::model_file(path, &format!("cannot read its float model {}", source.display()), e))?;
    if model.len() as u64 != manifest.source_bytes || crc32(&model) != manifest.source_crc32 {
        return Err(bad(format!(
            "it was made from another model file than {} ({} bytes, CRC-32 {}; the manifest says {} bytes, {})",
            source.display(),
            model.len(),
            crc32(&model),
            manifest.source_bytes,
            manifest.source_crc32
        )));
    }
    let mut graph = crate::import::load_unfused(&model, &source, options)?;
    super::dense_as_conv(&mut graph);
    for layer in &manifest.layer {
        let node_err = |reason: String| Error::InvalidModel { node: layer.node.clone(), op: "int8".into(), reason };
        let Some(node) = graph.nodes.iter_mut().find(|n| n.name == layer.node) else {
            return Err(node_err(format!("the float model {} has no such node", source.display())));
        };
        let Op::Conv(conv) = &mut node.op else {
            return Err(node_err(format!("a {} cannot run in int8", node.op.name())));
        };
        let tensor = |suffix: &str, dtype: Dtype, len: usize| {
            let name = format!("{}.{suffix}", layer.node);
            let t = file.tensor(&name).map_err(|e| node_err(format!("tensor {name}: {e}")))?;
            if t.dtype() != dtype || t.data().len() != len * dtype.bitsize() / 8 {
                return Err(node_err(format!(
                    "tensor {name} is {:?} {:?}; the layer needs {len} values of {dtype:?}",
                    t.dtype(),
                    t.shape()
                )));
            }
            Ok(t.data())
        };
        let weights: Vec<i8> = tensor("weight", Dtype::I8, conv.weights.len())?.iter().map(|&b| b as i8).collect();
        let weight_scale = manifested::f32s(tensor("weight_scale", Dtype::F32, conv.cout)?);
        conv.quant = Some(Box::new(ConvQuant {
            input_scale: layer.input_scale,
            input_zero: layer.input_zero,
            weight_scale,
            weights,
        }));
        // Values are checked with the rest of the graph (`check_node`) when the plan compiles;
        // the shapes here, so that an error names this file.
        if !super::takes_int8(conv) {
            return Err(node_err("a depthwise or one-channel convolution cannot run in int8".into()));
        }
    }
    Ok(graph)
}
