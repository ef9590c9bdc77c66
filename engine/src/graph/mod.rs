//! The engine's own graph IR.
//!
//! A [`Graph`] is a list of [`Node`]s in topological order. Every tensor is a batch-1 NHWC f32
//! map with a static [`Shape`]; flat vectors (after a global pool) are `1x1xC` maps. Ops carry
//! their weights already laid out for the kernels, so the IR is what gets executed. This module
//! also owns geometry (window of an output position, cumulative stride, receptive field) and
//! cost (MACs), which the reuse propagation and the statistics both read.

mod builder;
mod check;
pub mod fuse;
mod geometry;
pub use builder::GraphBuilder;
#[cfg(any(feature = "onnx", feature = "tflite"))]
pub(crate) use check::product;
pub use check::{check_node, check_shape, check_window, MAX_DIM, MAX_PLAN_MACS, MAX_PLAN_VALUES, MAX_TENSOR_VALUES};
pub(crate) use geometry::{resize_source as geometry_source, resize_taps as geometry_taps};
pub use geometry::{resize_taps, AxisWindow, NodeGeometry};

/// Static shape of a batch-1 NHWC tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Shape {
    pub const fn new(h: usize, w: usize, c: usize) -> Self {
        Self { h, w, c }
    }
    pub const fn len(&self) -> usize {
        self.h * self.w * self.c
    }
    pub const fn pixels(&self) -> usize {
        self.h * self.w
    }
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The shape of an elementwise op on `self` and `other` with numpy broadcasting (a
    /// dimension of 1 stretches to the other's), or `None` when they do not broadcast.
    pub fn broadcast(self, other: Shape) -> Option<Shape> {
        let dim = |x: usize, y: usize| match (x, y) {
            _ if x == y || y == 1 => Some(x),
            (1, _) => Some(y),
            _ => None,
        };
        Some(Shape::new(dim(self.h, other.h)?, dim(self.w, other.w)?, dim(self.c, other.c)?))
    }
    /// `nhwc` (this shape, channels last) reordered to channels first, as ONNX lays it out.
    pub fn nhwc_to_nchw(&self, nhwc: &[f32]) -> Vec<f32> {
        // One channel (a mask head) is the same order in both layouts.
        if self.c == 1 {
            return nhwc.to_vec();
        }
        // In blocks of pixels, so that the block's input stays in L1 while each channel's run
        // of the output is written contiguously (a pixel at a time wrote `c` strided streams).
        const BLOCK: usize = 64;
        let (c, n) = (self.c, self.pixels());
        let mut nchw = vec![0.0; nhwc.len()];
        for p0 in (0..n).step_by(BLOCK) {
            let p1 = (p0 + BLOCK).min(n);
            let block = &nhwc[p0 * c..p1 * c];
            for (ch, run) in nchw.chunks_exact_mut(n).enumerate() {
                for (o, px) in run[p0..p1].iter_mut().zip(block.chunks_exact(c)) {
                    *o = px[ch];
                }
            }
        }
        nchw
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.h, self.w, self.c)
    }
}

/// A pointwise activation, either standalone or fused into the op that produces its input.
/// (Serialized as the graph file writes it: `{ kind = "clip", min = 0.0, max = 6.0 }`.)
#[derive(Clone, Copy, Debug, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Activation {
    #[default]
    Identity,
    Relu,
    Clip {
        min: f32,
        max: f32,
    },
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `x · hard_sigmoid(x)`: ONNX HardSwish, or a HardSigmoid whose input is multiplied by
    /// its output (fused by [`crate::import`]).
    HardSwish {
        alpha: f32,
        beta: f32,
    },
    Sigmoid,
}

impl Activation {
    /// Whether every output of the activation lies in [0, 1].
    pub fn is_unit_bounded(self) -> bool {
        match self {
            Activation::Sigmoid | Activation::HardSigmoid { .. } => true,
            Activation::Clip { min, max } => min >= 0.0 && max <= 1.0,
            _ => false,
        }
    }
}

/// Spatial window geometry shared by convolutions and pools.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    /// Padding: top, left, bottom, right.
    pub pad: [usize; 4],
}

