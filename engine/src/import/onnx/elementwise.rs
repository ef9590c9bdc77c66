//! Activations, Clip and binary elementwise ops (with ONNX broadcasting of constants), fused
//! into their producer where it has no other consumer.

use super::attrs::{f32_data, Ctx};
use super::{Importer, Value};
use crate::error::Result;
use crate::graph::{Activation, BinaryKind, Op};

/// The ONNX binary ops the importer maps to [`Op::Binary`] or [`Op::ChannelAffine`].
#[derive(Clone, Copy)]
pub(super) enum BinaryOnnx {
    Add,
    Mul,
    Sub,
    Div,
}

impl Importer {
    pub(super) fn clip(&mut self, ctx: &Ctx<'_>) -> Result<()> {
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

    pub(super) fn activation(&mut self, ctx: &Ctx<'_>, act: Activation, attrs: &[&str]) -> Result<()> {
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

    /// Constant input `cst` as one value per channel of node `x`'s output (`flat`: read as a
    /// `[1, C]` vector), or an error when it does not broadcast that way.
    fn per_channel_const(&self, ctx: &Ctx<'_>, cst: usize, x: usize, flat: bool) -> Result<Vec<f32>> {
        let shape = self.nodes[x].shape;
        let t = self.const_input(ctx, cst)?.ok_or_else(|| ctx.invalid(format!("missing input {cst}")))?;
        let dims = t.shape().to_vec();
        let v = f32_data(t).ok_or_else(|| ctx.invalid("constant operand is not numeric"))?;
        // ONNX broadcasts from the last axis: a per-channel constant of an NCHW map has its
        // values on the third axis from the end ([C, 1, 1]); on a flat vector ([1, C]), on the
        // last. A [C] constant on a map would run along W.
        let on_channels = if flat {
            dims.len() <= 2 && dims.last() == Some(&v.len())
        } else {
            (3..=4).contains(&dims.len()) && dims[dims.len() - 3] == v.len()
        };
        match v.len() {
            1 if dims.len() <= 4 => Ok(vec![v[0]; shape.c]),
            n if n == shape.c && dims.iter().filter(|&&d| d != 1).count() <= 1 && on_channels => Ok(v),
            _ => {
                Err(ctx
                    .invalid(format!("constant operand of shape {dims:?} does not broadcast per channel over {shape}")))
            }
        }
    }

    /// PRelu with a constant per-channel (or scalar) slope.
    pub(super) fn prelu(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        ctx.check_attrs(&[])?;
        let (x, flat) = self.node_input(ctx, 0)?;
        let slope = self.per_channel_const(ctx, 1, x, flat)?;
        let view = self.view_of(ctx, 0);
        let shape = self.nodes[x].shape;
        self.emit(ctx, Op::PRelu { slope }, vec![x], shape)?;
        self.set_output(ctx, Value::Node { id: self.nodes.len() - 1, view })
    }

    /// Softmax over channels: axis 1 of an NCHW map, or the last axis of a `[1, C]` vector.
    /// Before opset 13 the axis (default 1) starts a flattened block of all later axes, which
    /// is the channels only when the map has one pixel.
    pub(super) fn softmax(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        ctx.check_attrs(&["axis"])?;
        let (x, flat) = self.node_input(ctx, 0)?;
        let s = self.nodes[x].shape;
        let view = self.view_of(ctx, 0);
        let rank = view.as_ref().map_or(4, Vec::len) as i64;
        let axis = ctx.int("axis", if self.opset >= 13 { -1 } else { 1 });
        let axis = if axis < 0 { axis + rank } else { axis };
        let channels = if flat { axis == rank - 1 && view.as_ref().is_some_and(|v| v.len() == 2) } else { axis == 1 };
        if !channels || (self.opset < 13 && !flat && s.pixels() > 1) {
            return Err(ctx.unsupported(
                "axis",
                format!("axis {axis} of a rank-{rank} tensor ({s}): only the channel axis is supported"),
            ));
        }
        self.emit(ctx, Op::Softmax, vec![x], s)?;
        self.set_output(ctx, Value::Node { id: self.nodes.len() - 1, view })
    }

    /// Add, Mul, Sub and Div. With a constant operand they become a per-channel affine map
    /// (Sub and Div only with the constant second: `x - c`, `x / c`); between two computed
    /// tensors only Add and Mul are supported.
    pub(super) fn binary(&mut self, ctx: &Ctx<'_>, kind: BinaryOnnx) -> Result<()> {
        ctx.check_attrs(&[])?;
        // x op constant: a per-channel (or scalar) affine map.
        for (var, cst) in [(0, 1), (1, 0)] {
            if self.is_const(ctx, cst) && !self.is_const(ctx, var) {
                let (x, flat) = self.node_input(ctx, var)?;
                let shape = self.nodes[x].shape;
                let per_channel = self.per_channel_const(ctx, cst, x, flat)?;
                let ones = vec![1.0; shape.c];
                let zeros = vec![0.0; shape.c];
                let (scale, bias) = match kind {
                    BinaryOnnx::Add => (ones, per_channel),
                    BinaryOnnx::Mul => (per_channel, zeros),
                    BinaryOnnx::Sub if cst == 1 => (ones, per_channel.iter().map(|v| -v).collect()),
                    BinaryOnnx::Div if cst == 1 => (per_channel.iter().map(|v| 1.0 / v).collect(), zeros),
                    _ => return Err(ctx.invalid("a constant minus or divided by a computed tensor is not supported")),
                };
                let view = self.view_of(ctx, var);
                self.emit(ctx, Op::ChannelAffine { scale, bias }, vec![x], shape)?;
                return self.set_output(ctx, Value::Node { id: self.nodes.len() - 1, view });
            }
        }
        let kind = match kind {
            BinaryOnnx::Add => BinaryKind::Add,
            BinaryOnnx::Mul => BinaryKind::Mul,
            _ => return Err(ctx.invalid("Sub and Div are supported only with a constant second input")),
        };
        let (a, fa) = self.node_input(ctx, 0)?;
        let (b, fb) = self.node_input(ctx, 1)?;
        let (sa, sb) = (self.nodes[a].shape, self.nodes[b].shape);
        let shape = sa.broadcast(sb).ok_or_else(|| ctx.invalid(format!("shapes {sa} and {sb} do not broadcast")))?;
        self.emit(ctx, Op::Binary { kind, activation: Activation::Identity, residual: None }, vec![a, b], shape)?;
        let view = if fa && fb { self.view_of(ctx, 0) } else { None };
        self.set_output(ctx, Value::Node { id: self.nodes.len() - 1, view })
    }
}
