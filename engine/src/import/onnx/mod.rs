//! The ONNX importer: initializers checked and loaded, nodes converted one by one into the
//! IR (each checked with [`crate::graph::check_node`] as it is added), activations and
//! BatchNormalization fused where the producer has no other consumer.
//!
//! This module holds the walk over the nodes and the value bookkeeping; the ops are converted
//! by concern: `conv` (convolutions, BatchNormalization, Gemm and their weight re-layouts),
//! `elementwise`, `spatial` (pooling, Resize, Pad) and `views` (Transpose, Reshape,
//! Concat), with node attributes in `attrs` and initializers in `tensors`.

mod attrs;
mod conv;
mod elementwise;
mod fold;
mod spatial;
mod tensors;
mod views;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use tract_onnx::pb;
use tract_onnx::prelude::{Framework, Tensor};

use attrs::Ctx;
use elementwise::BinaryOnnx;
use tensors::load_tensor;

use super::ImportOptions;
use crate::error::{Error, Result};
use crate::graph::{check_node, Activation, Graph, GraphOutput, Node, Op, Shape, MAX_DIM};

/// Loads an ONNX model file into the engine's IR ([`crate::import::load_model`] loads ONNX
/// and TFLite files, with options).
pub fn load_onnx(path: impl AsRef<Path>) -> Result<Graph> {
    let path = path.as_ref();
    let bytes =
        crate::files::read(path, crate::files::MAX_MODEL_BYTES).map_err(|e| Error::model_file(path, "I/O error", e))?;
    load_bytes(&bytes, path, ImportOptions::default())
}

/// Loads an ONNX model from memory (for the mobile ABI and for tests).
pub fn load_onnx_bytes(bytes: &[u8]) -> Result<Graph> {
    load_bytes(bytes, Path::new("<memory>"), ImportOptions::default())
}

pub(super) fn load_bytes(bytes: &[u8], path: &Path, options: ImportOptions) -> Result<Graph> {
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &*bytes)
        .map_err(|e| Error::model_file(path, "not an ONNX protobuf", e))?;
    let graph = proto.graph.as_ref().ok_or_else(|| Error::ModelFile {
        path: path.to_owned(),
        reason: "the file holds no graph".into(),
        source: None,
    })?;
    // The default-domain opset: some ops changed their defaults with it (Softmax's axis).
    let opset =
        proto.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map_or(1, |o| o.version);
    let mut importer = Importer::new(graph, path)?;
    importer.opset = opset;
    let graph = importer.run(graph, options)?;
    graph.validate()?;
    Ok(graph)
}
/// What an ONNX value name refers to during import.
#[derive(Clone)]
enum Value {
    /// Output of an IR node. `view` is `None` for an NCHW map (held NHWC), or the ONNX dims
    /// when the buffer is read row-major as a tensor of those dims: a `[1, C]` vector after
    /// Flatten or Gemm, or a map transposed to NHWC and reshaped (SSD and landmark heads).
    Node {
        id: usize,
        view: Option<Vec<usize>>,
    },
    Const(Tensor),
}

struct Importer {
    nodes: Vec<Node>,
    values: HashMap<String, Value>,
    uses: HashMap<String, usize>,
    graph_outputs: HashSet<String>,
    /// Op types of the nodes reading each value.
    readers: HashMap<String, Vec<String>>,
    /// Per IR node, the reads of it that only gave it another name ([`Importer::alias`]).
    alias_reads: HashMap<usize, usize>,
    /// Spatial zero padding of a Pad node, waiting to be folded into the Conv that reads it.
    pending_pads: HashMap<String, [usize; 4]>,
    input_name: String,
    /// The model's default-domain opset version.
    opset: i64,
}

impl Importer {
    fn new(graph: &pb::GraphProto, path: &Path) -> Result<Self> {
        let mut values = HashMap::new();
        let dir = path.parent().and_then(|p| p.to_str());
        for init in &graph.initializer {
            let t = load_tensor(init, dir).map_err(|reason| Error::InvalidModel {
                node: init.name.clone(),
                op: "initializer".into(),
                reason,
            })?;
            values.insert(init.name.clone(), Value::Const(t));
        }
        let mut uses = HashMap::new();
        let mut readers: HashMap<String, Vec<String>> = HashMap::new();
        for n in &graph.node {
            for i in n.input.iter().filter(|i| !i.is_empty()) {
                *uses.entry(i.clone()).or_insert(0) += 1;
                readers.entry(i.clone()).or_default().push(n.op_type.clone());
            }
        }
        let graph_outputs = graph.output.iter().map(|o| o.name.clone()).collect();
        Ok(Self {
            nodes: Vec::new(),
            values,
            uses,
            graph_outputs,
            readers,
            pending_pads: HashMap::new(),
            alias_reads: HashMap::new(),
            input_name: String::new(),
            opset: 1,
        })
    }

