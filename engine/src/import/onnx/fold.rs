//! Constant folding of the shape arithmetic that exporters leave in a graph: `Shape` of a
//! computed tensor (static once the input size is fixed), and `Cast`, `Slice`, `Concat`,
//! `Reshape`, `Unsqueeze` and `Squeeze` of constants. PaddlePaddle's exporter, for one, spells
//! a flatten as `Shape → Slice → Concat → Reshape`, and reshapes bias vectors at run time.

use tract_onnx::prelude::{DatumType, Tensor};

use super::attrs::{i64_data, Ctx};
use super::{Importer, Value};
use crate::error::Result;
use crate::graph::{product, MAX_TENSOR_VALUES};

/// The ops folded when all their inputs are constants (`Shape` whenever its input is known).
pub(super) const FOLDED: &[&str] = &["Cast", "Slice", "Concat", "Reshape", "Unsqueeze", "Squeeze"];

impl Importer {
    /// Whether this node is folded into a constant (it has inputs, and all are constants).
    pub(super) fn foldable(&self, ctx: &Ctx<'_>) -> bool {
        FOLDED.contains(&ctx.node.op_type.as_str())
            && ctx.node.input.iter().any(|i| !i.is_empty())
            && (0..ctx.node.input.len()).all(|i| ctx.node.input[i].is_empty() || self.is_const(ctx, i))
    }

    /// `Shape` of a computed tensor: its ONNX dims, as an int64 vector.
    pub(super) fn shape_of(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        ctx.check_attrs(&["start", "end"])?;
        let name = ctx.node.input.first().ok_or_else(|| ctx.invalid("missing input 0"))?;
        let dims: Vec<i64> = match self.values.get(name) {
            Some(Value::Node { view: Some(dims), .. }) => dims.iter().map(|&d| d as i64).collect(),
            Some(Value::Node { id, view: None }) => {
                let s = self.nodes[*id].shape;
                vec![1, s.c as i64, s.h as i64, s.w as i64]
            }
            Some(Value::Const(t)) => t.shape().iter().map(|&d| d as i64).collect(),
            None => return Err(ctx.invalid(format!("input 0 ('{name}') is not produced by any earlier node"))),
        };
        let rank = dims.len() as i64;
        let clamp = |v: i64| if v < 0 { (v + rank).max(0) } else { v.min(rank) } as usize;
        let (start, end) = (clamp(ctx.int("start", 0)), clamp(ctx.int("end", rank)));
        let dims = dims.get(start..end.max(start)).unwrap_or_default().to_vec();
        let t = Tensor::from_shape(&[dims.len()], &dims).map_err(|e| ctx.invalid(e.to_string()))?;
        self.set_output(ctx, Value::Const(t))
    }

