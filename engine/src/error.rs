//! The one error type of the `framecache` crate. Every variant names the thing that was wrong:
//! the file, the node, the op, the attribute or the frame geometry.

use std::path::PathBuf;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The underlying error of a failed read or parse (I/O, protobuf, TOML, flatbuffer), kept as
/// the [`std::error::Error::source`] of the engine's error so that a `caused by:` chain shows it.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong when loading a model or processing a frame.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model file could not be read, or is not a valid ONNX protobuf or TFLite flatbuffer.
    #[error("cannot read model {path}: {reason}")]
    ModelFile {
        path: PathBuf,
        reason: String,
        #[source]
        source: Option<Cause>,
    },

    /// The ONNX graph uses an operator this engine does not implement.
    #[error("node '{node}': unsupported op type '{op}'")]
    UnsupportedOp { node: String, op: String },

    /// An operator is supported, but not with this attribute or attribute value.
    #[error("node '{node}' ({op}): unsupported attribute '{attribute}': {reason}")]
    UnsupportedAttribute { node: String, op: String, attribute: String, reason: String },

    /// The graph is well-formed ONNX but not something the engine can execute
    /// (dynamic shape, batch > 1, missing initializer, inconsistent shapes...).
    #[error("node '{node}' ({op}): {reason}")]
    InvalidModel { node: String, op: String, reason: String },

    /// A frame with zero width or height.
    #[error("empty frame: {width}x{height}")]
    EmptyFrame { width: usize, height: usize },

    /// A frame whose pixel format has a channel count the engine cannot read.
    #[error("frame has {got} channels per pixel; expected 3 (RGB) or 4 (RGBA)")]
    FrameChannels { got: usize },

    /// A frame whose buffer length does not match its declared geometry.
    #[error("frame buffer holds {got} bytes but {width}x{height}x{channels} needs {expected}")]
    FrameData { width: usize, height: usize, channels: usize, expected: usize, got: usize },

    /// A model with no sidecar: neither beside it nor in the folders searched.
    #[error("no sidecar for model {model}: {file} is not beside it{}", searched(.dirs))]
    NoSidecar { model: PathBuf, file: String, dirs: Vec<PathBuf> },

    /// A model sidecar (TOML) that cannot be read or names an invalid value.
    #[error("model config {path}: {reason}")]
    Config {
        path: PathBuf,
        reason: String,
        #[source]
        source: Option<Cause>,
    },

    /// A YUV frame whose planes do not match its declared geometry.
    #[error("YUV frame {width}x{height}: {reason}")]
    YuvLayout { width: usize, height: usize, reason: String },

    /// A bundle manifest (TOML) that cannot be read or names an invalid value.
    #[error("bundle manifest {path}: {field} = {value}: {reason}")]
    Manifest {
        path: PathBuf,
        field: String,
        value: String,
        reason: String,
        #[source]
        source: Option<Cause>,
    },

    /// A bundle manifest names a tensor (tap or output) that its model does not have.
    #[error(
        "bundle manifest {path}: {field} = \"{tensor}\": the model {model} has no tensor of that name \
         (`framecache inspect MODEL` lists them)"
    )]
    UnknownTensor { path: PathBuf, field: String, tensor: String, model: PathBuf },

    /// A head reads a tap of another shape than the one it was built for.
    #[error("head '{head}': its model's input is {expected:?}, but tap '{tap}' is {got:?}")]
    HeadShape { head: String, tap: String, expected: Vec<usize>, got: Vec<usize> },

    /// An SSD head's anchors do not match its outputs.
    #[error("head '{head}': {field} = {value}: {reason}")]
    AnchorMismatch { head: String, field: String, value: String, reason: String },

    /// An option outside its allowed range.
    #[error("invalid option {name} = {value}: {reason}")]
    InvalidOption { name: &'static str, value: String, reason: String },

    /// The worker thread pool could not be created.
    #[error("cannot create a thread pool of {threads} threads")]
    ThreadPool {
        threads: usize,
        #[source]
        source: std::io::Error,
    },
}

fn searched(dirs: &[PathBuf]) -> String {
    let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    if dirs.is_empty() {
        String::new()
    } else {
        format!(" nor in {}", dirs.join(", "))
    }
}

impl Error {
    /// The message followed by its causes, on one line (`a: b: c`): for callers that cannot
    /// print a `caused by:` chain, such as the C ABI's last-error string.
    pub fn report(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
    }

    /// A model file that cannot be read or decoded, with the error that says why.
    pub fn model_file(path: &std::path::Path, reason: &str, source: impl Into<Cause>) -> Self {
        Error::ModelFile { path: path.to_owned(), reason: reason.to_owned(), source: Some(source.into()) }
    }
}