    fn run(mut self, graph: &pb::GraphProto, options: ImportOptions) -> Result<Graph> {
        let inputs: Vec<&pb::ValueInfoProto> =
            graph.input.iter().filter(|i| !self.values.contains_key(&i.name)).collect();
        let input = match inputs.as_slice() {
            [one] => *one,
            other => {
                return Err(Error::InvalidModel {
                    node: "<graph>".into(),
                    op: "input".into(),
                    reason: format!("expected exactly one image input, found {}", other.len()),
                })
            }
        };
        let shape = input_shape(input, options)?;
        self.input_name = input.name.clone();
        self.push(input.name.clone(), Op::Input, vec![], shape).map_err(|reason| Error::InvalidModel {
            node: input.name.clone(),
            op: "input".into(),
            reason,
        })?;
        self.values.insert(input.name.clone(), Value::Node { id: 0, view: None });

        for (i, node) in graph.node.iter().enumerate() {
            let name = if node.name.is_empty() {
                node.output.first().cloned().unwrap_or_else(|| format!("#{i}"))
            } else {
                node.name.clone()
            };
            let ctx = Ctx { node, name };
            self.import_node(&ctx)?;
        }

        let mut outputs = Vec::new();
        for out in &graph.output {
            match self.values.get(&out.name) {
                Some(Value::Node { id, view }) => {
                    let s = self.nodes[*id].shape;
                    let (onnx_shape, nchw) = match view {
                        Some(dims) => (dims.clone(), false),
                        None => (vec![1, s.c, s.h, s.w], true),
                    };
                    outputs.push(GraphOutput { name: out.name.clone(), node: *id, onnx_shape, nchw });
                }
                _ => {
                    return Err(Error::InvalidModel {
                        node: out.name.clone(),
                        op: "output".into(),
                        reason: "graph output is a constant or is never produced".into(),
                    })
                }
            }
        }
        let tensors = self
            .values
            .into_iter()
            .filter_map(|(name, v)| match v {
                Value::Node { id, .. } => Some((name, id)),
                Value::Const(_) => None,
            })
            .collect();
        let mut graph = Graph { input_name: self.input_name, nodes: self.nodes, outputs, tensors };
        crate::graph::fuse::hard_swish(&mut graph);
        Ok(graph)
    }

