//! Activations, Clip and binary elementwise ops (with ONNX broadcasting of constants), fused
//! into their producer where it has no other consumer.

use super::attrs::{f32_data, Ctx};
use super::{Importer, Value};
use crate::error::Result;
use crate::graph::{Activation, BinaryKind, Op, Shape};

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

    pub(super) fn binary(&mut self, ctx: &Ctx<'_>, kind: BinaryKind) -> Result<()> {
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
}
