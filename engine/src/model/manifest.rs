//! The bundle manifest (TOML) and its compilation into plans and decoders. Every error names
//! the manifest, the field and the value.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::file::entry_name;
use super::{Backbone, HeadDef};
use crate::config::PreprocessToml;
use crate::error::{Error, Result};
use crate::exec::{HeadPart, Plan};
use crate::graph::{Graph, GraphOutput};
use crate::heads::{ssd, Decoder, TOP_K};

/// A parsed manifest.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: Option<String>,
    #[serde(rename = "backbone")]
    pub backbones: Vec<BackboneManifest>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneManifest {
    pub model: PathBuf,
    #[serde(default)]
    pub taps: Vec<String>,
    pub(crate) preprocess: PreprocessToml,
    /// `[W, H]` for a model with dynamic spatial input dims, or an ONNX model run at another size
    /// than its own (MobileNetV2 at 288x160 keeps a 16:9 frame's aspect).
    pub input_size: Option<[usize; 2]>,
    #[serde(rename = "head")]
    pub heads: Vec<HeadManifest>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderKind {
    Classify,
    Segment,
    DetectSsd,
    DetectGrid,
    Keypoints,
    Raw,
}

/// The backbone tensors that feed a head's own model: one, or one per input.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Taps {
    One(String),
    Many(Vec<String>),
}

