//! The graph file: a graph in the engine's own IR, written by the engine itself (a head that
//! `framecache distill` trained), in one safetensors file.
//!
//! - Metadata key `framecache.graph`: a TOML [`Manifest`]: the inputs (name and `[h, w, c]`
//!   shape; a head attached at several taps has one per tap), the nodes in topological order (each with its name, the names of its inputs, its
//!   output shape and its op with every attribute), and the outputs.
//! - Tensors, `F32`, flat, in the engine's own layouts ([`crate::graph::Conv::weights`]):
//!   `N.weight` and `N.bias` of each weighted node `N` (see [`OpSpec`]).
//! - A clustered weight tensor (weight clustering, `framecache compress --method cluster`) is
//!   stored instead as `N.weight.codebook` (`F32`, at most `2^bits` values),
//!   `N.weight.indices` (`U8`: one `bits`-bit index per weight, packed least significant bit
//!   first, [`pack_indices`]) and optionally `N.weight.scale` (`F32`, `n` values, `n` dividing
//!   the length): value `i` is `scale[i % n] · codebook[index[i]]`. In the engine's layouts
//!   the output channel is the fastest-varying index (but for grouped convolutions), so
//!   `n = cout` scales each output channel. Each is listed under `clustered` in the manifest
//!   with its length, bit width and scale count. Loading looks every index up; the engine
//!   runs dense weights.
//!
//! The graph is stored unfused; loading it runs the importer's fusion passes, as for ONNX.
//!
//! A graph file is a model file like any other: a bundle attaches it as a head at a tap of its
//! backbone (`model = "person.head.safetensors"`, `input = "TAP"`), and every engine path runs
//! it. It holds every op of the unfused IR except int8 convolutions.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use super::manifested::{self, TensorBytes};
use crate::error::{Error, Result};
use crate::graph::{
    check_node, Activation, BinaryKind, Conv, ConvTranspose, CoordMode, Dense, Graph, GraphOutput, Node, Op, PoolKind,
    ResizeMode, Shape, Window,
};

/// The metadata key that holds the manifest.
pub const KEY: &str = "framecache.graph";
/// The format this engine writes and reads.
pub const VERSION: u32 = 1;
const FORMAT: &str = "framecache-graph";

/// What a graph file says besides its tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `framecache-graph`.
    pub format: String,
    pub version: u32,
    /// Free text: what made the file (for example the `distill` command line).
    #[serde(default)]
    pub description: String,
    /// One input, or one per tap for a head that reads several.
    pub input: Vec<InputSpec>,
    pub outputs: Vec<OutputSpec>,
    pub node: Vec<NodeSpec>,
    /// The source model's tensor names that name a node other than by its own name (fused
    /// ops hold several), each with its node's name: what a bundle names taps and outputs by.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub alias: std::collections::BTreeMap<String, String>,
    /// The weight tensors stored as a codebook and packed indices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clustered: Vec<ClusteredSpec>,
}

/// A tensor stored as `NAME.codebook` and `NAME.indices`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusteredSpec {
    /// The tensor's name (`N.weight`).
    pub tensor: String,
    /// Its number of values.
    pub len: usize,
    /// Bits per index, 1 to 8.
    pub bits: u32,
    /// Scales (`NAME.scale`), 0 for none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub scales: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A weight tensor as a codebook, one index per value and optional scales: `values[i] =
/// scales[i % scales.len()] · codebook[indices[i]]`, or `codebook[indices[i]]` without scales.
#[derive(Clone, Debug, PartialEq)]
pub struct Clustered {
    pub codebook: Vec<f32>,
    pub indices: Vec<u8>,
    pub scales: Vec<f32>,
}

impl Clustered {
    /// The fewest bits that index every codebook entry (at least 1).
    pub fn bits(&self) -> u32 {
        (usize::BITS - self.codebook.len().saturating_sub(1).leading_zeros()).max(1)
    }