impl Window {
    /// The input positions `lo..hi` that outputs `o0..o1` of this forward window read along
    /// the rows (`vertical`) or the columns, clipped to `0..n` (`lo == hi` when they read only
    /// padding).
    pub fn input_span(&self, vertical: bool, o0: usize, o1: usize, n: usize) -> (usize, usize) {
        let (k, s, d, p) =
            if vertical { (self.kh, self.sh, self.dh, self.pad[0]) } else { (self.kw, self.sw, self.dw, self.pad[1]) };
        if o0 >= o1 {
            return (0, 0);
        }
        let lo = (o0 * s) as i64 - p as i64;
        let hi = ((o1 - 1) * s + d * (k - 1)) as i64 - p as i64 + 1;
        let (lo, hi) = (lo.clamp(0, n as i64) as usize, hi.clamp(0, n as i64) as usize);
        (lo.min(hi), hi)
    }

    /// Output size of a forward window op (conv, pool) on an input of `h x w`, or `None` if
    /// the window does not fit or its arithmetic overflows. With `ceil` (ONNX `ceil_mode`),
    /// a last window that would start entirely in the end padding is dropped, as ONNX does.
    pub fn output_hw(&self, h: usize, w: usize, ceil: bool) -> Option<(usize, usize)> {
        let o = |n: usize, k: usize, s: usize, d: usize, p0: usize, p1: usize| {
            let span = d.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
            let total = n.checked_add(p0)?.checked_add(p1)?;
            if total < span || s == 0 {
                return None;
            }
            let num = total - span;
            let mut out = if ceil { num.div_ceil(s) } else { num / s } + 1;
            if ceil && (out - 1).checked_mul(s)? >= n + p0 {
                out -= 1;
            }
            Some(out)
        };
        Some((
            o(h, self.kh, self.sh, self.dh, self.pad[0], self.pad[2])?,
            o(w, self.kw, self.sw, self.dw, self.pad[1], self.pad[3])?,
        ))
    }

    /// Output size of a transposed convolution (no output padding) on an input of `h x w`, or
    /// `None` if the padding removes the whole output or the arithmetic overflows.
    pub fn transposed_output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let o = |n: usize, k: usize, s: usize, d: usize, p0: usize, p1: usize| {
            let full =
                n.checked_sub(1)?.checked_mul(s)?.checked_add(d.checked_mul(k.checked_sub(1)?)?)?.checked_add(1)?;
            full.checked_sub(p0.checked_add(p1)?).filter(|&o| o > 0)
        };
        Some((
            o(h, self.kh, self.sh, self.dh, self.pad[0], self.pad[2])?,
            o(w, self.kw, self.sw, self.dw, self.pad[1], self.pad[3])?,
        ))
    }
}

/// A 2-D convolution with its weights laid out for the kernels.
#[derive(Clone, Debug)]
pub struct Conv {
    pub window: Window,
    pub groups: usize,
    pub cin: usize,
    pub cout: usize,
    /// Layout `[group][ky][kx][ci_in_group][co_in_group]`, i.e. for each group a
    /// `(kh*kw*cin_g) x cout_g` row-major matrix matching an NHWC im2col row.
    /// For depthwise convolutions (`groups == cin == cout`) this is `[ky][kx][c]`.
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    pub activation: Activation,
    /// A residual add fused into the epilogue ([`fuse::residual_adds`]): the node's second
    /// input (the same shape as its output) is added to each output value after `activation`,
    /// and then this activation applies, so the node computes `act2(act1(conv) + r)`, the same
    /// bits as the convolution and the Add one after the other. For a bottleneck, set on its
    /// projection. `None`: no residual, one input.
    pub residual: Option<Activation>,
    /// Int8 execution of this convolution ([`crate::quant`]): its input quantized per tensor,
    /// its weights per output channel. `None`: float. Only GEMM-shaped convolutions
    /// (pointwise, dense, grouped) take it; depthwise ones stay float.
    pub quant: Option<Box<ConvQuant>>,
    /// Per group, weights and bias packed for the GEMM micro-kernels; for a depthwise
    /// convolution, one entry of its weights by channel stripe (filled by `kernels::prepare`).
    pub packed: Vec<Packed>,
}

/// How an int8 convolution quantizes: its input `x` becomes `clamp(round(x / input_scale),
/// -input_zero, 255 - input_zero)` (an asymmetric `u8` with zero point `input_zero`, kept
/// relative to it), its weights are `weights[i] · weight_scale[co]` (symmetric, one scale per
/// output channel), and each output is `Σ q_x · q_w` in `i32`, times `input_scale ·
/// weight_scale[co]`, plus the float bias, then the activation.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvQuant {
    pub input_scale: f32,
    pub input_zero: u8,
    /// One per output channel.
    pub weight_scale: Vec<f32>,
    /// In −127..=127, laid out as [`Conv::weights`].
    pub weights: Vec<i8>,
}

