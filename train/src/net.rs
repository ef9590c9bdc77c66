//! The engine's IR as a candle module: [`Net`] runs any part of a [`Graph`] on candle tensors
//! (NCHW, any batch), with every weight a candle [`Var`], so a head, a backbone or a whole
//! imported model can be evaluated and trained with autograd, then written back into the IR.
//!
//! Each op computes what the engine's kernel computes (the same window arithmetic, the same
//! resize taps, the same fused activations and residual adds), so a forward pass equals the
//! engine's full inference within float rounding (tested on the real models). Int8
//! convolutions run as fake quantization: the input rounded to its `u8` grid and the weights
//! to their per-channel int8 grid, each with a straight-through gradient ([`crate::qat`]).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var, D};
use framecache::graph::{
    resize_taps, Activation, BinaryKind, Conv, ConvTranspose, Dense, Graph, Node, Op, PoolKind, Window,
};

use crate::{Error, Result};

/// Where a parameter lives in the IR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// A convolution node's own weights, or a bottleneck's expansion, depthwise or projection.
    Conv(ConvPart),
    ConvTranspose,
    Dense,
    /// `ChannelAffine` scale and PRelu slopes (the `weight`), `ChannelAffine` bias.
    Affine,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvPart {
    Whole,
    Expand,
    Depthwise,
    Project,
}

/// One parameter: a node's weight or bias.
pub struct Param {
    pub node: usize,
    pub slot: Slot,
    pub bias: bool,
    pub var: Var,
}

/// A graph whose weights are candle variables.
pub struct Net {
    graph: Graph,
    params: Vec<Param>,
    /// `(node, slot, bias)` → index in `params`.
    index: HashMap<(usize, Slot, bool), usize>,
    device: Device,
}

fn unsupported(node: &Node, reason: impl Into<String>) -> Error {
    Error::Unsupported { node: node.name.clone(), op: node.op.name().into(), reason: reason.into() }
}

/// A convolution's weights between the engine's layout and candle's (`to_candle`):
/// `[cout, cin / groups, kh, kw]`; a depthwise convolution keeps the engine's own `[kh * kw, c]`.
fn conv_layout(c: &Conv, v: &[f32], to_candle: bool) -> Vec<f32> {
    let w = &c.window;
    if c.is_depthwise() {
        return v.to_vec();
    }
    let (cin_g, cout_g) = (c.cin / c.groups, c.cout / c.groups);
    let mut out = vec![0.0; v.len()];
    for g in 0..c.groups {
        for ky in 0..w.kh {
            for kx in 0..w.kw {
                for ci in 0..cin_g {
                    for co in 0..cout_g {
                        let e = (((g * w.kh + ky) * w.kw + kx) * cin_g + ci) * cout_g + co;
                        let k = (((g * cout_g + co) * cin_g + ci) * w.kh + ky) * w.kw + kx;
                        if to_candle {
                            out[k] = v[e];
                        } else {
                            out[e] = v[k];
                        }
                    }
                }
            }
        }
    }
    out
}

/// The candle shape of [`conv_layout`]'s weights.
fn conv_shape(c: &Conv) -> Vec<usize> {
    let w = &c.window;
    if c.is_depthwise() {
        vec![w.kh * w.kw, c.cout]
    } else {
        vec![c.cout, c.cin / c.groups, w.kh, w.kw]
    }
}

/// `[ky][kx][ci][co]` → `[ci, co, kh, kw]` (candle's transposed-convolution layout), and back.
fn transpose_layout(ct: &ConvTranspose, v: &[f32], to_candle: bool) -> Vec<f32> {
    let (kh, kw, ci_n, co_n) = (ct.window.kh, ct.window.kw, ct.cin, ct.cout);
    let mut out = vec![0.0; v.len()];
    for ky in 0..kh {
        for kx in 0..kw {
            for ci in 0..ci_n {
                for co in 0..co_n {
                    let e = ((ky * kw + kx) * ci_n + ci) * co_n + co;
                    let k = ((ci * co_n + co) * kh + ky) * kw + kx;
                    if to_candle {
                        out[k] = v[e];
                    } else {
                        out[e] = v[k];
                    }
                }
            }
        }
    }
    out
}

/// A convolution's float weights: its own, or for an int8 convolution the dequantized ones.
fn float_weights(c: &Conv) -> Vec<f32> {
    match &c.quant {
        None => c.weights.clone(),
        Some(q) => {
            q.weights.iter().enumerate().map(|(i, &w)| w as f32 * q.weight_scale[c.weight_channels(i).1]).collect()
        }
    }
}

