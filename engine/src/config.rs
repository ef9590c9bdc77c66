//! Model sidecars: a small TOML file, `<model file name>.toml`, that says how frames are fitted
//! and normalised for a model, what task its output serves and where its labels are.
//!
//! ```toml
//! task = "classify"               # classify | segment | other
//! labels = "imagenet_classes.txt" # relative to the sidecar's folder, then the model's
//!
//! [preprocess]
//! fit = "center-crop"             # stretch | center-crop
//! resize_shorter = 256            # center-crop: shorter side before cropping (omit: largest crop)
//! mean = [0.485, 0.456, 0.406]    # x = (p / 255 - mean) / std
//! std = [0.229, 0.224, 0.225]
//! resample = "pil"                # area (default: the engine's) | pil (Pillow, as torchvision)
//!                                 # | mediapipe (OpenCV warp, as MediaPipe's CPU path)
//! aspect = "turn"                 # fixed (default) | turn: a portrait frame runs the input size
//!                                 # turned | follow: the input takes the frame's aspect
//! ```
//!
//! A model whose input has dynamic spatial dims (a fully convolutional detector) runs at
//! `input_size = [W, H]` when given (`--input-size` overrides it), else at the frame's size
//! rounded down to a multiple of `input_multiple` (its total stride, e.g. 32; default 1).
//! `input_size` also runs an ONNX model with static dims at another size, where its layers allow
//! it (a classifier that ends in a global pool does; one whose dense layer reads a flattened map
//! is refused, naming the layer).
//!
//! A sidecar is looked up beside the model first, then in the folders the caller names (the
//! project keeps sidecars for models that live in read-only folders).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::exec::Plan;
use crate::frame::{Aspect, Fit, Preprocess, Resample};
use crate::heads::Decoder;
use crate::import::ImportOptions;

/// What a model's (first) output means, for decoding and fidelity metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Class scores (logits or probabilities), one vector per frame.
    Classify,
    /// A per-pixel probability map.
    Segment,
    /// Anything else: compared element-wise only.
    #[default]
    Other,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum FitKind {
    Stretch,
    CenterCrop,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreprocessToml {
    fit: FitKind,
    resize_shorter: Option<usize>,
    // Lists, not `[f32; 3]`: a fixed array took the first three of four values silently.
    #[serde(default = "zero_mean")]
    mean: Vec<f32>,
    #[serde(default = "unit_std")]
    std: Vec<f32>,
    #[serde(default)]
    resample: Resample,
    #[serde(default)]
    aspect: Aspect,
}

impl PreprocessToml {
    /// The preprocessing it describes; the error names the field and value.
    pub(crate) fn validate(&self) -> std::result::Result<Preprocess, String> {
        let fit = match (self.fit, self.resize_shorter) {
            (FitKind::Stretch, None) => Fit::Stretch,
            (FitKind::Stretch, Some(s)) => {
                return Err(format!("preprocess.resize_shorter = {s} needs fit = \"center-crop\""))
            }
            (FitKind::CenterCrop, Some(0)) => return Err("preprocess.resize_shorter = 0 must be positive".into()),
            (FitKind::CenterCrop, shorter) => Fit::CenterCrop { shorter },
        };
        let rgb = |name: &str, v: &[f32]| -> std::result::Result<[f32; 3], String> {
            v.try_into().map_err(|_| format!("preprocess.{name} = {v:?} must have 3 values (R, G, B), not {}", v.len()))
        };
        let (mean, std) = (rgb("mean", &self.mean)?, rgb("std", &self.std)?);
        if let Some(s) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(format!("preprocess.std = {s} must be a positive number"));
        }
        if let Some(m) = self.mean.iter().find(|m| !m.is_finite()) {
            return Err(format!("preprocess.mean = {m} must be finite"));
        }
        Ok(Preprocess { fit, mean, std, resample: self.resample, aspect: self.aspect })
    }
}

fn zero_mean() -> Vec<f32> {
    vec![0.0; 3]
}

