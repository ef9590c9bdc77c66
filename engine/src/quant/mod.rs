//! Post-training int8 quantization: which convolutions run in int8, their weights quantized
//! per output channel, their inputs' ranges calibrated on real frames ([`Calibration`]), and
//! the int8 model file ([`file`]).
//!
//! What runs in int8: the GEMM-shaped convolutions (pointwise, dense, grouped) wide enough to
//! pay for quantizing their inputs ([`candidates`]), including the expansions and projections
//! inside fused inverted-residual blocks: 81% of MobileNetV2's MACs, and fully connected layers,
//! which become the 1x1 convolutions they are ([`dense_as_conv`]). Depthwise convolutions,
//! pools, resizes and elementwise ops stay `f32`: the tensors between nodes are `f32`, and each
//! int8 convolution quantizes its input as it reads it ([`crate::kernels::int8`]).
//!
//! Quantization works on the graph as imported, before fusion, where every convolution is its
//! own node and its input is a tensor a session keeps; the fusion passes then carry
//! [`Conv::quant`] into the fused nodes.

pub mod file;

use crate::graph::{Conv, ConvQuant, Graph, Op};

/// The range an int8 input covers: `lo..=hi`, with `lo <= 0 <= hi` (zero is always exact).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range {
    pub lo: f32,
    pub hi: f32,
}

impl Range {
    /// Scale and zero point of an asymmetric `u8` over this range (the range widened to hold
    /// zero; a range of nothing gets scale 1).
    pub fn params(self) -> (f32, u8) {
        let (lo, hi) = (self.lo.min(0.0), self.hi.max(0.0));
        if !(hi - lo).is_finite() || hi - lo <= f32::MIN_POSITIVE * 255.0 {
            return (1.0, 0);
        }
        let scale = (hi - lo) / 255.0;
        let zero = (-lo / scale).round().clamp(0.0, 255.0) as u8;
        (scale, zero)
    }
}

/// Whether the engine runs `conv` in int8 when it has [`Conv::quant`]: its products go
/// through the GEMM driver (not depthwise, more than one output channel per group).
pub fn takes_int8(conv: &Conv) -> bool {
    !conv.is_depthwise() && conv.cout / conv.groups > 1
}

/// Input channels per group below which a convolution stays float: each output pixel
/// quantizes its whole window of inputs, and with a few channels that costs more than the int8
/// product saves (MobileNetV2's stem, 3x3 on 3 channels: 0.34 ms float, 0.58-0.66 ms int8).
pub const MIN_INT8_CHANNELS: usize = 8;

/// Output channels per group below which a convolution stays float: quantizing a pixel's
/// input costs the same whatever the output width, and a short product does not pay it back
/// (selfie segmentation's 16-channel 1x1 convolutions on 128x128: 0.124 ms float, 0.238 ms
/// int8; 24 to 96 channels: even; 32 channels and more: faster in int8; AVX2, one thread).
pub const MIN_INT8_OUTPUTS: usize = 32;

/// Rewrites every fully connected layer of `graph` as what it is, a 1x1 convolution on its
/// `1x1xC` input, so that it quantizes and runs in int8 like the other products (a classifier
/// such as MobileNetV2's reads 1280 x 1000 `f32` weights, 5 MB, on every frame). Both forms
/// compute each output with the same packed product of one pixel, so the float model's bits do
/// not change. The quantizer applies it before calibrating, and the int8 loader before it sets
/// the layers, so both see the same graph.
pub fn dense_as_conv(graph: &mut Graph) {
    for node in &mut graph.nodes {
        if let Op::Dense(d) = &mut node.op {
            let (weights, bias) = (std::mem::take(&mut d.weights), std::mem::take(&mut d.bias));
            node.op = Op::Conv(Conv::pointwise(d.cin, d.cout, weights, bias, d.activation));
        }
    }
}

