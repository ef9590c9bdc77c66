//! TFLite import: the flatbuffer is read through the TFLite schema generated with the
//! `flatbuffers` crate (as shipped by `tract-tflite`) and checked by its verifier, so that a
//! truncated file or an offset out of range is an error before anything is read; the operators
//! are then converted, in their (execution) order, into the same IR as ONNX.
//!
//! TFLite tensors are NHWC, the engine's own layout, so a map `[1, H, W, C]` is a node as it is
//! and a reshape of it is a view of the same buffer. Padding is `SAME` (TensorFlow's rule: the
//! smaller half before) or `VALID`; activations fused into an op become the node's activation.
//! Half-precision weights (`DEQUANTIZE` of a `FLOAT16` constant) are widened at import.
//! Quantized (int8, uint8) tensors are refused with an error until the engine runs int8.

use std::collections::HashMap;
use std::path::Path;

use tract_tflite::tflite::{self, ActivationFunctionType, BuiltinOperator, Operator, Padding, TensorType};

use super::ImportOptions;
use crate::error::{Error, Result};
use crate::graph::{
    check_node, product, Activation, BinaryKind, Conv, ConvTranspose, CoordMode, Dense, Graph, GraphOutput, Node, Op,
    PoolKind, ResizeMode, Shape, Window, MAX_DIM, MAX_TENSOR_VALUES,
};

/// Loads a TFLite model from memory; `path` names it in errors.
pub fn load_tflite_bytes(bytes: &[u8], path: &Path, options: ImportOptions) -> Result<Graph> {
    let bad_file = |reason: String| Error::ModelFile { path: path.to_owned(), reason, source: None };
    if !super::is_tflite(bytes) {
        return Err(bad_file("not a TFLite file (no TFL3 identifier at byte 4)".into()));
    }
    let model = tflite::root_as_model(bytes).map_err(|e| Error::model_file(path, "invalid TFLite flatbuffer", e))?;
    let subgraphs = model.subgraphs().ok_or_else(|| bad_file("the file holds no subgraph".into()))?;
    if subgraphs.len() != 1 {
        return Err(bad_file(format!("{} subgraphs: only single-subgraph models are supported", subgraphs.len())));
    }
    let graph = Importer::new(model, subgraphs.get(0), path)?.run(options)?;
    graph.validate()?;
    Ok(graph)
}

/// What a TFLite tensor index refers to during import.
#[derive(Clone)]
enum Value {
    /// An IR node; `view` as in the ONNX importer: `None` for a `[1, H, W, C]` map, else the
    /// tensor's dims read row-major from the node's buffer.
    Node { id: usize, view: Option<Vec<usize>> },
    /// A constant, widened to f32 (integer constants included: shapes, paddings, sizes).
    Const { dims: Vec<usize>, data: Vec<f32> },
}

struct Importer<'a> {
    model: tflite::Model<'a>,
    graph: tflite::SubGraph<'a>,
    tensors: flatbuffers::Vector<'a, flatbuffers::ForwardsUOffset<tflite::Tensor<'a>>>,
    values: HashMap<usize, Value>,
    nodes: Vec<Node>,
    /// Spatial padding `[t, l, b, r]` of a PAD waiting for the convolution that reads it.
    pending_pads: HashMap<usize, [usize; 4]>,
    /// Per tensor, the op names of the operators reading it.
    readers: HashMap<usize, Vec<BuiltinOperator>>,
    path: &'a Path,
}

/// The error context of one operator.
struct Ctx {
    name: String,
    op: String,
}

impl Ctx {
    fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidModel { node: self.name.clone(), op: self.op.clone(), reason: reason.into() }
    }
    fn unsupported(&self, attribute: &str, reason: impl Into<String>) -> Error {
        Error::UnsupportedAttribute {
            node: self.name.clone(),
            op: self.op.clone(),
            attribute: attribute.into(),
            reason: reason.into(),
        }
    }
}

fn op_name(op: BuiltinOperator) -> String {
    op.variant_name().map_or_else(|| format!("builtin {}", op.0), str::to_owned)
}

impl<'a> Importer<'a> {
    fn new(model: tflite::Model<'a>, graph: tflite::SubGraph<'a>, path: &'a Path) -> Result<Self> {
        let tensors = graph.tensors().ok_or_else(|| Error::ModelFile {
            path: path.to_owned(),
            reason: "no tensors".into(),
            source: None,
        })?;
        let mut readers: HashMap<usize, Vec<BuiltinOperator>> = HashMap::new();
        let mut importer = Self {
            model,
            graph,
            tensors,
            values: HashMap::new(),
            nodes: Vec::new(),
            pending_pads: HashMap::new(),
            readers: HashMap::new(),
            path,
        };
        for op in graph.operators().iter().flatten() {
            let code = importer.opcode(&op).map(|(c, _)| c).unwrap_or(BuiltinOperator::CUSTOM);
            for i in op.inputs().iter().flatten().filter(|&i| i >= 0) {
                readers.entry(i as usize).or_default().push(code);
            }
        }
        importer.readers = readers;
        Ok(importer)
    }