fn activation(x: &Tensor, a: Activation) -> Result<Tensor> {
    Ok(match a {
        Activation::Identity => x.clone(),
        Activation::Relu => x.relu()?,
        Activation::Clip { min, max } => x.clamp(min, max)?,
        Activation::HardSigmoid { alpha, beta } => x.affine(alpha as f64, beta as f64)?.clamp(0f32, 1f32)?,
        Activation::HardSwish { alpha, beta } => (x * x.affine(alpha as f64, beta as f64)?.clamp(0f32, 1f32)?)?,
        Activation::Sigmoid => candle_nn::ops::sigmoid(x)?,
    })
}

/// `x` padded along `dim` with `before` and `after` entries of `value`.
fn pad_value(x: &Tensor, dim: usize, before: usize, after: usize, value: f32) -> Result<Tensor> {
    if before == 0 && after == 0 {
        return Ok(x.clone());
    }
    if value == 0.0 {
        return Ok(x.pad_with_zeros(dim, before, after)?);
    }
    let mut parts = Vec::new();
    let mut shape = x.dims().to_vec();
    if before > 0 {
        shape[dim] = before;
        parts.push(Tensor::full(value, shape.clone(), x.device())?);
    }
    parts.push(x.clone());
    if after > 0 {
        shape[dim] = after;
        parts.push(Tensor::full(value, shape, x.device())?);
    }
    Ok(Tensor::cat(&parts, dim)?)
}

/// `x` (NCHW) padded as `window` pads, plus whatever extra rows and columns at the end an
/// output of `oh x ow` reads beyond them (a ceil-mode pool), with `value`.
fn pad_window(x: &Tensor, w: &Window, oh: usize, ow: usize, value: f32) -> Result<Tensor> {
    let (h, wd) = (x.dim(2)?, x.dim(3)?);
    let need_h = (oh - 1) * w.sh + w.dh * (w.kh - 1) + 1;
    let need_w = (ow - 1) * w.sw + w.dw * (w.kw - 1) + 1;
    let bottom = need_h.saturating_sub(h + w.pad[0]);
    let right = need_w.saturating_sub(wd + w.pad[1]);
    let x = pad_value(x, 2, w.pad[0], bottom, value)?;
    let x = pad_value(&x, 3, w.pad[1], right, value)?;
    // A window whose padding is larger than what the outputs read: drop the unread end.
    Ok(x.narrow(2, 0, need_h)?.narrow(3, 0, need_w)?)
}

/// Every `s`-th index of `0..n`, as an index tensor.
fn every(s: usize, count: usize, device: &Device) -> Result<Tensor> {
    let ids: Vec<u32> = (0..count).map(|i| (i * s) as u32).collect();
    Ok(Tensor::from_vec(ids, count, device)?)
}

/// A depthwise convolution as a sum over its taps (candle's grouped convolution runs one
/// convolution per channel): `w` is `[kh * kw, c]`, `b` is `[c]`.
fn depthwise(x: &Tensor, c: &Conv, w: &Tensor, b: &Tensor, oh: usize, ow: usize) -> Result<Tensor> {
    let win = &c.window;
    let p = pad_window(x, win, oh, ow, 0.0)?;
    let (span_h, span_w) = ((oh - 1) * win.sh + 1, (ow - 1) * win.sw + 1);
    let (rows, cols) = (every(win.sh, oh, x.device())?, every(win.sw, ow, x.device())?);
    let mut acc: Option<Tensor> = None;
    for ky in 0..win.kh {
        for kx in 0..win.kw {
            let mut tap = p.narrow(2, ky * win.dh, span_h)?.narrow(3, kx * win.dw, span_w)?;
            if win.sh > 1 {
                tap = tap.contiguous()?.index_select(&rows, 2)?;
            }
            if win.sw > 1 {
                tap = tap.contiguous()?.index_select(&cols, 3)?;
            }
            let wk = w.narrow(0, ky * win.kw + kx, 1)?.reshape((1, c.cout, 1, 1))?;
            let term = tap.broadcast_mul(&wk)?;
            acc = Some(match acc {
                None => term,
                Some(a) => (a + term)?,
            });
        }
    }
    let acc = acc.expect("a window has at least one tap");
    Ok(acc.broadcast_add(&b.reshape((1, c.cout, 1, 1))?)?)
}