fn unit_std() -> Vec<f32> {
    vec![1.0; 3]
}

fn default_mask_threshold() -> f32 {
    0.5
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelToml {
    #[serde(default)]
    task: Task,
    labels: Option<PathBuf>,
    #[serde(default = "default_mask_threshold")]
    mask_threshold: f32,
    input_size: Option<[usize; 2]>,
    input_multiple: Option<usize>,
    preprocess: PreprocessToml,
}

/// A parsed, validated sidecar.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// The file it was read from.
    pub path: PathBuf,
    pub task: Task,
    /// The labels file as written in the sidecar (see [`ModelConfig::labels_path`]).
    pub labels: Option<PathBuf>,
    /// Probability above which a segmentation pixel counts as foreground.
    pub mask_threshold: f32,
    /// `(width, height)` for a model with dynamic spatial input dims (or an ONNX model run at
    /// another size than its own).
    pub input_size: Option<(usize, usize)>,
    /// Without `input_size`, dynamic dims take the frame's size rounded down to a multiple of
    /// this (the model's total stride; 1: any size).
    pub input_multiple: usize,
    pub preprocess: Preprocess,
}

impl ModelConfig {
    /// Reads and validates a sidecar.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = crate::files::read_text(path).map_err(|e| Error::Config {
            path: path.to_owned(),
            reason: "cannot read".into(),
            source: Some(e.into()),
        })?;
        Self::parse(&text, path)
    }

    /// Parses sidecar text; `path` is used for messages and to resolve relative labels.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let err = |reason: String| Error::Config { path: path.to_owned(), reason, source: None };
        let t: ModelToml = toml::from_str(text).map_err(|e| Error::Config {
            path: path.to_owned(),
            reason: "invalid TOML".into(),
            source: Some(e.into()),
        })?;
        let preprocess = t.preprocess.validate().map_err(err)?;
        if !(0.0..=1.0).contains(&t.mask_threshold) {
            return Err(err(format!("mask_threshold = {} must lie in [0, 1]", t.mask_threshold)));
        }
        let input_size = match t.input_size {
            Some([w, h]) if !(1..=crate::graph::MAX_DIM).contains(&w) || !(1..=crate::graph::MAX_DIM).contains(&h) => {
                return Err(err(format!("input_size = [{w}, {h}] must lie in 1..={} per side", crate::graph::MAX_DIM)))
            }
            other => other.map(|[w, h]| (w, h)),
        };
        let input_multiple = match t.input_multiple {
            Some(m) if !(1..=1024).contains(&m) => {
                return Err(err(format!("input_multiple = {m} must lie in 1..=1024")))
            }
            m => m.unwrap_or(1),
        };
        Ok(Self {
            path: path.to_owned(),
            task: t.task,
            labels: t.labels,
            mask_threshold: t.mask_threshold,
            input_size,
            input_multiple,
            preprocess,
        })
    }

    /// The sidecar of `model`: `<model file name>.toml` beside the model, then in each of
    /// `dirs`. `None` when there is none.
    pub fn find(model: &Path, dirs: &[PathBuf]) -> Option<PathBuf> {
        let name = format!("{}.toml", model.file_name()?.to_string_lossy());
        std::iter::once(model.with_file_name(&name)).chain(dirs.iter().map(|d| d.join(&name))).find(|p| p.is_file())
    }

    /// The sidecar of `model`: `sidecar` when given, else [`ModelConfig::find`]'s, else (an int8
    /// file without a sidecar of its own) its float model's.
    pub fn locate(model: &Path, sidecar: Option<&Path>, dirs: &[PathBuf]) -> Result<PathBuf> {
        if let Some(s) = sidecar {
            return Ok(s.to_owned());
        }
        ModelConfig::find(model, dirs)
            .or_else(|| ModelConfig::find(&crate::quant::file::source(model)?, dirs))
            .ok_or_else(|| Error::NoSidecar {
                model: model.to_owned(),
                file: format!("{}.toml", model.file_name().unwrap_or_default().to_string_lossy()),
                dirs: dirs.to_vec(),
            })
    }

    /// The labels file, resolved relative to the sidecar's folder, then the model's folder.
    pub fn labels_path(&self, model: &Path) -> Option<PathBuf> {
        let l = self.labels.as_ref()?;
        if l.is_absolute() {
            return Some(l.clone());
        }
        let beside_sidecar = self.path.parent().map(|d| d.join(l));
        let beside_model = model.parent().map(|d| d.join(l));
        beside_sidecar.into_iter().chain(beside_model).find(|p| p.is_file())
    }

    /// Reads the labels, one per line. `Ok(None)` when the sidecar names none.
    pub fn load_labels(&self, model: &Path) -> Result<Option<Vec<String>>> {
        let Some(named) = &self.labels else { return Ok(None) };
        let path = self.labels_path(model).ok_or_else(|| Error::Config {
            path: self.path.clone(),
            reason: format!("labels = {:?} not found beside the sidecar or the model", named.display().to_string()),
            source: None,
        })?;
        let text = crate::files::read_text(&path).map_err(|e| Error::Config {
            path: self.path.clone(),
            reason: format!("cannot read labels {}", path.display()),
            source: Some(e.into()),
        })?;
        Ok(Some(text.lines().map(str::to_owned).collect()))
    }

    /// How the importer sizes a model's dynamic input dims under this sidecar: `input_size`
    /// (the caller's, such as `--input-size`), else the sidecar's `input_size`, else
    /// `frame_size` (the first frame's) rounded down to the sidecar's `input_multiple`.
    pub fn import_options(
        &self,
        input_size: Option<(usize, usize)>,
        frame_size: Option<(usize, usize)>,
    ) -> ImportOptions {
        ImportOptions { input_size: input_size.or(self.input_size), frame_size, multiple: self.input_multiple }
    }
}