impl Conv {
    /// A 1x1 convolution of `cin` to `cout` channels: `weights` laid out `[ci][co]`, float.
    pub fn pointwise(cin: usize, cout: usize, weights: Vec<f32>, bias: Vec<f32>, activation: Activation) -> Self {
        Self {
            window: Window { kh: 1, kw: 1, sh: 1, sw: 1, dh: 1, dw: 1, pad: [0; 4] },
            groups: 1,
            cin,
            cout,
            weights,
            bias,
            activation,
            residual: None,
            quant: None,
            packed: Vec::new(),
        }
    }

    /// The mean over `c` channels as a 1x1 convolution to one channel (ONNX ReduceMean and
    /// TFLite MEAN over the channel axis).
    pub fn channel_mean(c: usize) -> Self {
        Self::pointwise(c, 1, vec![1.0 / c as f32; c], vec![0.0], Activation::Identity)
    }

    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.cin && self.groups == self.cout
    }
    /// The input and output channel that weight `i` of [`Conv::weights`] (or of an int8
    /// convolution's weights, laid out alike) connects.
    pub fn weight_channels(&self, i: usize) -> (usize, usize) {
        if self.is_depthwise() {
            return (i % self.cout, i % self.cout);
        }
        let (cin_g, cout_g) = (self.cin / self.groups, self.cout / self.groups);
        let per_group = self.window.kh * self.window.kw * cin_g * cout_g;
        let (g, r) = (i / per_group, i % per_group);
        (g * cin_g + r / cout_g % cin_g, g * cout_g + r % cout_g)
    }
    pub fn is_pointwise(&self) -> bool {
        let w = &self.window;
        self.groups == 1 && w.kh == 1 && w.kw == 1 && w.pad == [0; 4]
    }
    /// MACs per output pixel; a fused residual add counts one per value, as the Add did.
    pub fn macs_per_output_pixel(&self) -> u64 {
        let residual = if self.residual.is_some() { self.cout } else { 0 };
        (self.window.kh * self.window.kw * (self.cin / self.groups) * self.cout + residual) as u64
    }
}

/// An inverted-residual block's convolutions as one node: an optional pointwise expansion
/// (stride 1), a depthwise convolution and a pointwise projection (stride 1), as MobileNetV2,
/// EfficientNet-Lite and BlazePose chain them (fused by [`fuse::bottlenecks`]). The kernel
/// computes the expanded and depthwise tensors band by band in its scratch, so they never
/// leave the cache, and the session keeps no copy of them: the node's window is the
/// depthwise window, and each output is the same bits as the three convolutions' own.
#[derive(Clone, Debug)]
pub struct Bottleneck {
    pub expand: Option<Conv>,
    pub depthwise: Conv,
    pub project: Conv,
}

impl Bottleneck {
    /// Channels of the expanded (and depthwise) tensor.
    pub fn expanded(&self) -> usize {
        self.depthwise.cout
    }

    /// MACs of expanding `input_pixels` positions and computing `output_pixels` positions of
    /// the output from the expanded map.
    pub fn macs(&self, input_pixels: usize, output_pixels: usize) -> u64 {
        let expand = self.expand.as_ref().map_or(0, |e| e.macs_per_output_pixel());
        let rest = self.depthwise.macs_per_output_pixel() + self.project.macs_per_output_pixel();
        expand.saturating_mul(input_pixels as u64).saturating_add(rest.saturating_mul(output_pixels as u64))
    }
}

/// A 2-D transposed convolution (groups = 1).
#[derive(Clone, Debug)]
pub struct ConvTranspose {
    pub window: Window,
    pub cin: usize,
    pub cout: usize,
    /// Layout `[ky][kx][ci][co]`.
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    pub activation: Activation,
    /// Where the kernel equals the stride ([`ConvTranspose::is_unshuffle`]): the weights as one
    /// `cin x (kh * kw * cout)` product, packed (filled by `kernels::prepare`; empty otherwise).
    pub packed: Option<Packed>,
}

