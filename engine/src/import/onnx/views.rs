//! Ops that only re-view or join buffers: Transpose, Reshape and Concat.

use super::attrs::{i64_data, Ctx};
use super::{Importer, Value};
use crate::error::Result;
use crate::graph::{product, Op, Shape};

impl Importer {
    /// A transpose is a change of view: NCHW to NHWC is the buffer as it is, and moving axes
    /// of size 1 never reorders data.
    pub(super) fn transpose(&mut self, ctx: &Ctx<'_>) -> Result<()> {
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
        } else if is_nchw_map {
            // Any other order of a map's axes: its values gathered into a vector.
            let perm = [perm[0], perm[1], perm[2], perm[3]].map(|p| p as usize);
            let n = self.nodes[id].shape.len();
            let node = self.push(ctx.name.clone(), Op::Permute { perm }, vec![id], Shape::new(1, 1, n));
            let node = node.map_err(|r| ctx.invalid(r))?;
            self.set_output(ctx, Value::Node { id: node, view: Some(permuted) })
        } else {
            Err(ctx.unsupported("perm", format!("{perm:?} of {dims:?} reorders data; only NCHW to NHWC is supported")))
        }
    }

    /// A reshape of a row-major view is a new view of the same buffer.
    pub(super) fn reshape(&mut self, ctx: &Ctx<'_>) -> Result<()> {
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
    pub(super) fn flat_concat(&mut self, ctx: &Ctx<'_>) -> Result<()> {
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

    pub(super) fn concat(&mut self, ctx: &Ctx<'_>) -> Result<()> {
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
