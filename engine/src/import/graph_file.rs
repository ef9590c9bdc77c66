//! The graph file: a small graph in the engine's IR, written by the engine itself (a head that
//! `framecache distill` trained), in one safetensors file.
//!
//! - Metadata key `framecache.graph`: a TOML [`Manifest`]: the input (name and `[h, w, c]`
//!   shape), the nodes in topological order (each with its name, the names of its inputs and
//!   its op with every attribute), and the names of the output nodes.
//! - Tensors, `F32`, in the engine's own layouts ([`crate::graph::Conv::weights`]):
//!   `N.weight` and `N.bias` for each convolution `N`.
//!
//! A graph file is a model file like any other: a bundle attaches it as a head at a tap of its
//! backbone (`model = "person.head.safetensors"`, `input = "TAP"`), and every engine path runs
//! it. Ops it can hold: convolutions (grouped, depthwise, strided, dilated), transposed
//! convolutions, pools, global average pool, resize, activations, add, mul and concat. Nothing
//! is allocated for a node before its tensors are checked to hold exactly the values its
//! attributes need, and each node passes [`crate::graph::check_node`].

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::graph::{
    Activation, BinaryKind, CoordMode, Graph, GraphBuilder, Op, PoolKind, ResizeMode, Shape, Window,
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
    pub input: InputSpec,
    /// Names of the output nodes.
    pub outputs: Vec<String>,
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
    pub op: OpSpec,
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

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActivationSpec {
    Identity,
    Relu,
    Clip { min: f32, max: f32 },
    HardSigmoid { alpha: f32, beta: f32 },
    HardSwish { alpha: f32, beta: f32 },
    Sigmoid,
}

impl From<Activation> for ActivationSpec {
    fn from(a: Activation) -> Self {
        match a {
            Activation::Identity => Self::Identity,
            Activation::Relu => Self::Relu,
            Activation::Clip { min, max } => Self::Clip { min, max },
            Activation::HardSigmoid { alpha, beta } => Self::HardSigmoid { alpha, beta },
            Activation::HardSwish { alpha, beta } => Self::HardSwish { alpha, beta },
            Activation::Sigmoid => Self::Sigmoid,
        }
    }
}

impl From<ActivationSpec> for Activation {
    fn from(a: ActivationSpec) -> Self {
        match a {
            ActivationSpec::Identity => Self::Identity,
            ActivationSpec::Relu => Self::Relu,
            ActivationSpec::Clip { min, max } => Self::Clip { min, max },
            ActivationSpec::HardSigmoid { alpha, beta } => Self::HardSigmoid { alpha, beta },
            ActivationSpec::HardSwish { alpha, beta } => Self::HardSwish { alpha, beta },
            ActivationSpec::Sigmoid => Self::Sigmoid,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeModeSpec {
    Linear,
    Nearest,
    NearestFloor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoordSpec {
    HalfPixel,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OpSpec {
    Conv { window: WindowSpec, groups: usize, cout: usize, activation: ActivationSpec },
    ConvTranspose { window: WindowSpec, cout: usize, activation: ActivationSpec },
    MaxPool { window: WindowSpec },
    AvgPool { window: WindowSpec, count_include_pad: bool },
    GlobalAvgPool,
    /// To `[h, w]`.
    Resize { size: [usize; 2], mode: ResizeModeSpec, coord: CoordSpec },
    Activation { activation: ActivationSpec },
    Add { activation: ActivationSpec },
    Mul { activation: ActivationSpec },
    Concat,
}

/// Whether `bytes` are a graph file: a safetensors header with the manifest key.
pub fn is_graph_file(bytes: &[u8]) -> bool {
    SafeTensors::read_metadata(bytes).is_ok_and(|(_, m)| m.metadata().as_ref().is_some_and(|m| m.contains_key(KEY)))
}

/// The manifest of `graph` and its tensors. Every node name must be unique, and every op one
/// the format holds (a fused residual add, a bottleneck or an int8 convolution is not).
fn describe(graph: &Graph, description: &str) -> Result<(Manifest, Vec<(String, Vec<usize>, Vec<f32>)>)> {
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
    for node in &graph.nodes[1..] {
        if node.op.residual().is_some() {
            return Err(unsupported(node, "a fused residual add"));
        }
        let op = match &node.op {
            Op::Conv(c) => {
                if c.quant.is_some() {
                    return Err(unsupported(node, "an int8 convolution"));
                }
                tensors.push((format!("{}.weight", node.name), vec![c.weights.len()], c.weights.clone()));
                tensors.push((format!("{}.bias", node.name), vec![c.bias.len()], c.bias.clone()));
                OpSpec::Conv {
                    window: c.window.into(),
                    groups: c.groups,
                    cout: c.cout,
                    activation: c.activation.into(),
                }
            }
            Op::ConvTranspose(c) => {
                tensors.push((format!("{}.weight", node.name), vec![c.weights.len()], c.weights.clone()));
                tensors.push((format!("{}.bias", node.name), vec![c.bias.len()], c.bias.clone()));
                OpSpec::ConvTranspose { window: c.window.into(), cout: c.cout, activation: c.activation.into() }
            }
            Op::Pool { kind: PoolKind::Max, window } => OpSpec::MaxPool { window: (*window).into() },
            Op::Pool { kind: PoolKind::Avg { count_include_pad }, window } => {
                OpSpec::AvgPool { window: (*window).into(), count_include_pad: *count_include_pad }
            }
            Op::GlobalAvgPool => OpSpec::GlobalAvgPool,
            Op::Resize { mode, coord } => OpSpec::Resize {
                size: [node.shape.h, node.shape.w],
                mode: match mode {
                    ResizeMode::Linear => ResizeModeSpec::Linear,
                    ResizeMode::Nearest { floor: false } => ResizeModeSpec::Nearest,
                    ResizeMode::Nearest { floor: true } => ResizeModeSpec::NearestFloor,
                },
                coord: match coord {
                    CoordMode::HalfPixel => CoordSpec::HalfPixel,
                    CoordMode::PytorchHalfPixel => CoordSpec::PytorchHalfPixel,
                    CoordMode::AlignCorners => CoordSpec::AlignCorners,
                    CoordMode::Asymmetric => CoordSpec::Asymmetric,
                },
            },
            Op::Unary(a) => OpSpec::Activation { activation: (*a).into() },
            Op::Binary { kind: BinaryKind::Add, activation, .. } => OpSpec::Add { activation: (*activation).into() },
            Op::Binary { kind: BinaryKind::Mul, activation, .. } => OpSpec::Mul { activation: (*activation).into() },
            Op::Concat => OpSpec::Concat,
            other => return Err(unsupported(node, &format!("a {} node", other.name()))),
        };
        let inputs = node.inputs.iter().map(|&j| graph.nodes[j].name.clone()).collect();
        nodes.push(NodeSpec { name: node.name.clone(), inputs, op });
    }
    let input = &graph.nodes[0];
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        description: description.into(),
        input: InputSpec { name: input.name.clone(), shape: [input.shape.h, input.shape.w, input.shape.c] },
        outputs: graph.outputs.iter().map(|o| graph.nodes[o.node].name.clone()).collect(),
        node: nodes,
    };
    Ok((manifest, tensors))
}

/// The graph file's bytes for `graph` (unfused, unpacked: as [`GraphBuilder`] makes it).
pub fn to_bytes(graph: &Graph, description: &str) -> Result<Vec<u8>> {
    let invalid = |reason: String| Error::InvalidModel { node: "<graph file>".into(), op: "write".into(), reason };
    let (manifest, tensors) = describe(graph, description)?;
    let text = toml::to_string(&manifest).map_err(|e| invalid(format!("cannot write the manifest: {e}")))?;
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), data)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| invalid(format!("tensor {name}: {e}")))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, Some(HashMap::from([(KEY.to_string(), text)])))
        .map_err(|e| invalid(format!("cannot serialize the tensors: {e}")))
}

/// Loads a graph file (`bytes`, read from `path`, which names it in errors).
pub fn load(bytes: &[u8], path: &Path) -> Result<Graph> {
    let bad = |reason: String| Error::ModelFile { path: path.to_owned(), reason, source: None };
    let (_, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| Error::model_file(path, "not a safetensors file", e))?;
    let text = meta.metadata().as_ref().and_then(|m| m.get(KEY)).ok_or_else(|| bad(format!("no '{KEY}' manifest")))?;
    let manifest: Manifest =
        toml::from_str(text).map_err(|e| Error::model_file(path, "the graph manifest is not valid", e))?;
    if manifest.format != FORMAT || manifest.version != VERSION {
        return Err(bad(format!(
            "format {} version {} (this engine reads {FORMAT} version {VERSION})",
            manifest.format, manifest.version
        )));
    }
    let file = SafeTensors::deserialize(bytes).map_err(|e| Error::model_file(path, "not a safetensors file", e))?;
    let [h, w, c] = manifest.input.shape;
    crate::graph::check_shape(Shape::new(h, w, c))
        .map_err(|reason| bad(format!("input {}: {reason}", manifest.input.name)))?;
    let mut b = GraphBuilder::new(h, w, c);
    b.rename(0, manifest.input.name.clone());
    let mut ids = HashMap::from([(manifest.input.name.clone(), 0usize)]);
    for spec in &manifest.node {
        let invalid =
            |reason: String| Error::InvalidModel { node: spec.name.clone(), op: format!("{:?}", spec.op), reason };
        let inputs = spec
            .inputs
            .iter()
            .map(|n| ids.get(n).copied().ok_or_else(|| invalid(format!("input '{n}' is not an earlier node"))))
            .collect::<Result<Vec<_>>>()?;
        let arity = match spec.op {
            OpSpec::Add { .. } | OpSpec::Mul { .. } => 2,
            OpSpec::Concat => inputs.len().max(1),
            _ => 1,
        };
        if inputs.len() != arity {
            return Err(invalid(format!("{} inputs, expected {arity}", inputs.len())));
        }
        // The values a weighted op's tensors must hold, checked before anything is allocated.
        let weights = |per: Option<usize>, cout: usize| -> Result<Vec<f32>> {
            let read = |suffix: &str, want: Option<usize>| -> Result<Vec<f32>> {
                let name = format!("{}.{suffix}", spec.name);
                let t = file.tensor(&name).map_err(|_| invalid(format!("no tensor {name}")))?;
                let n = t.data().len() / 4;
                if t.dtype() != Dtype::F32 || Some(n) != want || t.data().len() % 4 != 0 {
                    return Err(invalid(format!("tensor {name}: {:?} x {n}, expected F32 x {want:?}", t.dtype())));
                }
                Ok(t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
            };
            let mut v = read("weight", per)?;
            v.extend(read("bias", Some(cout))?);
            Ok(v)
        };
        let x = inputs[0];
        let s = b.shape(x);
        let id = match &spec.op {
            OpSpec::Conv { window, groups, cout, activation } => {
                let win = Window::from(*window);
                let n = (win.kh.checked_mul(win.kw))
                    .and_then(|k| k.checked_mul(s.c.checked_div(*groups)?))
                    .and_then(|k| k.checked_mul(*cout));
                let mut v = weights(n, *cout)?.into_iter();
                b.conv(x, *cout, win, *groups, (*activation).into(), &mut || v.next().unwrap_or(0.0))?
            }
            OpSpec::ConvTranspose { window, cout, activation } => {
                let win = Window::from(*window);
                let n = (win.kh.checked_mul(win.kw)).and_then(|k| k.checked_mul(s.c)).and_then(|k| k.checked_mul(*cout));
                let mut v = weights(n, *cout)?.into_iter();
                b.conv_transpose(x, *cout, win, (*activation).into(), &mut || v.next().unwrap_or(0.0))?
            }
            OpSpec::MaxPool { window } => b.pool(x, PoolKind::Max, (*window).into())?,
            OpSpec::AvgPool { window, count_include_pad } => {
                b.pool(x, PoolKind::Avg { count_include_pad: *count_include_pad }, (*window).into())?
            }
            OpSpec::GlobalAvgPool => b.global_avg_pool(x)?,
            OpSpec::Resize { size, mode, coord } => {
                let mode = match mode {
                    ResizeModeSpec::Linear => ResizeMode::Linear,
                    ResizeModeSpec::Nearest => ResizeMode::Nearest { floor: false },
                    ResizeModeSpec::NearestFloor => ResizeMode::Nearest { floor: true },
                };
                let coord = match coord {
                    CoordSpec::HalfPixel => CoordMode::HalfPixel,
                    CoordSpec::PytorchHalfPixel => CoordMode::PytorchHalfPixel,
                    CoordSpec::AlignCorners => CoordMode::AlignCorners,
                    CoordSpec::Asymmetric => CoordMode::Asymmetric,
                };
                b.resize(x, size[0], size[1], mode, coord)?
            }
            OpSpec::Activation { activation } => b.unary(x, (*activation).into())?,
            OpSpec::Add { activation } => b.binary(x, inputs[1], BinaryKind::Add, (*activation).into())?,
            OpSpec::Mul { activation } => b.binary(x, inputs[1], BinaryKind::Mul, (*activation).into())?,
            OpSpec::Concat => b.concat(&inputs)?,
        };
        if ids.insert(spec.name.clone(), id).is_some() {
            return Err(invalid("a second node of this name".into()));
        }
        b.rename(id, spec.name.clone());
    }
    if manifest.outputs.is_empty() {
        return Err(bad("no outputs".into()));
    }
    for o in &manifest.outputs {
        let id = *ids.get(o).ok_or_else(|| bad(format!("output '{o}' is not a node")))?;
        b.output(id);
    }
    let mut graph = b.build();
    graph.input_name = manifest.input.name;
    Ok(graph)
}
