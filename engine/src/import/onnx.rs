//! The ONNX importer: initializers checked and loaded, nodes converted one by one into the
//! IR (each checked with [`crate::graph::check_node`] as it is added), activations and
//! BatchNormalization fused where the producer has no other consumer.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use tract_onnx::pb::{self, NodeProto};
use tract_onnx::prelude::{Framework, Tensor};

use crate::error::{Error, Result};
use crate::graph::{
    check_node, product, Activation, BinaryKind, Conv, ConvTranspose, CoordMode, Dense, Graph, GraphOutput, Node, Op,
    PoolKind, ResizeMode, Shape, Window, MAX_DIM, MAX_TENSOR_VALUES,
};

/// Loads an ONNX model file into the engine's IR.
pub fn load_onnx(path: impl AsRef<Path>) -> Result<Graph> {
    let path = path.as_ref();
    let bytes = crate::files::read(path, crate::files::MAX_MODEL_BYTES)
        .map_err(|e| Error::ModelFile { path: path.to_owned(), reason: e.to_string() })?;
    load_bytes(&bytes, path)
}

/// Loads an ONNX model from memory (for the mobile ABI and for tests).
pub fn load_onnx_bytes(bytes: &[u8]) -> Result<Graph> {
    load_bytes(bytes, Path::new("<memory>"))
}

fn load_bytes(bytes: &[u8], path: &Path) -> Result<Graph> {
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &*bytes)
        .map_err(|e| Error::ModelFile { path: path.to_owned(), reason: format!("{e:#}") })?;
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| Error::ModelFile { path: path.to_owned(), reason: "the file holds no graph".into() })?;
    let graph = Importer::new(graph, path)?.run(graph)?;
    graph.validate()?;
    Ok(graph)
}

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
fn is_numeric(data_type: i32) -> bool {
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
fn load_tensor(t: &pb::TensorProto, dir: Option<&str>) -> std::result::Result<Tensor, String> {
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
}

struct Ctx<'a> {
    node: &'a NodeProto,
    name: String,
}

impl Ctx<'_> {
    fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidModel { node: self.name.clone(), op: self.node.op_type.clone(), reason: reason.into() }
    }
    fn unsupported(&self, attribute: &str, reason: impl Into<String>) -> Error {
        Error::UnsupportedAttribute {
            node: self.name.clone(),
            op: self.node.op_type.clone(),
            attribute: attribute.into(),
            reason: reason.into(),
        }
    }
    fn attr(&self, name: &str) -> Option<&pb::AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }
    /// Rejects any attribute not in `known`.
    fn check_attrs(&self, known: &[&str]) -> Result<()> {
        match self.node.attribute.iter().find(|a| !known.contains(&a.name.as_str())) {
            Some(a) => Err(self.unsupported(&a.name, "attribute not implemented")),
            None => Ok(()),
        }
    }
    fn int(&self, name: &str, default: i64) -> i64 {
        self.attr(name).map_or(default, |a| a.i)
    }
    fn float(&self, name: &str, default: f32) -> f32 {
        self.attr(name).map_or(default, |a| a.f)
    }
    fn string(&self, name: &str, default: &str) -> String {
        self.attr(name).map_or(default.to_owned(), |a| String::from_utf8_lossy(&a.s).into_owned())
    }
    fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.attr(name).map(|a| a.ints.clone())
    }
    /// A 2-element spatial attribute (strides, dilations, kernel_shape), all >= 1.
    fn pair(&self, name: &str, default: usize) -> Result<(usize, usize)> {
        match self.ints(name) {
            None => Ok((default, default)),
            Some(v) if v.len() == 2 && v.iter().all(|&x| (1..=MAX_DIM as i64).contains(&x)) => {
                Ok((v[0] as usize, v[1] as usize))
            }
            Some(v) => {
                Err(self.unsupported(name, format!("expected two values in 1..={MAX_DIM} for a 2-D op, got {v:?}")))
            }
        }
    }
    fn pads(&self) -> Result<[usize; 4]> {
        match self.ints("pads") {
            None => Ok([0; 4]),
            Some(v) if v.len() == 4 && v.iter().all(|&x| (0..=MAX_DIM as i64).contains(&x)) => {
                // ONNX order: top, left, bottom, right.
                Ok([v[0] as usize, v[1] as usize, v[2] as usize, v[3] as usize])
            }
            Some(v) => Err(self.unsupported("pads", format!("expected 4 values in 0..={MAX_DIM}, got {v:?}"))),
        }
    }
}

fn f32_data(t: &Tensor) -> Option<Vec<f32>> {
    let t = t.cast_to::<f32>().ok()?;
    Some(t.to_plain_array_view::<f32>().ok()?.iter().copied().collect())
}

