//! The compiled plan file: a model with everything it needs to run, in one safetensors file
//! that loads without the ONNX or TFLite importers (the phone library's only model format;
//! `framecache compile` writes it). Specified in `docs/plan-format.md`.
//!
//! - Metadata key `framecache.plan`: a TOML [`Manifest`]: the format and version, the model's
//!   sidecar (task, preprocessing, thresholds) as TOML text, its class labels, and the graph
//!   in the graph file's own manifest ([`super::graph_file::Manifest`]: unfused IR, every
//!   attribute, clustered and int8 weights).
//! - Tensors: the graph's, as in a graph file.
//!
//! Loading runs the importer's fusion passes, as for any model file, so a plan computes the
//! same bits as its source model (tested on every model the engine imports).

use std::collections::HashMap;
use std::path::Path;

use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use super::{graph_file, manifested};
use crate::error::{Error, Result};
use crate::graph::Graph;

/// The metadata key that holds the manifest.
pub const KEY: &str = "framecache.plan";
/// The format this engine writes and reads.
pub const VERSION: u32 = 1;
const FORMAT: &str = "framecache-plan";

/// What a plan file says besides its tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `framecache-plan`.
    pub format: String,
    pub version: u32,
    /// Free text: what made the file (the `compile` command line).
    #[serde(default)]
    pub description: String,
    /// The model's sidecar, as TOML text ([`crate::config::ModelConfig`]), without `labels`.
    pub sidecar: String,
    /// The class names, when the sidecar named a labels file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    pub graph: graph_file::Manifest,
}

/// A plan file's parts, read and checked: the sidecar text, the labels and the graph (unfused).
#[derive(Debug)]
pub struct PlanFile {
    pub description: String,
    pub sidecar: String,
    pub labels: Option<Vec<String>>,
    pub graph: Graph,
}

/// Whether `bytes` are a plan file: a safetensors header with the manifest key.
pub fn is_plan_file(bytes: &[u8]) -> bool {
    manifested::has_manifest(bytes, KEY)
}

/// The plan file's bytes: `graph` (unfused, as an importer makes it: see
/// [`graph_file::to_bytes`]), the sidecar text (its `labels` key, a file name, is dropped: the
/// names go in `labels`) and the labels.
pub fn to_bytes(graph: &Graph, sidecar: &str, labels: Option<&[String]>, description: &str) -> Result<Vec<u8>> {
    let (graph, tensors) = graph_file::describe(graph, description, &HashMap::new(), "")?;
    write(graph, &tensors, sidecar, labels, description)
}

/// The plan file's bytes from a graph manifest and its tensors.
fn write(
    graph: graph_file::Manifest,
    tensors: &[manifested::TensorBytes],
    sidecar: &str,
    labels: Option<&[String]>,
    description: &str,
) -> Result<Vec<u8>> {
    let invalid = |reason: String| Error::InvalidModel { node: "<plan file>".into(), op: "write".into(), reason };
    let mut table: toml::Table =
        toml::from_str(sidecar).map_err(|e| invalid(format!("the sidecar is not valid TOML: {e}")))?;
    table.remove("labels");
    let sidecar = toml::to_string(&table).map_err(|e| invalid(format!("cannot write the sidecar: {e}")))?;
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        description: description.into(),
        sidecar,
        labels: labels.map(<[String]>::to_vec),
        graph,
    };
    manifested::write(&manifest, KEY, tensors, invalid)
}

/// Compiles the model file `model` (any format [`super::load_model`] reads) with its sidecar
/// (`sidecar`, else the one [`crate::config::ModelConfig::locate`] finds beside it or in
/// `dirs`) and the sidecar's labels into a plan file's bytes. A model with dynamic spatial
/// input dims is fixed at `input_size`, else at the sidecar's `input_size`; without either it
/// is an error (a plan has static dims).
pub fn compile(
    model: &Path,
    sidecar: Option<&Path>,
    dirs: &[std::path::PathBuf],
    input_size: Option<(usize, usize)>,
    description: &str,
) -> Result<Vec<u8>> {
    use crate::config::ModelConfig;
    let bytes = crate::files::read(model, crate::files::MAX_MODEL_BYTES)
        .map_err(|e| Error::model_file(model, "I/O error", e))?;
    if is_plan_file(&bytes) {
        return Err(Error::ModelFile { path: model.to_owned(), reason: "already a plan file".into(), source: None });
    }
    let sidecar = ModelConfig::locate(model, sidecar, dirs)?;
    let text = crate::files::read_text(&sidecar).map_err(|e| Error::Config {
        path: sidecar.clone(),
        reason: "cannot read".into(),
        source: Some(e.into()),
    })?;
    let config = ModelConfig::parse(&text, &sidecar)?;
    let labels = config.load_labels(model)?;
    // A graph file's tensors go in as stored: clustered weights stay a codebook and indices.
    if super::graph_file::is_graph_file(&bytes) {
        let (graph, tensors) = graph_file::parts(&bytes, model)?;
        return write(graph, &tensors, &text, labels.as_deref(), description);
    }
    let options = super::ImportOptions { input_size: input_size.or(config.input_size), ..Default::default() };
    let graph = if crate::quant::file::is_int8(&bytes) {
        crate::quant::file::load(&bytes, model, options)
    } else {
        super::load_unfused(&bytes, model, options)
    }?;
    to_bytes(&graph, &text, labels.as_deref(), description)
}

/// Reads a plan file (`bytes`, read from `path`, which names it in errors). The format and
/// version are checked before the rest of the manifest is parsed; the graph is checked node by
/// node as a graph file's is, and the sidecar when [`crate::config::ModelConfig`] parses it.
pub fn load(bytes: &[u8], path: &Path) -> Result<PlanFile> {
    let manifest: Manifest = manifested::read_manifest(bytes, path, KEY, FORMAT, VERSION)?;
    let file = SafeTensors::deserialize(bytes).map_err(|e| Error::model_file(path, "not a safetensors file", e))?;
    let graph = graph_file::build(&manifest.graph, &file, "", path)?;
    Ok(PlanFile { description: manifest.description, sidecar: manifest.sidecar, labels: manifest.labels, graph })
}