/// The nodes of an unfused graph that run in int8 once quantized, each with the node its
/// input is: those that [`takes_int8`], with at least [`MIN_INT8_CHANNELS`] input and
/// [`MIN_INT8_OUTPUTS`] output channels per group.
pub fn candidates(graph: &Graph) -> Vec<(usize, usize)> {
    graph
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match &n.op {
            Op::Conv(c)
                if takes_int8(c)
                    && c.quant.is_none()
                    && c.cin / c.groups >= MIN_INT8_CHANNELS
                    && c.cout / c.groups >= MIN_INT8_OUTPUTS =>
            {
                Some((i, n.inputs[0]))
            }
            _ => None,
        })
        .collect()
}

/// The int8 form of `conv` for inputs in `range`: symmetric weights per output channel
/// (`max |w| / 127`; a channel of zeros gets scale 1).
pub fn quantize_conv(conv: &Conv, range: Range) -> ConvQuant {
    let (input_scale, input_zero) = range.params();
    let cout_g = conv.cout / conv.groups;
    let k = conv.weights.len() / conv.cout;
    // Layout [group][k][co_in_group]: channel `co` of group `g` is column `co % cout_g`.
    let column = |co: usize| {
        let (g, j) = (co / cout_g, co % cout_g);
        (0..k).map(move |r| (g * k + r) * cout_g + j)
    };
    let weight_scale: Vec<f32> = (0..conv.cout)
        .map(|co| {
            let m = column(co).fold(0.0f32, |m, i| m.max(conv.weights[i].abs()));
            if m > 0.0 && m.is_finite() {
                m / 127.0
            } else {
                1.0
            }
        })
        .collect();
    let mut weights = vec![0i8; conv.weights.len()];
    for (co, &s) in weight_scale.iter().enumerate() {
        for i in column(co) {
            weights[i] = (conv.weights[i] / s).round().clamp(-127.0, 127.0) as i8;
        }
    }
    ConvQuant { input_scale, input_zero, weight_scale, weights }
}

/// How a calibration turns what it saw of a tensor into its [`Range`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// The smallest and largest values seen.
    MinMax,
    /// The range, shrunk from min/max, that minimises the expected squared error of the
    /// quantized values over the histogram of what was seen: clipping error outside it,
    /// rounding error (`scale² / 12`) inside.
    Mse,
    /// The 0.01th and 99.99th percentiles of what was seen (to the histogram's resolution).
    Percentile,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::MinMax => "minmax",
            Method::Mse => "mse",
            Method::Percentile => "percentile",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "minmax" => Ok(Method::MinMax),
            "mse" => Ok(Method::Mse),
            "percentile" => Ok(Method::Percentile),
            _ => Err(format!("unknown calibration method '{s}' (expected minmax, mse or percentile)")),
        }
    }
}

/// Bins of a calibration histogram.
const BINS: usize = 2048;

/// What a calibration has seen of each candidate's input, over two passes on the same frames:
/// the first finds each tensor's extremes ([`Calibration::observe`] with `histograms` off),
/// the second fills a histogram over them.
#[derive(Clone, Debug)]
pub struct Calibration {
    /// `(conv node, input node)`, as [`candidates`] gives them.
    pub nodes: Vec<(usize, usize)>,
    min: Vec<f32>,
    max: Vec<f32>,
    hist: Vec<Vec<u64>>,
    frames: usize,
}

impl Calibration {
    pub fn new(graph: &Graph) -> Self {
        let nodes = candidates(graph);
        let n = nodes.len();
        Self { nodes, min: vec![0.0; n], max: vec![0.0; n], hist: vec![Vec::new(); n], frames: 0 }
    }