fn i64_data(t: &Tensor) -> Option<Vec<i64>> {
    let t = t.cast_to::<i64>().ok()?;
    Some(t.to_plain_array_view::<i64>().ok()?.iter().copied().collect())
}

/// Window padding for `auto_pad`, given the input size.
fn auto_pads(
    ctx: &Ctx<'_>,
    input: Shape,
    k: (usize, usize),
    s: (usize, usize),
    d: (usize, usize),
) -> Result<Option<[usize; 4]>> {
    let mode = ctx.string("auto_pad", "NOTSET");
    let same = |n: usize, k: usize, s: usize, d: usize, upper: bool| {
        let out = n.div_ceil(s);
        let need = ((out - 1) * s + d * (k - 1) + 1).saturating_sub(n);
        if upper {
            (need / 2, need - need / 2)
        } else {
            (need - need / 2, need / 2)
        }
    };
    match mode.as_str() {
        "NOTSET" => Ok(None),
        "VALID" => Ok(Some([0; 4])),
        "SAME_UPPER" | "SAME_LOWER" => {
            let upper = mode == "SAME_UPPER";
            let (t, b) = same(input.h, k.0, s.0, d.0, upper);
            let (l, r) = same(input.w, k.1, s.1, d.1, upper);
            Ok(Some([t, l, b, r]))
        }
        other => Err(ctx.unsupported("auto_pad", format!("unknown mode '{other}'"))),
    }
}