/// A single model compiled with its sidecar: the one loader of single models, for the commands
/// (`run`, `bench`, the demo) and the C ABI.
#[derive(Debug)]
pub struct SidecarModel {
    pub plan: Arc<Plan>,
    pub config: ModelConfig,
    pub labels: Option<Vec<String>>,
    /// One per graph output, from the sidecar's task ([`crate::heads::sidecar_decoders`]).
    pub decoders: Vec<Decoder>,
}

impl SidecarModel {
    /// Imports the model file `model` (any format [`crate::import::load_model`] reads) with the
    /// sidecar `sidecar`, or the one [`ModelConfig::locate`] finds beside the model or in
    /// `dirs`; a plan file without `sidecar` brings its own. Dynamic input dims are sized as
    /// [`ModelConfig::import_options`] says.
    pub fn load(
        model: &Path,
        sidecar: Option<&Path>,
        dirs: &[PathBuf],
        input_size: Option<(usize, usize)>,
        frame_size: Option<(usize, usize)>,
    ) -> Result<Self> {
        // A missing model says so, rather than that it has no sidecar.
        let bytes = crate::files::read(model, crate::files::MAX_MODEL_BYTES)
            .map_err(|e| Error::model_file(model, "I/O error", e))?;
        if sidecar.is_none() && crate::import::plan_file::is_plan_file(&bytes) {
            return Self::from_plan(&bytes, model);
        }
        let config = ModelConfig::load(&ModelConfig::locate(model, sidecar, dirs)?)?;
        let graph = crate::import::load_model_bytes(&bytes, model, config.import_options(input_size, frame_size))?;
        let plan = Plan::new(graph, config.preprocess.clone())?;
        let labels = config.load_labels(model)?;
        Ok(Self::new(plan, config, labels))
    }

    /// A compiled plan file (`bytes`, read from `path`): its own sidecar and labels
    /// ([`crate::import::plan_file`]).
    pub fn from_plan(bytes: &[u8], path: &Path) -> Result<Self> {
        let file = crate::import::plan_file::load(bytes, path)?;
        let config = ModelConfig::parse(&file.sidecar, path)?;
        let plan = Plan::new(crate::import::fused(file.graph), config.preprocess.clone())?;
        Ok(Self::new(plan, config, file.labels))
    }

