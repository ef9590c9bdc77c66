//! Convolutions, transposed convolutions, BatchNormalization folding and Gemm: their
//! attributes checked and their weights re-laid out from ONNX order into the IR's.

use super::attrs::{f32_data, window, Ctx};
use super::{Importer, Value};
use crate::error::Result;
use crate::graph::{product, Activation, Conv, ConvTranspose, Dense, Op, Shape, Window, MAX_DIM};

impl Importer {
    pub(super) fn conv(&mut self, ctx: &Ctx<'_>) -> Result<()> {
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
            residual: None,
            quant: None,
            packed: Vec::new(),
        };
        self.emit(ctx, Op::Conv(conv), vec![x], Shape::new(oh, ow, cout))
    }

    pub(super) fn conv_transpose(&mut self, ctx: &Ctx<'_>) -> Result<()> {
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
        let ct = ConvTranspose { window, cin, cout, weights, bias, activation: Activation::Identity, packed: None };
        self.emit(ctx, Op::ConvTranspose(ct), vec![x], Shape::new(oh, ow, cout))
    }

    pub(super) fn batch_norm(&mut self, ctx: &Ctx<'_>) -> Result<()> {
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

    pub(super) fn gemm(&mut self, ctx: &Ctx<'_>) -> Result<()> {
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
}