/// Fake quantization of an int8 convolution's input (round to the `u8` grid and back), with
/// the straight-through estimator: the forward value is quantized, the gradient passes as is.
fn fake_quant(x: &Tensor, scale: f32, zero: u8) -> Result<Tensor> {
    let q = (x / scale as f64)?.round()?.clamp(-(zero as f32), 255.0 - zero as f32)?;
    let q = (q * scale as f64)?;
    Ok((x + (q - x)?.detach())?)
}

/// Fake quantization of an int8 convolution's weights (candle layout, output channel first):
/// each rounded to its channel's grid `scale[co] · {-127..=127}`, with the straight-through
/// estimator, so that quantization-aware training moves the float weights under the grid.
fn fake_quant_weights(w: &Tensor, scale: &[f32]) -> Result<Tensor> {
    let s = Tensor::from_slice(scale, (scale.len(), 1, 1, 1), w.device())?;
    let q = w.broadcast_div(&s)?.round()?.clamp(-127f32, 127f32)?.broadcast_mul(&s)?;
    Ok((w + (q - w)?.detach())?)
}

/// The resize of `x` (NCHW) to `oh x ow` as two matrix products with the engine's taps.
fn resize(
    x: &Tensor,
    op_mode: framecache::graph::ResizeMode,
    coord: framecache::graph::CoordMode,
    oh: usize,
    ow: usize,
) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let matrix = |n_in: usize, n_out: usize| -> Result<Tensor> {
        let mut m = vec![0f32; n_out * n_in];
        for o in 0..n_out {
            let (i0, i1, f) = resize_taps(op_mode, coord, o, n_in, n_out);
            m[o * n_in + i0] += 1.0 - f;
            m[o * n_in + i1] += f;
        }
        Ok(Tensor::from_vec(m, (1, n_out, n_in), x.device())?)
    };
    let rows = matrix(h, oh)?;
    let cols = matrix(w, ow)?.transpose(1, 2)?.contiguous()?;
    let y = rows.broadcast_matmul(&x.reshape((n * c, h, w))?)?;
    let y = y.broadcast_matmul(&cols)?;
    Ok(y.reshape((n, c, oh, ow))?)
}

