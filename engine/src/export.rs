//! ONNX export: a graph in the engine's IR written as an ONNX model (opset 13), so that a model
//! made by the engine's tools (a pruned, clustered or wavelet model, a distilled head) runs in
//! other runtimes, and so that tract can check the engine's result on it independently.
//!
//! Every tensor of the exported graph is an NCHW `[1, C, H, W]` map, or a `[1, C]` vector
//! where ONNX models have one (after Gemm, flattening views and a vector's softmax, and
//! elementwise ops on those); the outputs are reshaped to the shapes the source model declared
//! ([`GraphOutput`]). Each IR op becomes the ONNX op(s) that compute the same values:
//!
//! - weights are re-laid out from the engine's layouts ([`Conv::weights`]) to ONNX's;
//! - a fused activation becomes its own node after the op (HardSwish as HardSigmoid and Mul,
//!   which opset 13 has), a fused residual add an Add and its activation;
//! - an inverted-residual block its three convolutions; a dense layer Flatten and Gemm;
//! - ChannelAffine a Mul and an Add; PadChannels a Pad of the channel axis;
//! - FlatConcat and Permute the Transpose, Reshape and Concat they were imported from.
//!
//! Int8 convolutions have no ONNX form here (they are refused, naming the node): export the
//! float model.

use std::collections::HashSet;

use prost::Message;
use tract_onnx::pb::{
    self, tensor_shape_proto::dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use crate::error::{Error, Result};
use crate::graph::{
    Activation, BinaryKind, Conv, CoordMode, Graph, GraphOutput, Node, Op, PoolKind, ResizeMode, Shape, Window,
};

/// The default-domain opset the exported model declares.
pub const OPSET: i64 = 13;
/// The ONNX IR version that goes with [`OPSET`].
const IR_VERSION: i64 = 7;
const FLOAT: i32 = pb::tensor_proto::DataType::Float as i32;
const INT64: i32 = pb::tensor_proto::DataType::Int64 as i32;

/// `graph` as the bytes of an ONNX model; `producer` names what wrote it (the model's
/// `producer_name`). The graph may be fused or not.
pub fn to_onnx(graph: &Graph, producer: &str) -> Result<Vec<u8>> {
    Ok(model(graph, producer)?.encode_to_vec())
}

fn model(graph: &Graph, producer: &str) -> Result<ModelProto> {
    let mut w = Writer::default();
    // Output names are taken first, so that no node's tensor takes one of them.
    w.used.extend(graph.outputs.iter().map(|o| o.name.clone()));
    let inputs = graph.inputs();
    let mut names: Vec<Tensor> = Vec::with_capacity(graph.nodes.len());
    let mut input = Vec::with_capacity(inputs);
    for (i, node) in graph.nodes.iter().enumerate() {
        let tensor = if i < inputs {
            let wanted = if inputs == 1 { &graph.input_name } else { &node.name };
            let name = w.fresh(wanted);
            input.push(value_info(&name, &nchw_dims(node.shape)));
            Tensor { name, flat: false }
        } else {
            let ins: Vec<Tensor> = node.inputs.iter().map(|&j| names[j].clone()).collect();
            w.node_op(graph, node, ins)?
        };
        names.push(tensor);
    }
    let mut output = Vec::with_capacity(graph.outputs.len());
    for o in &graph.outputs {
        let node = &graph.nodes[o.node];
        let dims = output_dims(o, node.shape);
        let mut x = names[o.node].name.clone();
        if !o.nchw && node.shape.pixels() > 1 {
            // The buffer as it is: the NHWC order.
            x = w.emit("Transpose", &[&x], &o.name, vec![ints("perm", &[0, 2, 3, 1])]);
        }
        // The output's own name: an Identity where the dims are already the declared ones.
        let same = if names[o.node].flat { vec![1, node.shape.c as i64] } else { nchw_dims(node.shape) };
        let input = if x == names[o.node].name && dims == same { vec![x] } else { vec![x, w.int64s(&o.name, &dims)] };
        let op_type = if input.len() == 1 { "Identity" } else { "Reshape" };
        w.nodes.push(NodeProto {
            name: o.name.clone(),
            op_type: op_type.into(),
            input,
            output: vec![o.name.clone()],
            ..Default::default()
        });
        output.push(value_info(&o.name, &dims));
    }
    let graph = GraphProto {
        name: "framecache".into(),
        node: w.nodes,
        initializer: w.initializers,
        input,
        output,
        ..Default::default()
    };
    Ok(ModelProto {
        ir_version: IR_VERSION,
        producer_name: producer.into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        graph: Some(graph),
        ..Default::default()
    })
}

/// The dims an output is declared with: the source model's, else `[1, C, H, W]` (`[1, C]`
/// for a vector).
fn output_dims(o: &GraphOutput, s: Shape) -> Vec<i64> {
    let declared = !o.onnx_shape.is_empty() && o.onnx_shape.iter().product::<usize>() == s.len();
    if declared {
        o.onnx_shape.iter().map(|&d| d as i64).collect()
    } else if s.pixels() == 1 {
        vec![1, s.c as i64]
    } else {
        nchw_dims(s)
    }
}

fn nchw_dims(s: Shape) -> Vec<i64> {
    vec![1, s.c as i64, s.h as i64, s.w as i64]
}

/// A float tensor's declaration, `name` with the dims `dims`.
pub fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| pb::tensor_shape_proto::Dimension {
            value: Some(dimension::Value::DimValue(d)),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An `INTS` attribute.
pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
    let r#type = pb::attribute_proto::AttributeType::Ints as i32;
    AttributeProto { name: name.into(), ints: v.to_vec(), r#type, ..Default::default() }
}

/// An `INT` attribute.
pub fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: v,
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        ..Default::default()
    }
}