/// Strides, dilations and padding (explicit or `auto_pad`) of a conv or pool window.
fn window(ctx: &Ctx<'_>, input: Shape, kh: usize, kw: usize) -> Result<Window> {
    let (sh, sw) = ctx.pair("strides", 1)?;
    let (dh, dw) = ctx.pair("dilations", 1)?;
    let pad = match auto_pads(ctx, input, (kh, kw), (sh, sw), (dh, dw))? {
        Some(p) => p,
        None => ctx.pads()?,
    };
    Ok(Window { kh, kw, sh, sw, dh, dw, pad })
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
        })
    }

    fn run(mut self, graph: &pb::GraphProto) -> Result<Graph> {
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
        let shape = input_shape(input)?;
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
        match ctx.node.op_type.as_str() {
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
            "Add" => self.binary(ctx, BinaryKind::Add),
            "Mul" => self.binary(ctx, BinaryKind::Mul),
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
                let (x, _) = self.node_input(ctx, 0)?;
                let s = self.nodes[x].shape;
                if ctx.int("axis", 1) != 1 {
                    return Err(ctx.unsupported("axis", "only axis=1 is supported"));
                }
                if s.h != 1 || s.w != 1 {
                    return Err(ctx.invalid(format!("Flatten of a {s} map is not supported (only 1x1 spatial maps)")));
                }
                self.alias(ctx, Value::Node { id: x, view: Some(vec![1, s.c]) })
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

    fn conv(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        ctx.check_attrs(&["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"])?;
        let (x, _) = self.node_input(ctx, 0)?;
        let input = self.nodes[x].shape;
        let w = self.const_input(ctx, 1)?.ok_or_else(|| ctx.invalid("missing weights"))?;
        let ws = w.shape().to_vec();
        if ws.len() != 4 {
            return Err(ctx.invalid(format!("weights of shape {ws:?}: only 2-D convolutions are supported")));
        }
        let (cout, cin_g, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
        if ws.iter().any(|&d| d == 0 || d > MAX_DIM) {
            return Err(ctx.invalid(format!("weights of shape {ws:?}: every dimension must be in 1..={MAX_DIM}")));
        }
        let groups = ctx.int("group", 1);
        if groups < 1 || input.c as i64 % groups != 0 || cout as i64 % groups != 0 {
            return Err(ctx.unsupported(
                "group",
                format!("group={groups} does not divide {} input and {cout} output channels", input.c),
            ));
        }
        let groups = groups as usize;
        if cin_g * groups != input.c {
            return Err(ctx.invalid(format!(
                "weights expect {} input channels, input has {}",
                cin_g * groups,
                input.c
            )));
        }
        if let Some(k) = ctx.ints("kernel_shape") {
            if k != [kh as i64, kw as i64] {
                return Err(ctx.unsupported("kernel_shape", format!("{k:?} disagrees with weights {ws:?}")));
            }
        }
        let mut window = window(ctx, input, kh, kw)?;
        if let Some(extra) = ctx.node.input.first().and_then(|n| self.pending_pads.get(n)) {
            for (p, e) in window.pad.iter_mut().zip(extra) {
                *p = p.checked_add(*e).filter(|&p| p <= MAX_DIM).ok_or_else(|| {
                    ctx.invalid(format!("padding with the Pad before it is over the limit of {MAX_DIM}"))
                })?;
            }
        }
        let (oh, ow) = window
            .output_hw(input.h, input.w, false)
            .ok_or_else(|| ctx.invalid(format!("kernel does not fit input {input}")))?;
        let wdata = f32_data(w).ok_or_else(|| ctx.invalid("weights are not numeric"))?;
        if Some(wdata.len()) != product(&ws) {
            return Err(ctx.invalid(format!("weights hold {} values for shape {ws:?}", wdata.len())));
        }
        let bias = match self.const_input(ctx, 2)? {
            Some(b) => f32_data(b)
                .filter(|b| b.len() == cout)
                .ok_or_else(|| ctx.invalid("bias must hold one value per output channel"))?,
            None => vec![0.0; cout],
        };
        let cout_g = cout / groups;
        let depthwise = groups > 1 && groups == input.c && groups == cout;
        let mut weights = vec![0.0; wdata.len()];
        for co in 0..cout {
            let g = co / cout_g;
            for ci in 0..cin_g {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let src = wdata[((co * cin_g + ci) * kh + ky) * kw + kx];
                        let dst = if depthwise {
                            (ky * kw + kx) * cout + co
                        } else {
                            (((g * kh + ky) * kw + kx) * cin_g + ci) * cout_g + (co % cout_g)
                        };
                        weights[dst] = src;
                    }
                }
            }
        }
        let conv = Conv {
            window,
            groups,
            cin: input.c,
            cout,
            weights,
            bias,
            activation: Activation::Identity,
            packed: Vec::new(),
        };
        self.emit(ctx, Op::Conv(conv), vec![x], Shape::new(oh, ow, cout))
    }

    fn conv_transpose(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        ctx.check_attrs(&["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides", "output_padding"])?;
        if ctx.string("auto_pad", "NOTSET") != "NOTSET" {
            return Err(ctx.unsupported("auto_pad", "only explicit pads are supported for ConvTranspose"));
        }
        if ctx.int("group", 1) != 1 {
            return Err(ctx.unsupported("group", "grouped ConvTranspose is not supported"));
        }
        if ctx.ints("output_padding").is_some_and(|p| p.iter().any(|&x| x != 0)) {
            return Err(ctx.unsupported("output_padding", "non-zero output_padding is not supported"));
        }
        let (x, _) = self.node_input(ctx, 0)?;
        let input = self.nodes[x].shape;
        let w = self.const_input(ctx, 1)?.ok_or_else(|| ctx.invalid("missing weights"))?;
        let ws = w.shape().to_vec();
        if ws.len() != 4 || ws[0] != input.c {
            return Err(ctx
                .invalid(format!("weights of shape {ws:?} do not match a 2-D ConvTranspose on {} channels", input.c)));
        }
        let (cin, cout, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
        if ws.iter().any(|&d| d == 0 || d > MAX_DIM) {
            return Err(ctx.invalid(format!("weights of shape {ws:?}: every dimension must be in 1..={MAX_DIM}")));
        }
        let (sh, sw) = ctx.pair("strides", 1)?;
        let (dh, dw) = ctx.pair("dilations", 1)?;
        let window = Window { kh, kw, sh, sw, dh, dw, pad: ctx.pads()? };
        let (oh, ow) = window
            .transposed_output_hw(input.h, input.w)
            .ok_or_else(|| ctx.unsupported("pads", "padding removes the whole output"))?;
        let wdata = f32_data(w).ok_or_else(|| ctx.invalid("weights are not numeric"))?;
        if Some(wdata.len()) != product(&ws) {
            return Err(ctx.invalid(format!("weights hold {} values for shape {ws:?}", wdata.len())));
        }
        let mut weights = vec![0.0; wdata.len()];
        for ci in 0..cin {
            for co in 0..cout {
                for ky in 0..kh {
                    for kx in 0..kw {
                        weights[((ky * kw + kx) * cin + ci) * cout + co] =
                            wdata[((ci * cout + co) * kh + ky) * kw + kx];
                    }
                }
            }
        }
        let bias = match self.const_input(ctx, 2)? {
            Some(b) => f32_data(b)
                .filter(|b| b.len() == cout)
                .ok_or_else(|| ctx.invalid("bias must hold one value per output channel"))?,
            None => vec![0.0; cout],
        };
        let ct = ConvTranspose { window, cin, cout, weights, bias, activation: Activation::Identity };
        self.emit(ctx, Op::ConvTranspose(ct), vec![x], Shape::new(oh, ow, cout))
    }

    fn batch_norm(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        ctx.check_attrs(&["epsilon", "momentum", "training_mode", "spatial"])?;
        if ctx.int("training_mode", 0) != 0 {
            return Err(ctx.unsupported("training_mode", "only inference mode is supported"));
        }
        let (x, _) = self.node_input(ctx, 0)?;
        let c = self.nodes[x].shape.c;
        let eps = ctx.float("epsilon", 1e-5);
        let mut params = Vec::new();
        for i in 1..5 {
            let t = self.const_input(ctx, i)?.ok_or_else(|| ctx.invalid(format!("missing input {i}")))?;
            params.push(
                f32_data(t)
                    .filter(|v| v.len() == c)
                    .ok_or_else(|| ctx.invalid(format!("input {i} must hold {c} values")))?,
            );
        }
        let scale: Vec<f32> = (0..c).map(|i| params[0][i] / (params[3][i] + eps).sqrt()).collect();
        let bias: Vec<f32> = (0..c).map(|i| params[1][i] - params[2][i] * scale[i]).collect();
        if let Some(p) = self.fusable_producer(ctx) {
            if let Op::Conv(conv) = &mut self.nodes[p].op {
                if conv.activation == Activation::Identity {
                    let cout_g = conv.cout / conv.groups;
                    let depthwise = conv.is_depthwise();
                    let (cout, per_group) = (conv.cout, conv.weights.len() / conv.groups);
                    for (i, w) in conv.weights.iter_mut().enumerate() {
                        let co = if depthwise { i % cout } else { (i / per_group) * cout_g + i % cout_g };
                        *w *= scale[co];
                    }
                    for (co, b) in conv.bias.iter_mut().enumerate() {
                        *b = *b * scale[co] + bias[co];
                    }
                    return self.alias(ctx, Value::Node { id: p, view: None });
                }
            }
        }
        let shape = self.nodes[x].shape;
        self.emit(ctx, Op::ChannelAffine { scale, bias }, vec![x], shape)
    }

    fn clip(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        let bound = |i: usize, attr: &str, default: f32| -> Result<f32> {
            if let Some(t) = self.const_input(ctx, i)? {
                return f32_data(t)
                    .and_then(|v| v.first().copied())
                    .ok_or_else(|| ctx.invalid(format!("input {i} must be a scalar")));
            }
            Ok(ctx.float(attr, default))
        };
        let min = bound(1, "min", f32::NEG_INFINITY)?;
        let max = bound(2, "max", f32::INFINITY)?;
        self.activation(ctx, Activation::Clip { min, max }, &["min", "max"])
    }

    fn activation(&mut self, ctx: &Ctx<'_>, act: Activation, attrs: &[&str]) -> Result<()> {
        ctx.check_attrs(attrs)?;
        let (x, _) = self.node_input(ctx, 0)?;
        let view = self.view_of(ctx, 0);
        if let Some(p) = self.fusable_producer(ctx) {
            let slot = match &mut self.nodes[p].op {
                Op::Conv(c) => Some(&mut c.activation),
                Op::ConvTranspose(c) => Some(&mut c.activation),
                Op::Dense(d) => Some(&mut d.activation),
                Op::Binary { activation, .. } => Some(activation),
                _ => None,
            };
            if let Some(slot) = slot.filter(|s| **s == Activation::Identity) {
                *slot = act;
                return self.alias(ctx, Value::Node { id: p, view });
            }
        }
        let shape = self.nodes[x].shape;
        self.emit(ctx, Op::Unary(act), vec![x], shape)?;
        self.set_output(ctx, Value::Node { id: self.nodes.len() - 1, view })
    }

    fn binary(&mut self, ctx: &Ctx<'_>, kind: BinaryKind) -> Result<()> {
        ctx.check_attrs(&[])?;
        // x op constant: a per-channel (or scalar) affine map.
        for (var, cst) in [(0, 1), (1, 0)] {
            if self.is_const(ctx, cst) && !self.is_const(ctx, var) {
                let (x, flat) = self.node_input(ctx, var)?;
                let shape = self.nodes[x].shape;
                let t = self.const_input(ctx, cst)?.expect("checked constant");
                let dims = t.shape().to_vec();
                let v = f32_data(t).ok_or_else(|| ctx.invalid("constant operand is not numeric"))?;
                // ONNX broadcasts from the last axis: a per-channel constant of an NCHW map has
                // its values on the third axis from the end ([C, 1, 1]); on a flat vector
                // ([1, C]), on the last. A [C] constant on a map would run along W.
                let on_channels = if flat {
                    dims.len() <= 2 && dims.last() == Some(&v.len())
                } else {
                    (3..=4).contains(&dims.len()) && dims[dims.len() - 3] == v.len()
                };
                let per_channel = match v.len() {
                    1 if dims.len() <= 4 => vec![v[0]; shape.c],
                    n if n == shape.c && dims.iter().filter(|&&d| d != 1).count() <= 1 && on_channels => v,
                    _ => {
                        return Err(ctx.invalid(format!(
                            "constant operand of shape {dims:?} does not broadcast per channel over {shape}"
                        )))
                    }
                };
                let (scale, bias) = match kind {
                    BinaryKind::Add => (vec![1.0; shape.c], per_channel),
                    BinaryKind::Mul => (per_channel, vec![0.0; shape.c]),
                };
                let view = self.view_of(ctx, var);
                self.emit(ctx, Op::ChannelAffine { scale, bias }, vec![x], shape)?;
                return self.set_output(ctx, Value::Node { id: self.nodes.len() - 1, view });
            }
        }
        let (a, fa) = self.node_input(ctx, 0)?;
        let (b, fb) = self.node_input(ctx, 1)?;
        let (sa, sb) = (self.nodes[a].shape, self.nodes[b].shape);
        let dim = |x: usize, y: usize| -> Result<usize> {
            if x == y || y == 1 {
                Ok(x)
            } else if x == 1 {
                Ok(y)
            } else {
                Err(ctx.invalid(format!("shapes {sa} and {sb} do not broadcast")))
            }
        };
        let shape = Shape::new(dim(sa.h, sb.h)?, dim(sa.w, sb.w)?, dim(sa.c, sb.c)?);
        self.emit(ctx, Op::Binary { kind, activation: Activation::Identity }, vec![a, b], shape)?;
        let view = if fa && fb { self.view_of(ctx, 0) } else { None };
        self.set_output(ctx, Value::Node { id: self.nodes.len() - 1, view })
    }

    fn pool(&mut self, ctx: &Ctx<'_>, max: bool) -> Result<()> {
        let mut known = vec!["auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides"];
        known.push(if max { "storage_order" } else { "count_include_pad" });
        ctx.check_attrs(&known)?;
        if max && ctx.int("storage_order", 0) != 0 {
            return Err(ctx.unsupported("storage_order", "only row-major is supported"));
        }
        let (x, _) = self.node_input(ctx, 0)?;
        let input = self.nodes[x].shape;
        let (kh, kw) = ctx.pair("kernel_shape", 0).and_then(|k| {
            if k.0 == 0 {
                Err(ctx.unsupported("kernel_shape", "required"))
            } else {
                Ok(k)
            }
        })?;
        let window = window(ctx, input, kh, kw)?;
        let ceil = ctx.int("ceil_mode", 0) != 0;
        let (oh, ow) = window
            .output_hw(input.h, input.w, ceil)
            .ok_or_else(|| ctx.invalid(format!("window does not fit input {input}")))?;
        let kind =
            if max { PoolKind::Max } else { PoolKind::Avg { count_include_pad: ctx.int("count_include_pad", 0) != 0 } };
        self.emit(ctx, Op::Pool { kind, window }, vec![x], Shape::new(oh, ow, input.c))
    }

    fn gemm(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        ctx.check_attrs(&["alpha", "beta", "transA", "transB"])?;
        if ctx.int("transA", 0) != 0 {
            return Err(ctx.unsupported("transA", "a transposed activation input is not supported"));
        }
        let (x, _) = self.node_input(ctx, 0)?;
        let s = self.nodes[x].shape;
        if s.h != 1 || s.w != 1 {
            return Err(ctx.invalid(format!("Gemm input must be a flat vector, got a {s} map")));
        }
        let b = self.const_input(ctx, 1)?.ok_or_else(|| ctx.invalid("weights (input B) must be a constant"))?;
        let bs = b.shape().to_vec();
        let trans_b = ctx.int("transB", 0) != 0;
        let (k, n) = match (bs.as_slice(), trans_b) {
            ([n, k], true) => (*k, *n),
            ([k, n], false) => (*k, *n),
            _ => return Err(ctx.invalid(format!("weights of shape {bs:?} are not a matrix"))),
        };
        if k != s.c {
            return Err(ctx.invalid(format!("weights expect {k} inputs, the vector has {}", s.c)));
        }
        let alpha = ctx.float("alpha", 1.0);
        let beta = ctx.float("beta", 1.0);
        let bd = f32_data(b).ok_or_else(|| ctx.invalid("weights are not numeric"))?;
        let mut weights = vec![0.0; k * n];
        for ki in 0..k {
            for ni in 0..n {
                weights[ki * n + ni] = alpha * if trans_b { bd[ni * k + ki] } else { bd[ki * n + ni] };
            }
        }
        let bias = match self.const_input(ctx, 2)? {
            Some(c) => {
                let v = f32_data(c).ok_or_else(|| ctx.invalid("bias is not numeric"))?;
                match v.len() {
                    1 => vec![beta * v[0]; n],
                    l if l == n => v.iter().map(|x| beta * x).collect(),
                    l => return Err(ctx.invalid(format!("bias of {l} values for {n} outputs"))),
                }
            }
            None => vec![0.0; n],
        };
        let dense = Dense { cin: k, cout: n, weights, bias, activation: Activation::Identity, packed: Vec::new() };
        self.emit(ctx, Op::Dense(dense), vec![x], Shape::new(1, 1, n))?;
        self.set_output(ctx, Value::Node { id: self.nodes.len() - 1, view: Some(vec![1, n]) })
    }

    fn resize(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        ctx.check_attrs(&[
            "coordinate_transformation_mode",
            "cubic_coeff_a",
            "exclude_outside",
            "extrapolation_value",
            "mode",
            "nearest_mode",
            "antialias",
        ])?;
        if ctx.int("exclude_outside", 0) != 0 {
            return Err(ctx.unsupported("exclude_outside", "only 0 is supported"));
        }
        if ctx.int("antialias", 0) != 0 {
            return Err(ctx.unsupported("antialias", "only 0 is supported"));
        }
        let coord = match ctx.string("coordinate_transformation_mode", "half_pixel").as_str() {
            "half_pixel" => CoordMode::HalfPixel,
            "pytorch_half_pixel" => CoordMode::PytorchHalfPixel,
            "align_corners" => CoordMode::AlignCorners,
            "asymmetric" => CoordMode::Asymmetric,
            other => return Err(ctx.unsupported("coordinate_transformation_mode", format!("'{other}'"))),
        };
        let mode = match ctx.string("mode", "nearest").as_str() {
            "linear" => ResizeMode::Linear,
            "nearest" => match ctx.string("nearest_mode", "round_prefer_floor").as_str() {
                "round_prefer_floor" => ResizeMode::Nearest { floor: false },
                "floor" => ResizeMode::Nearest { floor: true },
                other => return Err(ctx.unsupported("nearest_mode", format!("'{other}'"))),
            },
            other => return Err(ctx.unsupported("mode", format!("'{other}'"))),
        };
        let (x, _) = self.node_input(ctx, 0)?;
        let s = self.nodes[x].shape;
        let (oh, ow) = if let Some(sizes) = self.const_input(ctx, 3)? {
            match i64_data(sizes).as_deref() {
                Some([1, c, h, w])
                    if *c == s.c as i64 && (1..=MAX_DIM as i64).contains(h) && (1..=MAX_DIM as i64).contains(w) =>
                {
                    (*h as usize, *w as usize)
                }
                other => {
                    return Err(ctx.invalid(format!(
                        "sizes {other:?}: only spatial resizes of a [1, {}, H, W] tensor are supported",
                        s.c
                    )))
                }
            }
        } else if let Some(scales) = self.const_input(ctx, 2)? {
            match f32_data(scales).as_deref() {
                Some([n, c, h, w]) if *n == 1.0 && *c == 1.0 && *h > 0.0 && *w > 0.0 => {
                    let size = |n: usize, scale: f32| {
                        let o = (n as f64 * scale as f64).floor();
                        (1.0..=MAX_DIM as f64).contains(&o).then_some(o as usize)
                    };
                    match (size(s.h, *h), size(s.w, *w)) {
                        (Some(oh), Some(ow)) => (oh, ow),
                        _ => {
                            return Err(ctx.invalid(format!(
                                "scales [{h}, {w}] on {s} give no output or one over the limit of {MAX_DIM} per side"
                            )))
                        }
                    }
                }
                other => return Err(ctx.invalid(format!("scales {other:?}: only spatial scales are supported"))),
            }
        } else {
            return Err(ctx.invalid("Resize needs constant scales or sizes"));
        };
        self.emit(ctx, Op::Resize { mode, coord }, vec![x], Shape::new(oh, ow, s.c))
    }

    /// Constant zero padding: on channels it becomes [`Op::PadChannels`]; spatial padding is
    /// folded into the Conv that reads it (MediaPipe's TF-style "SAME" convolutions).
    fn pad(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        ctx.check_attrs(&["mode"])?;
        let mode = ctx.string("mode", "constant");
        if mode != "constant" {
            return Err(ctx.unsupported("mode", format!("'{mode}': only constant padding is supported")));
        }
        if let Some(v) = self.const_input(ctx, 2)? {
            if f32_data(v).is_none_or(|v| v.iter().any(|&x| x != 0.0)) {
                return Err(ctx.invalid("only zero padding is supported (input 2, constant_value)"));
            }
        }
        if ctx.node.input.get(3).is_some_and(|a| !a.is_empty()) {
            return Err(ctx.invalid("input 3 (axes) is not supported"));
        }
        let (x, _) = self.node_input(ctx, 0)?;
        let pads = self
            .const_input(ctx, 1)?
            .and_then(i64_data)
            .ok_or_else(|| ctx.invalid("input 1 (pads) must be a constant integer tensor"))?;
        let [n0, c0, t, l, n1, c1, b, r] = pads.as_slice() else {
            return Err(ctx.invalid(format!("pads {pads:?}: expected 8 values for a 4-D tensor")));
        };
        if pads.iter().any(|&p| !(0..=MAX_DIM as i64).contains(&p)) || *n0 != 0 || *n1 != 0 {
            return Err(
                ctx.invalid(format!("pads {pads:?}: only channel or spatial padding in 0..={MAX_DIM} is supported"))
            );
        }
        let spatial = [*t as usize, *l as usize, *b as usize, *r as usize];
        let channels = (*c0 as usize, *c1 as usize);
        let out = ctx.node.output.first().ok_or_else(|| ctx.invalid("node has no output"))?.clone();
        match (spatial == [0; 4], channels == (0, 0)) {
            (true, true) => self.alias(ctx, Value::Node { id: x, view: None }),
            (true, false) => {
                let s = self.nodes[x].shape;
                let shape = Shape::new(s.h, s.w, s.c + channels.0 + channels.1);
                self.emit(ctx, Op::PadChannels { before: channels.0, after: channels.1 }, vec![x], shape)
            }
            (false, true) => {
                let readers = self.readers.get(&out).map(Vec::as_slice).unwrap_or_default();
                if readers != ["Conv"] || self.graph_outputs.contains(&out) {
                    return Err(ctx.invalid(format!(
                        "spatial padding {spatial:?} is supported only when a single Conv reads it (read by {readers:?})"
                    )));
                }
                self.pending_pads.insert(out, spatial);
                self.alias(ctx, Value::Node { id: x, view: None })
            }
            (false, false) => Err(ctx.invalid(format!("pads {pads:?} pad channels and space at once"))),
        }
    }

    /// A transpose is a change of view: NCHW to NHWC is the buffer as it is, and moving axes
    /// of size 1 never reorders data.
    fn transpose(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        ctx.check_attrs(&["perm"])?;
        let (id, dims, row_major) = self.row_major_input(ctx, 0)?;
        let perm = ctx.ints("perm").unwrap_or_else(|| (0..dims.len() as i64).rev().collect());
        let valid = {
            let mut p = perm.clone();
            p.sort_unstable();
            p.iter().enumerate().all(|(i, &v)| v == i as i64)
        } && perm.len() == dims.len();
        if !valid {
            return Err(ctx.unsupported("perm", format!("{perm:?} is not a permutation of {} axes", dims.len())));
        }
        let permuted: Vec<usize> = perm.iter().map(|&p| dims[p as usize]).collect();
        let is_nchw_map = matches!(self.values.get(&ctx.node.input[0]), Some(Value::Node { view: None, .. }));
        let keeps_order = |perm: &[i64]| {
            let moved: Vec<i64> = perm.iter().copied().filter(|&p| dims[p as usize] != 1).collect();
            moved.windows(2).all(|w| w[0] < w[1])
        };
        if (is_nchw_map && perm == [0, 2, 3, 1]) || (row_major && keeps_order(&perm)) {
            self.alias(ctx, Value::Node { id, view: Some(permuted) })
        } else {
            Err(ctx.unsupported("perm", format!("{perm:?} of {dims:?} reorders data; only NCHW to NHWC is supported")))
        }
    }

    /// A reshape of a row-major view is a new view of the same buffer.
    fn reshape(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        ctx.check_attrs(&["allowzero"])?;
        let (id, dims, row_major) = self.row_major_input(ctx, 0)?;
        if !row_major {
            return Err(
                ctx.invalid(format!("Reshape of an NCHW map {dims:?} is supported only after a Transpose to NHWC"))
            );
        }
        let spec = self
            .const_input(ctx, 1)?
            .and_then(i64_data)
            .ok_or_else(|| ctx.invalid("input 1 (shape) must be a constant integer tensor"))?;
        let total = product(&dims).ok_or_else(|| ctx.invalid(format!("input dims {dims:?} overflow")))?;
        let mut out: Vec<usize> = Vec::with_capacity(spec.len());
        let mut infer = None;
        for (i, &d) in spec.iter().enumerate() {
            match d {
                0 if ctx.int("allowzero", 0) == 0 => out.push(*dims.get(i).ok_or_else(|| {
                    ctx.invalid(format!("shape {spec:?}: 0 at axis {i} copies a dimension the input lacks"))
                })?),
                -1 if infer.is_none() => {
                    infer = Some(i);
                    out.push(1);
                }
                d if d > 0 => out.push(d as usize),
                _ => return Err(ctx.invalid(format!("shape {spec:?} is not a valid target shape"))),
            }
        }
        let known = product(&out).filter(|&n| n <= total || infer.is_none());
        let known =
            known.ok_or_else(|| ctx.invalid(format!("shape {spec:?} does not hold {total} values of {dims:?}")))?;
        if let Some(i) = infer {
            if known == 0 || !total.is_multiple_of(known) {
                return Err(ctx.invalid(format!("shape {spec:?} does not fit {total} values")));
            }
            out[i] = total / known;
        }
        if product(&out) != Some(total) {
            return Err(ctx.invalid(format!("shape {spec:?} does not hold {total} values of {dims:?}")));
        }
        self.alias(ctx, Value::Node { id, view: Some(out) })
    }

    /// Concatenation of row-major views along an axis with only unit axes before it: the
    /// buffers one after the other.
    fn flat_concat(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        let mut parts = Vec::new();
        for i in 0..ctx.node.input.len() {
            let (id, dims, row_major) = self.row_major_input(ctx, i)?;
            if !row_major {
                return Err(ctx.invalid(format!("input {i} {dims:?} is an NCHW map mixed with reshaped views")));
            }
            parts.push((id, dims));
        }
        if parts.is_empty() {
            return Err(ctx.invalid("Concat has no inputs"));
        }
        let rank = parts[0].1.len() as i64;
        let axis = ctx.int("axis", 1);
        let axis = if axis < 0 { axis + rank } else { axis };
        if !(0..rank).contains(&axis) {
            return Err(ctx.unsupported("axis", format!("{} for rank {rank}", ctx.int("axis", 1))));
        }
        let axis = axis as usize;
        let mut dims = parts[0].1.clone();
        dims[axis] = 0;
        for (_, d) in &parts {
            let same_rest =
                d.len() == dims.len() && d.iter().zip(&dims).enumerate().all(|(k, (a, b))| k == axis || a == b);
            if !same_rest {
                return Err(ctx.invalid(format!("inputs {:?} and {d:?} differ outside axis {axis}", parts[0].1)));
            }
            dims[axis] = dims[axis].checked_add(d[axis]).ok_or_else(|| ctx.invalid("concatenated size overflows"))?;
        }
        if dims[..axis].iter().any(|&d| d != 1) {
            return Err(
                ctx.unsupported("axis", format!("concatenation of {dims:?} along axis {axis} interleaves data"))
            );
        }
        let ids: Vec<usize> = parts.iter().map(|(id, _)| *id).collect();
        let n = product(&dims).ok_or_else(|| ctx.invalid(format!("dims {dims:?} overflow")))?;
        let id = self.push(ctx.name.clone(), Op::FlatConcat, ids, Shape::new(1, 1, n)).map_err(|r| ctx.invalid(r))?;
        self.set_output(ctx, Value::Node { id, view: Some(dims) })
    }

    fn concat(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        ctx.check_attrs(&["axis"])?;
        if (0..ctx.node.input.len()).any(|i| self.view_of(ctx, i).is_some()) {
            return self.flat_concat(ctx);
        }
        let mut ids = Vec::new();
        for i in 0..ctx.node.input.len() {
            ids.push(self.node_input(ctx, i)?.0);
        }
        if ids.is_empty() {
            return Err(ctx.invalid("Concat has no inputs"));
        }
        let first = self.nodes[ids[0]].shape;
        let axis = ctx.int("axis", 1);
        if axis != 1 && axis != -3 {
            return Err(
                ctx.unsupported("axis", format!("only channel concatenation (axis 1) is supported, got {axis}"))
            );
        }
        let mut c = 0usize;
        for &id in &ids {
            let s = self.nodes[id].shape;
            if (s.h, s.w) != (first.h, first.w) {
                return Err(ctx.invalid(format!("inputs {first} and {s} differ in spatial size")));
            }
            c = c.checked_add(s.c).ok_or_else(|| ctx.invalid("channel count overflows"))?;
        }
        self.emit(ctx, Op::Concat, ids, Shape::new(first.h, first.w, c))
    }
}

fn input_shape(input: &pb::ValueInfoProto) -> Result<Shape> {
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
                    Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) => *v,
                    _ => -1,
                })
                .collect()
        })
        .ok_or_else(|| bad("input has no tensor shape".into()))?;
    match dims.as_slice() {
        [n, c, h, w] if *n == 1 && [c, h, w].iter().all(|d| (1..=MAX_DIM as i64).contains(d)) => {
            Ok(Shape::new(*h as usize, *w as usize, *c as usize))
        }
        _ => Err(bad(format!("input shape {dims:?}: a static [1, C, H, W] image input is required"))),
    }
}
