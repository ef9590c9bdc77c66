//! Geometry: which input positions an output position reads, per axis, and the cumulative
//! stride and theoretical receptive field of every node.
//!
//! All window ops in the IR are separable, so an output position `(y, x)` reads the box
//! `rows(y) x cols(x)` of each input. Mask propagation and halo accounting rely on this.

use super::{CoordMode, Graph, Node, Op, ResizeMode};

/// The inclusive range of input positions along one axis read by one output position, already
/// clipped to the input. `None` when the output position reads only padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AxisWindow {
    pub lo: usize,
    pub hi: usize,
}

/// Cumulative stride (input pixels per output pixel) and theoretical receptive field (input
/// pixels) of a node, along one axis (both axes are reported for non-square models).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeGeometry {
    pub stride: (f64, f64),
    pub receptive_field: (f64, f64),
}

#[derive(Clone, Copy)]
enum Axis {
    H,
    W,
}

fn clip(lo: i64, hi: i64, n: usize) -> Option<AxisWindow> {
    let lo = lo.max(0);
    let hi = hi.min(n as i64 - 1);
    (lo <= hi).then_some(AxisWindow { lo: lo as usize, hi: hi as usize })
}

/// Source coordinate of output position `o` in a resize from `n_in` to `n_out`.
pub(crate) fn resize_source(coord: CoordMode, o: usize, n_in: usize, n_out: usize) -> f32 {
    let scale = n_out as f32 / n_in as f32;
    match coord {
        CoordMode::HalfPixel => (o as f32 + 0.5) / scale - 0.5,
        CoordMode::PytorchHalfPixel => {
            if n_out > 1 {
                (o as f32 + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        CoordMode::AlignCorners => {
            if n_out > 1 {
                o as f32 * (n_in as f32 - 1.0) / (n_out as f32 - 1.0)
            } else {
                0.0
            }
        }
        CoordMode::Asymmetric => o as f32 / scale,
    }
}

/// Input positions (clamped, as the kernels clamp) that resize output position `o` reads, and
/// the weight of the second: `(i0, i1, frac)`, the output is `(1 - frac) · x[i0] + frac · x[i1]`.
pub fn resize_taps(mode: ResizeMode, coord: CoordMode, o: usize, n_in: usize, n_out: usize) -> (usize, usize, f32) {
    let x = resize_source(coord, o, n_in, n_out);
    let last = n_in as f32 - 1.0;
    match mode {
        ResizeMode::Linear => {
            let x = x.max(0.0).min(last);
            let i0 = x.floor();
            let frac = x - i0;
            let i0 = i0 as usize;
            let i1 = (i0 + 1).min(n_in - 1);
            (i0, i1, frac)
        }
        ResizeMode::Nearest { floor } => {
            let i = if floor { x.floor() } else { (x - 0.5).ceil() };
            let i = i.max(0.0).min(last) as usize;
            (i, i, 0.0)
        }
    }
}

impl Node {
    fn axis_window(&self, graph: &Graph, input: usize, axis: Axis, o: usize) -> Option<AxisWindow> {
        let src = &graph.nodes[self.inputs[input]].shape;
        let (n_in, n_out) = match axis {
            Axis::H => (src.h, self.shape.h),
            Axis::W => (src.w, self.shape.w),
        };
        let pick = |w: &super::Window| match axis {
            Axis::H => (w.kh, w.sh, w.dh, w.pad[0]),
            Axis::W => (w.kw, w.sw, w.dw, w.pad[1]),
        };
        match &self.op {
            Op::Input => None,
            // A fused residual (the second input) is read at the output position itself.
            Op::Conv(_) | Op::Bottleneck(_) if input > 0 => Some(AxisWindow { lo: o, hi: o }),
            Op::Conv(_) | Op::Pool { .. } | Op::Bottleneck(_) => {
                let w = self.op.window().expect("a window op");
                let (lo, hi) = w.input_span(matches!(axis, Axis::H), o, o + 1, n_in);
                (lo < hi).then_some(AxisWindow { lo, hi: hi - 1 })
            }
            Op::ConvTranspose(ct) => {
                let (k, s, d, p) = pick(&ct.window);
                let top = o as i64 + p as i64;
                let lo = (top - (d * (k - 1)) as i64).div_euclid(s as i64)
                    + i64::from((top - (d * (k - 1)) as i64).rem_euclid(s as i64) != 0);
                clip(lo, top.div_euclid(s as i64), n_in)
            }
            Op::Resize { mode, coord } => {
                let (i0, i1, _) = resize_taps(*mode, *coord, o, n_in, n_out);
                Some(AxisWindow { lo: i0, hi: i1 })
            }
            Op::GlobalAvgPool | Op::Dense(_) | Op::FlatConcat | Op::Permute { .. } => clip(0, n_in as i64 - 1, n_in),
            Op::Unary(_)
            | Op::Binary { .. }
            | Op::ChannelAffine { .. }
            | Op::PRelu { .. }
            | Op::Softmax
            | Op::Concat
            | Op::PadChannels { .. } => {
                if n_in == 1 {
                    Some(AxisWindow { lo: 0, hi: 0 })
                } else {
                    Some(AxisWindow { lo: o, hi: o })
                }
            }
        }
    }

    /// Rows of input `input` read by output row `y`.
    pub fn rows_read(&self, graph: &Graph, input: usize, y: usize) -> Option<AxisWindow> {
        self.axis_window(graph, input, Axis::H, y)
    }

    /// Columns of input `input` read by output column `x`.
    pub fn cols_read(&self, graph: &Graph, input: usize, x: usize) -> Option<AxisWindow> {
        self.axis_window(graph, input, Axis::W, x)
    }
}

pub(super) fn node_geometry(graph: &Graph) -> Vec<NodeGeometry> {
    let mut geo: Vec<NodeGeometry> = Vec::with_capacity(graph.nodes.len());
    for node in &graph.nodes {
        let inputs: Vec<NodeGeometry> = node.inputs.iter().map(|&i| geo[i]).collect();
        let worst = |f: fn(&NodeGeometry) -> f64| inputs.iter().map(f).fold(1.0f64, f64::max);
        // The stride comes from the inputs at the output's resolution: a broadcast 1x1 input
        // (squeeze-excite) widens the receptive field but does not set the sampling grid.
        let spatial: Vec<NodeGeometry> = node
            .inputs
            .iter()
            .filter(|&&i| graph.nodes[i].shape.h > 1 || graph.nodes[i].shape.w > 1 || node.shape.pixels() == 1)
            .map(|&i| geo[i])
            .collect();
        let grid = if spatial.is_empty() { &inputs } else { &spatial };
        let s_in = (
            grid.iter().map(|g| g.stride.0).fold(1.0f64, f64::max),
            grid.iter().map(|g| g.stride.1).fold(1.0f64, f64::max),
        );
        let rf_in = (worst(|g| g.receptive_field.0), worst(|g| g.receptive_field.1));
        let g = match &node.op {
            Op::Input => NodeGeometry { stride: (1.0, 1.0), receptive_field: (1.0, 1.0) },
            op @ (Op::Conv(_) | Op::Pool { .. } | Op::Bottleneck(_)) => {
                let w = op.window().expect("a window op");
                // The window slides over the first input; a fused residual (stride 1, checked)
                // is read at the output position and only bounds the field from below.
                let (x, r) = (inputs[0], inputs.get(1));
                let (s, rf) = (x.stride, x.receptive_field);
                let at_least = |f: f64, axis: fn(&NodeGeometry) -> f64| r.map_or(f, |r| f.max(axis(r)));
                NodeGeometry {
                    stride: (s.0 * w.sh as f64, s.1 * w.sw as f64),
                    receptive_field: (
                        at_least(rf.0 + (w.dh * (w.kh - 1)) as f64 * s.0, |g| g.receptive_field.0),
                        at_least(rf.1 + (w.dw * (w.kw - 1)) as f64 * s.1, |g| g.receptive_field.1),
                    ),
                }
            }
            Op::ConvTranspose(ct) => {
                let w = &ct.window;
                let taps = |k: usize, s: usize| (k.div_ceil(s).max(1) - 1) as f64;
                NodeGeometry {
                    stride: (s_in.0 / w.sh as f64, s_in.1 / w.sw as f64),
                    receptive_field: (rf_in.0 + taps(w.kh, w.sh) * s_in.0, rf_in.1 + taps(w.kw, w.sw) * s_in.1),
                }
            }
            Op::Resize { .. } => {
                let src = graph.nodes[node.inputs[0]].shape;
                let sh = s_in.0 * src.h as f64 / node.shape.h as f64;
                let sw = s_in.1 * src.w as f64 / node.shape.w as f64;
                NodeGeometry { stride: (sh, sw), receptive_field: (rf_in.0 + s_in.0, rf_in.1 + s_in.1) }
            }
            Op::GlobalAvgPool | Op::Dense(_) | Op::FlatConcat | Op::Permute { .. } => {
                let input = graph.input_shape();
                NodeGeometry {
                    stride: (input.h as f64, input.w as f64),
                    receptive_field: (input.h as f64, input.w as f64),
                }
            }
            Op::Unary(_)
            | Op::Binary { .. }
            | Op::ChannelAffine { .. }
            | Op::PRelu { .. }
            | Op::Softmax
            | Op::Concat
            | Op::PadChannels { .. } => NodeGeometry { stride: s_in, receptive_field: rf_in },
        };
        geo.push(g);
    }
    geo
}