impl Taps {
    pub fn names(&self) -> &[String] {
        match self {
            Taps::One(t) => std::slice::from_ref(t),
            Taps::Many(t) => t,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadManifest {
    pub name: String,
    pub decoder: DecoderKind,
    /// Tensors of the backbone's model (or of the head's own `model`) that this head produces.
    pub outputs: Vec<String>,
    #[serde(default = "one")]
    pub rate: u32,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A separate model file for this head (ONNX, or a graph file that `distill` wrote), and
    /// the backbone tensor that feeds its input (a list for a head with several inputs).
    pub model: Option<PathBuf>,
    pub input: Option<Taps>,
    // classify
    pub labels: Option<PathBuf>,
    pub top_k: Option<usize>,
    // segment: mask threshold; detect_ssd, detect_grid: score threshold
    pub threshold: Option<f32>,
    // detect_ssd
    pub strides: Option<Vec<usize>>,
    pub anchors_per_layer: Option<usize>,
    pub anchor_offset: Option<f32>,
    pub iou_threshold: Option<f32>,
    // detect_grid: input pixels between cells, and the window side of a cell
    pub stride: Option<usize>,
    pub cell: Option<usize>,
    // detect_ssd: keypoints per box; keypoints: number of landmarks
    pub keypoints: Option<usize>,
    // keypoints
    pub values: Option<usize>,
    pub visibility: Option<usize>,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self> {
        Self::parse(&Self::read(path)?, path)
    }

    /// The manifest's text.
    pub(super) fn read(path: &Path) -> Result<String> {
        crate::files::read_text(path).map_err(|e| file_error(path, "cannot read", Some(e.into())))
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let m: Manifest = toml::from_str(text).map_err(|e| Error::Manifest {
            path: path.to_owned(),
            field: "(syntax)".into(),
            value: String::new(),
            reason: "invalid TOML".into(),
            source: Some(e.into()),
        })?;
        if m.backbones.is_empty() {
            return Err(Error::Manifest {
                path: path.to_owned(),
                field: "backbone".into(),
                value: "[]".into(),
                reason: "a bundle needs at least one [[backbone]]".into(),
                source: None,
            });
        }
        // Heads are found by name (`BundleSession::set_head_enabled`, the demo, the C ABI), so
        // a name is unique across the whole bundle.
        let mut names = std::collections::HashSet::new();
        for (i, b) in m.backbones.iter().enumerate() {
            for (k, h) in b.heads.iter().enumerate() {
                if names.insert(h.name.as_str()) {
                    continue;
                }
                return Err(Error::Manifest {
                    path: path.to_owned(),
                    field: format!("backbone[{i}].head[{k}] ('{}').name", h.name),
                    value: h.name.clone(),
                    reason: "two heads have this name".into(),
                    source: None,
                });
            }
        }
        Ok(m)
    }
}

/// The manifest file at `path` itself could not be read as one (`reason`).
pub(super) fn file_error(path: &Path, reason: impl Into<String>, source: Option<crate::error::Cause>) -> Error {
    Error::Manifest {
        path: path.to_owned(),
        field: "(file)".into(),
        value: path.display().to_string(),
        reason: reason.into(),
        source,
    }
}

/// Where a manifest's files are.
pub(super) enum Files<'a> {
    /// On disk: beside the manifest at `manifest`, then in each of `dirs`.
    Disk { manifest: &'a Path, dirs: &'a [PathBuf] },
    /// The entries of a bundle file ([`super::file`]), by the names the manifest gives them.
    Archive(&'a HashMap<String, Vec<u8>>),
}

impl Files<'_> {
    /// `file` beside the manifest, then in each of `dirs`; in a bundle file, its entry.
    pub(super) fn locate(&self, file: &Path, dirs: &[PathBuf]) -> Option<PathBuf> {
        match self {
            Files::Disk { manifest, .. } => {
                let beside = manifest.parent().map(|d| d.join(file));
                beside.into_iter().chain(dirs.iter().map(|d| d.join(file))).find(|p| p.is_file())
            }
            Files::Archive(entries) => {
                let name = entry_name(file);
                entries.contains_key(&name).then(|| PathBuf::from(name))
            }
        }
    }

    /// A model file: beside the manifest, then in the model folders.
    fn model(&self, file: &Path) -> Option<PathBuf> {
        match self {
            Files::Disk { dirs, .. } => self.locate(file, dirs),
            Files::Archive(_) => self.locate(file, &[]),
        }
    }

    fn entry(&self, at: &Path) -> &[u8] {
        match self {
            Files::Archive(entries) => entries.get(&entry_name(at)).map_or(&[][..], Vec::as_slice),
            Files::Disk { .. } => &[],
        }
    }

    /// The model at `at` (found by [`Files::locate`]).
    fn load_model(&self, at: &Path, options: crate::import::ImportOptions) -> Result<Graph> {
        match self {
            Files::Disk { .. } => crate::import::load_model(at, options),
            Files::Archive(_) => crate::import::load_model_bytes(self.entry(at), at, options),
        }
    }

    /// The text file at `at` (found by [`Files::locate`]).
    fn read_text(&self, at: &Path) -> std::io::Result<String> {
        match self {
            Files::Disk { .. } => crate::files::read_text(at),
            Files::Archive(_) => String::from_utf8(self.entry(at).to_vec())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
    }
}

/// Groups the manifest's backbones (by index) that compute the same thing: the same model file,
/// taps, input size and preprocessing. Each group is loaded and compiled once, with the heads of
/// all its entries (twenty entries of one model used to load and run it twenty times). An
/// entry whose model is not found is a group of its own, and [`compile`] reports it.
pub(super) fn same_model_groups<'a>(
    files: &Files<'_>,
    backbones: &'a [BackboneManifest],
) -> Vec<Vec<(usize, &'a BackboneManifest)>> {
    let identity = |b: &BackboneManifest| {
        let model = files.model(&b.model)?;
        let model = model.canonicalize().unwrap_or(model);
        Some((model, b.preprocess.validate().ok()?))
    };
    let mut groups: Vec<(_, Vec<(usize, &BackboneManifest)>)> = Vec::new();
    for (i, b) in backbones.iter().enumerate() {
        let key = identity(b).map(|id| (id, &b.taps, b.input_size));
        // Without a key (the model is not found) there is nothing to look for.
        let same = if key.is_some() { groups.iter_mut().find(|(k, _)| *k == key) } else { None };
        match same {
            Some((_, g)) => g.push((i, b)),
            None => groups.push((key, vec![(i, b)])),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// Compiles one group of [`same_model_groups`] (backbone entries by manifest index) from the
/// manifest at `path`: the first entry's model, with every entry's heads.
pub(super) fn compile(path: &Path, files: &Files<'_>, group: &[(usize, &BackboneManifest)]) -> Result<Backbone> {
    let (i, b) = group[0];
    let heads: Vec<(usize, usize, &HeadManifest)> =
        group.iter().flat_map(|&(i, b)| b.heads.iter().enumerate().map(move |(k, h)| (i, k, h))).collect();
    let err = |field: String, value: String, reason: String| Error::Manifest {
        path: path.to_owned(),
        field,
        value,
        reason,
        source: None,
    };
    let field = |f: &str| format!("backbone[{i}].{f}");
    let model = files.model(&b.model).ok_or_else(|| {
        err(
            field("model"),
            b.model.display().to_string(),
            "not found beside the manifest or in the model folders".into(),
        )
    })?;
    let preprocess = b.preprocess.validate().map_err(|r| err(field("preprocess"), String::new(), r))?;
    let options = crate::import::ImportOptions { input_size: b.input_size.map(|[w, h]| (w, h)), ..Default::default() };
    let mut graph = files.load_model(&model, options)?;
    let unknown = |field: String, tensor: &str, model: &Path| Error::UnknownTensor {
        path: path.to_owned(),
        field,
        tensor: tensor.to_owned(),
        model: model.to_owned(),
    };

    let mut parts = Vec::with_capacity(heads.len());
    for &(i, k, h) in &heads {
        let hfield = |f: &str| format!("backbone[{i}].head[{k}] ('{}').{f}", h.name);
        if h.rate == 0 {
            return Err(err(hfield("rate"), "0".into(), "at least 1 (every frame)".into()));
        }
        if h.outputs.is_empty() {
            return Err(err(hfield("outputs"), "[]".into(), "a head produces at least one tensor".into()));
        }
        let outputs = match (&h.model, &h.input) {
            (Some(file), Some(input)) => {
                let head_path = files.model(file).ok_or_else(|| {
                    err(
                        hfield("model"),
                        file.display().to_string(),
                        "not found beside the manifest or in the model folders".into(),
                    )
                })?;
                let head = files.load_model(&head_path, Default::default())?;
                let names = input.names();
                if names.len() != head.inputs() {
                    return Err(err(
                        hfield("input"),
                        format!("{names:?}"),
                        format!("{} has {} inputs: name one tap for each", head_path.display(), head.inputs()),
                    ));
                }
                let mut taps = Vec::with_capacity(names.len());
                for (j, name) in names.iter().enumerate() {
                    let tap = *graph.tensors.get(name).ok_or_else(|| unknown(hfield("input"), name, &model))?;
                    let (want, got) = (head.nodes[j].shape, graph.nodes[tap].shape);
                    if want != got {
                        return Err(Error::HeadShape {
                            head: h.name.clone(),
                            tap: name.clone(),
                            expected: vec![1, want.c, want.h, want.w],
                            got: vec![1, got.c, got.h, got.w],
                        });
                    }
                    taps.push(tap);
                }
                let attached = graph.attach(head, &taps);
                h.outputs
                    .iter()
                    .map(|o| {
                        attached
                            .iter()
                            .copied()
                            .find(|&a| graph.outputs[a].name == *o)
                            .ok_or_else(|| unknown(hfield("outputs"), o, &head_path))
                    })
                    .collect::<Result<Vec<_>>>()?
            }
            (None, None) => h
                .outputs
                .iter()
                .map(|o| output_index(&mut graph, o).ok_or_else(|| unknown(hfield("outputs"), o, &model)))
                .collect::<Result<Vec<_>>>()?,
            _ => {
                return Err(err(
                    hfield("model"),
                    format!("{:?}", h.model),
                    "a head with its own model needs both `model` and `input` (the tap that feeds it)".into(),
                ))
            }
        };
        parts.push(HeadPart { name: h.name.clone(), outputs, rate: h.rate, nodes: Vec::new(), reads: Vec::new() });
    }
    let mut taps = Vec::with_capacity(b.taps.len());
    for t in &b.taps {
        taps.push(*graph.tensors.get(t).ok_or_else(|| unknown(field("taps"), t, &model))?);
    }
    let tap_names = b.taps.clone();
    let plan = Plan::with_heads(graph, preprocess, parts, &taps)?;

    // With declared taps, a head may read the backbone only through them.
    if !taps.is_empty() {
        let g = plan.graph();
        let tap_nodes: Vec<usize> = tap_names.iter().filter_map(|t| g.tensors.get(t).copied()).collect();
        for (k, part) in plan.heads().iter().enumerate() {
            if let Some(&j) = part.reads.iter().find(|j| !tap_nodes.contains(j) && **j != 0) {
                return Err(err(
                    format!("backbone[{i}].head[{k}] ('{}')", part.name),
                    g.nodes[j].name.clone(),
                    format!(
                        "the head reads backbone node '{}', which is not among the taps {tap_names:?}",
                        g.nodes[j].name
                    ),
                ));
            }
        }
    }

    let heads = heads
        .iter()
        .enumerate()
        .map(|(k, &(_, _, h))| {
            let decoder = decoder(path, files, &model, &plan, k, h)?;
            Ok(HeadDef { name: h.name.clone(), decoder, enabled: h.enabled })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Backbone { models: vec![model.clone()], model, plan, heads })
}

/// The index of the graph output holding tensor `name`, adding an output for an inner tensor.
fn output_index(graph: &mut Graph, name: &str) -> Option<usize> {
    if let Some(i) = graph.outputs.iter().position(|o| o.name == name) {
        return Some(i);
    }
    let node = *graph.tensors.get(name)?;
    let s = graph.nodes[node].shape;
    let nchw = s.pixels() > 1;
    let onnx_shape = if nchw { vec![1, s.c, s.h, s.w] } else { vec![1, s.c] };
    graph.outputs.push(GraphOutput { name: name.to_owned(), node, onnx_shape, nchw });
    Some(graph.outputs.len() - 1)
}

fn decoder(path: &Path, files: &Files<'_>, model: &Path, plan: &Plan, k: usize, h: &HeadManifest) -> Result<Decoder> {
    let g = plan.graph();
    let shapes: Vec<&[usize]> = plan.heads()[k].outputs.iter().map(|&o| g.outputs[o].onnx_shape.as_slice()).collect();
    let field = |f: &str| format!("head '{}'.{f}", h.name);
    let err = |f: &str, value: String, reason: String| Error::Manifest {
        path: path.to_owned(),
        field: field(f),
        value,
        reason,
        source: None,
    };
    let need = |f: &str, v: Option<usize>| {
        v.ok_or_else(|| err(f, "(missing)".into(), format!("required by decoder {:?}", h.decoder)))
    };
    let outputs_str = format!("{:?} of shapes {shapes:?}", h.outputs);
    let threshold = h.threshold.unwrap_or(0.5);
    if !(0.0..=1.0).contains(&threshold) {
        return Err(err("threshold", threshold.to_string(), "must lie in [0, 1]".into()));
    }
    // `contains` is false for NaN: every float of a manifest is finite and in range.
    if let Some(v) = h.iou_threshold.filter(|v| !(0.0..1.0).contains(v)) {
        return Err(err("iou_threshold", v.to_string(), "must lie in [0, 1)".into()));
    }
    if let Some(v) = h.anchor_offset.filter(|v| !(0.0..=1.0).contains(v)) {
        return Err(err("anchor_offset", v.to_string(), "must lie in [0, 1] (a fraction of a cell)".into()));
    }
    if h.top_k == Some(0) {
        return Err(err("top_k", "0".into(), "at least one class".into()));
    }
    let input = g.input_shape();
    Ok(match h.decoder {
        DecoderKind::Classify => {
            if !matches!(shapes[0], [1, _]) {
                return Err(err("outputs", outputs_str, "classify reads a [1, classes] vector".into()));
            }
            let labels = match &h.labels {
                Some(l) => {
                    let file = files
                        .locate(l, &[model.parent().map(Path::to_path_buf).unwrap_or_default()])
                        .ok_or_else(|| {
                            err("labels", l.display().to_string(), "not found beside the manifest or the model".into())
                        })?;
                    let text = files.read_text(&file).map_err(|e| Error::Manifest {
                        path: path.to_owned(),
                        field: field("labels"),
                        value: file.display().to_string(),
                        reason: "cannot read".into(),
                        source: Some(e.into()),
                    })?;
                    let labels: Vec<String> = text.lines().map(str::to_owned).collect();
                    if labels.len() != shapes[0][1] {
                        return Err(err(
                            "labels",
                            l.display().to_string(),
                            format!("{} labels for {} classes", labels.len(), shapes[0][1]),
                        ));
                    }
                    Some(labels)
                }
                None => None,
            };
            Decoder::Classify { labels, top_k: h.top_k.unwrap_or(TOP_K) }
        }
        DecoderKind::Segment => {
            if crate::heads::mask_dims(shapes[0]).is_none() {
                return Err(err("outputs", outputs_str, "segment reads a [1, 1, H, W] (or [1, H, W, 1]) map".into()));
            }
            Decoder::Segment { threshold }
        }
        DecoderKind::DetectSsd => {
            if shapes.len() != 2 {
                return Err(err("outputs", outputs_str, "detect_ssd reads two outputs: boxes, then scores".into()));
            }
            let strides = h
                .strides
                .clone()
                .ok_or_else(|| err("strides", "(missing)".into(), "the anchor strides, e.g. [8, 16, 16, 16]".into()))?;
            if strides.is_empty() || strides.contains(&0) {
                return Err(err("strides", format!("{strides:?}"), "positive strides, one per anchor layer".into()));
            }
            let per_layer = h.anchors_per_layer.unwrap_or(2);
            // Counted before the anchors are made: a hostile count must not allocate.
            let count = ssd::anchor_count(input.h, input.w, &strides, per_layer);
            let rows = shapes[0].get(1).copied();
            if count.is_none() || count != rows {
                let n = count.map_or_else(|| "too many".into(), |n| n.to_string());
                return Err(Error::AnchorMismatch {
                    head: h.name.clone(),
                    field: "strides".into(),
                    value: format!("{strides:?} x {per_layer} per layer: {n} anchors"),
                    reason: format!(
                        "the strides give {n} anchors but the box output has {} rows ({:?})",
                        rows.unwrap_or(0),
                        shapes[0]
                    ),
                });
            }
            let keypoints = h.keypoints.unwrap_or(0);
            if keypoints > 1024 {
                return Err(err("keypoints", keypoints.to_string(), "at most 1024 per box".into()));
            }
            let cfg = ssd::SsdConfig {
                anchors: ssd::anchors(input.h, input.w, &strides, per_layer, h.anchor_offset.unwrap_or(0.5)),
                keypoints,
                scale: (input.w as f32, input.h as f32),
                score_threshold: threshold,
                iou_threshold: h.iou_threshold.unwrap_or(0.3),
            };
            cfg.check(&h.name, shapes[0], shapes[1])?;
            Decoder::DetectSsd(cfg)
        }
        DecoderKind::DetectGrid => {
            let ok = shapes.len() == 2
                && matches!(shapes[0], [1, 2, _, _])
                && matches!(shapes[1], [1, 4, _, _])
                && shapes[0][2..] == shapes[1][2..];
            if !ok {
                return Err(err(
                    "outputs",
                    outputs_str,
                    "detect_grid reads [1, 2, h, w] probabilities, then [1, 4, h, w] box offsets".into(),
                ));
            }
            let stride = need("stride", h.stride)?;
            let cell = need("cell", h.cell)?;
            for (f, v) in [("stride", stride), ("cell", cell)] {
                if !(1..=crate::graph::MAX_DIM).contains(&v) {
                    return Err(err(f, v.to_string(), format!("must lie in 1..={}", crate::graph::MAX_DIM)));
                }
            }
            Decoder::DetectGrid(crate::heads::grid::GridConfig {
                stride,
                cell,
                input: (input.w, input.h),
                score_threshold: h.threshold.unwrap_or(0.6),
                iou_threshold: h.iou_threshold.unwrap_or(0.5),
            })
        }
        DecoderKind::Keypoints => {
            let count = need("keypoints", h.keypoints)?;
            let values = need("values", h.values)?;
            let have: usize = shapes[0].iter().product();
            if values < 2 || count * values > have {
                return Err(err(
                    "keypoints",
                    format!("{count} x {values} values"),
                    format!("output {outputs_str} holds {have} values"),
                ));
            }
            if let Some(v) = h.visibility.filter(|&v| v >= values) {
                return Err(err("visibility", v.to_string(), format!("index into {values} values per keypoint")));
            }
            Decoder::Keypoints { count, values, visibility: h.visibility, input: (input.h, input.w) }
        }
        DecoderKind::Raw => Decoder::Raw,
    })
}