    /// Whether 1 to 256 codebook entries (and scales dividing the length) look up to exactly
    /// `values` (bit for bit).
    pub fn looks_up(&self, values: &[f32]) -> bool {
        (1..=256).contains(&self.codebook.len())
            && self.indices.len() == values.len()
            && (self.scales.is_empty() || values.len().is_multiple_of(self.scales.len()))
            && self.indices.iter().all(|&i| usize::from(i) < self.codebook.len())
            && self.values().iter().zip(values).all(|(a, b)| a.to_bits() == b.to_bits())
    }

    /// The values the indices stand for (every index must be below the codebook's length).
    pub fn values(&self) -> Vec<f32> {
        let n = self.scales.len();
        self.indices
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let v = self.codebook[usize::from(i)];
                if n == 0 {
                    v
                } else {
                    self.scales[k % n] * v
                }
            })
            .collect()
    }
}

/// `indices`, `bits` each (1 to 8, every index below `2^bits`), packed least significant bit
/// first into `ceil(len · bits / 8)` bytes.
pub fn pack_indices(indices: &[u8], bits: u32) -> Vec<u8> {
    assert!((1..=8).contains(&bits), "bits {bits} is not 1 to 8");
    let mut out = vec![0u8; (indices.len() * bits as usize).div_ceil(8)];
    for (i, &v) in indices.iter().enumerate() {
        debug_assert!(u32::from(v) < 1 << bits);
        let at = i * bits as usize;
        let word = u16::from(v) << (at % 8);
        out[at / 8] |= word as u8;
        if let Some(next) = out.get_mut(at / 8 + 1) {
            *next |= (word >> 8) as u8;
        }
    }
    out
}

/// The `len` indices of `bits` bits each that [`pack_indices`] packed into `packed`, or `None`
/// when `packed` is not exactly `ceil(len · bits / 8)` bytes or `bits` is not 1 to 8.
pub fn unpack_indices(packed: &[u8], len: usize, bits: u32) -> Option<Vec<u8>> {
    if !(1..=8).contains(&bits) || len.checked_mul(bits as usize)?.div_ceil(8) != packed.len() {
        return None;
    }
    let mask = (1u16 << bits) - 1;
    Some(
        (0..len)
            .map(|i| {
                let at = i * bits as usize;
                let lo = u16::from(packed[at / 8]);
                let hi = packed.get(at / 8 + 1).map_or(0, |&b| u16::from(b));
                (((lo | hi << 8) >> (at % 8)) & mask) as u8
            })
            .collect(),
    )
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    /// `[h, w, c]`.
    pub shape: [usize; 3],
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    pub inputs: Vec<String>,
    /// The output's `[h, w, c]`, checked against what the op gives.
    pub shape: [usize; 3],
    pub op: OpSpec,
}

/// A graph output: its name (what a bundle's `outputs` lists) and the node that holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: String,
    pub node: String,
    /// The source model's shape of the output (`[1, C, H, W]` or `[1, C]` when absent) and
    /// whether its values are in NCHW order (absent: when the node's map is larger than 1x1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Vec<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nchw: Option<bool>,
}

/// A window: kernel `[kh, kw]`, stride, dilation and padding `[top, left, bottom, right]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    pub pad: [usize; 4],
}

impl From<Window> for WindowSpec {
    fn from(w: Window) -> Self {
        Self { kernel: [w.kh, w.kw], stride: [w.sh, w.sw], dilation: [w.dh, w.dw], pad: w.pad }
    }
}

