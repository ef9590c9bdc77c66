//! One ONNX node's attributes, read and checked: the node context that names it in errors,
//! spatial windows and padding (explicit or `auto_pad`), and constant tensor data.

use tract_onnx::pb::{self, NodeProto};
use tract_onnx::prelude::Tensor;

use crate::error::{Error, Result};
use crate::graph::{Shape, Window, MAX_DIM};

pub(super) struct Ctx<'a> {
    pub(super) node: &'a NodeProto,
    pub(super) name: String,
}

impl Ctx<'_> {
    pub(super) fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidModel { node: self.name.clone(), op: self.node.op_type.clone(), reason: reason.into() }
    }
    pub(super) fn unsupported(&self, attribute: &str, reason: impl Into<String>) -> Error {
        Error::UnsupportedAttribute {
            node: self.name.clone(),
            op: self.node.op_type.clone(),
            attribute: attribute.into(),
            reason: reason.into(),
        }
    }
    pub(super) fn attr(&self, name: &str) -> Option<&pb::AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }
    /// Rejects any attribute not in `known`.
    pub(super) fn check_attrs(&self, known: &[&str]) -> Result<()> {
        match self.node.attribute.iter().find(|a| !known.contains(&a.name.as_str())) {
            Some(a) => Err(self.unsupported(&a.name, "attribute not implemented")),
            None => Ok(()),
        }
    }
    pub(super) fn int(&self, name: &str, default: i64) -> i64 {
        self.attr(name).map_or(default, |a| a.i)
    }
    pub(super) fn float(&self, name: &str, default: f32) -> f32 {
        self.attr(name).map_or(default, |a| a.f)
    }
    pub(super) fn string(&self, name: &str, default: &str) -> String {
        self.attr(name).map_or(default.to_owned(), |a| String::from_utf8_lossy(&a.s).into_owned())
    }
    pub(super) fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.attr(name).map(|a| a.ints.clone())
    }
    /// A 2-element spatial attribute (strides, dilations, kernel_shape), all >= 1.
    pub(super) fn pair(&self, name: &str, default: usize) -> Result<(usize, usize)> {
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
    pub(super) fn pads(&self) -> Result<[usize; 4]> {
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

pub(super) fn f32_data(t: &Tensor) -> Option<Vec<f32>> {
    let t = t.cast_to::<f32>().ok()?;
    Some(t.to_plain_array_view::<f32>().ok()?.iter().copied().collect())
}

pub(super) fn i64_data(t: &Tensor) -> Option<Vec<i64>> {
    let t = t.cast_to::<i64>().ok()?;
    Some(t.to_plain_array_view::<i64>().ok()?.iter().copied().collect())
}

/// Window padding for `auto_pad`, given the input size.
pub(super) fn auto_pads(
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
pub(super) fn window(ctx: &Ctx<'_>, input: Shape, kh: usize, kw: usize) -> Result<Window> {
    let (sh, sw) = ctx.pair("strides", 1)?;
    let (dh, dw) = ctx.pair("dilations", 1)?;
    let pad = match auto_pads(ctx, input, (kh, kw), (sh, sw), (dh, dw))? {
        Some(p) => p,
        None => ctx.pads()?,
    };
    Ok(Window { kh, kw, sh, sw, dh, dw, pad })
}
