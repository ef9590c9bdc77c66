//! The graph file: a graph in the engine's own IR, written by the engine itself (a head that
//! `framecache distill` trained), in one safetensors file.
//!
//! - Metadata key `framecache.graph`: a TOML [`Manifest`]: the inputs (name and `[h, w, c]`
//!   shape; a head attached at several taps has one per tap), the nodes in topological order (each with its name, the names of its inputs, its
//!   output shape and its op with every attribute), and the outputs.
//! - Tensors, `F32`, flat, in the engine's own layouts ([`crate::graph::Conv::weights`]):
//!   `N.weight` and `N.bias` of each weighted node `N` (see [`OpSpec`]).
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
    /// Tensors `N.weight` (the engine's layout) and `N.bias`.
    Conv {
        window: WindowSpec,
        groups: usize,
        activation: Activation,
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

/// Whether `bytes` are a graph file: a safetensors header with the manifest key.
pub fn is_graph_file(bytes: &[u8]) -> bool {
    manifested::has_manifest(bytes, KEY)
}

/// The manifest of `graph` and its tensors. Every node name must be unique, and the graph
/// unfused (a fused residual add, a bottleneck or an int8 convolution is refused).
fn describe(graph: &Graph, description: &str) -> Result<(Manifest, Vec<TensorBytes>)> {
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
    let inputs = graph.inputs();
    for node in &graph.nodes[inputs..] {
        if node.op.residual().is_some() {
            return Err(unsupported(node, "a fused residual add (write the graph before fusion)"));
        }
        let mut weights = |w: &[f32], b: Option<&[f32]>| {
            for (suffix, v) in std::iter::once(("weight", w)).chain(b.map(|b| ("bias", b))) {
                tensors.push((format!("{}.{suffix}", node.name), Dtype::F32, vec![v.len()], manifested::f32_bytes(v)));
            }
        };
        let op = match &node.op {
            Op::Conv(c) => {
                if c.quant.is_some() {
                    return Err(unsupported(node, "an int8 convolution"));
                }
                weights(&c.weights, Some(&c.bias));
                OpSpec::Conv { window: c.window.into(), groups: c.groups, activation: c.activation }
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
            .map(|o| OutputSpec { name: o.name.clone(), node: graph.nodes[o.node].name.clone() })
            .collect(),
        node: nodes,
    };
    Ok((manifest, tensors))
}

/// The graph file's bytes for `graph`: unfused and unpacked, as an importer or
/// [`crate::graph::GraphBuilder`] makes it.
pub fn to_bytes(graph: &Graph, description: &str) -> Result<Vec<u8>> {
    let invalid = |reason: String| Error::InvalidModel { node: "<graph file>".into(), op: "write".into(), reason };
    let (manifest, tensors) = describe(graph, description)?;
    manifested::write(&manifest, KEY, &tensors, invalid)
}

/// Loads a graph file (`bytes`, read from `path`, which names it in errors). Each node is
/// checked by [`check_node`] (its inputs, its attributes, its tensors' lengths and its
/// declared shape) before the next is read; a tensor holds at most the file's bytes.
pub fn load(bytes: &[u8], path: &Path) -> Result<Graph> {
    let bad = |reason: String| Error::ModelFile { path: path.to_owned(), reason, source: None };
    let manifest: Manifest = manifested::read_manifest(bytes, path, KEY, FORMAT, VERSION)?;
    let file = SafeTensors::deserialize(bytes).map_err(|e| Error::model_file(path, "not a safetensors file", e))?;
    if manifest.input.is_empty() {
        return Err(bad("no input".into()));
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
        let tensor = |suffix: &str| -> Result<Vec<f32>> {
            let name = format!("{}.{suffix}", spec.name);
            let t = file.tensor(&name).map_err(|_| invalid(format!("no tensor {name}")))?;
            if t.dtype() != Dtype::F32 {
                return Err(invalid(format!("tensor {name} is {:?}, not F32", t.dtype())));
            }
            Ok(manifested::f32s(t.data()))
        };
        let cin = inputs.first().map_or(0, |&j| nodes[j].shape.c);
        let [sh, sw, sc] = spec.shape;
        let op = match &spec.op {
            OpSpec::Conv { window, groups, activation } => Op::Conv(Conv {
                window: (*window).into(),
                groups: *groups,
                cin,
                cout: sc,
                weights: tensor("weight")?,
                bias: tensor("bias")?,
                activation: *activation,
                residual: None,
                quant: None,
                packed: Vec::new(),
            }),
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
        let nchw = !(s.h == 1 && s.w == 1);
        let onnx_shape = if nchw { vec![1, s.c, s.h, s.w] } else { vec![1, s.c] };
        outputs.push(GraphOutput { name: o.name.clone(), node: id, onnx_shape, nchw });
    }
    let mut tensors: HashMap<String, usize> = ids;
    for o in &outputs {
        tensors.entry(o.name.clone()).or_insert(o.node);
    }
    Ok(Graph { input_name: manifest.input[0].name.clone(), nodes, outputs, tensors })
}

/// The op's kind as the manifest names it, for errors.
fn kind(op: &OpSpec) -> String {
    format!("{op:?}").split([' ', '{', '(']).next().unwrap_or_default().to_string()
}
