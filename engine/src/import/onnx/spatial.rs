//! Pooling, Resize and Pad.

use super::attrs::{f32_data, i64_data, window, Ctx};
use super::{Importer, Value};
use crate::error::Result;
use crate::graph::{Conv, CoordMode, Op, PoolKind, ResizeMode, Shape, MAX_DIM};

impl Importer {
    pub(super) fn pool(&mut self, ctx: &Ctx<'_>, max: bool) -> Result<()> {
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

    /// ReduceMean over the spatial axes of an NCHW map (a global average pool), or over its
    /// channels (a 1x1 convolution with weights 1/C). The axes come from the attribute (up to
    /// opset 17) or from input 1 (opset 18).
    pub(super) fn reduce_mean(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        ctx.check_attrs(&["axes", "keepdims", "noop_with_empty_axes"])?;
        let (x, _) = self.node_input(ctx, 0)?;
        if self.view_of(ctx, 0).is_some() {
            return Err(ctx.invalid("ReduceMean of a reshaped view is not supported (only of NCHW maps)"));
        }
        let mut axes = match ctx.ints("axes") {
            Some(a) => a,
            None => self.const_input(ctx, 1)?.and_then(i64_data).unwrap_or_default(),
        };
        if axes.is_empty() {
            return Err(ctx.unsupported("axes", "a reduction over all axes is not supported; name the axes"));
        }
        axes.iter_mut().for_each(|a| *a = if *a < 0 { *a + 4 } else { *a });
        axes.sort_unstable();
        let keep = ctx.int("keepdims", 1) != 0;
        let s = self.nodes[x].shape;
        match axes.as_slice() {
            [2, 3] => {
                self.emit(ctx, Op::GlobalAvgPool, vec![x], Shape::new(1, 1, s.c))?;
                if !keep {
                    let id = self.nodes.len() - 1;
                    self.set_output(ctx, Value::Node { id, view: Some(vec![1, s.c]) })?;
                }
                Ok(())
            }
            [1] if keep => self.emit(ctx, Op::Conv(Conv::channel_mean(s.c)), vec![x], Shape::new(s.h, s.w, 1)),
            other => Err(ctx.unsupported(
                "axes",
                format!("{other:?} (keepdims={}): only [2, 3], or [1] with keepdims=1, are supported", u8::from(keep)),
            )),
        }
    }

    pub(super) fn resize(&mut self, ctx: &Ctx<'_>) -> Result<()> {
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
    pub(super) fn pad(&mut self, ctx: &Ctx<'_>) -> Result<()> {
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
}
