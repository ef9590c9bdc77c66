//! The bundle file (`framecache-bundle`, version 1; `docs/plan-format.md`): a bundle manifest
//! and every file it names in one safetensors file, which the phone library loads without an
//! ONNX parser and without a folder of files beside it. Each model the manifest names (backbone
//! and head models) is stored as a graph file ([`crate::import::graph_file`]), each labels file
//! as its text, under the name the manifest gives it, so the manifest is stored as written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use super::manifest::Manifest;
use crate::error::{Error, Result};
use crate::import::{graph_file, manifested, ImportOptions};

pub const KEY: &str = "framecache.bundle";
pub const VERSION: u32 = 1;
const FORMAT: &str = "framecache-bundle";

/// The manifest under [`KEY`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    description: String,
    /// The bundle manifest's TOML text, as written.
    manifest: String,
}

/// Whether `bytes` are a bundle file.
pub fn is_bundle_file(bytes: &[u8]) -> bool {
    manifested::has_manifest(bytes, KEY)
}

/// The bundle file of the manifest at `path` (its files found as [`super::Bundle::load`] finds
/// them: beside it, then in `dirs`): every model it names as a graph file, every labels file as
/// text.
pub fn compile(path: &Path, dirs: &[PathBuf], description: &str) -> Result<Vec<u8>> {
    let text = Manifest::read(path)?;
    let manifest = Manifest::parse(&text, path)?;
    let files = super::manifest::Files::Disk { manifest: path, dirs };
    let mut entries: HashMap<String, Vec<u8>> = HashMap::new();
    let missing = |field: String, file: &Path| Error::Manifest {
        path: path.to_owned(),
        field,
        value: file.display().to_string(),
        reason: "not found beside the manifest or in the model folders".into(),
        source: None,
    };
    for (i, b) in manifest.backbones.iter().enumerate() {
        let input_size = b.input_size.map(|[w, h]| (w, h));
        let model = files.locate(&b.model, dirs).ok_or_else(|| missing(format!("backbone[{i}].model"), &b.model))?;
        add(&mut entries, &b.model, || graph_bytes(&model, input_size, description))?;
        for (k, h) in b.heads.iter().enumerate() {
            if let Some(file) = &h.model {
                let at =
                    files.locate(file, dirs).ok_or_else(|| missing(format!("backbone[{i}].head[{k}].model"), file))?;
                add(&mut entries, file, || graph_bytes(&at, None, description))?;
            }
            if let Some(file) = &h.labels {
                let near = [model.parent().map(Path::to_path_buf).unwrap_or_default()];
                let at = files
                    .locate(file, &near)
                    .ok_or_else(|| missing(format!("backbone[{i}].head[{k}].labels"), file))?;
                add(&mut entries, file, || {
                    crate::files::read(&at, crate::files::MAX_TEXT_BYTES).map_err(|e| Error::Manifest {
                        path: path.to_owned(),
                        field: format!("backbone[{i}].head[{k}].labels"),
                        value: at.display().to_string(),
                        reason: "cannot read".into(),
                        source: Some(e.into()),
                    })
                })?;
            }
        }
    }
    let header = Header { format: FORMAT.into(), version: VERSION, description: description.into(), manifest: text };
    let mut names: Vec<&String> = entries.keys().collect();
    names.sort();
    let tensors: Vec<manifested::TensorBytes> =
        names.into_iter().map(|n| (n.clone(), Dtype::U8, vec![entries[n].len()], entries[n].clone())).collect();
    let invalid = |reason: String| Error::InvalidModel { node: "<bundle file>".into(), op: "write".into(), reason };
    manifested::write(&header, KEY, &tensors, invalid)
}

/// The entry `name` (a file name as the manifest writes it), made by `make` the first time.
fn add(entries: &mut HashMap<String, Vec<u8>>, name: &Path, make: impl FnOnce() -> Result<Vec<u8>>) -> Result<()> {
    if let std::collections::hash_map::Entry::Vacant(slot) = entries.entry(entry_name(name)) {
        slot.insert(make()?);
    }
    Ok(())
}

/// A model file (any format the engine reads) as a graph file: a graph file as stored (clustered
/// weights stay a codebook), anything else imported, unfused, with `input_size` fixing dynamic
/// dims.
fn graph_bytes(model: &Path, input_size: Option<(usize, usize)>, description: &str) -> Result<Vec<u8>> {
    let bytes = crate::files::read(model, crate::files::MAX_MODEL_BYTES)
        .map_err(|e| Error::model_file(model, "I/O error", e))?;
    if graph_file::is_graph_file(&bytes) {
        return Ok(bytes);
    }
    let options = ImportOptions { input_size, ..Default::default() };
    let graph = if crate::quant::file::is_int8(&bytes) {
        crate::quant::file::load(&bytes, model, options)
    } else {
        crate::import::load_unfused(&bytes, model, options)
    }?;
    graph_file::to_bytes(&graph, description)
}

/// How a manifest's file name is stored.
pub(super) fn entry_name(file: &Path) -> String {
    file.to_string_lossy().into_owned()
}

/// A bundle file's manifest text and entries (`bytes`, read from `path`, which names it in
/// errors). The format and version are checked first; every entry is a one-dimensional `U8`
/// tensor, checked against the file by safetensors before it is read.
pub(super) fn load(bytes: &[u8], path: &Path) -> Result<(String, HashMap<String, Vec<u8>>)> {
    let header: Header = manifested::read_manifest(bytes, path, KEY, FORMAT, VERSION)?;
    let file = SafeTensors::deserialize(bytes).map_err(|e| Error::model_file(path, "not a safetensors file", e))?;
    let mut entries = HashMap::new();
    for (name, view) in file.tensors() {
        if view.dtype() != Dtype::U8 || view.shape().len() != 1 {
            return Err(Error::ModelFile {
                path: path.to_owned(),
                reason: format!("entry '{name}' is {:?} {:?}, not a U8 byte string", view.dtype(), view.shape()),
                source: None,
            });
        }
        entries.insert(name, view.data().to_vec());
    }
    Ok((header.manifest, entries))
}