impl From<WindowSpec> for Window {
    fn from(w: WindowSpec) -> Self {
        Window {
            kh: w.kernel[0],
            kw: w.kernel[1],
            sh: w.stride[0],
            sw: w.stride[1],
            dh: w.dilation[0],
            dw: w.dilation[1],
            pad: w.pad,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OpSpec {
    /// Tensors `N.weight` (the engine's layout) and `N.bias`; with `int8`, `N.weight` is `I8`
    /// (in −127..=127) and `N.weight_scale` (`F32`, one per output channel) scales it.
    Conv {
        window: WindowSpec,
        groups: usize,
        activation: Activation,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        int8: Option<Int8Spec>,
    },
    /// Tensors `N.weight` (`[ky][kx][ci][co]`) and `N.bias`.
    ConvTranspose {
        window: WindowSpec,
        activation: Activation,
    },
    MaxPool {
        window: WindowSpec,
    },
    AvgPool {
        window: WindowSpec,
        count_include_pad: bool,
    },
    GlobalAvgPool,
    Resize {
        mode: ResizeMode,
        coord: CoordMode,
    },
    Activation {
        activation: Activation,
    },
    Add {
        activation: Activation,
    },
    Mul {
        activation: Activation,
    },
    /// Tensors `N.weight` (the scale) and `N.bias`.
    ChannelAffine,
    /// Tensor `N.weight` (the slopes).
    Prelu,
    Softmax,
    Concat,
    PadChannels {
        before: usize,
        after: usize,
    },
    FlatConcat,
    Permute {
        perm: [usize; 4],
    },
    /// Tensors `N.weight` (`[ci][co]`) and `N.bias`.
    Dense {
        activation: Activation,
    },
}

/// An int8 convolution's input quantization ([`crate::graph::ConvQuant`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Int8Spec {
    pub input_scale: f32,
    pub input_zero: u8,
}

/// Whether `bytes` are a graph file: a safetensors header with the manifest key.
pub fn is_graph_file(bytes: &[u8]) -> bool {
    manifested::has_manifest(bytes, KEY)
}

/// The manifest of `graph` and its tensors, the weights named in `clustered` as their codebook
/// and indices, each tensor's name preceded by `prefix`. Every node name must be unique, and
/// the graph unfused (a fused residual add or a bottleneck is refused).
pub(crate) fn describe(
    graph: &Graph,
    description: &str,
    clustered: &HashMap<String, Clustered>,
    prefix: &str,
) -> Result<(Manifest, Vec<TensorBytes>)> {
    let unsupported = |node: &crate::graph::Node, what: &str| Error::InvalidModel {
        node: node.name.clone(),
        op: node.op.name().into(),
        reason: format!("a graph file cannot hold {what}"),
    };
    let mut names = std::collections::HashSet::new();
    if let Some(n) = graph.nodes.iter().find(|n| !names.insert(n.name.as_str())) {
        return Err(unsupported(n, "two nodes of one name"));
    }
    let mut nodes = Vec::new();
    let mut tensors = Vec::new();
    let mut specs = Vec::new();
    let inputs = graph.inputs();
    for node in &graph.nodes[inputs..] {
        if node.op.residual().is_some() {
            return Err(unsupported(node, "a fused residual add (write the graph before fusion)"));
        }
        let mut written = Ok(());
        let mut weights = |w: &[f32], b: Option<&[f32]>| {
            for (suffix, v) in std::iter::once(("weight", w)).chain(b.map(|b| ("bias", b))) {
                let name = format!("{}.{suffix}", node.name);
                let stored = format!("{prefix}{name}");
                match clustered.get(&name) {
                    Some(c) if c.looks_up(v) => {
                        let bits = c.bits();
                        let cb = &c.codebook;
                        tensors.push((
                            format!("{stored}.codebook"),
                            Dtype::F32,
                            vec![cb.len()],
                            manifested::f32_bytes(cb),
                        ));
                        let packed = pack_indices(&c.indices, bits);
                        tensors.push((format!("{stored}.indices"), Dtype::U8, vec![packed.len()], packed));
                        if !c.scales.is_empty() {
                            let sc = &c.scales;
                            tensors.push((
                                format!("{stored}.scale"),
                                Dtype::F32,
                                vec![sc.len()],
                                manifested::f32_bytes(sc),
                            ));
                        }
                        specs.push(ClusteredSpec { tensor: name, len: v.len(), bits, scales: c.scales.len() });
                    }
                    Some(_) => written = Err(unsupported(node, &format!("{name} unlike its codebook lookup"))),
                    None => tensors.push((stored, Dtype::F32, vec![v.len()], manifested::f32_bytes(v))),
                }
            }
        };
        let op = match &node.op {
            Op::Conv(c) => {
                let int8 = match &c.quant {
                    None => {
                        weights(&c.weights, Some(&c.bias));
                        None
                    }
                    Some(q) => {
                        let name = format!("{prefix}{}", node.name);
                        let w = q.weights.iter().map(|&w| w as u8).collect();
                        tensors.push((format!("{name}.weight"), Dtype::I8, vec![q.weights.len()], w));
                        let scales = manifested::f32_bytes(&q.weight_scale);
                        tensors.push((format!("{name}.weight_scale"), Dtype::F32, vec![q.weight_scale.len()], scales));
                        tensors.push((
                            format!("{name}.bias"),
                            Dtype::F32,
                            vec![c.bias.len()],
                            manifested::f32_bytes(&c.bias),
                        ));
                        Some(Int8Spec { input_scale: q.input_scale, input_zero: q.input_zero })
                    }
                };
                OpSpec::Conv { window: c.window.into(), groups: c.groups, activation: c.activation, int8 }
            }
            Op::ConvTranspose(c) => {
                weights(&c.weights, Some(&c.bias));
                OpSpec::ConvTranspose { window: c.window.into(), activation: c.activation }
            }
            Op::Pool { kind: PoolKind::Max, window } => OpSpec::MaxPool { window: (*window).into() },
            Op::Pool { kind: PoolKind::Avg { count_include_pad }, window } => {
                OpSpec::AvgPool { window: (*window).into(), count_include_pad: *count_include_pad }
            }
            Op::GlobalAvgPool => OpSpec::GlobalAvgPool,
            Op::Resize { mode, coord } => OpSpec::Resize { mode: *mode, coord: *coord },
            Op::Unary(a) => OpSpec::Activation { activation: *a },
            Op::Binary { kind: BinaryKind::Add, activation, .. } => OpSpec::Add { activation: *activation },
            Op::Binary { kind: BinaryKind::Mul, activation, .. } => OpSpec::Mul { activation: *activation },
            Op::ChannelAffine { scale, bias } => {
                weights(scale, Some(bias));
                OpSpec::ChannelAffine
            }
            Op::PRelu { slope } => {
                weights(slope, None);
                OpSpec::Prelu
            }
            Op::Softmax => OpSpec::Softmax,
            Op::Concat => OpSpec::Concat,
            Op::PadChannels { before, after } => OpSpec::PadChannels { before: *before, after: *after },
            Op::FlatConcat => OpSpec::FlatConcat,
            Op::Permute { perm } => OpSpec::Permute { perm: *perm },
            Op::Dense(d) => {
                weights(&d.weights, Some(&d.bias));
                OpSpec::Dense { activation: d.activation }
            }
            Op::Input | Op::Bottleneck(_) => return Err(unsupported(node, &format!("a {} node", node.op.name()))),
        };
        written?;
        let inputs = node.inputs.iter().map(|&j| graph.nodes[j].name.clone()).collect();
        let shape = [node.shape.h, node.shape.w, node.shape.c];
        nodes.push(NodeSpec { name: node.name.clone(), inputs, shape, op });
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        description: description.into(),
        input: graph.nodes[..inputs]
            .iter()
            .map(|n| InputSpec { name: n.name.clone(), shape: [n.shape.h, n.shape.w, n.shape.c] })
            .collect(),
        outputs: graph
            .outputs
            .iter()
            .map(|o| {
                let s = graph.nodes[o.node].shape;
                let (shape, nchw) = default_layout(s.h, s.w, s.c);
                OutputSpec {
                    name: o.name.clone(),
                    node: graph.nodes[o.node].name.clone(),
                    shape: (o.onnx_shape != shape).then(|| o.onnx_shape.clone()),
                    nchw: (o.nchw != nchw).then_some(o.nchw),
                }
            })
            .collect(),
        node: nodes,
        alias: graph
            .tensors
            .iter()
            .filter(|(name, &n)| graph.nodes[n].name != **name && !graph.outputs.iter().any(|o| o.name == **name))
            .map(|(name, &n)| (name.clone(), graph.nodes[n].name.clone()))
            .collect(),
        clustered: specs,
    };
    Ok((manifest, tensors))
}

/// The graph file's bytes for `graph`: unfused and unpacked, as an importer or
/// [`crate::graph::GraphBuilder`] makes it.
pub fn to_bytes(graph: &Graph, description: &str) -> Result<Vec<u8>> {
    to_bytes_clustered(graph, description, &HashMap::new())
}

/// [`to_bytes`], with the weight tensors named in `clustered` (`N.weight`) stored as their
/// codebook and packed indices. Each must look up to exactly the graph's values, with 1 to 256
/// codebook entries; a name that no weight has is ignored.
pub fn to_bytes_clustered(graph: &Graph, description: &str, clustered: &HashMap<String, Clustered>) -> Result<Vec<u8>> {
    let invalid = |reason: String| Error::InvalidModel { node: "<graph file>".into(), op: "write".into(), reason };
    let (manifest, tensors) = describe(graph, description, clustered, "")?;
    manifested::write(&manifest, KEY, &tensors, invalid)
}

/// A graph file's manifest and its tensors as stored (clustered weights stay packed), after
/// loading it whole as a check: what a plan file of it carries.
pub(crate) fn parts(bytes: &[u8], path: &Path) -> Result<(Manifest, Vec<TensorBytes>)> {
    load(bytes, path)?;
    let manifest = manifested::read_manifest(bytes, path, KEY, FORMAT, VERSION)?;
    let file = SafeTensors::deserialize(bytes).map_err(|e| Error::model_file(path, "not a safetensors file", e))?;
    let tensors =
        file.tensors().into_iter().map(|(name, t)| (name, t.dtype(), t.shape().to_vec(), t.data().to_vec())).collect();
    Ok((manifest, tensors))
}

/// Loads a graph file (`bytes`, read from `path`, which names it in errors). Each node is
/// checked by [`check_node`] (its inputs, its attributes, its tensors' lengths and its
/// declared shape) before the next is read; a tensor holds at most the file's bytes.
pub fn load(bytes: &[u8], path: &Path) -> Result<Graph> {
    let manifest: Manifest = manifested::read_manifest(bytes, path, KEY, FORMAT, VERSION)?;
    let file = SafeTensors::deserialize(bytes).map_err(|e| Error::model_file(path, "not a safetensors file", e))?;
    build(&manifest, &file, "", path)
}

/// The graph `manifest` describes, its tensors read from `file` under their names preceded by
/// `prefix` (`path` names the file in errors): what [`load`] and the plan file share.
pub(crate) fn build(manifest: &Manifest, file: &SafeTensors<'_>, prefix: &str, path: &Path) -> Result<Graph> {
    let bad = |reason: String| Error::ModelFile { path: path.to_owned(), reason, source: None };
    if manifest.format != FORMAT || manifest.version != VERSION {
        return Err(bad(format!(
            "graph format {} version {} (this engine reads {FORMAT} version {VERSION})",
            manifest.format, manifest.version
        )));
    }
    if manifest.input.is_empty() {
        return Err(bad("no input".into()));
    }
    let mut clustered = HashMap::new();
    for c in &manifest.clustered {
        if clustered.insert(c.tensor.clone(), c).is_some() {
            return Err(bad(format!("{} is listed twice under clustered", c.tensor)));
        }
    }
    let mut nodes = Vec::new();
    let mut ids = HashMap::new();
    for input in &manifest.input {
        let [h, w, c] = input.shape;
        let node = Node { name: input.name.clone(), op: Op::Input, inputs: vec![], shape: Shape::new(h, w, c) };
        check_node(&nodes, &node).map_err(|reason| bad(format!("input {}: {reason}", input.name)))?;
        if ids.insert(input.name.clone(), nodes.len()).is_some() {
            return Err(bad(format!("two inputs named {}", input.name)));
        }
        nodes.push(node);
    }
    for spec in &manifest.node {
        let invalid = |reason: String| Error::InvalidModel { node: spec.name.clone(), op: kind(&spec.op), reason };
        let inputs = spec
            .inputs
            .iter()
            .map(|n| ids.get(n).copied().ok_or_else(|| invalid(format!("input '{n}' is not an earlier node"))))
            .collect::<Result<Vec<_>>>()?;
        let raw = |name: &str, dtype: Dtype| -> Result<&[u8]> {
            let t = file.tensor(&format!("{prefix}{name}")).map_err(|_| invalid(format!("no tensor {name}")))?;
            if t.dtype() != dtype {
                return Err(invalid(format!("tensor {name} is {:?}, not {dtype:?}", t.dtype())));
            }
            Ok(t.data())
        };
        let tensor = |suffix: &str| -> Result<Vec<f32>> {
            let name = format!("{}.{suffix}", spec.name);
            let Some(c) = clustered.get(&name) else { return Ok(manifested::f32s(raw(&name, Dtype::F32)?)) };
            let codebook = manifested::f32s(raw(&format!("{name}.codebook"), Dtype::F32)?);
            if codebook.is_empty() || codebook.len() > 1 << c.bits.min(8) {
                return Err(invalid(format!("{name}: {} codebook values for {}-bit indices", codebook.len(), c.bits)));
            }
            // The indices' length bounds `len` by the file's size before anything is allocated.
            let indices = unpack_indices(raw(&format!("{name}.indices"), Dtype::U8)?, c.len, c.bits)
                .ok_or_else(|| invalid(format!("{name}: the indices are not {} values of {} bits", c.len, c.bits)))?;
            if let Some(&i) = indices.iter().find(|&&i| usize::from(i) >= codebook.len()) {
                return Err(invalid(format!("{name}: index {i} past the {} codebook values", codebook.len())));
            }
            let scales =
                if c.scales == 0 { Vec::new() } else { manifested::f32s(raw(&format!("{name}.scale"), Dtype::F32)?) };
            if scales.len() != c.scales || (c.scales > 0 && !c.len.is_multiple_of(c.scales)) {
                return Err(invalid(format!(
                    "{name}: {} scales for {} values (the manifest says {})",
                    scales.len(),
                    c.len,
                    c.scales
                )));
            }
            Ok(Clustered { codebook, indices, scales }.values())
        };
        let cin = inputs.first().map_or(0, |&j| nodes[j].shape.c);
        let [sh, sw, sc] = spec.shape;
        let op = match &spec.op {
            OpSpec::Conv { window, groups, activation, int8 } => {
                let mut conv = Conv {
                    window: (*window).into(),
                    groups: *groups,
                    cin,
                    cout: sc,
                    weights: Vec::new(),
                    bias: tensor("bias")?,
                    activation: *activation,
                    residual: None,
                    quant: None,
                    packed: Vec::new(),
                };
                match int8 {
                    None => conv.weights = tensor("weight")?,
                    Some(q) => {
                        let name = format!("{}.weight", spec.name);
                        let weights: Vec<i8> = raw(&name, Dtype::I8)?.iter().map(|&b| b as i8).collect();
                        let weight_scale = manifested::f32s(raw(&format!("{name}_scale"), Dtype::F32)?);
                        let w = &conv.window;
                        let want = (*groups > 0 && cin.is_multiple_of(*groups) && sc.is_multiple_of(*groups))
                            .then(|| (w.kh * w.kw).checked_mul(cin / groups)?.checked_mul(sc))
                            .flatten();
                        if want != Some(weights.len()) || weight_scale.len() != sc {
                            return Err(invalid(format!(
                                "{} int8 weights and {} scales for {cin} -> {sc} channels in {groups} groups",
                                weights.len(),
                                weight_scale.len()
                            )));
                        }
                        // The float weights are the int8 values scaled back: what the graph's
                        // float paths see (the int8 kernels read the int8 values).
                        conv.weights = weights
                            .iter()
                            .enumerate()
                            .map(|(i, &w)| f32::from(w) * weight_scale[conv.weight_channels(i).1])
                            .collect();
                        conv.quant = Some(Box::new(crate::graph::ConvQuant {
                            input_scale: q.input_scale,
                            input_zero: q.input_zero,
                            weight_scale,
                            weights,
                        }));
                        if !crate::quant::takes_int8(&conv) {
                            return Err(invalid("a depthwise or one-channel convolution cannot run in int8".into()));
                        }
                    }
                }
                Op::Conv(conv)
            }
            OpSpec::ConvTranspose { window, activation } => Op::ConvTranspose(ConvTranspose {
                window: (*window).into(),
                cin,
                cout: sc,
                weights: tensor("weight")?,
                bias: tensor("bias")?,
                activation: *activation,
                packed: None,
            }),
            OpSpec::MaxPool { window } => Op::Pool { kind: PoolKind::Max, window: (*window).into() },
            OpSpec::AvgPool { window, count_include_pad } => {
                Op::Pool { kind: PoolKind::Avg { count_include_pad: *count_include_pad }, window: (*window).into() }
            }
            OpSpec::GlobalAvgPool => Op::GlobalAvgPool,
            OpSpec::Resize { mode, coord } => Op::Resize { mode: *mode, coord: *coord },
            OpSpec::Activation { activation } => Op::Unary(*activation),
            OpSpec::Add { activation } => Op::Binary { kind: BinaryKind::Add, activation: *activation, residual: None },
            OpSpec::Mul { activation } => Op::Binary { kind: BinaryKind::Mul, activation: *activation, residual: None },
            OpSpec::ChannelAffine => Op::ChannelAffine { scale: tensor("weight")?, bias: tensor("bias")? },
            OpSpec::Prelu => Op::PRelu { slope: tensor("weight")? },
            OpSpec::Softmax => Op::Softmax,
            OpSpec::Concat => Op::Concat,
            OpSpec::PadChannels { before, after } => Op::PadChannels { before: *before, after: *after },
            OpSpec::FlatConcat => Op::FlatConcat,
            OpSpec::Permute { perm } => Op::Permute { perm: *perm },
            OpSpec::Dense { activation } => Op::Dense(Dense {
                cin,
                cout: sc,
                weights: tensor("weight")?,
                bias: tensor("bias")?,
                activation: *activation,
                packed: Vec::new(),
            }),
        };
        let node = Node { name: spec.name.clone(), op, inputs, shape: Shape::new(sh, sw, sc) };
        check_node(&nodes, &node).map_err(invalid)?;
        if ids.insert(spec.name.clone(), nodes.len()).is_some() {
            return Err(invalid("a second node of this name".into()));
        }
        nodes.push(node);
    }
    if manifest.outputs.is_empty() {
        return Err(bad("no outputs".into()));
    }
    let mut outputs = Vec::new();
    for o in &manifest.outputs {
        let id = *ids.get(&o.node).ok_or_else(|| bad(format!("output '{}' names no node '{}'", o.name, o.node)))?;
        let s = nodes[id].shape;
        let (shape, nchw) = default_layout(s.h, s.w, s.c);
        // The shape's size is checked against the node's with the whole graph (`Graph::validate`).
        let onnx_shape = o.shape.clone().unwrap_or(shape);
        outputs.push(GraphOutput { name: o.name.clone(), node: id, onnx_shape, nchw: o.nchw.unwrap_or(nchw) });
    }
    let mut tensors: HashMap<String, usize> = ids;
    for o in &outputs {
        tensors.entry(o.name.clone()).or_insert(o.node);
    }
    for (name, node) in &manifest.alias {
        let id = *tensors.get(node).ok_or_else(|| bad(format!("alias '{name}' names no node '{node}'")))?;
        tensors.entry(name.clone()).or_insert(id);
    }
    Ok(Graph { input_name: manifest.input[0].name.clone(), nodes, outputs, tensors })
}

/// An output's shape and order when the manifest gives none: NCHW `[1, C, H, W]` for a map,
/// `[1, C]` for a 1x1 one.
fn default_layout(h: usize, w: usize, c: usize) -> (Vec<usize>, bool) {
    let nchw = !(h == 1 && w == 1);
    (if nchw { vec![1, c, h, w] } else { vec![1, c] }, nchw)
}

/// The op's kind as the manifest names it, for errors.
fn kind(op: &OpSpec) -> String {
    format!("{op:?}").split([' ', '{', '(']).next().unwrap_or_default().to_string()
}
