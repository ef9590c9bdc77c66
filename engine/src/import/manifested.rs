//! Model files that are safetensors tensors plus a TOML manifest in one metadata key: the int8
//! file ([`crate::quant::file`]) and the graph file ([`super::graph_file`]). One reader and one
//! writer for both: the key, the manifest's `format` and `version` (checked before the rest of
//! the manifest is parsed, so a newer file says so rather than failing to parse), the tensors.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, Result};

/// A tensor to write: name, type, shape and little-endian bytes.
pub(crate) type TensorBytes = (String, Dtype, Vec<usize>, Vec<u8>);

/// Whether `bytes` are a safetensors file whose metadata holds `key`.
pub(crate) fn has_manifest(bytes: &[u8], key: &str) -> bool {
    SafeTensors::read_metadata(bytes).is_ok_and(|(_, m)| m.metadata().as_ref().is_some_and(|m| m.contains_key(key)))
}

/// The manifest under `key` of the file `bytes` (read from `path`), of `format` and `version`.
pub(crate) fn read_manifest<T: DeserializeOwned>(
    bytes: &[u8],
    path: &Path,
    key: &str,
    format: &str,
    version: u32,
) -> Result<T> {
    #[derive(Deserialize)]
    struct Header {
        format: String,
        version: u32,
    }
    let bad = |reason: String| Error::ModelFile { path: path.to_owned(), reason, source: None };
    let invalid = |e: toml::de::Error| Error::model_file(path, &format!("the {format} manifest is not valid"), e);
    let (_, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| Error::model_file(path, "not a safetensors file", e))?;
    let text = meta.metadata().as_ref().and_then(|m| m.get(key)).ok_or_else(|| bad(format!("no '{key}' manifest")))?;
    let header: Header = toml::from_str(text).map_err(invalid)?;
    if header.format != format || header.version != version {
        return Err(bad(format!(
            "format {} version {} (this engine reads {format} version {version})",
            header.format, header.version
        )));
    }
    toml::from_str(text).map_err(invalid)
}

/// The file's bytes: `tensors` and `manifest` (as TOML, under `key`). `invalid` makes the
/// error of a manifest or tensor that cannot be written.
pub(crate) fn write(
    manifest: &impl Serialize,
    key: &str,
    tensors: &[TensorBytes],
    invalid: impl Fn(String) -> Error,
) -> Result<Vec<u8>> {
    let text = toml::to_string(manifest).map_err(|e| invalid(format!("cannot write the manifest: {e}")))?;
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| invalid(format!("tensor {name}: {e}")))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, Some(HashMap::from([(key.to_string(), text)])))
        .map_err(|e| invalid(format!("cannot serialize the tensors: {e}")))
}

/// `F32` tensor bytes (little-endian) as values.
pub(crate) fn f32s(data: &[u8]) -> Vec<f32> {
    data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Values as `F32` tensor bytes.
pub(crate) fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}