    fn file_error(&self, reason: String) -> Error {
        Error::ModelFile { path: self.path.to_owned(), reason, source: None }
    }

    /// The builtin code of an operator, and its custom code for `CUSTOM`.
    fn opcode(&self, op: &Operator<'a>) -> Result<(BuiltinOperator, Option<&'a str>)> {
        let codes = self.model.operator_codes().ok_or_else(|| self.file_error("no operator codes".into()))?;
        let i = op.opcode_index() as usize;
        if i >= codes.len() {
            return Err(self.file_error(format!("operator code index {i} out of range ({} codes)", codes.len())));
        }
        let c = codes.get(i);
        // Files before schema 3a keep the code in the deprecated byte.
        let code = BuiltinOperator(c.builtin_code().0.max(i32::from(c.deprecated_builtin_code())));
        Ok((code, c.custom_code()))
    }

    fn tensor(&self, i: usize) -> Result<tflite::Tensor<'a>> {
        if i >= self.tensors.len() {
            return Err(self.file_error(format!("tensor index {i} out of range ({} tensors)", self.tensors.len())));
        }
        Ok(self.tensors.get(i))
    }

    fn tensor_name(&self, i: usize) -> String {
        self.tensor(i).ok().and_then(|t| t.name().map(str::to_owned)).unwrap_or_else(|| format!("tensor {i}"))
    }

    /// A tensor's static dims (each in `1..=MAX_DIM`; a scalar has none).
    fn dims(&self, ctx: &Ctx, i: usize) -> Result<Vec<usize>> {
        let t = self.tensor(i)?;
        let shape: Vec<i32> = t.shape().map(|s| s.iter().collect()).unwrap_or_default();
        if shape.iter().any(|&d| d < 1 || d as usize > MAX_DIM) {
            return Err(ctx.invalid(format!("tensor '{}' has dims {shape:?}", self.tensor_name(i))));
        }
        Ok(shape.iter().map(|&d| d as usize).collect())
    }

    /// The constant data of tensor `i`, if its buffer holds any; quantized tensors are errors.
    fn constant(&self, ctx: &Ctx, i: usize) -> Result<Option<Value>> {
        let t = self.tensor(i)?;
        let buffers = self.model.buffers().ok_or_else(|| self.file_error("no buffers".into()))?;
        let b = t.buffer() as usize;
        if b >= buffers.len() {
            return Err(ctx.invalid(format!("tensor '{}' names buffer {b} of {}", self.tensor_name(i), buffers.len())));
        }
        let Some(bytes) = buffers.get(b).data().filter(|d| !d.is_empty()) else { return Ok(None) };
        let bytes = bytes.bytes();
        let dims = self.dims(ctx, i)?;
        let n = product(&dims).filter(|&n| n <= MAX_TENSOR_VALUES).ok_or_else(|| {
            ctx.invalid(format!("tensor '{}' of dims {dims:?} is over the size limit", self.tensor_name(i)))
        })?;
        let width = match t.type_() {
            TensorType::FLOAT32 | TensorType::INT32 => 4,
            TensorType::FLOAT16 => 2,
            TensorType::INT64 => 8,
            TensorType::INT8 | TensorType::UINT8 | TensorType::INT16 => {
                return Err(ctx.invalid(format!(
                    "tensor '{}' is quantized ({:?}): quantized TFLite needs int8 support, which the engine does not have yet",
                    self.tensor_name(i),
                    t.type_()
                )))
            }
            other => {
                return Err(ctx.invalid(format!("tensor '{}' has unsupported type {other:?}", self.tensor_name(i))))
            }
        };
        if bytes.len() != n * width {
            return Err(ctx.invalid(format!(
                "tensor '{}' of dims {dims:?} needs {} bytes, its buffer holds {}",
                self.tensor_name(i),
                n * width,
                bytes.len()
            )));
        }
        let data: Vec<f32> = match t.type_() {
            TensorType::FLOAT32 => {
                bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
            }
            TensorType::INT32 => {
                bytes.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32).collect()
            }
            TensorType::FLOAT16 => {
                bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            _ => bytes.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32).collect(),
        };
        Ok(Some(Value::Const { dims, data }))
    }

    /// The value of tensor `i`: a node produced earlier, or a constant.
    fn value(&self, ctx: &Ctx, i: usize) -> Result<Value> {
        if let Some(v) = self.values.get(&i) {
            return Ok(v.clone());
        }
        self.constant(ctx, i)?.ok_or_else(|| {
            ctx.invalid(format!(
                "reads tensor '{}' before any operator produces it (operators out of order, or a cycle)",
                self.tensor_name(i)
            ))
        })
    }

    /// Input `k` of the operator as a computed map: its node and shape.
    fn map_input(&self, ctx: &Ctx, ins: &[usize], k: usize) -> Result<(usize, Shape)> {
        match self.value(ctx, *ins.get(k).ok_or_else(|| ctx.invalid(format!("missing input {k}")))?)? {
            Value::Node { id, view: None } => Ok((id, self.nodes[id].shape)),
            Value::Node { id, .. } if self.nodes[id].shape.pixels() == 1 => Ok((id, self.nodes[id].shape)),
            Value::Node { view: Some(dims), .. } => {
                Err(ctx.invalid(format!("input {k} is a reshaped view {dims:?}; a [1, H, W, C] map is required")))
            }
            Value::Const { .. } => Err(ctx.invalid(format!("input {k} is a constant; a computed tensor was expected"))),
        }
    }

    fn const_input(&self, ctx: &Ctx, ins: &[usize], k: usize) -> Result<(Vec<usize>, Vec<f32>)> {
        match ins.get(k).filter(|&&i| i != usize::MAX).map(|&i| self.value(ctx, i)).transpose()? {
            Some(Value::Const { dims, data }) => Ok((dims, data)),
            Some(Value::Node { .. }) => Err(ctx.invalid(format!("input {k} must be a constant"))),
            None => Err(ctx.invalid(format!("missing input {k}"))),
        }
    }

    fn push(&mut self, ctx: &Ctx, op: Op, inputs: Vec<usize>, shape: Shape) -> Result<usize> {
        let node = Node { name: ctx.name.clone(), op, inputs, shape };
        check_node(&self.nodes, &node).map_err(|r| ctx.invalid(r))?;
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    fn run(mut self, options: ImportOptions) -> Result<Graph> {
        let inputs: Vec<usize> = self.graph.inputs().iter().flatten().map(|i| i as usize).collect();
        let ctx = Ctx { name: "<graph>".into(), op: "input".into() };
        let image: Vec<usize> =
            inputs.iter().copied().filter(|&i| self.constant(&ctx, i).is_ok_and(|c| c.is_none())).collect();
        let [input] = image[..] else {
            return Err(ctx.invalid(format!("expected exactly one image input, found {}", image.len())));
        };
        let name = self.tensor_name(input);
        let ctx = Ctx { name: name.clone(), op: "input".into() };
        let t = self.tensor(input)?;
        if t.type_() != TensorType::FLOAT32 {
            return Err(ctx.invalid(format!(
                "input of type {:?}: a float32 input is required (quantized TFLite needs int8 support)",
                t.type_()
            )));
        }
        let dims = self.dims(&ctx, input)?;
        let shape = match (dims.as_slice(), options.input_size) {
            ([1, h, w, c], None) => Shape::new(*h, *w, *c),
            ([1, h, w, c], Some((sw, sh))) if (sw, sh) == (*w, *h) => Shape::new(*h, *w, *c),
            (d, Some((sw, sh))) if d.len() == 4 => {
                return Err(ctx.invalid(format!("input dims {d:?} are static; the input size {sw}x{sh} does not fit")))
            }
            (d, _) => return Err(ctx.invalid(format!("input dims {d:?}: a [1, H, W, C] image input is required"))),
        };
        let id = self.push(&ctx, Op::Input, vec![], shape)?;
        self.values.insert(input, Value::Node { id, view: None });

        let operators: Vec<Operator<'a>> = self.graph.operators().iter().flatten().collect();
        for (k, op) in operators.iter().enumerate() {
            self.operator(k, op)?;
        }

        let mut outputs = Vec::new();
        let mut tensors = HashMap::new();
        for (&i, v) in &self.values {
            if let Value::Node { id, .. } = v {
                tensors.insert(self.tensor_name(i), *id);
            }
        }
        for o in self.graph.outputs().iter().flatten().map(|i| i as usize) {
            let name = self.tensor_name(o);
            match self.values.get(&o) {
                Some(Value::Node { id, view }) => {
                    let s = self.nodes[*id].shape;
                    let dims = view.clone().unwrap_or_else(|| vec![1, s.h, s.w, s.c]);
                    outputs.push(GraphOutput { name, node: *id, onnx_shape: dims, nchw: false });
                }
                _ => {
                    return Err(Error::InvalidModel {
                        node: name,
                        op: "output".into(),
                        reason: "graph output is a constant or is never produced".into(),
                    })
                }
            }
        }
        Ok(Graph { input_name: self.tensor_name(input), nodes: self.nodes, outputs, tensors })
    }

    fn operator(&mut self, k: usize, op: &Operator<'a>) -> Result<()> {
        let (code, custom) = self.opcode(op)?;
        let ins: Vec<usize> =
            op.inputs().iter().flatten().map(|i| if i < 0 { usize::MAX } else { i as usize }).collect();
        let outs: Vec<usize> = op.outputs().iter().flatten().filter(|&i| i >= 0).map(|i| i as usize).collect();
        let out = *outs.first().ok_or_else(|| self.file_error(format!("operator {k} has no output")))?;
        let opname = match (code, custom) {
            (BuiltinOperator::CUSTOM, Some(c)) => c.to_owned(),
            _ => op_name(code),
        };
        let ctx = Ctx { name: self.tensor_name(out), op: opname.clone() };
        if outs.len() != 1 {
            return Err(ctx.invalid(format!("{} outputs; one was expected", outs.len())));
        }
        if self.values.contains_key(&out) {
            return Err(ctx.invalid("writes a tensor that already has a value (a cycle, or two writers)"));
        }
        let value = match code {
            BuiltinOperator::DEQUANTIZE => match self.value(&ctx, *ins.first().unwrap_or(&usize::MAX))? {
                c @ Value::Const { .. } => c,
                Value::Node { .. } => {
                    return Err(ctx.invalid("dequantizing a computed tensor needs int8 support"));
                }
            },
            BuiltinOperator::CONV_2D | BuiltinOperator::DEPTHWISE_CONV_2D => self.conv(&ctx, op, code, &ins)?,
            BuiltinOperator::CUSTOM if custom == Some("Convolution2DTransposeBias") => {
                self.transpose_conv(&ctx, op, &ins)?
            }
            BuiltinOperator::ADD | BuiltinOperator::MUL => {
                let fused = match code {
                    BuiltinOperator::ADD => op.builtin_options_as_add_options().map(|o| o.fused_activation_function()),
                    _ => op.builtin_options_as_mul_options().map(|o| o.fused_activation_function()),
                };
                let kind = if code == BuiltinOperator::ADD { BinaryKind::Add } else { BinaryKind::Mul };
                self.binary(&ctx, kind, fused.unwrap_or(ActivationFunctionType::NONE), &ins)?
            }
            BuiltinOperator::RELU => self.unary(&ctx, Activation::Relu, &ins)?,
            BuiltinOperator::RELU6 => self.unary(&ctx, Activation::Clip { min: 0.0, max: 6.0 }, &ins)?,
            BuiltinOperator::LOGISTIC => self.unary(&ctx, Activation::Sigmoid, &ins)?,
            BuiltinOperator::HARD_SWISH => {
                self.unary(&ctx, Activation::HardSwish { alpha: 1.0 / 6.0, beta: 0.5 }, &ins)?
            }
            BuiltinOperator::AVERAGE_POOL_2D | BuiltinOperator::MAX_POOL_2D => self.pool(&ctx, op, code, &ins)?,
            BuiltinOperator::RESIZE_BILINEAR => self.resize(&ctx, op, &ins)?,
            BuiltinOperator::MEAN => self.mean(&ctx, op, &ins)?,
            BuiltinOperator::FULLY_CONNECTED => self.fully_connected(&ctx, op, &ins)?,
            BuiltinOperator::PAD => self.pad(&ctx, &ins, out)?,
            BuiltinOperator::RESHAPE => self.reshape(&ctx, &ins, out)?,
            BuiltinOperator::CONCATENATION => self.concat(&ctx, op, &ins)?,
            _ => return Err(Error::UnsupportedOp { node: ctx.name.clone(), op: opname }),
        };
        self.values.insert(out, value);
        Ok(())
    }

    fn activation(ctx: &Ctx, f: ActivationFunctionType) -> Result<Activation> {
        match f {
            ActivationFunctionType::NONE => Ok(Activation::Identity),
            ActivationFunctionType::RELU => Ok(Activation::Relu),
            ActivationFunctionType::RELU6 => Ok(Activation::Clip { min: 0.0, max: 6.0 }),
            ActivationFunctionType::RELU_N1_TO_1 => Ok(Activation::Clip { min: -1.0, max: 1.0 }),
            other => Err(ctx.unsupported("fused_activation_function", format!("{other:?}"))),
        }
    }

    fn node(id: usize) -> Value {
        Value::Node { id, view: None }
    }

    /// TensorFlow's `SAME` padding of one axis (the smaller half before), or none for `VALID`.
    fn same_pad(ctx: &Ctx, padding: Padding, n: usize, k: usize, s: usize, d: usize) -> Result<(usize, usize)> {
        match padding {
            Padding::VALID => Ok((0, 0)),
            Padding::SAME => {
                let out = n.div_ceil(s);
                let need = ((out - 1) * s + d * (k - 1) + 1).saturating_sub(n);
                Ok((need / 2, need - need / 2))
            }
            other => Err(ctx.unsupported("padding", format!("{other:?}"))),
        }
    }

    fn positive(ctx: &Ctx, name: &str, v: i32) -> Result<usize> {
        if (1..=MAX_DIM as i32).contains(&v) {
            Ok(v as usize)
        } else {
            Err(ctx.unsupported(name, format!("{v}: must lie in 1..={MAX_DIM}")))
        }
    }

    fn conv(&mut self, ctx: &Ctx, op: &Operator<'a>, code: BuiltinOperator, ins: &[usize]) -> Result<Value> {
        let (x, s) = self.map_input(ctx, ins, 0)?;
        let (wd, w) = self.const_input(ctx, ins, 1)?;
        let depthwise = code == BuiltinOperator::DEPTHWISE_CONV_2D;
        let (padding, (sh, sw), (dh, dw), fused, multiplier) = if depthwise {
            let o = op.builtin_options_as_depthwise_conv_2_doptions().ok_or_else(|| ctx.invalid("missing options"))?;
            (
                o.padding(),
                (Self::positive(ctx, "stride_h", o.stride_h())?, Self::positive(ctx, "stride_w", o.stride_w())?),
                (
                    Self::positive(ctx, "dilation_h_factor", o.dilation_h_factor())?,
                    Self::positive(ctx, "dilation_w_factor", o.dilation_w_factor())?,
                ),
                o.fused_activation_function(),
                Self::positive(ctx, "depth_multiplier", o.depth_multiplier().max(1))?,
            )
        } else {
            let o = op.builtin_options_as_conv_2_doptions().ok_or_else(|| ctx.invalid("missing options"))?;
            (
                o.padding(),
                (Self::positive(ctx, "stride_h", o.stride_h())?, Self::positive(ctx, "stride_w", o.stride_w())?),
                (
                    Self::positive(ctx, "dilation_h_factor", o.dilation_h_factor())?,
                    Self::positive(ctx, "dilation_w_factor", o.dilation_w_factor())?,
                ),
                o.fused_activation_function(),
                1,
            )
        };
        let [o0, kh, kw, o3] = wd[..] else {
            return Err(ctx.invalid(format!("weights of dims {wd:?} are not [O, KH, KW, I]")));
        };
        let (groups, cin_g, cout) = if depthwise {
            if o0 != 1 || o3 != s.c * multiplier {
                return Err(ctx.invalid(format!("depthwise weights {wd:?} on {} channels x {multiplier}", s.c)));
            }
            (s.c, 1, o3)
        } else {
            if o3 != s.c {
                return Err(ctx.invalid(format!("weights {wd:?} expect {o3} input channels, the input has {}", s.c)));
            }
            (1, s.c, o0)
        };
        let pending = ins.first().and_then(|i| self.pending_pads.remove(i)).unwrap_or([0; 4]);
        let (t, b) = Self::same_pad(ctx, padding, s.h, kh, sh, dh)?;
        let (l, r) = Self::same_pad(ctx, padding, s.w, kw, sw, dw)?;
        let window =
            Window { kh, kw, sh, sw, dh, dw, pad: [pending[0] + t, pending[1] + l, pending[2] + b, pending[3] + r] };
        let (oh, ow) =
            window.output_hw(s.h, s.w, false).ok_or_else(|| ctx.invalid(format!("window does not fit {s}")))?;
        let cout_g = cout / groups;
        let mut weights = vec![0.0; w.len()];
        for co in 0..cout {
            for ky in 0..kh {
                for kx in 0..kw {
                    for ci in 0..cin_g {
                        let g = co / cout_g;
                        let (src, dst) = if depthwise {
                            let src = (ky * kw + kx) * cout + co;
                            let dst =
                                if multiplier == 1 { src } else { ((g * kh + ky) * kw + kx) * cout_g + co % cout_g };
                            (src, dst)
                        } else {
                            (((co * kh + ky) * kw + kx) * cin_g + ci, ((ky * kw + kx) * cin_g + ci) * cout + co)
                        };
                        weights[dst] = w[src];
                    }
                }
            }
        }
        let bias = self.bias(ctx, ins, 2, cout)?;
        let conv = Conv {
            window,
            groups,
            cin: s.c,
            cout,
            weights,
            bias,
            activation: Self::activation(ctx, fused)?,
            residual: None,
            quant: None,
            packed: Vec::new(),
        };
        Ok(Self::node(self.push(ctx, Op::Conv(conv), vec![x], Shape::new(oh, ow, cout))?))
    }

    fn bias(&self, ctx: &Ctx, ins: &[usize], k: usize, n: usize) -> Result<Vec<f32>> {
        if ins.get(k).is_none_or(|&i| i == usize::MAX) {
            return Ok(vec![0.0; n]);
        }
        let (_, b) = self.const_input(ctx, ins, k)?;
        if b.len() != n {
            return Err(ctx.invalid(format!("bias of {} values for {n} output channels", b.len())));
        }
        Ok(b)
    }

    /// MediaPipe's `Convolution2DTransposeBias`: weights `[O, KH, KW, I]`, bias, and
    /// `TfLiteTransposeConvParams` (padding, stride_w, stride_h as int32) in the custom options.
    fn transpose_conv(&mut self, ctx: &Ctx, op: &Operator<'a>, ins: &[usize]) -> Result<Value> {
        let (x, s) = self.map_input(ctx, ins, 0)?;
        let (wd, w) = self.const_input(ctx, ins, 1)?;
        let opts: Vec<u8> = op.custom_options().map(|o| o.bytes().to_vec()).unwrap_or_default();
        let int = |i: usize| opts.get(4 * i..4 * i + 4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let (Some(padding), Some(stride_w), Some(stride_h)) = (int(0), int(1), int(2)) else {
            return Err(ctx.invalid(format!("custom options of {} bytes; 12 expected", opts.len())));
        };
        let [cout, kh, kw, cin] = wd[..] else {
            return Err(ctx.invalid(format!("weights of dims {wd:?} are not [O, KH, KW, I]")));
        };
        if cin != s.c {
            return Err(ctx.invalid(format!("weights {wd:?} expect {cin} input channels, the input has {}", s.c)));
        }
        let (sh, sw) = (Self::positive(ctx, "stride_h", stride_h)?, Self::positive(ctx, "stride_w", stride_w)?);
        // TfLitePadding: 1 = SAME (output = input x stride), 2 = VALID.
        let pad = |n: usize, k: usize, st: usize| -> Result<(usize, usize)> {
            match padding {
                1 => {
                    let total = ((n - 1) * st + k).saturating_sub(n * st);
                    Ok((total / 2, total - total / 2))
                }
                2 => Ok((0, 0)),
                other => Err(ctx.unsupported("padding", format!("{other}"))),
            }
        };
        let ((t, b), (l, r)) = (pad(s.h, kh, sh)?, pad(s.w, kw, sw)?);
        let window = Window { kh, kw, sh, sw, dh: 1, dw: 1, pad: [t, l, b, r] };
        let (oh, ow) =
            window.transposed_output_hw(s.h, s.w).ok_or_else(|| ctx.invalid("padding removes the output"))?;
        let mut weights = vec![0.0; w.len()];
        for co in 0..cout {
            for ky in 0..kh {
                for kx in 0..kw {
                    for ci in 0..cin {
                        weights[((ky * kw + kx) * cin + ci) * cout + co] = w[((co * kh + ky) * kw + kx) * cin + ci];
                    }
                }
            }
        }
        let bias = self.bias(ctx, ins, 2, cout)?;
        let ct = ConvTranspose { window, cin, cout, weights, bias, activation: Activation::Identity, packed: None };
        Ok(Self::node(self.push(ctx, Op::ConvTranspose(ct), vec![x], Shape::new(oh, ow, cout))?))
    }

    fn unary(&mut self, ctx: &Ctx, act: Activation, ins: &[usize]) -> Result<Value> {
        let v = self.value(ctx, *ins.first().ok_or_else(|| ctx.invalid("missing input 0"))?)?;
        let Value::Node { id, view } = v else { return Err(ctx.invalid("input 0 is a constant")) };
        let shape = self.nodes[id].shape;
        let id = self.push(ctx, Op::Unary(act), vec![id], shape)?;
        Ok(Value::Node { id, view })
    }

    fn binary(&mut self, ctx: &Ctx, kind: BinaryKind, fused: ActivationFunctionType, ins: &[usize]) -> Result<Value> {
        if ins.len() != 2 {
            return Err(ctx.invalid(format!("{} inputs; two were expected", ins.len())));
        }
        let act = Self::activation(ctx, fused)?;
        let (a, b) = (self.value(ctx, ins[0])?, self.value(ctx, ins[1])?);
        let (id, view) = match (a, b) {
            (Value::Node { id: x, view }, Value::Const { dims, data })
            | (Value::Const { dims, data }, Value::Node { id: x, view }) => {
                let s = self.nodes[x].shape;
                // NHWC broadcasts along the last axis: a [C] (or [1, 1, 1, C]) constant is per
                // channel, a single value is a scalar.
                let per_channel = match data.len() {
                    1 => vec![data[0]; s.c],
                    n if n == s.c && dims.last() == Some(&n) => data,
                    _ => {
                        return Err(
                            ctx.invalid(format!("constant of dims {dims:?} does not broadcast per channel over {s}"))
                        )
                    }
                };
                let (scale, bias) = match kind {
                    BinaryKind::Add => (vec![1.0; s.c], per_channel),
                    BinaryKind::Mul => (per_channel, vec![0.0; s.c]),
                };
                let mut id = self.push(ctx, Op::ChannelAffine { scale, bias }, vec![x], s)?;
                if act != Activation::Identity {
                    id = self.push(ctx, Op::Unary(act), vec![id], s)?;
                }
                (id, view)
            }
            (Value::Node { id: p, view: vp }, Value::Node { id: q, .. }) => {
                let (sa, sb) = (self.nodes[p].shape, self.nodes[q].shape);
                let shape =
                    sa.broadcast(sb).ok_or_else(|| ctx.invalid(format!("shapes {sa} and {sb} do not broadcast")))?;
                (self.push(ctx, Op::Binary { kind, activation: act, residual: None }, vec![p, q], shape)?, vp)
            }
            _ => return Err(ctx.invalid("both inputs are constants")),
        };
        Ok(Value::Node { id, view })
    }

    fn pool(&mut self, ctx: &Ctx, op: &Operator<'a>, code: BuiltinOperator, ins: &[usize]) -> Result<Value> {
        let (x, s) = self.map_input(ctx, ins, 0)?;
        let o = op.builtin_options_as_pool_2_doptions().ok_or_else(|| ctx.invalid("missing options"))?;
        let (kh, kw) = (
            Self::positive(ctx, "filter_height", o.filter_height())?,
            Self::positive(ctx, "filter_width", o.filter_width())?,
        );
        let (sh, sw) = (Self::positive(ctx, "stride_h", o.stride_h())?, Self::positive(ctx, "stride_w", o.stride_w())?);
        let (t, b) = Self::same_pad(ctx, o.padding(), s.h, kh, sh, 1)?;
        let (l, r) = Self::same_pad(ctx, o.padding(), s.w, kw, sw, 1)?;
        let window = Window { kh, kw, sh, sw, dh: 1, dw: 1, pad: [t, l, b, r] };
        let (oh, ow) =
            window.output_hw(s.h, s.w, false).ok_or_else(|| ctx.invalid(format!("window does not fit {s}")))?;
        // TFLite's average excludes the padding from the count.
        let kind = if code == BuiltinOperator::MAX_POOL_2D {
            PoolKind::Max
        } else {
            PoolKind::Avg { count_include_pad: false }
        };
        let shape = Shape::new(oh, ow, s.c);
        let mut id = self.push(ctx, Op::Pool { kind, window }, vec![x], shape)?;
        let act = Self::activation(ctx, o.fused_activation_function())?;
        if act != Activation::Identity {
            id = self.push(ctx, Op::Unary(act), vec![id], shape)?;
        }
        Ok(Self::node(id))
    }

    /// MEAN over the spatial axes `[1, 2]` (a global average pool; without `keep_dims` a
    /// `[1, C]` vector), or over the channels `[3]` with `keep_dims` (a 1x1 conv of weights 1/C).
    fn mean(&mut self, ctx: &Ctx, op: &Operator<'a>, ins: &[usize]) -> Result<Value> {
        let (x, s) = self.map_input(ctx, ins, 0)?;
        let (_, axes) = self.const_input(ctx, ins, 1)?;
        let keep = op.builtin_options_as_reducer_options().is_some_and(|o| o.keep_dims());
        let mut axes: Vec<i64> = axes.iter().map(|&a| if a < 0.0 { a as i64 + 4 } else { a as i64 }).collect();
        axes.sort_unstable();
        match (axes.as_slice(), keep) {
            ([1, 2], _) => {
                let id = self.push(ctx, Op::GlobalAvgPool, vec![x], Shape::new(1, 1, s.c))?;
                Ok(Value::Node { id, view: (!keep).then(|| vec![1, s.c]) })
            }
            ([3], true) => {
                Ok(Self::node(self.push(ctx, Op::Conv(Conv::channel_mean(s.c)), vec![x], Shape::new(s.h, s.w, 1))?))
            }
            (other, _) => Err(ctx.unsupported(
                "axes",
                format!("{other:?} (keep_dims={keep}): only [1, 2], or [3] with keep_dims, are supported"),
            )),
        }
    }

    /// FULLY_CONNECTED on a vector (a one-pixel node): weights `[N, K]`, bias, fused activation.
    fn fully_connected(&mut self, ctx: &Ctx, op: &Operator<'a>, ins: &[usize]) -> Result<Value> {
        let (x, s) = self.map_input(ctx, ins, 0)?;
        if s.pixels() != 1 {
            return Err(ctx.invalid(format!("input is a {s} map; a vector was expected")));
        }
        let o = op.builtin_options_as_fully_connected_options();
        if o.is_some_and(|o| o.weights_format() != tflite::FullyConnectedOptionsWeightsFormat::DEFAULT) {
            return Err(ctx.unsupported("weights_format", "only DEFAULT (float) weights are supported"));
        }
        let act = Self::activation(ctx, o.map_or(ActivationFunctionType::NONE, |o| o.fused_activation_function()))?;
        let (wd, w) = self.const_input(ctx, ins, 1)?;
        let [n, k] = wd[..] else { return Err(ctx.invalid(format!("weights of dims {wd:?} are not [N, K]"))) };
        if k != s.c {
            return Err(ctx.invalid(format!("weights expect {k} inputs, the vector has {}", s.c)));
        }
        let mut weights = vec![0.0; k * n];
        for ni in 0..n {
            for ki in 0..k {
                weights[ki * n + ni] = w[ni * k + ki];
            }
        }
        let bias = self.bias(ctx, ins, 2, n)?;
        let dense = Dense { cin: k, cout: n, weights, bias, activation: act, packed: Vec::new() };
        let id = self.push(ctx, Op::Dense(dense), vec![x], Shape::new(1, 1, n))?;
        Ok(Value::Node { id, view: Some(vec![1, n]) })
    }

    fn resize(&mut self, ctx: &Ctx, op: &Operator<'a>, ins: &[usize]) -> Result<Value> {
        let (x, s) = self.map_input(ctx, ins, 0)?;
        let (_, size) = self.const_input(ctx, ins, 1)?;
        let [h, w] = size[..] else {
            return Err(ctx.invalid(format!("size {size:?}: [new_height, new_width] expected")));
        };
        let ok = |v: f32| v >= 1.0 && v <= MAX_DIM as f32;
        if !ok(h) || !ok(w) {
            return Err(ctx.invalid(format!("size {size:?} is outside 1..={MAX_DIM}")));
        }
        let o = op.builtin_options_as_resize_bilinear_options();
        let coord = match o.map(|o| (o.align_corners(), o.half_pixel_centers())).unwrap_or((false, false)) {
            (false, false) => CoordMode::Asymmetric,
            (true, false) => CoordMode::AlignCorners,
            (false, true) => CoordMode::HalfPixel,
            (true, true) => return Err(ctx.unsupported("align_corners", "together with half_pixel_centers")),
        };
        let shape = Shape::new(h as usize, w as usize, s.c);
        Ok(Self::node(self.push(ctx, Op::Resize { mode: ResizeMode::Linear, coord }, vec![x], shape)?))
    }

    /// Zero padding `[[0, 0], [t, b], [l, r], [c0, c1]]`: on channels a [`Op::PadChannels`];
    /// spatial padding is folded into the convolution that reads it.
    fn pad(&mut self, ctx: &Ctx, ins: &[usize], out: usize) -> Result<Value> {
        let (x, s) = self.map_input(ctx, ins, 0)?;
        let (_, p) = self.const_input(ctx, ins, 1)?;
        if p.len() != 8
            || p.iter().any(|&v| !(0.0..=MAX_DIM as f32).contains(&v) || v.fract() != 0.0)
            || p[0] != 0.0
            || p[1] != 0.0
        {
            return Err(
                ctx.invalid(format!("paddings {p:?}: [[0, 0], [t, b], [l, r], [c0, c1]] in 0..={MAX_DIM} expected"))
            );
        }
        let p: Vec<usize> = p.iter().map(|&v| v as usize).collect();
        let spatial = [p[2], p[4], p[3], p[5]];
        match (spatial == [0; 4], p[6] == 0 && p[7] == 0) {
            (true, true) => Ok(Self::node(x)),
            (true, false) => {
                let shape = Shape::new(s.h, s.w, s.c + p[6] + p[7]);
                Ok(Self::node(self.push(ctx, Op::PadChannels { before: p[6], after: p[7] }, vec![x], shape)?))
            }
            (false, true) => {
                let readers = self.readers.get(&out).map(Vec::as_slice).unwrap_or_default();
                let conv = [BuiltinOperator::CONV_2D, BuiltinOperator::DEPTHWISE_CONV_2D];
                if readers.len() != 1 || !conv.contains(&readers[0]) {
                    return Err(ctx.invalid(format!(
                        "spatial padding {spatial:?} is supported only when a single convolution reads it"
                    )));
                }
                self.pending_pads.insert(out, spatial);
                Ok(Self::node(x))
            }
            (false, false) => Err(ctx.invalid(format!("paddings {p:?} pad channels and space at once"))),
        }
    }

    /// A reshape is a view of the same (NHWC, row-major) buffer.
    fn reshape(&mut self, ctx: &Ctx, ins: &[usize], out: usize) -> Result<Value> {
        let v = self.value(ctx, *ins.first().ok_or_else(|| ctx.invalid("missing input 0"))?)?;
        let Value::Node { id, .. } = v else { return Err(ctx.invalid("reshape of a constant is not supported")) };
        let dims = self.dims(ctx, out)?;
        if product(&dims) != Some(self.nodes[id].shape.len()) {
            return Err(
                ctx.invalid(format!("output dims {dims:?} do not hold the {} values", self.nodes[id].shape.len()))
            );
        }
        Ok(Value::Node { id, view: Some(dims) })
    }

    fn concat(&mut self, ctx: &Ctx, op: &Operator<'a>, ins: &[usize]) -> Result<Value> {
        let o = op.builtin_options_as_concatenation_options().ok_or_else(|| ctx.invalid("missing options"))?;
        let act = Self::activation(ctx, o.fused_activation_function())?;
        let mut parts = Vec::new();
        for &i in ins {
            match self.value(ctx, i)? {
                Value::Node { id, view } => parts.push((id, view)),
                Value::Const { .. } => return Err(ctx.invalid("concatenation of a constant is not supported")),
            }
        }
        if parts.is_empty() {
            return Err(ctx.invalid("no inputs"));
        }
        let ids: Vec<usize> = parts.iter().map(|p| p.0).collect();
        let (id, view) = if parts.iter().all(|p| p.1.is_none()) {
            if !(o.axis() == 3 || o.axis() == -1) {
                return Err(ctx.unsupported("axis", format!("{}: only channel concatenation of maps", o.axis())));
            }
            let first = self.nodes[ids[0]].shape;
            let c = ids.iter().map(|&i| self.nodes[i].shape.c).sum();
            (self.push(ctx, Op::Concat, ids, Shape::new(first.h, first.w, c))?, None)
        } else {
            let dims: Vec<Vec<usize>> = parts
                .iter()
                .map(|(id, v)| {
                    let s = self.nodes[*id].shape;
                    v.clone().unwrap_or_else(|| vec![1, s.h, s.w, s.c])
                })
                .collect();
            let rank = dims[0].len() as i32;
            let axis = if o.axis() < 0 { o.axis() + rank } else { o.axis() };
            if !(0..rank).contains(&axis) || dims.iter().any(|d| d.len() != dims[0].len()) {
                return Err(ctx.unsupported("axis", format!("{} for inputs {dims:?}", o.axis())));
            }
            let axis = axis as usize;
            if dims.iter().any(|d| d[..axis].iter().any(|&v| v != 1)) {
                return Err(ctx.unsupported("axis", format!("concatenation of {dims:?} along {axis} interleaves data")));
            }
            let mut out = dims[0].clone();
            out[axis] = dims.iter().map(|d| d[axis]).sum();
            let n = product(&out).ok_or_else(|| ctx.invalid("dims overflow"))?;
            (self.push(ctx, Op::FlatConcat, ids, Shape::new(1, 1, n))?, Some(out))
        };
        let id = if act == Activation::Identity {
            id
        } else {
            let shape = self.nodes[id].shape;
            self.push(ctx, Op::Unary(act), vec![id], shape)?
        };
        Ok(Value::Node { id, view })
    }
}