impl ConvTranspose {
    /// The kernel equals the stride, with no padding or dilation: every output pixel has exactly
    /// one tap, and each input pixel makes its own `kh x kw` block of outputs.
    pub fn is_unshuffle(&self) -> bool {
        let w = &self.window;
        w.kh == w.sh && w.kw == w.sw && w.dh == 1 && w.dw == 1 && w.pad == [0; 4]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    /// Average; `count_include_pad` divides by the full window size even at padded borders.
    Avg {
        count_include_pad: bool,
    },
}

/// How output coordinates map to input coordinates in a resize.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoordMode {
    HalfPixel,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResizeMode {
    /// Bilinear interpolation.
    Linear,
    /// Nearest neighbour, rounding half down (`round_prefer_floor`) or with `floor`.
    Nearest { floor: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryKind {
    Add,
    Mul,
}

/// A fully connected layer on a `1x1xC` vector (ONNX Gemm after Flatten).
#[derive(Clone, Debug)]
pub struct Dense {
    pub cin: usize,
    pub cout: usize,
    /// Layout `[ci][co]`.
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    pub activation: Activation,
    /// Weights and bias packed for the GEMM micro-kernel (filled by `kernels::prepare`).
    pub packed: Vec<Packed>,
}

/// A `[k][n]` weight matrix and its bias packed into panels for the GEMM micro-kernel (by
/// `kernels::prepare`, which the plan runs).
#[derive(Clone, Debug, Default)]
pub struct Packed {
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    /// The int8 form, for a convolution with [`Conv::quant`] (then `weights` is empty).
    pub int8: Option<Box<crate::kernels::int8::Int8Packed>>,
}

#[derive(Clone, Debug)]
pub enum Op {
    /// The model input, written by the session from the preprocessed frame.
    Input,
    Conv(Conv),
    ConvTranspose(ConvTranspose),
    Pool {
        kind: PoolKind,
        window: Window,
    },
    GlobalAvgPool,
    Resize {
        mode: ResizeMode,
        coord: CoordMode,
    },
    Unary(Activation),
    /// Elementwise with numpy broadcasting over H, W and C (a dimension of 1 broadcasts).
    Binary {
        kind: BinaryKind,
        activation: Activation,
        /// A residual add fused after it, as for [`Conv::residual`]: the third input (the
        /// output's shape) is added after `activation`, then this activation applies.
        residual: Option<Activation>,
    },
    /// Per-channel `x * scale + bias` (an unfused BatchNormalization).
    ChannelAffine {
        scale: Vec<f32>,
        bias: Vec<f32>,
    },
    /// Per-channel leaky rectifier: `x` where `x >= 0`, else `x * slope[c]` (ONNX PRelu with
    /// a per-channel or scalar slope).
    PRelu {
        slope: Vec<f32>,
    },
    /// Softmax over the channels of each pixel (ONNX Softmax on axis 1 of a map, or on the
    /// last axis of a `[1, C]` vector).
    Softmax,
    /// Concatenation along channels.
    Concat,
    /// Zero channels added before and after the input's channels (ONNX Pad on the channel axis,
    /// as BlazeFace and the MediaPipe landmark models use before a residual Add).
    PadChannels {
        before: usize,
        after: usize,
    },
    /// The inputs' buffers one after the other, as a `1x1xN` vector: an ONNX Concat of
    /// row-major views (Transpose to NHWC, then Reshape), as SSD heads end.
    FlatConcat,
    /// The input NCHW map with its axes permuted (ONNX Transpose `perm`), written row-major as
    /// a `1x1xN` vector: Caffe-ported models (MTCNN) flatten in `[N, W, H, C]` order.
    Permute {
        perm: [usize; 4],
    },
    Dense(Dense),
    Bottleneck(Box<Bottleneck>),
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input => "Input",
            Op::Conv(c) if c.is_depthwise() => "ConvDepthwise",
            Op::Conv(c) if c.is_pointwise() => "ConvPointwise",
            Op::Conv(_) => "Conv",
            Op::ConvTranspose(_) => "ConvTranspose",
            Op::Pool { kind: PoolKind::Max, .. } => "MaxPool",
            Op::Pool { .. } => "AvgPool",
            Op::GlobalAvgPool => "GlobalAvgPool",
            Op::Resize { .. } => "Resize",
            Op::Unary(_) => "Activation",
            Op::Binary { kind: BinaryKind::Add, .. } => "Add",
            Op::Binary { kind: BinaryKind::Mul, .. } => "Mul",
            Op::ChannelAffine { .. } => "ChannelAffine",
            Op::PRelu { .. } => "PRelu",
            Op::Softmax => "Softmax",
            Op::Concat => "Concat",
            Op::PadChannels { .. } => "PadChannels",
            Op::FlatConcat => "FlatConcat",
            Op::Permute { .. } => "Permute",
            Op::Dense(_) => "Dense",
            Op::Bottleneck(_) => "Bottleneck",
        }
    }

    /// The sliding window of a forward window op (convolution, pool, bottleneck): which input
    /// positions each output position reads.
    pub fn window(&self) -> Option<&Window> {
        match self {
            Op::Conv(c) => Some(&c.window),
            Op::Pool { window, .. } => Some(window),
            Op::Bottleneck(b) => Some(&b.depthwise.window),
            _ => None,
        }
    }

    /// Whether every output value depends on every input position (global pool, dense).
    /// Such nodes are recomputed whole whenever anything upstream changed.
    pub fn is_global(&self) -> bool {
        matches!(self, Op::GlobalAvgPool | Op::Dense(_) | Op::FlatConcat | Op::Permute { .. })
    }

    /// The residual add fused into the epilogue, if any (see [`Conv::residual`]): the node's
    /// last input is the residual.
    pub fn residual(&self) -> Option<Activation> {
        match self {
            Op::Conv(c) => c.residual,
            Op::Bottleneck(b) => b.project.residual,
            Op::Binary { residual, .. } => *residual,
            _ => None,
        }
    }

    /// Where a fused residual add goes: a convolution's epilogue, a bottleneck's projection,
    /// an elementwise op.
    pub(crate) fn residual_slot(&mut self) -> Option<&mut Option<Activation>> {
        match self {
            Op::Conv(c) => Some(&mut c.residual),
            Op::Bottleneck(b) => Some(&mut b.project.residual),
            Op::Binary { residual, .. } => Some(residual),
            _ => None,
        }
    }

    /// The last activation the op applies (after a fused residual add, if there is one).
    pub fn activation(&self) -> Activation {
        if let Some(act) = self.residual() {
            return act;
        }
        match self {
            Op::Conv(c) => c.activation,
            Op::ConvTranspose(c) => c.activation,
            Op::Dense(d) => d.activation,
            Op::Bottleneck(b) => b.project.activation,
            Op::Binary { activation, .. } => *activation,
            Op::Unary(a) => *a,
            _ => Activation::Identity,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<usize>,
    pub shape: Shape,
}

impl Node {
    /// Whether this node averages each channel of its whole input (of shape `input`) into one
    /// value: a global average pool, or an average pool whose unpadded window is the whole map
    /// (how MediaPipe's models write one).
    pub fn averages_whole_input(&self, input: Shape) -> bool {
        match &self.op {
            Op::GlobalAvgPool => true,
            Op::Pool { kind: PoolKind::Avg { .. }, window: w } => {
                self.shape.pixels() == 1 && (w.kh, w.kw, w.pad) == (input.h, input.w, [0; 4])
            }
            _ => false,
        }
    }

    /// Multiply-accumulates needed for one output pixel (all channels). Elementwise ops and
    /// pools count one MAC per output value, so that they show up in the statistics.
    pub fn macs_per_pixel(&self, graph: &Graph) -> u64 {
        let c = self.shape.c as u64;
        match &self.op {
            Op::Input => 0,
            Op::Conv(conv) => conv.macs_per_output_pixel(),
            Op::ConvTranspose(ct) => {
                let taps = (ct.window.kh / ct.window.sh).max(1) * (ct.window.kw / ct.window.sw).max(1);
                (taps * ct.cin * ct.cout) as u64
            }
            Op::Pool { window, .. } => (window.kh * window.kw) as u64 * c,
            Op::GlobalAvgPool => graph.nodes[self.inputs[0]].shape.pixels() as u64 * c,
            Op::Resize { .. } => 4 * c,
            Op::Dense(d) => (d.cin * d.cout) as u64,
            // The expansion runs once per input pixel, which is `sh * sw` per output pixel away
            // from the borders: the whole node's MACs spread over its output pixels.
            Op::Bottleneck(b) => {
                let pixels = self.shape.pixels().max(1);
                b.macs(graph.nodes[self.inputs[0]].shape.pixels(), pixels).div_ceil(pixels as u64)
            }
            Op::Unary(_)
            | Op::Binary { .. }
            | Op::ChannelAffine { .. }
            | Op::PRelu { .. }
            | Op::Softmax
            | Op::Concat
            | Op::PadChannels { .. }
            | Op::FlatConcat
            | Op::Permute { .. } => c,
        }
    }

    /// Values a session keeps for this node besides its output: a bottleneck's expanded map.
    pub fn expanded_len(&self, graph: &Graph) -> usize {
        match &self.op {
            Op::Bottleneck(b) if b.expand.is_some() => graph.nodes[self.inputs[0]].shape.pixels() * b.expanded(),
            _ => 0,
        }
    }

    /// MACs of computing the whole output.
    pub fn macs(&self, graph: &Graph) -> u64 {
        match &self.op {
            Op::Bottleneck(b) => b.macs(graph.nodes[self.inputs[0]].shape.pixels(), self.shape.pixels()),
            _ => self.macs_per_pixel(graph) * self.shape.pixels() as u64,
        }
    }
}

/// A named graph output. `onnx_shape` is the shape the ONNX model declares, so results can be
/// handed back in the layout the user expects: NCHW maps are transposed from the node's NHWC
/// buffer (`nchw`), flat outputs (vectors, reshaped views) are the buffer as it is.
#[derive(Clone, Debug)]
pub struct GraphOutput {
    pub name: String,
    pub node: usize,
    pub onnx_shape: Vec<usize>,
    pub nchw: bool,
}

/// A model in the engine's IR. Node 0 is the single image input.
#[derive(Clone, Debug)]
pub struct Graph {
    pub input_name: String,
    pub nodes: Vec<Node>,
    pub outputs: Vec<GraphOutput>,
    /// The node holding each named tensor of the source model (ONNX value names; fused ops
    /// map several names to one node). Manifests name taps and outputs by these.
    pub tensors: std::collections::HashMap<String, usize>,
}

impl Graph {
    pub fn input_shape(&self) -> Shape {
        self.nodes[0].shape
    }

    /// Total MACs of one full inference.
    pub fn total_macs(&self) -> u64 {
        self.nodes.iter().map(|n| n.macs(self)).sum()
    }

    /// The number of input nodes: 1 for a model, one per tap for a head's graph (they come
    /// first).
    pub fn inputs(&self) -> usize {
        self.nodes.iter().take_while(|n| matches!(n.op, Op::Input)).count()
    }

    /// Appends `head`, a graph whose inputs are fed by nodes `at` of this graph (one per input,
    /// same shapes; the caller checks), and returns the indices of its outputs in
    /// `self.outputs`. Tensor names already present keep their node.
    pub fn attach(&mut self, head: Graph, at: &[usize]) -> Vec<usize> {
        let k = at.len();
        let offset = self.nodes.len() - k;
        let map = |j: usize| if j < k { at[j] } else { j + offset };
        for mut node in head.nodes.into_iter().skip(k) {
            node.inputs.iter_mut().for_each(|j| *j = map(*j));
            self.nodes.push(node);
        }
        let first = self.outputs.len();
        for mut o in head.outputs {
            o.node = map(o.node);
            self.outputs.push(o);
        }
        for (t, j) in head.tensors {
            self.tensors.entry(t).or_insert(map(j));
        }
        (first..self.outputs.len()).collect()
    }

    /// Geometry of every node: cumulative stride and receptive field in input pixels.
    pub fn geometry(&self) -> Vec<NodeGeometry> {
        geometry::node_geometry(self)
    }

    /// This graph with its input at `h x w` (same channels) and every node's shape following:
    /// each op computes its shape from its new inputs as [`check_node`] does; a resize keeps its
    /// scale factors and a pool its ceil or floor rounding. An error names the first node that
    /// cannot follow: a resize whose factor gives no whole size, a concat or add of maps that no
    /// longer match, a flatten of a map whose size changes (a dense layer or SSD anchors would
    /// read another vector), or an output whose declared layout is not the node's own.
    pub fn at_input_size(&self, h: usize, w: usize) -> crate::Result<Graph> {
        let mut g = self.clone();
        for i in 0..g.nodes.len() {
            let old = self.nodes[i].shape;
            let (before, rest) = g.nodes.split_at_mut(i);
            let node = &mut rest[0];
            let fail = |reason: String| crate::Error::InvalidModel {
                node: self.nodes[i].name.clone(),
                op: self.nodes[i].op.name().into(),
                reason: format!("at input size {w}x{h}: {reason}"),
            };
            // What the op does not fix, the shape it had decides (see `node_output`).
            let input = |k: usize| (self.nodes[node.inputs[k]].shape, before[node.inputs[k]].shape);
            node.shape = match &node.op {
                Op::Input if i > 0 => {
                    return Err(fail("a graph with several inputs (a head's) runs at its taps".into()))
                }
                Op::Input => Shape::new(h, w, old.c),
                // A flattened map of another height and width is another vector, even where
                // its length stays: a dense layer or a decoder's anchors would read it wrongly.
                Op::Permute { .. } | Op::FlatConcat
                    if node.inputs.iter().any(|&j| self.nodes[j].shape != before[j].shape) =>
                {
                    return Err(fail("it flattens a map whose height and width change".into()));
                }
                Op::Resize { .. } => {
                    let (was, now) = input(0);
                    let scale = |out: usize, from: usize, to: usize| {
                        out.checked_mul(to).filter(|n| n.is_multiple_of(from)).map(|n| n / from).ok_or_else(|| {
                            fail(format!("a resize from {from} to {out} has no whole size for an input of {to}"))
                        })
                    };
                    Shape::new(scale(old.h, was.h, now.h)?, scale(old.w, was.w, now.w)?, old.c)
                }
                Op::Pool { window, .. } => {
                    let (was, now) = input(0);
                    let ceil = window.output_hw(was.h, was.w, true) == Some((old.h, old.w))
                        && window.output_hw(was.h, was.w, false) != Some((old.h, old.w));
                    match window.output_hw(now.h, now.w, ceil) {
                        Some((oh, ow)) => Shape::new(oh, ow, old.c),
                        None => return Err(fail(format!("the pool window does not fit its {now} input"))),
                    }
                }
                _ => old,
            };
            node.shape = check::node_output(before, node).map_err(fail)?;
            check_node(before, node).map_err(fail)?;
        }
        for o in &mut g.outputs {
            let (old, new) = (self.nodes[o.node].shape, g.nodes[o.node].shape);
            if old == new {
                continue;
            }
            let layout = |s: Shape| if o.nchw { vec![1, s.c, s.h, s.w] } else { vec![1, s.h, s.w, s.c] };
            if o.onnx_shape != layout(old) {
                return Err(crate::Error::InvalidModel {
                    node: o.name.clone(),
                    op: "output".into(),
                    reason: format!(
                        "at input size {w}x{h}: its declared shape {:?} is not its node's own layout",
                        o.onnx_shape
                    ),
                });
            }
            o.onnx_shape = layout(new);
        }
        g.validate()?;
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocked transposition puts every value where the definition does, for maps whose
    /// pixel count is and is not a multiple of the block, and for one channel.
    #[test]
    fn nhwc_to_nchw_moves_every_value() {
        for (h, w, c) in [(1, 1, 1), (3, 5, 1), (8, 8, 3), (7, 13, 39), (64, 64, 2)] {
            let s = Shape::new(h, w, c);
            let nhwc: Vec<f32> = (0..s.len()).map(|i| i as f32).collect();
            let nchw = s.nhwc_to_nchw(&nhwc);
            assert_eq!(nchw.len(), nhwc.len());
            for p in 0..s.pixels() {
                for ch in 0..c {
                    assert_eq!(nchw[ch * s.pixels() + p], nhwc[p * c + ch], "{s}: pixel {p}, channel {ch}");
                }
            }
        }
    }

    fn conv(cin: usize, cout: usize, groups: usize, k: usize) -> Conv {
        let n = k * k * (cin / groups) * cout;
        Conv {
            window: Window { kh: k, kw: k, sh: 1, sw: 1, dh: 1, dw: 1, pad: [0; 4] },
            groups,
            cin,
            cout,
            weights: vec![0.0; n],
            bias: vec![0.0; cout],
            activation: Activation::Identity,
            residual: None,
            quant: None,
            packed: Vec::new(),
        }
    }

    /// Every weight index maps to the channels its documented layout puts it at, and each
    /// (input, output) pair of a group gets `kh · kw` weights.
    #[test]
    fn weight_channels_follow_the_documented_layouts() {
        // [group][ky][kx][ci_in_group][co_in_group]
        let c = conv(6, 4, 2, 3);
        let (cin_g, cout_g) = (3, 2);
        let mut i = 0;
        for g in 0..2 {
            for _tap in 0..9 {
                for ci in 0..cin_g {
                    for co in 0..cout_g {
                        assert_eq!(c.weight_channels(i), (g * cin_g + ci, g * cout_g + co), "index {i}");
                        i += 1;
                    }
                }
            }
        }
        assert_eq!(i, c.weights.len());
        // Depthwise: [ky][kx][c].
        let d = conv(5, 5, 5, 3);
        for i in 0..d.weights.len() {
            assert_eq!(d.weight_channels(i), (i % 5, i % 5));
        }
    }

    /// A small encoder–decoder at input `h x w`: a stride-2 conv, a ceil-mode pool, a resize
    /// back up by 2 concatenated with the stride-2 map, a residual add, and a global pool with
    /// a dense layer beside the map.
    fn unet(h: usize, w: usize) -> Graph {
        let mut v = 0.0f32;
        let mut weight = || {
            v = (v + 0.37) % 1.0;
            v - 0.5
        };
        let win = |k: usize, s: usize, p: usize| Window { kh: k, kw: k, sh: s, sw: s, dh: 1, dw: 1, pad: [p; 4] };
        let mut b = GraphBuilder::new(h, w, 3);
        let s2 = b.conv(0, 8, win(3, 2, 1), 1, Activation::Relu, &mut weight).unwrap();
        let pooled = b.pool(s2, PoolKind::Max, win(2, 2, 0)).unwrap();
        let deep = b.conv(pooled, 8, win(3, 1, 1), 1, Activation::Relu, &mut weight).unwrap();
        let d = b.shape(deep);
        let up = b.resize(deep, d.h * 2, d.w * 2, ResizeMode::Linear, CoordMode::HalfPixel).unwrap();
        let cat = b.concat(&[up, s2]).unwrap();
        let mixed = b.conv(cat, 8, win(1, 1, 0), 1, Activation::Identity, &mut weight).unwrap();
        let sum = b.binary(mixed, s2, BinaryKind::Add, Activation::Relu).unwrap();
        let mask = b.conv(sum, 1, win(3, 1, 1), 1, Activation::Sigmoid, &mut weight).unwrap();
        let pooled = b.global_avg_pool(deep).unwrap();
        let logits = b.dense(pooled, 4, Activation::Identity, &mut weight).unwrap();
        b.output(mask).output(logits);
        b.build()
    }

    /// A graph moved to another input size has every node's shape and every output's declared
    /// shape that the same graph built at that size has, and the same ops and weights.
    #[test]
    fn a_graph_at_another_input_size_is_the_graph_built_at_that_size() {
        for (h, w) in [(32, 48), (48, 32), (64, 64)] {
            let moved = unet(32, 48).at_input_size(h, w).unwrap();
            let built = unet(h, w);
            for (m, b) in moved.nodes.iter().zip(&built.nodes) {
                assert_eq!((m.shape, &m.name), (b.shape, &b.name), "at {h}x{w}");
            }
            let shapes = |g: &Graph| g.outputs.iter().map(|o| o.onnx_shape.clone()).collect::<Vec<_>>();
            assert_eq!(shapes(&moved), shapes(&built));
            assert_eq!(moved.outputs[0].onnx_shape, vec![1, 1, h / 2, w / 2]);
        }
    }

    /// What cannot follow a new size is an error that names the node: a resize whose factor
    /// leaves no whole size, maps that no longer line up, and a flattened map.
    #[test]
    fn a_graph_that_cannot_follow_a_new_input_size_names_the_node() {
        let message = |g: Graph, h: usize, w: usize| g.at_input_size(h, w).unwrap_err().to_string();

        let mut b = GraphBuilder::new(6, 4, 3);
        let up = b.resize(0, 9, 6, ResizeMode::Linear, CoordMode::HalfPixel).unwrap();
        b.output(up);
        let resize = b.build();
        assert!(resize.at_input_size(4, 6).is_ok(), "1.5 times 4 and 6 are whole");
        let m = message(resize, 5, 4);
        assert!(m.contains("Resize_1") && m.contains("no whole size"), "{m}");

        let m = message(unet(32, 48), 30, 46);
        assert!(m.contains("Concat") && m.contains("differ in spatial size"), "{m}");

        let mut b = GraphBuilder::new(4, 6, 3);
        let flat = b.flat_concat(&[0]).unwrap();
        b.output(flat);
        let flattens = b.build();
        let m = message(flattens.clone(), 6, 4);
        assert!(m.contains("FlatConcat_1") && m.contains("flattens"), "{m}");

        // A plan that follows the frame's shape refuses such a graph when it loads, not on its
        // first portrait frame; a fixed one takes it.
        for aspect in [crate::Aspect::Turn, crate::Aspect::Follow] {
            let pre = crate::Preprocess { aspect, ..Default::default() };
            let m = crate::Plan::new(flattens.clone(), pre).unwrap_err().to_string();
            assert!(m.contains("FlatConcat_1") && m.contains("at input size 4x6"), "{m}");
        }
        crate::Plan::new(flattens, crate::Preprocess::default()).unwrap();
    }
}
