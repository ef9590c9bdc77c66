//! Initializers and Constant values: element type and size checked before tract loads them,
//! external data read only from regular files and within the size limits.

use std::path::Path;

use tract_onnx::pb;
use tract_onnx::prelude::Tensor;

use crate::graph::{product, MAX_TENSOR_VALUES};

/// External tensor data, read through [`crate::files`]: only regular files, and at most what
/// the largest tensor can hold.
struct ExternalData;

impl tract_onnx::data_resolver::ModelDataResolver for ExternalData {
    fn read_bytes_from_path(
        &self,
        buf: &mut Vec<u8>,
        p: &Path,
        offset: usize,
        length: Option<usize>,
    ) -> tract_onnx::prelude::TractResult<()> {
        let limit = (MAX_TENSOR_VALUES * 8) as u64;
        let size = crate::files::check_regular(p, crate::files::MAX_MODEL_BYTES)?;
        let end = match length {
            Some(n) => offset.checked_add(n),
            None => Some(size as usize),
        };
        let Some(end) = end.filter(|&e| e as u64 <= size && offset <= e) else {
            return Err(tract_onnx::prelude::TractError::msg(format!(
                "external data {offset}+{length:?} is outside {} ({size} bytes)",
                p.display()
            )));
        };
        if (end - offset) as u64 > limit {
            return Err(tract_onnx::prelude::TractError::msg(format!(
                "external data of {} bytes is over the limit of {limit}",
                end - offset
            )));
        }
        use std::io::{Read, Seek};
        let mut f = std::fs::File::open(p)?;
        f.seek(std::io::SeekFrom::Start(offset as u64))?;
        buf.resize(end - offset, 0);
        f.read_exact(buf)?;
        Ok(())
    }
}

/// Whether the engine reads tensors of this ONNX element type (as f32 or i64): the numeric
/// ones that tract loads.
pub(super) fn is_numeric(data_type: i32) -> bool {
    use pb::tensor_proto::DataType as T;
    matches!(
        T::try_from(data_type),
        Ok(T::Uint8
            | T::Int8
            | T::Bool
            | T::Uint16
            | T::Int16
            | T::Float16
            | T::Float
            | T::Int32
            | T::Uint32
            | T::Double
            | T::Int64
            | T::Uint64)
    )
}

/// Loads a tensor of the model (an initializer or a Constant's value) after checking what
/// tract does not: its element type is numeric (tract panics on others) and its size is within
/// [`MAX_TENSOR_VALUES`].
pub(super) fn load_tensor(t: &pb::TensorProto, dir: Option<&str>) -> std::result::Result<Tensor, String> {
    if !is_numeric(t.data_type) {
        return Err(format!("element type {} is not a numeric type the engine reads", t.data_type));
    }
    let dims: Option<Vec<usize>> = t.dims.iter().map(|&d| usize::try_from(d).ok()).collect();
    let dims = dims.ok_or_else(|| format!("negative dimension in {:?}", t.dims))?;
    match product(&dims) {
        Some(n) if n <= MAX_TENSOR_VALUES => {}
        _ => return Err(format!("dimensions {dims:?} are over the limit of {MAX_TENSOR_VALUES} values per tensor")),
    }
    tract_onnx::tensor::load_tensor(&ExternalData, t, dir).map_err(|e| format!("{e:#}"))
}
