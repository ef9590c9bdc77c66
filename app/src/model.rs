//! A model as the commands use it: the compiled plan plus its sidecar (preprocessing, task,
//! labels).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use framecache::heads::Decoder;
use framecache::{Frame, ModelConfig, Plan, SidecarModel, Task};

/// A loaded model.
pub struct Model {
    pub path: PathBuf,
    /// The file stem (`mobilenet_v2`), used in reports and to find reference columns.
    pub name: String,
    pub plan: Arc<Plan>,
    pub config: ModelConfig,
    pub labels: Option<Vec<String>>,
    /// One per output, from the sidecar's task.
    pub decoders: Vec<Decoder>,
}

impl Model {
    /// Imports `path` with the preprocessing of `sidecar`, or of the sidecar found beside the
    /// model or in the project's `assets/models/`. Dynamic spatial input dims take
    /// `input_size` (`--input-size`), else the sidecar's `input_size`, else `frame_size` (the
    /// first frame's) rounded down to the sidecar's `input_multiple`.
    pub fn load(
        path: &Path,
        sidecar: Option<&Path>,
        input_size: Option<(usize, usize)>,
        frame_size: Option<(usize, usize)>,
    ) -> Result<Self> {
        let SidecarModel { plan, config, labels, decoders } =
            SidecarModel::load(path, sidecar, &sidecar_dirs(), input_size, frame_size).map_err(|e| match e {
                framecache::Error::NoSidecar { .. } => anyhow::anyhow!(
                    "{e}: write one (assets/models/mobilenet_v2.onnx.toml shows the fields), or pass --preprocess FILE"
                ),
                // These name the file already.
                framecache::Error::ModelFile { .. } | framecache::Error::Config { .. } => e.into(),
                e => anyhow::Error::new(e).context(format!("cannot load model {}", path.display())),
            })?;
        let name = path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned());
        Ok(Self { path: path.to_owned(), name, plan, config, labels, decoders })
    }

    pub fn task(&self) -> Task {
        self.config.task
    }

    /// The model's input tensor for `frame`, NCHW, as a peer runtime takes it.
    pub fn input_nchw(&self, frame: &Frame<'_>) -> Vec<f32> {
        let shape = self.plan.graph().input_shape();
        let (mut resampled, mut nhwc) = (Vec::new(), vec![0.0; shape.len()]);
        self.plan.preprocess().resample(frame, shape, &mut resampled);
        self.plan.preprocess().normalize(&resampled, &mut nhwc);
        shape.nhwc_to_nchw(&nhwc)
    }

    /// The ONNX input shape `[1, C, H, W]`.
    pub fn input_dims(&self) -> [usize; 4] {
        let s = self.plan.graph().input_shape();
        [1, s.c, s.h, s.w]
    }
}

/// Index of the largest value (the first on ties; 0 for an empty slice): the top-1 class.
pub fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| if x > bv { (i, x) } else { (bi, bv) }).0
}

/// Where sidecars of models in read-only folders are kept: the project's `assets/models/`.
pub fn sidecar_dirs() -> Vec<PathBuf> {
    crate::args::assets_dir().map(|a| vec![a.join("models")]).unwrap_or_default()
}