    /// Frames seen by the first pass.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Records one frame: `activation(node)` is a session's output of `node`. The first pass
    /// (`histograms` false) takes extremes; the second counts values into histograms over them.
    /// Non-finite values are skipped.
    pub fn observe<'a>(&mut self, histograms: bool, activation: impl Fn(usize) -> &'a [f32]) {
        for (t, &(_, input)) in self.nodes.iter().enumerate() {
            let xs = activation(input).iter().copied().filter(|x| x.is_finite());
            if !histograms {
                for x in xs {
                    self.min[t] = self.min[t].min(x);
                    self.max[t] = self.max[t].max(x);
                }
                continue;
            }
            let (lo, hi) = (self.min[t], self.max[t]);
            let hist = &mut self.hist[t];
            hist.resize(BINS, 0);
            if hi <= lo {
                hist[0] += activation(input).len() as u64;
                continue;
            }
            let k = BINS as f32 / (hi - lo);
            for x in xs {
                hist[(((x - lo) * k) as usize).min(BINS - 1)] += 1;
            }
        }
        if !histograms {
            self.frames += 1;
        }
    }

    /// The range of tensor `t` (an index into [`Calibration::nodes`]) by `method`. `Mse` and
    /// `Percentile` need the second pass; without it, they fall back to min/max.
    pub fn range(&self, t: usize, method: Method) -> Range {
        let full = Range { lo: self.min[t], hi: self.max[t] };
        let hist = &self.hist[t];
        if method == Method::MinMax || hist.is_empty() || full.hi <= full.lo {
            return full;
        }
        let width = (full.hi - full.lo) / BINS as f32;
        let centre = |b: usize| full.lo + (b as f32 + 0.5) * width;
        if method == Method::Percentile {
            let total: u64 = hist.iter().sum();
            let tail = total / 10_000;
            // The first bin whose cumulative count passes the tail, from each end.
            fn edge<'a>(bins: impl Iterator<Item = (usize, &'a u64)>, tail: u64) -> usize {
                let mut seen = 0;
                for (b, &n) in bins {
                    seen += n;
                    if seen > tail {
                        return b;
                    }
                }
                0
            }
            let lo = edge(hist.iter().enumerate(), tail);
            let hi = edge(hist.iter().enumerate().rev(), tail);
            return Range { lo: full.lo + lo as f32 * width, hi: full.lo + (hi + 1) as f32 * width };
        }
        // Candidates shrink both ends by the same factor, 1 down to 1/50 of the range.
        let mut best = (f64::INFINITY, full);
        for step in 0..50 {
            let f = 1.0 - step as f32 / 50.0;
            let r = Range { lo: full.lo * f, hi: full.hi * f };
            let (scale, _) = r.params();
            let (lo, hi) = (r.lo.min(0.0), r.hi.max(0.0));
            let round = (scale as f64).powi(2) / 12.0;
            let err: f64 = hist
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(|(b, &n)| {
                    let x = centre(b);
                    let e = if x < lo {
                        ((lo - x) as f64).powi(2)
                    } else if x > hi {
                        ((x - hi) as f64).powi(2)
                    } else {
                        round
                    };
                    e * n as f64
                })
                .sum();
            if err < best.0 {
                best = (err, r);
            }
        }
        best.1
    }

    /// Sets [`Conv::quant`] on every candidate of `graph` (the graph this calibration was made
    /// for) from its range by `method`.
    pub fn apply(&self, graph: &mut Graph, method: Method) {
        for (t, &(node, _)) in self.nodes.iter().enumerate() {
            if let Op::Conv(c) = &mut graph.nodes[node].op {
                c.quant = Some(Box::new(quantize_conv(c, self.range(t, method))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Activation, Window};

    fn conv(weights: Vec<f32>, cin: usize, cout: usize) -> Conv {
        Conv {
            window: Window { kh: 1, kw: 1, sh: 1, sw: 1, dh: 1, dw: 1, pad: [0; 4] },
            groups: 1,
            cin,
            cout,
            weights,
            bias: vec![0.0; cout],
            activation: Activation::Identity,
            residual: None,
            quant: None,
            packed: Vec::new(),
        }
    }

    #[test]
    fn weights_quantize_per_output_channel() {
        // [ci][co]: channel 0 spans ±1, channel 1 ±0.01, channel 2 is all zeros.
        let c = conv(vec![1.0, 0.01, 0.0, -0.5, -0.004, 0.0], 2, 3);
        let q = quantize_conv(&c, Range { lo: 0.0, hi: 6.0 });
        assert_eq!(q.weight_scale, vec![1.0 / 127.0, 0.01 / 127.0, 1.0]);
        // -0.5 / (1 / 127) = -63.5 rounds away from zero; -0.004 / (0.01 / 127) = -50.8.
        assert_eq!(q.weights, vec![127, 127, 0, -64, -51, 0]);
        assert_eq!((q.input_scale, q.input_zero), (6.0 / 255.0, 0));
    }

    #[test]
    fn a_dense_layer_as_a_convolution_keeps_its_bits() {
        let mut b = crate::graph::GraphBuilder::new(1, 1, 40);
        let mut k = 7u32;
        let mut w = || {
            k = k.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (k >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let y = b.dense(0, 50, Activation::Relu, &mut w).unwrap();
        b.output(y);
        let dense = b.build();
        let mut conv = dense.clone();
        dense_as_conv(&mut conv);
        assert!(matches!(&conv.nodes[y].op, Op::Conv(c) if c.is_pointwise() && c.cin == 40 && c.cout == 50));
        // As the quantizer sees it: a product wide enough to run in int8.
        assert_eq!(candidates(&conv), vec![(y, 0)]);
        let x: Vec<f32> = (0..40).map(|i| i as f32 * 0.37 - 4.0).collect();
        let run = |mut g: Graph| {
            crate::kernels::prepare(&mut g);
            let mut out = vec![0.0; 50];
            crate::kernels::compute_full(&g.nodes[y], &g, &[&x], &mut out, &mut Vec::new());
            out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(run(dense), run(conv));
    }

    #[test]
    fn ranges_hold_zero_exactly() {
        let (s, z) = Range { lo: -1.0, hi: 3.0 }.params();
        assert_eq!(z, 64);
        assert!((s - 4.0 / 255.0).abs() < 1e-7);
        // Zero is a code: 0 / s rounds to 0, which the zero point maps to `z`.
        assert_eq!(Range { lo: 0.0, hi: 0.0 }.params(), (1.0, 0));
        assert_eq!(Range { lo: 2.0, hi: 5.0 }.params().1, 0, "a positive range is widened to zero");
    }

    #[test]
    fn mse_clips_a_long_tail_and_minmax_keeps_it() {
        let mut graph = crate::graph::GraphBuilder::new(4, 4, 3);
        let mut w = || 0.25;
        let one = Window { kh: 1, kw: 1, sh: 1, sw: 1, dh: 1, dw: 1, pad: [0; 4] };
        let x = graph.conv(0, 32, one, 1, Activation::Relu, &mut w).unwrap();
        let y = graph.conv(x, 32, one, 1, Activation::Identity, &mut w).unwrap();
        graph.output(y);
        let graph = graph.build();
        let mut cal = Calibration::new(&graph);
        // The stem reads 3 channels: it stays float.
        assert_eq!(cal.nodes, vec![(y, x)]);
        // 100000 values spread over 0..1, and one at 1.2: rounding over the wider range costs
        // every value more than clipping the one costs.
        let mut act: Vec<f32> = (0..100_000).map(|i| i as f32 / 100_000.0).collect();
        act[0] = 1.2;
        for pass in [false, true] {
            cal.observe(pass, |_| &act);
        }
        assert_eq!(cal.range(0, Method::MinMax), Range { lo: 0.0, hi: 1.2 });
        let mse = cal.range(0, Method::Mse);
        assert!(mse.hi < 1.2 && mse.hi >= 0.99, "the outlier should be clipped, not the bulk: {mse:?}");
        let pct = cal.range(0, Method::Percentile);
        // The 99.99th percentile, to the histogram's bin (1.2 / 2048).
        assert!(pct.hi < 1.001 && pct.hi > 0.99, "{pct:?}");
    }
}