    /// A model in memory (ONNX or TFLite bytes), its sidecar as TOML text, and its class names
    /// (the sidecar's `labels` file is not read: there is no folder to resolve it in). A plan
    /// file with an empty `sidecar` brings its own sidecar and labels.
    pub fn from_bytes(bytes: &[u8], sidecar: &str, labels: Option<Vec<String>>) -> Result<Self> {
        if sidecar.trim().is_empty() && crate::import::plan_file::is_plan_file(bytes) {
            return Self::from_plan(bytes, Path::new("<memory>"));
        }
        if crate::quant::file::is_int8(bytes) {
            return Err(Error::ModelFile {
                path: "<memory>".into(),
                reason: "an int8 model names its float model by path: load it from its file".into(),
                source: None,
            });
        }
        let config = ModelConfig::parse(sidecar, Path::new("<sidecar>"))?;
        let graph = crate::import::load_model_bytes(bytes, Path::new("<memory>"), config.import_options(None, None))?;
        let plan = Plan::new(graph, config.preprocess.clone())?;
        Ok(Self::new(plan, config, labels))
    }

    /// A model compiled elsewhere, with its sidecar and labels: the decoders follow from them.
    pub fn new(plan: Arc<Plan>, config: ModelConfig, labels: Option<Vec<String>>) -> Self {
        let shapes = plan.graph().outputs.iter().map(|o| o.onnx_shape.as_slice());
        let decoders = crate::heads::sidecar_decoders(shapes, &config, labels.as_deref());
        Self { plan, config, labels, decoders }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ModelConfig> {
        ModelConfig::parse(text, Path::new("m.onnx.toml"))
    }

    #[test]
    fn parses_a_classifier() {
        let c = parse(
            "task = \"classify\"\nlabels = \"l.txt\"\n[preprocess]\nfit = \"center-crop\"\nresize_shorter = 256\n\
             mean = [0.485, 0.456, 0.406]\nstd = [0.229, 0.224, 0.225]\n",
        )
        .unwrap();
        assert_eq!(c.task, Task::Classify);
        assert_eq!(c.preprocess, Preprocess::imagenet());
        assert_eq!(c.labels.as_deref(), Some(Path::new("l.txt")));
    }

    #[test]
    fn defaults_are_unit_scale_and_task_other() {
        let c = parse("[preprocess]\nfit = \"stretch\"\n").unwrap();
        assert_eq!(c.task, Task::Other);
        assert_eq!(c.preprocess, Preprocess::default());
        assert_eq!(c.mask_threshold, 0.5);
    }

    #[test]
    fn errors_name_the_field() {
        let msg = |t: &str| parse(t).unwrap_err().report();
        assert!(msg("[preprocess]\nfit = \"squash\"\n").contains("squash"));
        assert!(msg("[preprocess]\nfit = \"stretch\"\nsize = 3\n").contains("size"));
        assert!(msg("[preprocess]\nfit = \"stretch\"\nresize_shorter = 256\n").contains("resize_shorter"));
        assert!(msg("[preprocess]\nfit = \"stretch\"\nstd = [1, 0, 1]\n").contains("preprocess.std = 0"));
        assert!(msg("task = \"classify\"\n").contains("preprocess"));
        assert!(msg("mask_threshold = 2.0\n[preprocess]\nfit = \"stretch\"\n").contains("mask_threshold"));
        // A fourth value used to be dropped silently; one too few is an error too.
        assert!(msg("[preprocess]\nfit = \"stretch\"\nmean = [0.1, 0.2, 0.3, 0.4]\n").contains("mean"));
        assert!(msg("[preprocess]\nfit = \"stretch\"\nstd = [0.5, 0.5]\n").contains("std"));
    }
}