    /// Appends a node after checking it ([`check_node`]) against the nodes before it; the
    /// error is the reason.
    fn push(&mut self, name: String, op: Op, inputs: Vec<usize>, shape: Shape) -> std::result::Result<usize, String> {
        let node = Node { name, op, inputs, shape };
        check_node(&self.nodes, &node)?;
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    fn node_input(&self, ctx: &Ctx<'_>, i: usize) -> Result<(usize, bool)> {
        let name =
            ctx.node.input.get(i).filter(|n| !n.is_empty()).ok_or_else(|| ctx.invalid(format!("missing input {i}")))?;
        match self.values.get(name) {
            Some(Value::Node { id, view: Some(dims) }) if self.nodes[*id].shape.pixels() > 1 => Err(ctx.invalid(
                format!("input {i} ('{name}') is a reshaped view {dims:?} of a map; only Reshape, Transpose and Concat may read it"),
            )),
            Some(Value::Node { id, view }) => Ok((*id, view.is_some())),
            Some(Value::Const(_)) => {
                Err(ctx.invalid(format!("input {i} ('{name}') is a constant; a computed tensor was expected")))
            }
            None => Err(ctx.invalid(format!("input {i} ('{name}') is not produced by any earlier node"))),
        }
    }

    fn const_input(&self, ctx: &Ctx<'_>, i: usize) -> Result<Option<&Tensor>> {
        let Some(name) = ctx.node.input.get(i).filter(|n| !n.is_empty()) else { return Ok(None) };
        match self.values.get(name) {
            Some(Value::Const(t)) => Ok(Some(t)),
            _ => Err(ctx.invalid(format!("input {i} ('{name}') must be a constant initializer"))),
        }
    }

    /// The view dims of input `i` (`None` for an NCHW map or a non-node value).
    fn view_of(&self, ctx: &Ctx<'_>, i: usize) -> Option<Vec<usize>> {
        match ctx.node.input.get(i).and_then(|n| self.values.get(n)) {
            Some(Value::Node { view, .. }) => view.clone(),
            _ => None,
        }
    }

    /// Input `i` as a row-major tensor: its node and ONNX dims (an NCHW map whose buffer is
    /// NHWC reads row-major only when it has one pixel or one channel).
    fn row_major_input(&self, ctx: &Ctx<'_>, i: usize) -> Result<(usize, Vec<usize>, bool)> {
        let name = ctx.node.input.get(i).ok_or_else(|| ctx.invalid(format!("missing input {i}")))?;
        match self.values.get(name) {
            Some(Value::Node { id, view: Some(dims) }) => Ok((*id, dims.clone(), true)),
            Some(Value::Node { id, view: None }) => {
                let s = self.nodes[*id].shape;
                Ok((*id, vec![1, s.c, s.h, s.w], s.pixels() == 1 || s.c == 1))
            }
            _ => Err(ctx.invalid(format!("input {i} ('{name}') is not produced by any earlier node"))),
        }
    }

    fn is_const(&self, ctx: &Ctx<'_>, i: usize) -> bool {
        ctx.node.input.get(i).is_some_and(|n| matches!(self.values.get(n), Some(Value::Const(_))))
    }

    fn set_output(&mut self, ctx: &Ctx<'_>, value: Value) -> Result<()> {
        let out = ctx.node.output.first().ok_or_else(|| ctx.invalid("node has no output"))?;
        self.values.insert(out.clone(), value);
        Ok(())
    }

    fn emit(&mut self, ctx: &Ctx<'_>, op: Op, inputs: Vec<usize>, shape: Shape) -> Result<()> {
        let id = self.push(ctx.name.clone(), op, inputs, shape).map_err(|r| ctx.invalid(r))?;
        self.set_output(ctx, Value::Node { id, view: None })
    }

    /// The producer of input 0 if this node may be fused into it: a single consumer and not a
    /// graph output.
    ///
    /// Consumers are counted per IR node, not per ONNX name: Identity, Dropout, Flatten, zero
    /// Pad, views and fused ops give one node several names, and a reader of any of them
    /// reads the node. The reads that only made such a name are not consumers.
    fn fusable_producer(&self, ctx: &Ctx<'_>) -> Option<usize> {
        let Some(Value::Node { id, .. }) = self.values.get(ctx.node.input.first()?) else { return None };
        let mut readers = 0;
        for (name, v) in &self.values {
            if matches!(v, Value::Node { id: j, .. } if j == id) {
                if self.graph_outputs.contains(name) {
                    return None;
                }
                readers += self.uses.get(name).copied().unwrap_or(0);
            }
        }
        (readers - self.alias_reads.get(id).copied().unwrap_or(0) == 1).then_some(*id)
    }

    /// Sets this node's output to another name of an existing value (no new IR node).
    fn alias(&mut self, ctx: &Ctx<'_>, value: Value) -> Result<()> {
        if let Value::Node { id, .. } = value {
            *self.alias_reads.entry(id).or_insert(0) += 1;
        }
        self.set_output(ctx, value)
    }

    fn import_node(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        if self.foldable(ctx) {
            return self.fold(ctx);
        }
        match ctx.node.op_type.as_str() {
            "Shape" => self.shape_of(ctx),
            "Conv" => self.conv(ctx),
            "ConvTranspose" => self.conv_transpose(ctx),
            "BatchNormalization" => self.batch_norm(ctx),
            "Relu" => self.activation(ctx, Activation::Relu, &[]),
            "Sigmoid" => self.activation(ctx, Activation::Sigmoid, &[]),
            "HardSigmoid" => {
                let a = Activation::HardSigmoid { alpha: ctx.float("alpha", 0.2), beta: ctx.float("beta", 0.5) };
                self.activation(ctx, a, &["alpha", "beta"])
            }
            "HardSwish" => self.activation(ctx, Activation::HardSwish { alpha: 1.0 / 6.0, beta: 0.5 }, &[]),
            "Clip" => self.clip(ctx),
            "Add" => self.binary(ctx, BinaryOnnx::Add),
            "Mul" => self.binary(ctx, BinaryOnnx::Mul),
            "Sub" => self.binary(ctx, BinaryOnnx::Sub),
            "Div" => self.binary(ctx, BinaryOnnx::Div),
            "PRelu" => self.prelu(ctx),
            "Softmax" => self.softmax(ctx),
            "ReduceMean" => self.reduce_mean(ctx),
            "MatMul" => self.gemm(ctx),
            "AveragePool" => self.pool(ctx, false),
            "MaxPool" => self.pool(ctx, true),
            "GlobalAveragePool" => {
                ctx.check_attrs(&[])?;
                let (x, _) = self.node_input(ctx, 0)?;
                let c = self.nodes[x].shape.c;
                self.emit(ctx, Op::GlobalAvgPool, vec![x], Shape::new(1, 1, c))
            }
            "Flatten" => {
                ctx.check_attrs(&["axis"])?;
                if ctx.int("axis", 1) != 1 {
                    return Err(ctx.unsupported("axis", "only axis=1 is supported"));
                }
                let (x, dims, row_major) = self.row_major_input(ctx, 0)?;
                if !row_major {
                    return Err(
                        ctx.invalid(format!("Flatten of a {dims:?} map is not supported (only 1x1 spatial maps)"))
                    );
                }
                let n = crate::graph::product(&dims[1..]).ok_or_else(|| ctx.invalid("dims overflow"))?;
                self.alias(ctx, Value::Node { id: x, view: Some(vec![dims[0], n]) })
            }
            "Identity" | "Dropout" => {
                ctx.check_attrs(&["seed", "ratio"])?;
                let v = ctx
                    .node
                    .input
                    .first()
                    .and_then(|i| self.values.get(i))
                    .cloned()
                    .ok_or_else(|| ctx.invalid("input 0 is missing or not produced by any earlier node"))?;
                self.alias(ctx, v)
            }
            "Gemm" => self.gemm(ctx),
            "Resize" => self.resize(ctx),
            "Concat" => self.concat(ctx),
            "Pad" => self.pad(ctx),
            "Transpose" => self.transpose(ctx),
            "Reshape" => self.reshape(ctx),
            "Constant" => {
                ctx.check_attrs(&["value"])?;
                let t = ctx
                    .attr("value")
                    .and_then(|a| a.t.as_ref())
                    .ok_or_else(|| ctx.unsupported("value", "only tensor constants are supported"))?;
                let t = load_tensor(t, None).map_err(|e| ctx.invalid(e))?;
                self.set_output(ctx, Value::Const(t))
            }
            other => Err(Error::UnsupportedOp { node: ctx.name.clone(), op: other.to_owned() }),
        }
    }
}

/// The input's NHWC shape: a dynamic (or 1) batch dim is 1; dynamic spatial dims take
/// [`ImportOptions::dynamic_size`], and an explicit `input_size` replaces static ones too.
fn input_shape(input: &pb::ValueInfoProto, options: ImportOptions) -> Result<Shape> {
    let bad = |reason: String| Error::InvalidModel { node: input.name.clone(), op: "input".into(), reason };
    let dims: Vec<i64> = input
        .r#type
        .as_ref()
        .and_then(|t| t.value.as_ref())
        .and_then(|pb::type_proto::Value::TensorType(t)| t.shape.as_ref())
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) if *v > 0 => *v,
                    _ => -1,
                })
                .collect()
        })
        .ok_or_else(|| bad("input has no tensor shape".into()))?;
    let ok = |d: i64| (1..=MAX_DIM as i64).contains(&d);
    let [n, c, h, w] = dims.as_slice() else {
        return Err(bad(format!("input shape {dims:?}: a [N, C, H, W] image input is required")));
    };
    if !(*n == 1 || *n == -1) || !ok(*c) {
        return Err(bad(format!("input shape {dims:?}: a [1, C, H, W] image input with static C is required")));
    }
    let dynamic = *h == -1 || *w == -1;
    let (h, w) = match options.dynamic_size() {
        None if dynamic => {
            return Err(bad(format!(
                "input shape {dims:?} has dynamic spatial dims: give the size (`input_size = [W, H]` in the \
                 sidecar, or --input-size WxH)"
            )))
        }
        Some(((sw, sh), explicit)) if dynamic || explicit => {
            let (sw, sh) = (sw as i64, sh as i64);
            if !ok(sw) || !ok(sh) {
                return Err(bad(format!("input size {sw}x{sh} is outside 1..={MAX_DIM} per side")));
            }
            // Static dims give way to an explicit size: a fully convolutional model runs at any
            // size, and a node whose shape depends on it (a Reshape to fixed dims, a dense layer
            // on a flattened map) fails below with its name.
            (sh, sw)
        }
        _ => (*h, *w),
    };
    if !ok(h) || !ok(w) {
        return Err(bad(format!("input shape {dims:?}: a [1, C, H, W] image input is required")));
    }
    Ok(Shape::new(h as usize, w as usize, *c as usize))
}