impl Net {
    /// Every weight of `graph` as a variable on `device`. Any node of the graph can then run;
    /// an op this module does not implement fails when it is run, naming the node.
    pub fn new(graph: Graph, device: &Device) -> Result<Self> {
        let mut params = Vec::new();
        let mut add = |node: usize, slot: Slot, bias: bool, data: Vec<f32>, shape: Vec<usize>| -> Result<()> {
            let t = Tensor::from_vec(data, shape, device)?;
            params.push(Param { node, slot, bias, var: Var::from_tensor(&t)? });
            Ok(())
        };
        for (i, node) in graph.nodes.iter().enumerate() {
            let mut conv = |c: &Conv, part: ConvPart| -> Result<()> {
                add(i, Slot::Conv(part), false, conv_layout(c, &float_weights(c), true), conv_shape(c))?;
                add(i, Slot::Conv(part), true, c.bias.clone(), vec![c.cout])
            };
            match &node.op {
                Op::Conv(c) => conv(c, ConvPart::Whole)?,
                Op::Bottleneck(b) => {
                    if let Some(e) = &b.expand {
                        conv(e, ConvPart::Expand)?;
                    }
                    conv(&b.depthwise, ConvPart::Depthwise)?;
                    conv(&b.project, ConvPart::Project)?;
                }
                Op::ConvTranspose(ct) => {
                    let w = transpose_layout(ct, &ct.weights, true);
                    add(i, Slot::ConvTranspose, false, w, vec![ct.cin, ct.cout, ct.window.kh, ct.window.kw])?;
                    add(i, Slot::ConvTranspose, true, ct.bias.clone(), vec![ct.cout])?;
                }
                Op::Dense(d) => {
                    add(i, Slot::Dense, false, d.weights.clone(), vec![d.cin, d.cout])?;
                    add(i, Slot::Dense, true, d.bias.clone(), vec![d.cout])?;
                }
                Op::ChannelAffine { scale, bias } => {
                    add(i, Slot::Affine, false, scale.clone(), vec![scale.len()])?;
                    add(i, Slot::Affine, true, bias.clone(), vec![bias.len()])?;
                }
                Op::PRelu { slope } => add(i, Slot::Affine, false, slope.clone(), vec![slope.len()])?,
                _ => {}
            }
        }
        let index = params.iter().enumerate().map(|(k, p)| ((p.node, p.slot, p.bias), k)).collect();
        Ok(Self { graph, params, index, device: device.clone() })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// The variables of the nodes for which `train` is true (what an optimiser updates).
    pub fn vars(&self, train: impl Fn(usize, &Node) -> bool) -> Vec<Var> {
        self.params.iter().filter(|p| train(p.node, &self.graph.nodes[p.node])).map(|p| p.var.clone()).collect()
    }

    fn param(&self, node: usize, slot: Slot, bias: bool) -> &Tensor {
        self.params[self.index[&(node, slot, bias)]].var.as_tensor()
    }

    /// Runs the nodes that `outputs` need, from `feeds` (node index → NCHW tensor; node 0 is
    /// the input). Nodes that are fed are not computed, so a feed at a tap runs only the part
    /// of the graph after it. Returns the tensors of `outputs`, in order.
    pub fn forward(&self, feeds: &[(usize, Tensor)], outputs: &[usize]) -> Result<Vec<Tensor>> {
        let n = self.graph.nodes.len();
        let mut values: Vec<Option<Tensor>> = vec![None; n];
        for (i, t) in feeds {
            if *i >= n {
                return Err(Error::Input(format!("feed for node #{i}, the graph has {n} nodes")));
            }
            values[*i] = Some(t.clone());
        }
        // What must be computed: the ancestors of the outputs, stopping at fed nodes.
        let mut need = vec![false; n];
        let mut stack: Vec<usize> = outputs.to_vec();
        while let Some(i) = stack.pop() {
            if i >= n {
                return Err(Error::Input(format!("output node #{i}, the graph has {n} nodes")));
            }
            if need[i] {
                continue;
            }
            need[i] = true;
            if values[i].is_none() {
                stack.extend(self.graph.nodes[i].inputs.iter().copied());
            }
        }
        // The last reader of each value, so that intermediate tensors are dropped early.
        let mut last_use = vec![0usize; n];
        for i in (0..n).filter(|&i| need[i] && values[i].is_none()) {
            for &j in &self.graph.nodes[i].inputs {
                last_use[j] = last_use[j].max(i);
            }
        }
        for i in 0..n {
            if !need[i] || values[i].is_some() {
                continue;
            }
            let node = &self.graph.nodes[i];
            let inputs: Vec<&Tensor> = node
                .inputs
                .iter()
                .map(|&j| values[j].as_ref().ok_or_else(|| Error::Input(format!("node '{}' has no value", node.name))))
                .collect::<Result<_>>()?;
            let y = self.node(i, node, &inputs)?;
            values[i] = Some(y);
            for &j in &node.inputs {
                if last_use[j] == i && !outputs.contains(&j) && !feeds.iter().any(|(f, _)| *f == j) {
                    values[j] = None;
                }
            }
        }
        outputs
            .iter()
            .map(|&o| values[o].clone().ok_or_else(|| Error::Input(format!("node #{o} not computed"))))
            .collect()
    }

    fn conv(&self, i: usize, part: ConvPart, c: &Conv, x: &Tensor, oh: usize, ow: usize) -> Result<Tensor> {
        let slot = Slot::Conv(part);
        let (w, b) = (self.param(i, slot, false), self.param(i, slot, true));
        let (x, quantized) = match &c.quant {
            Some(q) => (fake_quant(x, q.input_scale, q.input_zero)?, Some(fake_quant_weights(w, &q.weight_scale)?)),
            None => (x.clone(), None),
        };
        let w = quantized.as_ref().unwrap_or(w);
        let y = if c.is_depthwise() {
            depthwise(&x, c, w, b, oh, ow)?
        } else {
            let win = &c.window;
            if win.dh != win.dw || win.sh != win.sw {
                // candle takes one stride and one dilation for both axes.
                let reason = format!("stride {}x{} or dilation {}x{} differ by axis", win.sh, win.sw, win.dh, win.dw);
                return Err(unsupported(&self.graph.nodes[i], reason));
            }
            let p = pad_window(&x, win, oh, ow, 0.0)?;
            let y = p.conv2d(w, 0, win.sh, win.dh, c.groups)?;
            y.broadcast_add(&b.reshape((1, c.cout, 1, 1))?)?
        };
        activation(&y, c.activation)
    }

    /// One node on its inputs' values.
    fn node(&self, i: usize, node: &Node, x: &[&Tensor]) -> Result<Tensor> {
        let (oh, ow) = (node.shape.h, node.shape.w);
        let residual = |y: Tensor, act: Option<Activation>| -> Result<Tensor> {
            match act {
                Some(a) => activation(&(y + *x.last().expect("a residual is the last input"))?, a),
                None => Ok(y),
            }
        };
        Ok(match &node.op {
            Op::Input => return Err(unsupported(node, "the input node must be fed")),
            Op::Conv(c) => {
                let y = self.conv(i, ConvPart::Whole, c, x[0], oh, ow)?;
                residual(y, c.residual)?
            }
            Op::Bottleneck(b) => {
                let mut y = x[0].clone();
                if let Some(e) = &b.expand {
                    let (h, w) = (y.dim(2)?, y.dim(3)?);
                    y = self.conv(i, ConvPart::Expand, e, &y, h, w)?;
                }
                y = self.conv(i, ConvPart::Depthwise, &b.depthwise, &y, oh, ow)?;
                y = self.conv(i, ConvPart::Project, &b.project, &y, oh, ow)?;
                residual(y, b.project.residual)?
            }
            Op::ConvTranspose(ct) => {
                let win = &ct.window;
                if win.sh != win.sw || win.dh != win.dw {
                    return Err(unsupported(node, "stride or dilation differs by axis"));
                }
                let (w, b) = (self.param(i, Slot::ConvTranspose, false), self.param(i, Slot::ConvTranspose, true));
                let full = x[0].conv_transpose2d(w, 0, 0, win.sh, win.dh)?;
                let y = full.narrow(2, win.pad[0], oh)?.narrow(3, win.pad[1], ow)?;
                activation(&y.broadcast_add(&b.reshape((1, ct.cout, 1, 1))?)?, ct.activation)?
            }
            Op::Pool { kind, window } => {
                if window.dh != 1 || window.dw != 1 {
                    return Err(unsupported(node, "a dilated pool"));
                }
                let k = (window.kh, window.kw);
                let s = (window.sh, window.sw);
                match kind {
                    PoolKind::Max => {
                        pad_window(x[0], window, oh, ow, f32::NEG_INFINITY)?.max_pool2d_with_stride(k, s)?
                    }
                    PoolKind::Avg { count_include_pad } => {
                        let sum = pad_window(x[0], window, oh, ow, 0.0)?.avg_pool2d_with_stride(k, s)?;
                        // Divide by the positions each window covers: the input, plus the
                        // declared padding when it counts (never the ceil-mode overhang).
                        let (h, w) = (x[0].dim(2)?, x[0].dim(3)?);
                        let ones = Tensor::ones((1, 1, h, w), DType::F32, x[0].device())?;
                        let ones = if *count_include_pad {
                            let p = window.pad;
                            pad_value(&pad_value(&ones, 2, p[0], p[2], 1.0)?, 3, p[1], p[3], 1.0)?
                        } else {
                            ones
                        };
                        let shifted = Window { pad: if *count_include_pad { [0; 4] } else { window.pad }, ..*window };
                        let count = pad_window(&ones, &shifted, oh, ow, 0.0)?.avg_pool2d_with_stride(k, s)?;
                        sum.broadcast_div(&count)?
                    }
                }
            }
            Op::GlobalAvgPool => x[0].mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?,
            Op::Resize { mode, coord } => resize(x[0], *mode, *coord, oh, ow)?,
            Op::Unary(a) => activation(x[0], *a)?,
            Op::Binary { kind, activation: act, residual: res } => {
                let y = match kind {
                    BinaryKind::Add => x[0].broadcast_add(x[1])?,
                    BinaryKind::Mul => x[0].broadcast_mul(x[1])?,
                };
                residual(activation(&y, *act)?, *res)?
            }
            Op::ChannelAffine { .. } => {
                let c = node.shape.c;
                let s = self.param(i, Slot::Affine, false).reshape((1, c, 1, 1))?;
                let b = self.param(i, Slot::Affine, true).reshape((1, c, 1, 1))?;
                x[0].broadcast_mul(&s)?.broadcast_add(&b)?
            }
            Op::PRelu { slope } => {
                let s = self.param(i, Slot::Affine, false).reshape((1, slope.len(), 1, 1))?;
                (x[0].relu()? - x[0].neg()?.relu()?.broadcast_mul(&s)?)?
            }
            Op::Softmax => candle_nn::ops::softmax(x[0], 1)?,
            Op::Concat => Tensor::cat(x, 1)?,
            Op::PadChannels { before, after } => x[0].pad_with_zeros(1, *before, *after)?,
            Op::FlatConcat => {
                let flat: Vec<Tensor> =
                    x.iter().map(|t| t.permute((0, 2, 3, 1))?.flatten_all()).collect::<candle_core::Result<_>>()?;
                let v = Tensor::cat(&flat, 0)?;
                let len = v.dim(0)?;
                v.reshape((1, len, 1, 1))?
            }
            Op::Permute { perm } => {
                let v = x[0].permute((perm[0], perm[1], perm[2], perm[3]))?.flatten_all()?;
                let len = v.dim(0)?;
                v.reshape((1, len, 1, 1))?
            }
            Op::Dense(d) => self.dense(i, d, x[0])?,
        })
    }

    fn dense(&self, i: usize, d: &Dense, x: &Tensor) -> Result<Tensor> {
        let n = x.dim(0)?;
        let w = self.param(i, Slot::Dense, false);
        let b = self.param(i, Slot::Dense, true);
        let y = x.reshape((n, d.cin))?.matmul(w)?.broadcast_add(&b.reshape((1, d.cout))?)?;
        Ok(activation(&y, d.activation)?.reshape((n, d.cout, 1, 1))?)
    }

    /// The graph with the variables' current values as its weights (unpacked, as an importer
    /// makes it). Int8 convolutions keep their scales; their weights are rounded back onto
    /// them (quantization-aware training).
    pub fn to_graph(&self) -> Result<Graph> {
        let mut graph = self.graph.clone();
        let read = |node: usize, slot: Slot, bias: bool| -> Result<Vec<f32>> {
            Ok(self.param(node, slot, bias).flatten_all()?.to_vec1::<f32>()?)
        };
        for (i, node) in graph.nodes.iter_mut().enumerate() {
            let conv = |c: &mut Conv, part: ConvPart| -> Result<()> {
                let w = conv_layout(c, &read(i, Slot::Conv(part), false)?, false);
                // An int8 convolution's weights go back on their channels' grids (the forward
                // pass used them there).
                let co: Vec<usize> =
                    if c.quant.is_some() { (0..w.len()).map(|k| c.weight_channels(k).1).collect() } else { Vec::new() };
                match &mut c.quant {
                    None => c.weights = w,
                    Some(q) => {
                        for ((qw, &v), co) in q.weights.iter_mut().zip(&w).zip(co) {
                            *qw = (v / q.weight_scale[co]).round().clamp(-127.0, 127.0) as i8;
                        }
                    }
                }
                c.bias = read(i, Slot::Conv(part), true)?;
                c.packed.clear();
                Ok(())
            };
            match &mut node.op {
                Op::Conv(c) => conv(c, ConvPart::Whole)?,
                Op::Bottleneck(b) => {
                    if let Some(e) = &mut b.expand {
                        conv(e, ConvPart::Expand)?;
                    }
                    conv(&mut b.depthwise, ConvPart::Depthwise)?;
                    conv(&mut b.project, ConvPart::Project)?;
                }
                Op::ConvTranspose(ct) => {
                    ct.weights = transpose_layout(ct, &read(i, Slot::ConvTranspose, false)?, false);
                    ct.bias = read(i, Slot::ConvTranspose, true)?;
                    ct.packed = None;
                }
                Op::Dense(d) => {
                    d.weights = read(i, Slot::Dense, false)?;
                    d.bias = read(i, Slot::Dense, true)?;
                    d.packed.clear();
                }
                Op::ChannelAffine { scale, bias } => {
                    *scale = read(i, Slot::Affine, false)?;
                    *bias = read(i, Slot::Affine, true)?;
                }
                Op::PRelu { slope } => *slope = read(i, Slot::Affine, false)?,
                _ => {}
            }
        }
        Ok(graph)
    }
}

/// An NHWC buffer of `shape` (as the engine keeps activations) as a `[1, c, h, w]` tensor.
pub fn from_nhwc(data: &[f32], shape: framecache::graph::Shape, device: &Device) -> Result<Tensor> {
    let t = Tensor::from_slice(data, (1, shape.h, shape.w, shape.c), device)?;
    Ok(t.permute((0, 3, 1, 2))?.contiguous()?)
}

/// A `[n, c, h, w]` tensor as `n` NHWC buffers.
pub fn to_nhwc(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.permute((0, 2, 3, 1))?.flatten_all()?.to_vec1::<f32>()?)
}