    /// Evaluates a [`FOLDED`] op on constant inputs.
    pub(super) fn fold(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        let input = |i: usize| -> Result<&Tensor> {
            self.const_input(ctx, i)?.ok_or_else(|| ctx.invalid(format!("missing input {i}")))
        };
        let ints = |i: usize| -> Result<Vec<i64>> {
            input(i).map(i64_data)?.ok_or_else(|| ctx.invalid(format!("input {i} must be an integer tensor")))
        };
        let bad = |e: tract_onnx::prelude::TractError| ctx.invalid(format!("{e:#}"));
        let out = match ctx.node.op_type.as_str() {
            "Cast" => {
                ctx.check_attrs(&["to", "saturate"])?;
                let dt = match ctx.int("to", 0) {
                    1 => DatumType::F32,
                    6 => DatumType::I32,
                    7 => DatumType::I64,
                    11 => DatumType::F64,
                    9 => DatumType::Bool,
                    other => return Err(ctx.unsupported("to", format!("element type {other}"))),
                };
                input(0)?.cast_to_dt(dt).map_err(bad)?.into_owned()
            }
            "Slice" => {
                ctx.check_attrs(&[])?;
                let x = input(0)?;
                let (starts, ends) = (ints(1)?, ints(2)?);
                let rank = x.rank();
                let axes = if ctx.node.input.get(3).is_some_and(|a| !a.is_empty()) {
                    ints(3)?
                } else {
                    (0..starts.len() as i64).collect()
                };
                let steps =
                    if ctx.node.input.get(4).is_some_and(|a| !a.is_empty()) { ints(4)? } else { vec![1; starts.len()] };
                if axes.len() != starts.len() || ends.len() != starts.len() || steps.len() != starts.len() {
                    return Err(ctx.invalid("starts, ends, axes and steps differ in length"));
                }
                let mut t = x.clone();
                for (((&s, &e), &a), &st) in starts.iter().zip(&ends).zip(&axes).zip(&steps) {
                    let a = if a < 0 { a + rank as i64 } else { a };
                    if !(0..rank as i64).contains(&a) || st != 1 {
                        return Err(ctx.invalid(format!("axis {a} step {st}: only unit steps on existing axes")));
                    }
                    let n = t.shape()[a as usize] as i64;
                    let clamp = |v: i64| if v < 0 { (v + n).max(0) } else { v.min(n) } as usize;
                    let (s, e) = (clamp(s), clamp(e));
                    t = t.slice(a as usize, s, e.max(s)).map_err(bad)?;
                }
                t
            }
            "Concat" => {
                ctx.check_attrs(&["axis"])?;
                let parts: Vec<Tensor> = (0..ctx.node.input.len())
                    .map(|i| {
                        input(i).and_then(|t| t.cast_to_dt(input(0)?.datum_type()).map_err(bad).map(|t| t.into_owned()))
                    })
                    .collect::<Result<_>>()?;
                let rank = parts.first().map_or(0, |t| t.rank()) as i64;
                let axis = ctx.int("axis", 0);
                let axis = if axis < 0 { axis + rank } else { axis };
                if !(0..rank).contains(&axis) {
                    return Err(ctx.unsupported("axis", format!("{axis} for rank {rank}")));
                }
                Tensor::stack_tensors(axis as usize, &parts).map_err(bad)?
            }
            "Reshape" | "Unsqueeze" | "Squeeze" => {
                ctx.check_attrs(&["allowzero", "axes"])?;
                let x = input(0)?;
                let dims = x.shape().to_vec();
                let axes = || -> Result<Vec<i64>> {
                    match ctx.ints("axes") {
                        Some(a) => Ok(a),
                        None if ctx.node.input.get(1).is_some_and(|a| !a.is_empty()) => ints(1),
                        None => Ok(Vec::new()),
                    }
                };
                let shape: Vec<usize> = match ctx.node.op_type.as_str() {
                    "Reshape" => {
                        let spec = ints(1)?;
                        let total = x.len();
                        let known: usize = spec
                            .iter()
                            .enumerate()
                            .map(|(i, &d)| match d {
                                0 => dims.get(i).copied().unwrap_or(1),
                                -1 => 1,
                                d => d.max(0) as usize,
                            })
                            .product();
                        spec.iter()
                            .enumerate()
                            .map(|(i, &d)| match d {
                                0 => dims.get(i).copied().unwrap_or(1),
                                -1 if known > 0 => total / known,
                                d => d.max(0) as usize,
                            })
                            .collect()
                    }
                    "Unsqueeze" => {
                        let axes = axes()?;
                        let rank = (dims.len() + axes.len()) as i64;
                        let axes: Vec<usize> = axes
                            .iter()
                            .map(|&a| if a < 0 { a + rank } else { a }.clamp(0, rank - 1) as usize)
                            .collect();
                        let mut it = dims.iter();
                        (0..rank as usize)
                            .map(|k| if axes.contains(&k) { 1 } else { *it.next().unwrap_or(&1) })
                            .collect()
                    }
                    _ => {
                        let axes = axes()?;
                        let rank = dims.len() as i64;
                        let axes: Vec<usize> =
                            axes.iter().map(|&a| if a < 0 { a + rank } else { a } as usize).collect();
                        dims.iter()
                            .enumerate()
                            .filter(|&(k, &d)| !(d == 1 && (axes.is_empty() || axes.contains(&k))))
                            .map(|(_, &d)| d)
                            .collect()
                    }
                };
                if product(&shape) != Some(x.len()) || x.len() > MAX_TENSOR_VALUES {
                    return Err(
                        ctx.invalid(format!("shape {shape:?} does not hold the {} values of {dims:?}", x.len()))
                    );
                }
                x.clone().into_shape(&shape).map_err(bad)?
            }
            other => unreachable!("{other} is not in FOLDED"),
        };
        self.set_output(ctx, Value::Const(out))
    }
}