/// A `FLOAT` attribute.
pub fn float(name: &str, v: f32) -> AttributeProto {
    let r#type = pb::attribute_proto::AttributeType::Float as i32;
    AttributeProto { name: name.into(), f: v, r#type, ..Default::default() }
}

/// A `STRING` attribute.
pub fn string(name: &str, v: &str) -> AttributeProto {
    let r#type = pb::attribute_proto::AttributeType::String as i32;
    AttributeProto { name: name.into(), s: v.as_bytes().to_vec(), r#type, ..Default::default() }
}

/// A window's attributes: kernel, strides, dilations and pads (ONNX orders pads as the IR
/// does: top, left, bottom, right).
fn window_attrs(w: &Window, dilations: bool) -> Vec<AttributeProto> {
    let mut a = vec![
        ints("kernel_shape", &[w.kh as i64, w.kw as i64]),
        ints("strides", &[w.sh as i64, w.sw as i64]),
        ints("pads", &w.pad.map(|p| p as i64)),
    ];
    if dilations {
        a.push(ints("dilations", &[w.dh as i64, w.dw as i64]));
    }
    a
}

/// A convolution's weights in ONNX's `[cout][cin / groups][kh][kw]` layout.
fn onnx_conv_weights(c: &Conv) -> Vec<f32> {
    let (kh, kw) = (c.window.kh, c.window.kw);
    let taps = kh * kw;
    let mut out = vec![0.0; c.weights.len()];
    if c.is_depthwise() {
        // Engine `[ky][kx][c]`.
        for (i, &v) in c.weights.iter().enumerate() {
            let (tap, ch) = (i / c.cout, i % c.cout);
            out[ch * taps + tap] = v;
        }
        return out;
    }
    // Engine `[group][ky][kx][ci_in_group][co_in_group]`.
    let (cin_g, cout_g) = (c.cin / c.groups, c.cout / c.groups);
    for (i, &v) in c.weights.iter().enumerate() {
        let co_g = i % cout_g;
        let ci = i / cout_g % cin_g;
        let tap = i / (cout_g * cin_g) % taps;
        let g = i / (cout_g * cin_g * taps);
        out[((g * cout_g + co_g) * cin_g + ci) * taps + tap] = v;
    }
    out
}

#[derive(Default)]
struct Writer {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    used: HashSet<String>,
}

impl Writer {
    /// `base`, or `base_1`, `base_2`, … : a tensor name no other tensor has.
    fn fresh(&mut self, base: &str) -> String {
        let base = if base.is_empty() { "t" } else { base };
        let mut name = base.to_owned();
        let mut k = 0;
        while !self.used.insert(name.clone()) {
            k += 1;
            name = format!("{base}_{k}");
        }
        name
    }

    /// One node of `op` on `inputs`; returns its output's name (fresh, from `base`).
    fn emit(&mut self, op: &str, inputs: &[&str], base: &str, attribute: Vec<AttributeProto>) -> String {
        let out = self.fresh(base);
        self.nodes.push(NodeProto {
            name: out.clone(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute,
            ..Default::default()
        });
        out
    }

    fn floats(&mut self, base: &str, dims: &[i64], data: &[f32]) -> String {
        let name = self.fresh(base);
        let raw_data = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: dims.to_vec(),
            data_type: FLOAT,
            raw_data,
            ..Default::default()
        });
        name
    }

    fn int64s(&mut self, base: &str, data: &[i64]) -> String {
        let name = self.fresh(&format!("{base}/shape"));
        let raw_data = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: vec![data.len() as i64],
            data_type: INT64,
            raw_data,
            ..Default::default()
        });
        name
    }

    /// `act` applied to `x`; `base` names the result.
    fn activation(&mut self, x: String, act: Activation, base: &str) -> String {
        match act {
            Activation::Identity => x,
            Activation::Relu => self.emit("Relu", &[&x], base, vec![]),
            Activation::Sigmoid => self.emit("Sigmoid", &[&x], base, vec![]),
            Activation::Clip { min, max } => {
                let lo = self.floats(&format!("{base}/min"), &[], &[min]);
                let hi = self.floats(&format!("{base}/max"), &[], &[max]);
                self.emit("Clip", &[&x, &lo, &hi], base, vec![])
            }
            Activation::HardSigmoid { alpha, beta } => {
                self.emit("HardSigmoid", &[&x], base, vec![float("alpha", alpha), float("beta", beta)])
            }
            Activation::HardSwish { alpha, beta } => {
                let attrs = vec![float("alpha", alpha), float("beta", beta)];
                let gate = self.emit("HardSigmoid", &[&x], &format!("{base}/gate"), attrs);
                self.emit("Mul", &[&x, &gate], base, vec![])
            }
        }
    }

    /// `conv` on `x`, its activation, then a residual add of `residual` (and its activation)
    /// when the convolution has one fused.
    fn conv(&mut self, node: &Node, conv: &Conv, x: &str, residual: Option<&str>, base: &str) -> Result<String> {
        if conv.quant.is_some() {
            return Err(Error::InvalidModel {
                node: node.name.clone(),
                op: node.op.name().into(),
                reason: "an int8 convolution has no ONNX form here: export the float model".into(),
            });
        }
        let (kh, kw) = (conv.window.kh as i64, conv.window.kw as i64);
        let dims = [conv.cout as i64, (conv.cin / conv.groups) as i64, kh, kw];
        let weights = self.floats(&format!("{base}/weight"), &dims, &onnx_conv_weights(conv));
        let bias = self.floats(&format!("{base}/bias"), &[conv.cout as i64], &conv.bias);
        let mut attrs = window_attrs(&conv.window, true);
        attrs.push(int("group", conv.groups as i64));
        let conv_out = if conv.activation == Activation::Identity && conv.residual.is_none() {
            base.to_owned()
        } else {
            format!("{base}/conv")
        };
        let y = self.emit("Conv", &[x, &weights, &bias], &conv_out, attrs);
        Ok(self.epilogue(y, conv.activation, conv.residual.zip(residual), base))
    }

    /// `act` on `y`, then, with `residual`, the add of its tensor and that add's activation:
    /// what a fused epilogue computes. The last tensor is named `base`.
    fn epilogue(&mut self, y: String, act: Activation, residual: Option<(Activation, &str)>, base: &str) -> String {
        let Some((after, r)) = residual else { return self.activation(y, act, base) };
        let y = self.activation(y, act, &format!("{base}/act"));
        let sum = if after == Activation::Identity { base.to_owned() } else { format!("{base}/add") };
        let sum = self.emit("Add", &[&y, r], &sum, vec![]);
        self.activation(sum, after, base)
    }

    /// The ONNX nodes of one IR node on the tensors `ins`; returns its output.
    fn node_op(&mut self, graph: &Graph, node: &Node, mut ins: Vec<Tensor>) -> Result<Tensor> {
        let base = node.name.as_str();
        let c = node.shape.c as i64;
        let flat_in = ins.iter().all(|t| t.flat);
        // Ops that keep a vector flat: elementwise on one vector, or on vectors only.
        let keeps_flat = match &node.op {
            Op::Unary(_) | Op::PRelu { .. } | Op::ChannelAffine { .. } | Op::Softmax => true,
            Op::Binary { .. } | Op::Concat => flat_in,
            // Each reads any form itself.
            Op::Dense(_) | Op::FlatConcat => true,
            _ => false,
        };
        if !keeps_flat {
            for (k, (t, &j)) in ins.iter_mut().zip(&node.inputs).enumerate() {
                if t.flat {
                    let name = self.reshaped(&t.name, &nchw_dims(graph.nodes[j].shape), &format!("{base}/map{k}"));
                    *t = Tensor { name, flat: false };
                }
            }
        }
        let flat = ins.first().is_some_and(|t| t.flat) && keeps_flat;
        let names: Vec<&str> = ins.iter().map(|t| t.name.as_str()).collect();
        let x = names.first().copied().unwrap_or_default();
        // A per-channel constant: `[C]` on a `[1, C]` vector, `[1, C, 1, 1]` on a map.
        let channel = |w: &mut Self, what: &str, v: &[f32], dims: &[i64]| {
            let dims = if flat { &[v.len() as i64][..] } else { dims };
            w.floats(&format!("{base}/{what}"), dims, v)
        };
        let map = |name: String| Tensor { name, flat: false };
        let vector = |name: String| Tensor { name, flat: true };
        let out = match &node.op {
            Op::Input => unreachable!("inputs come first"),
            Op::Conv(conv) => map(self.conv(node, conv, x, names.get(1).copied(), base)?),
            Op::Bottleneck(b) => {
                let mut y = x.to_owned();
                if let Some(e) = &b.expand {
                    y = self.conv(node, e, &y, None, &format!("{base}/expand"))?;
                }
                y = self.conv(node, &b.depthwise, &y, None, &format!("{base}/depthwise"))?;
                map(self.conv(node, &b.project, &y, names.get(1).copied(), base)?)
            }
            Op::ConvTranspose(t) => {
                let (kh, kw) = (t.window.kh, t.window.kw);
                // Engine `[ky][kx][ci][co]`, ONNX `[ci][co][ky][kx]`.
                let mut weights = vec![0.0; t.weights.len()];
                for (i, &v) in t.weights.iter().enumerate() {
                    let (co, ci, tap) = (i % t.cout, i / t.cout % t.cin, i / (t.cout * t.cin));
                    weights[(ci * t.cout + co) * kh * kw + tap] = v;
                }
                let dims = [t.cin as i64, t.cout as i64, kh as i64, kw as i64];
                let w = self.floats(&format!("{base}/weight"), &dims, &weights);
                let b = self.floats(&format!("{base}/bias"), &[t.cout as i64], &t.bias);
                let conv_out =
                    if t.activation == Activation::Identity { base.to_owned() } else { format!("{base}/conv") };
                let y = self.emit("ConvTranspose", &[x, &w, &b], &conv_out, window_attrs(&t.window, true));
                map(self.activation(y, t.activation, base))
            }
            Op::Pool { kind, window } => {
                let input = graph.nodes[node.inputs[0]].shape;
                // ONNX's ceil_mode where the floor of the window count gives a smaller map.
                let ceil = window.output_hw(input.h, input.w, false) != Some((node.shape.h, node.shape.w));
                let mut attrs = window_attrs(window, false);
                attrs.push(int("ceil_mode", i64::from(ceil)));
                map(match kind {
                    PoolKind::Max => {
                        attrs.push(ints("dilations", &[window.dh as i64, window.dw as i64]));
                        self.emit("MaxPool", &[x], base, attrs)
                    }
                    PoolKind::Avg { count_include_pad } => {
                        attrs.push(int("count_include_pad", i64::from(*count_include_pad)));
                        self.emit("AveragePool", &[x], base, attrs)
                    }
                })
            }
            Op::GlobalAvgPool => map(self.emit("GlobalAveragePool", &[x], base, vec![])),
            Op::Resize { mode, coord } => {
                let sizes = self.int64s(base, &nchw_dims(node.shape));
                let coord = match coord {
                    CoordMode::HalfPixel => "half_pixel",
                    CoordMode::PytorchHalfPixel => "pytorch_half_pixel",
                    CoordMode::AlignCorners => "align_corners",
                    CoordMode::Asymmetric => "asymmetric",
                };
                let mut attrs = vec![string("coordinate_transformation_mode", coord)];
                match mode {
                    ResizeMode::Linear => attrs.push(string("mode", "linear")),
                    ResizeMode::Nearest { floor } => {
                        attrs.push(string("mode", "nearest"));
                        attrs.push(string("nearest_mode", if *floor { "floor" } else { "round_prefer_floor" }));
                    }
                }
                map(self.emit("Resize", &[x, "", "", &sizes], base, attrs))
            }
            Op::Unary(act) => Tensor {
                name: match act {
                    Activation::Identity => self.emit("Identity", &[x], base, vec![]),
                    _ => self.activation(x.to_owned(), *act, base),
                },
                flat,
            },
            Op::Binary { kind, activation, residual } => {
                let op = match kind {
                    BinaryKind::Add => "Add",
                    BinaryKind::Mul => "Mul",
                };
                let plain = *activation == Activation::Identity && residual.is_none();
                let y =
                    self.emit(op, &names[..2], &if plain { base.to_owned() } else { format!("{base}/{op}") }, vec![]);
                Tensor { name: self.epilogue(y, *activation, residual.zip(names.get(2).copied()), base), flat }
            }
            Op::ChannelAffine { scale, bias } => {
                let s = channel(self, "scale", scale, &[1, c, 1, 1]);
                let b = channel(self, "bias", bias, &[1, c, 1, 1]);
                let y = self.emit("Mul", &[x, &s], &format!("{base}/scale"), vec![]);
                Tensor { name: self.emit("Add", &[&y, &b], base, vec![]), flat }
            }
            Op::PRelu { slope } => {
                // One slope per channel, or one for all.
                let s = if slope.len() == 1 {
                    self.floats(&format!("{base}/slope"), &[1], slope)
                } else {
                    channel(self, "slope", slope, &[c, 1, 1])
                };
                Tensor { name: self.emit("PRelu", &[x, &s], base, vec![]), flat }
            }
            // A vector's softmax on its `[1, C]` form, as classifiers end (and as importers
            // read it).
            Op::Softmax if node.shape.pixels() == 1 => {
                let x = if flat { x.to_owned() } else { self.flattened(x, base) };
                vector(self.emit("Softmax", &[&x], base, vec![int("axis", 1)]))
            }
            Op::Softmax => map(self.emit("Softmax", &[x], base, vec![int("axis", 1)])),
            Op::Concat => Tensor { name: self.emit("Concat", &names, base, vec![int("axis", 1)]), flat },
            Op::PadChannels { before, after } => {
                let pads = self.int64s(base, &[0, *before as i64, 0, 0, 0, *after as i64, 0, 0]);
                map(self.emit("Pad", &[x, &pads], base, vec![string("mode", "constant")]))
            }
            Op::FlatConcat => {
                // Each input's buffer, its NHWC order, as a `[1, N]` row.
                let flat = self.int64s(base, &[1, -1]);
                let mut parts = Vec::with_capacity(ins.len());
                for (k, t) in ins.iter().enumerate() {
                    parts.push(if t.flat {
                        t.name.clone()
                    } else {
                        let perm = vec![ints("perm", &[0, 2, 3, 1])];
                        let nhwc = self.emit("Transpose", &[&t.name], &format!("{base}/nhwc{k}"), perm);
                        self.emit("Reshape", &[&nhwc, &flat], &format!("{base}/flat{k}"), vec![])
                    });
                }
                let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                vector(self.emit("Concat", &parts, base, vec![int("axis", 1)]))
            }
            Op::Permute { perm } => {
                let perm = vec![ints("perm", &perm.map(|p| p as i64))];
                let y = self.emit("Transpose", &[x], &format!("{base}/transpose"), perm);
                vector(self.reshaped(&y, &[1, c], base))
            }
            Op::Dense(d) => {
                let x = if flat { x.to_owned() } else { self.flattened(x, base) };
                let w = self.floats(&format!("{base}/weight"), &[d.cin as i64, d.cout as i64], &d.weights);
                let b = self.floats(&format!("{base}/bias"), &[d.cout as i64], &d.bias);
                let gemm = if d.activation == Activation::Identity { base.to_owned() } else { format!("{base}/gemm") };
                let y = self.emit("Gemm", &[&x, &w, &b], &gemm, vec![]);
                vector(self.activation(y, d.activation, base))
            }
        };
        Ok(out)
    }

    /// A map with one pixel as its `[1, C]` vector.
    fn flattened(&mut self, x: &str, base: &str) -> String {
        self.emit("Flatten", &[x], &format!("{base}/flatten"), vec![int("axis", 1)])
    }

    /// `x` reshaped to `dims`, named `out`.
    fn reshaped(&mut self, x: &str, dims: &[i64], out: &str) -> String {
        let shape = self.int64s(out, dims);
        self.emit("Reshape", &[x, &shape], out, vec![])
    }
}

/// A tensor of the exported graph: a `[1, C, H, W]` map, or (`flat`) a `[1, C]` vector, the
/// form ONNX models give vectors after Flatten and Gemm.
#[derive(Clone)]
struct Tensor {
    name: String,
    flat: bool,
}
