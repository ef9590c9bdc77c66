//! Kernels: each computes one output rectangle of one node, in place, into the node's
//! preallocated NHWC buffer. Positions outside the rectangle are never written, which is what
//! lets the session keep cached values there.
//!
//! The hot kernels are written once over [`simd::Vector`] and compiled per instruction-set
//! level ([`SimdLevel`]): GEMM-shaped work (pointwise convolutions, im2col rows of dense
//! convolutions, dense layers) in [`pointwise`], depthwise convolution in [`depthwise`], and
//! activations fused into both epilogues. The level is an explicit argument of every call.
//! [`reference`] holds a naive implementation of every op; the tests compare the two.

pub mod bottleneck;
mod depthwise;
pub mod int8;
pub mod pointwise;
pub mod reference;
mod simd;

pub(crate) use depthwise::input_rect as depthwise_input_rect;
pub use simd::Level as SimdLevel;
pub(crate) use simd::{dispatch, Kernel, Vector};

use crate::graph::{Activation, BinaryKind, Conv, ConvTranspose, Dense, Graph, Node, Op, Packed, PoolKind, Shape};
use crate::reuse::Rect;

/// An input of a kernel: a node's buffer and its shape.
#[derive(Clone, Copy)]
pub struct In<'a> {
    pub data: &'a [f32],
    pub shape: Shape,
}

/// Shared write access to a node's output buffer for kernels running on disjoint rectangles.
///
/// The executor hands one `OutBuf` to several threads at once; each writes only the rows and
/// columns of its own rectangle, and rectangles of one node never overlap. It borrows the
/// buffer mutably for its lifetime, so the buffer cannot be read, moved or freed meanwhile.
/// The buffer holds the rectangle `view` of a `shape` map (the whole map, or one band of it
/// in a kernel's scratch); positions are the map's.
pub struct OutBuf<'a> {
    ptr: *mut f32,
    shape: Shape,
    view: Rect,
    buf: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: writers touch disjoint rectangles (guaranteed by the rectangle cover), and the
// buffer outlives every task of the node.
unsafe impl Send for OutBuf<'_> {}
unsafe impl Sync for OutBuf<'_> {}

impl<'a> OutBuf<'a> {
    pub fn new(buf: &'a mut [f32], shape: Shape) -> Self {
        Self::view(buf, shape, Rect::full(shape))
    }

    /// The positions `view` of a `shape` map, held row-major in `buf`.
    pub(crate) fn view(buf: &'a mut [f32], shape: Shape, view: Rect) -> Self {
        assert!(view.y1 <= shape.h && view.x1 <= shape.w, "the view lies outside the map");
        assert_eq!(buf.len(), view.area() * shape.c, "output buffer does not match its shape");
        Self { ptr: buf.as_mut_ptr(), shape, view, buf: std::marker::PhantomData }
    }

    /// Offset of pixel `(y, x)` of the map in the buffer (inside the view).
    fn offset(&self, y: usize, x: usize) -> usize {
        view_offset(self.view, self.shape.c, y, x)
    }

    /// The segment `x0..x1` (all channels) of row `y`.
    ///
    /// # Safety
    /// No other live reference may overlap this segment.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, y: usize, x0: usize, x1: usize) -> &mut [f32] {
        let v = self.view;
        assert!(v.y0 <= y && y < v.y1 && v.x0 <= x0 && x0 <= x1 && x1 <= v.x1, "row outside the output");
        // SAFETY: inside the buffer by the assertion; exclusivity is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(self.offset(y, x0)), (x1 - x0) * self.shape.c) }
    }

    /// Pixel `x` of row `y` (its first channel), for kernels that write through pointers.
    ///
    /// # Safety
    /// `y` and `x` must be inside the view; writes through the pointer follow the rules of
    /// [`OutBuf::row`].
    unsafe fn row_ptr(&self, y: usize, x: usize) -> *mut f32 {
        let v = self.view;
        debug_assert!(v.y0 <= y && y < v.y1 && v.x0 <= x && x < v.x1);
        // SAFETY: in bounds by the contract.
        unsafe { self.ptr.add(self.offset(y, x)) }
    }

    /// Rows `y0..y1`, whole, as one slice (the view must span the map's width).
    ///
    /// # Safety
    /// No other live reference may overlap these rows.
    #[allow(clippy::mut_from_ref)]
    unsafe fn rows(&self, y0: usize, y1: usize) -> &mut [f32] {
        let v = self.view;
        assert!(v.x0 == 0 && v.x1 == self.shape.w && v.y0 <= y0 && y0 <= y1 && y1 <= v.y1, "rows outside the output");
        let n = self.shape.w * self.shape.c;
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(self.offset(y0, 0)), (y1 - y0) * n) }
    }
}

/// Where pixel `(y, x)` of a map with `c` channels lies in a row-major buffer holding only the
/// rectangle `view` of it (`OutBuf`, `depthwise::Source`).
#[inline(always)]
fn view_offset(view: Rect, c: usize, y: usize, x: usize) -> usize {
    ((y - view.y0) * (view.x1 - view.x0) + (x - view.x0)) * c
}

/// Computes `rect` of `node`'s output with the kernels of `level`.
///
/// # Safety
/// `rect` must lie inside the output and must not overlap any rectangle being computed
/// concurrently into the same `out`; `level` must be one this CPU runs
/// ([`SimdLevel::available`]).
pub unsafe fn compute_rect(
    level: SimdLevel,
    node: &Node,
    inputs: &[In<'_>],
    out: &OutBuf<'_>,
    rect: Rect,
    scratch: &mut Vec<f32>,
) {
    debug_assert!(rect.y1 <= node.shape.h && rect.x1 <= node.shape.w);
    if rect.is_empty() {
        return;
    }
    // SAFETY (all arms): forwarded from this function's contract.
    unsafe {
        match &node.op {
            Op::Input => {}
            Op::Conv(conv) => conv_rect(level, conv, inputs[0], inputs.get(1).copied(), out, rect, scratch),
            Op::Bottleneck(b) => bottleneck::rect(level, b, inputs[0], inputs.get(1).copied(), out, rect, scratch),
            Op::ConvTranspose(ct) => match &ct.packed {
                Some(packed) => unshuffle(level, ct, packed, inputs[0], out, rect, scratch),
                None => conv_transpose(level, ct, inputs[0], out, rect),
            },
            Op::GlobalAvgPool => whole_mean(level, inputs[0], out.row(0, 0, 1), scratch),
            Op::Pool { .. } if node.averages_whole_input(inputs[0].shape) => {
                whole_mean(level, inputs[0], out.row(0, 0, 1), scratch)
            }
            Op::Pool { kind, window } => pool(*kind, window, inputs[0], out, rect),
            Op::Resize { mode, coord } => {
                use crate::graph::geometry_taps as taps;
                // Column taps are the same for every row: computed once per chunk of columns
                // (on the stack), not per pixel.
                const CHUNK: usize = 64;
                let (iw, ow) = (inputs[0].shape.w, node.shape.w);
                let mut cols = [(0, 0, 0.0); CHUNK];
                for cx0 in (rect.x0..rect.x1).step_by(CHUNK) {
                    let cx1 = (cx0 + CHUNK).min(rect.x1);
                    let cols = &mut cols[..cx1 - cx0];
                    for (t, x) in cols.iter_mut().zip(cx0..cx1) {
                        *t = taps(*mode, *coord, x, iw, ow);
                    }
                    for y in rect.y0..rect.y1 {
                        let rows = taps(*mode, *coord, y, inputs[0].shape.h, node.shape.h);
                        let dst = out.row(y, cx0, cx1);
                        dispatch(level.for_width(node.shape.c), ResizeRow { input: inputs[0], rows, cols, dst });
                    }
                }
            }
            Op::Unary(act) => {
                for y in rect.y0..rect.y1 {
                    let src = &inputs[0].data[(y * node.shape.w + rect.x0) * node.shape.c..]
                        [..(rect.x1 - rect.x0) * node.shape.c];
                    let dst = out.row(y, rect.x0, rect.x1);
                    dst.copy_from_slice(src);
                    activate(level, *act, dst);
                }
            }
            Op::ChannelAffine { scale, bias } => per_pixel(inputs[0], out, rect, |s, d| {
                for i in 0..s.len() {
                    d[i] = s[i] * scale[i] + bias[i];
                }
            }),
            Op::PRelu { slope } => per_pixel(inputs[0], out, rect, |s, d| {
                for i in 0..s.len() {
                    d[i] = if s[i] >= 0.0 { s[i] } else { s[i] * slope[i] };
                }
            }),
            Op::Softmax => per_pixel(inputs[0], out, rect, softmax),
            Op::Binary { kind, activation, residual: None } => {
                binary(level, *kind, *activation, inputs, node.shape, out, rect)
            }
            // Row by row, so that the residual is added while the row is in L1.
            Op::Binary { kind, activation, residual: Some(act) } => {
                for y in rect.y0..rect.y1 {
                    let row = Rect { y0: y, y1: y + 1, ..rect };
                    binary(level, *kind, *activation, inputs, node.shape, out, row);
                    add_residual(level, *act, inputs[2], out, row);
                }
            }
            Op::Concat => concat(inputs, node.shape, out, rect),
            Op::PadChannels { before, after } => {
                let (cin, c) = (inputs[0].shape.c, node.shape.c);
                for y in rect.y0..rect.y1 {
                    let src = &inputs[0].data[(y * node.shape.w + rect.x0) * cin..][..(rect.x1 - rect.x0) * cin];
                    let dst = out.row(y, rect.x0, rect.x1);
                    for (d, s) in dst.chunks_exact_mut(c).zip(src.chunks_exact(cin)) {
                        d[..*before].fill(0.0);
                        d[*before..c - after].copy_from_slice(s);
                        d[c - after..].fill(0.0);
                    }
                }
            }
            Op::FlatConcat => {
                let dst = out.row(0, 0, 1);
                let mut at = 0;
                for i in inputs {
                    dst[at..at + i.data.len()].copy_from_slice(i.data);
                    at += i.data.len();
                }
            }
            Op::Permute { perm } => permute(inputs[0], *perm, out.row(0, 0, 1)),
            Op::Dense(d) => dense(level, d, inputs[0].data, out.row(0, 0, 1)),
        }
    }
}

/// Output floats per band of a convolution with a fused residual add (64 KB, within L1/L2).
const RESIDUAL_BAND_FLOATS: usize = 16 * 1024;

/// Rectangle `rect` of a convolution and its fused residual add (read from `residual`), band by
/// band, so that the residual is added to rows still in the cache.
///
/// # Safety
/// As [`compute_rect`].
unsafe fn conv_rect(
    level: SimdLevel,
    conv: &Conv,
    x: In<'_>,
    residual: Option<In<'_>>,
    out: &OutBuf<'_>,
    rect: Rect,
    scratch: &mut Vec<f32>,
) {
    // SAFETY (both arms): forwarded from this function's contract.
    unsafe {
        match conv.residual {
            None => conv_rect_alone(level, conv, x, out, rect, scratch),
            Some(act) => {
                let residual = residual.expect("a fused residual add reads a second input");
                let rows = (RESIDUAL_BAND_FLOATS / ((rect.x1 - rect.x0) * out.shape.c).max(1)).max(1);
                for y0 in (rect.y0..rect.y1).step_by(rows) {
                    let band = Rect { y0, y1: (y0 + rows).min(rect.y1), ..rect };
                    conv_rect_alone(level, conv, x, out, band, scratch);
                    add_residual(level, act, residual, out, band);
                }
            }
        }
    }
}

/// Rectangle `rect` of a convolution without its residual add.
///
/// # Safety
/// As [`compute_rect`].
unsafe fn conv_rect_alone(
    level: SimdLevel,
    conv: &Conv,
    x: In<'_>,
    out: &OutBuf<'_>,
    rect: Rect,
    scratch: &mut Vec<f32>,
) {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        if conv.is_pointwise() {
            pointwise(level, conv, x, out, rect)
        } else if conv.is_depthwise() {
            depthwise::rect(level, conv, depthwise::Source::whole(x), out, rect)
        } else {
            im2col_conv(level, conv, x, out, rect, scratch)
        }
    }
}

/// A fused residual add ([`Conv::residual`]) on `rect` of `out`, already computed: each value
/// plus the residual's value at its position, then `act`. The same bits as an Add node: one
/// IEEE addition per value, then the activation at `level`.
///
/// # Safety
/// As [`compute_rect`]; `r` has the output's shape.
unsafe fn add_residual(level: SimdLevel, act: Activation, r: In<'_>, out: &OutBuf<'_>, rect: Rect) {
    assert_eq!(r.data.len(), out.shape.len(), "the residual does not match the output");
    let c = out.shape.c;
    for y in rect.y0..rect.y1 {
        // SAFETY: this task's row segment.
        let dst = unsafe { out.row(y, rect.x0, rect.x1) };
        let src = &r.data[(y * out.shape.w + rect.x0) * c..][..dst.len()];
        dispatch(level, AddInto { dst: &mut *dst, src });
        activate(level, act, dst);
    }
}

/// `dst[i] += src[i]`, one IEEE addition per value at every width.
struct AddInto<'a> {
    dst: &'a mut [f32],
    src: &'a [f32],
}

impl Kernel for AddInto<'_> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector>(self) {
        let AddInto { dst, src } = self;
        let src = &src[..dst.len()];
        let end = dst.len() / V::LANES * V::LANES;
        for i in (0..end).step_by(V::LANES) {
            // SAFETY: i + LANES <= end <= the length of both slices.
            unsafe { V::load(dst.as_ptr().add(i)).add(V::load(src.as_ptr().add(i))).store(dst.as_mut_ptr().add(i)) };
        }
        for i in end..dst.len() {
            dst[i] += src[i];
        }
    }
}

/// The NCHW map `x` (held NHWC) with its axes permuted, row-major: a gather, walking the
/// output in order with the source index stepped by each output axis's stride in the source.
fn permute(x: In<'_>, perm: [usize; 4], out: &mut [f32]) {
    let s = x.shape;
    let dims = [1, s.c, s.h, s.w];
    // Strides of N, C, H, W in the NHWC buffer.
    let strides = [s.len(), 1, s.w * s.c, s.c];
    let (pd, ps) = (perm.map(|p| dims[p]), perm.map(|p| strides[p]));
    let mut o = 0;
    for a in 0..pd[0] {
        for b in 0..pd[1] {
            for c in 0..pd[2] {
                let base = a * ps[0] + b * ps[1] + c * ps[2];
                for d in 0..pd[3] {
                    out[o] = x.data[base + d * ps[3]];
                    o += 1;
                }
            }
        }
    }
}

/// `f(input pixel, output pixel)` over every pixel of `rect`, for ops that map each pixel's
/// channels to as many output channels.
///
/// # Safety
/// As [`compute_rect`]: `rect` lies inside the output, and no other writer touches it.
unsafe fn per_pixel(x: In<'_>, out: &OutBuf<'_>, rect: Rect, mut f: impl FnMut(&[f32], &mut [f32])) {
    let (w, c) = (x.shape.w, x.shape.c);
    for y in rect.y0..rect.y1 {
        let src = &x.data[(y * w + rect.x0) * c..][..(rect.x1 - rect.x0) * c];
        // SAFETY: forwarded from this function's contract.
        let dst = unsafe { out.row(y, rect.x0, rect.x1) };
        for (d, s) in dst.chunks_exact_mut(c).zip(src.chunks_exact(c)) {
            f(s, d);
        }
    }
}

/// Softmax of one pixel's channels: the maximum subtracted, then normalised by the sum of the
/// exponentials (summed in channel order).
fn softmax(x: &[f32], out: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v - max).exp();
        sum += *o;
    }
    out.iter_mut().for_each(|o| *o /= sum);
}

/// Computes the whole output of `node` into `out` (single-threaded, best level), with the
/// kernel scratch `scratch` (kept across calls by a caller that times them, as a session
/// keeps its own).
pub fn compute_full(node: &Node, graph: &Graph, bufs: &[&[f32]], out: &mut [f32], scratch: &mut Vec<f32>) {
    let inputs: Vec<In<'_>> =
        node.inputs.iter().zip(bufs).map(|(&i, d)| In { data: d, shape: graph.nodes[i].shape }).collect();
    let ob = OutBuf::new(out, node.shape);
    // SAFETY: one rectangle covering the output, one writer; the detected level.
    unsafe { compute_rect(SimdLevel::best(), node, &inputs, &ob, Rect::full(node.shape), scratch) }
}

/// The activation on one vector: the one definition of every activation's arithmetic, which
/// [`Activation::apply`] runs on one lane of the portable vector. Only separate multiplies and
/// adds are used (never fused), so every level gives the same bits as the scalar form, and a
/// value does not depend on whether it was computed in a vector or in a tail.
///
/// Sigmoid is `0.5 + 0.5 · tanh(x / 2)` with tanh as the odd 13/6 rational approximation of
/// Eigen and XNNPACK (inputs clamped to ±7.905): at most 3e-7 from the exact sigmoid (2.3e-7
/// seen), checked in the tests.
#[inline(always)]
pub(crate) fn vec_act<V: Vector>(act: Activation, v: V) -> V {
    let hard_sigmoid = |v: V, a: f32, b: f32| v.mul(V::splat(a)).add(V::splat(b)).max(V::splat(0.0)).min(V::splat(1.0));
    match act {
        Activation::Identity => v,
        Activation::Sigmoid => {
            let half = V::splat(0.5);
            let x = v.mul(half).max(V::splat(-7.905_311)).min(V::splat(7.905_311));
            let x2 = x.mul(x);
            let horner = |coef: &[f32]| {
                let mut acc = V::splat(coef[0]);
                for &c in &coef[1..] {
                    acc = acc.mul(x2).add(V::splat(c));
                }
                acc
            };
            let p = x.mul(horner(&TANH_NUM));
            let q = horner(&TANH_DEN);
            half.add(half.mul(p.div(q)))
        }
        Activation::Relu => v.max(V::splat(0.0)),
        Activation::Clip { min, max } => v.max(V::splat(min)).min(V::splat(max)),
        Activation::HardSigmoid { alpha, beta } => hard_sigmoid(v, alpha, beta),
        Activation::HardSwish { alpha, beta } => v.mul(hard_sigmoid(v, alpha, beta)),
    }
}

/// Odd numerator of the rational tanh, highest power first (coefficients of x^13 .. x^1).
const TANH_NUM: [f32; 7] =
    [-2.760_768_5e-16, 2.000_188e-13, -8.604_672e-11, 5.122_297e-8, 1.485_722_4e-5, 6.372_619_3e-4, 4.893_524_6e-3];
/// Even denominator, highest power first (x^6 .. x^0).
const TANH_DEN: [f32; 4] = [1.198_258_4e-6, 1.185_347_1e-4, 2.268_434_7e-3, 4.893_525e-3];

/// The scalar forms of [`vec_act`], defined beside it (the graph module names activations;
/// their arithmetic lives here).
impl Activation {
    /// The activation of one value: the same bits as a vector lane at every level.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Identity => x,
            Activation::Relu => simd::max_lane(x, 0.0),
            Activation::Clip { min, max } => simd::min_lane(simd::max_lane(x, min), max),
            other => vec_act(other, simd::Portable([x; 4])).0[0],
        }
    }

    /// Applies the activation to a slice in place.
    pub fn apply_slice(self, xs: &mut [f32]) {
        xs.iter_mut().for_each(|x| *x = self.apply(*x));
    }
}

/// Derives the kernels' data from `graph`'s weights: the GEMM panels of every convolution
/// (per group) and dense layer. Must run again after weights change; [`crate::Plan::new`]
/// runs it.
pub fn prepare(graph: &mut Graph) {
    for n in &mut graph.nodes {
        match &mut n.op {
            Op::Conv(c) => pack_conv(c),
            Op::Bottleneck(b) => {
                b.expand.iter_mut().for_each(pack_conv);
                pack_conv(&mut b.depthwise);
                pack_conv(&mut b.project);
            }
            Op::Dense(d) => d.packed = vec![pointwise::pack(&d.weights, &d.bias, d.cin, d.cout)],
            Op::ConvTranspose(ct) => ct.packed = ct.is_unshuffle().then(|| pack_unshuffle(ct)),
            _ => {}
        }
    }
}

/// The GEMM panels of one convolution, per group; a depthwise one's taps by channel stripe.
fn pack_conv(c: &mut Conv) {
    if c.is_depthwise() {
        c.packed = vec![depthwise::pack(c)];
        return;
    }
    let (g, w) = (c.groups, &c.window);
    let (k, n) = (w.kh * w.kw * (c.cin / g), c.cout / g);
    c.packed = (0..g)
        .map(|gi| {
            let bias = &c.bias[gi * n..(gi + 1) * n];
            match &c.quant {
                // Calls address the weights by kernel rows (read in place) or whole im2col
                // rows, so the int8 blocks are kernel rows.
                Some(q) => Packed {
                    weights: Vec::new(),
                    bias: Vec::new(),
                    int8: Some(Box::new(int8::Int8Packed::new(q, gi, bias, k, n, w.kw * (c.cin / g)))),
                },
                None => pointwise::pack(&c.weights[gi * k * n..(gi + 1) * k * n], bias, k, n),
            }
        })
        .collect();
}

/// `dst` as consecutive runs of `span` values, the run of block `k` taken from
/// `blocks[k * block + offset..][..span]`. Runs of 2 (a 2x2 stride-2 kernel to one channel,
/// selfie segmentation's last layer) are copied as fixed-size pairs, with no loop of run-time
/// length per block.
fn copy_blocks(dst: &mut [f32], blocks: &[f32], block: usize, offset: usize, span: usize) {
    if span == 2 {
        for (d, b) in dst.chunks_exact_mut(2).zip(blocks.chunks_exact(block)) {
            d.copy_from_slice(&b[offset..offset + 2]);
        }
    } else {
        for (d, b) in dst.chunks_exact_mut(span).zip(blocks.chunks_exact(block)) {
            for (x, &v) in d.iter_mut().zip(&b[offset..offset + span]) {
                *x = v;
            }
        }
    }
}

/// The columns of a kernel-equals-stride transposed convolution's product: its `kh * kw *
/// cout` block of outputs per input pixel, padded with zero columns to whole vectors (8 lanes
/// up to 8 columns, 16 beyond), so that the product stores whole vectors. A 2x2 kernel to one
/// channel (selfie segmentation's last layer) is 4 columns, which on the 8-lane tile went
/// through a staging copy per pixel.
fn unshuffle_columns(ct: &ConvTranspose) -> usize {
    let block = ct.window.kh * ct.window.kw * ct.cout;
    if block <= 8 {
        8
    } else {
        block.next_multiple_of(16)
    }
}

/// A kernel-equals-stride transposed convolution's weights as one product, `cin` to the
/// `[ky][kx][co]` block of outputs of one input pixel (the bias repeated per block position),
/// then zero columns up to [`unshuffle_columns`].
fn pack_unshuffle(ct: &ConvTranspose) -> Packed {
    let (taps, cin, cout) = (ct.window.kh * ct.window.kw, ct.cin, ct.cout);
    let cols = unshuffle_columns(ct);
    let mut weights = vec![0.0; cin * cols];
    for t in 0..taps {
        for ci in 0..cin {
            let from = &ct.weights[(t * cin + ci) * cout..][..cout];
            weights[ci * cols + t * cout..][..cout].copy_from_slice(from);
        }
    }
    let mut bias: Vec<f32> = (0..taps).flat_map(|_| ct.bias.iter().copied()).collect();
    bias.resize(cols, 0.0);
    pointwise::pack(&weights, &bias, cin, cols)
}

/// Applies `act` to `xs` in place at `level`.
pub fn activate(level: SimdLevel, act: Activation, xs: &mut [f32]) {
    if act != Activation::Identity {
        dispatch(level, Activate(act, xs));
    }
}

struct Activate<'a>(Activation, &'a mut [f32]);

impl Kernel for Activate<'_> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector>(self) {
        let Activate(act, xs) = self;
        let mut chunks = xs.chunks_exact_mut(V::LANES);
        for ch in &mut chunks {
            // SAFETY: a chunk holds exactly LANES floats.
            unsafe { vec_act(act, V::load(ch.as_ptr())).store(ch.as_mut_ptr()) };
        }
        act.apply_slice(chunks.into_remainder());
    }
}

/// The packed weights of group `g`, which [`prepare`] made for every non-depthwise
/// convolution ([`crate::Plan`] always prepares its graph).
fn packed(conv: &Conv, g: usize) -> &crate::graph::Packed {
    assert_eq!(conv.packed.len(), conv.groups, "convolution weights are not packed (kernels::prepare)");
    &conv.packed[g]
}

/// Rectangle `rect` of a pointwise convolution.
///
/// # Safety
/// As [`compute_rect`].
unsafe fn pointwise(level: SimdLevel, conv: &Conv, input: In<'_>, out: &OutBuf<'_>, rect: Rect) {
    let (cin, cout) = (conv.cin, conv.cout);
    let (sh, sw) = (conv.window.sh, conv.window.sw);
    let ow = out.shape.w;
    let call = |src: &[f32], npix: usize, dst: &mut [f32]| {
        let c = pointwise::Call {
            src,
            src_stride: sw * cin,
            npix,
            cin,
            cout,
            packed: packed(conv, 0),
            act: conv.activation,
            dst_stride: cout,
            runs: pointwise::ONE_RUN,
            blocks: 1,
        };
        pointwise::run(level, &c, dst);
    };
    // Whole rows with unit stride form one matrix; otherwise one product per row segment.
    if sh == 1 && sw == 1 && rect.x0 == 0 && rect.x1 == ow && input.shape.w == ow {
        let src = &input.data[rect.y0 * ow * cin..rect.y1 * ow * cin];
        // SAFETY: the rows y0..y1 are this task's.
        call(src, (rect.y1 - rect.y0) * ow, unsafe { out.rows(rect.y0, rect.y1) });
        return;
    }
    for y in rect.y0..rect.y1 {
        let src = &input.data[((y * sh) * input.shape.w + rect.x0 * sw) * cin..];
        // SAFETY: this task's row segment.
        call(src, rect.x1 - rect.x0, unsafe { out.row(y, rect.x0, rect.x1) });
    }
}

/// Computes the disjoint rectangles `rects` of `node`'s output: a pointwise convolution over
/// all of them at once ([`pointwise_rects`]), every other op one rectangle after the other.
///
/// # Safety
/// As [`compute_rect`], for every rectangle of `rects`; the rectangles do not overlap.
pub unsafe fn compute_rects(
    level: SimdLevel,
    node: &Node,
    inputs: &[In<'_>],
    out: &OutBuf<'_>,
    rects: &[Rect],
    scratch: &mut Vec<f32>,
) {
    // SAFETY (both arms): forwarded from this function's contract.
    unsafe {
        match &node.op {
            Op::Conv(conv) if conv.is_pointwise() => {
                pointwise_rects(level, conv, inputs[0], inputs.get(1).copied(), out, rects, scratch)
            }
            _ => rects.iter().for_each(|&r| compute_rect(level, node, inputs, out, r, scratch)),
        }
    }
}

/// Floats of gathered inputs and products per batch of [`pointwise_rects`] (256 KB).
const BATCH_FLOATS: usize = 64 * 1024;

/// Pixels per batch of a product over many rectangles, with `floats` floats of scratch per
/// pixel: at least the product's own pixel block, so that each pass over the weights serves as
/// many pixels as on a dense frame.
fn batch_pixels(floats: usize) -> usize {
    (BATCH_FLOATS / floats.max(1)).max(pointwise::PIXEL_BLOCK)
}

/// Weights up to this size stay in L1 from one product to the next, so a product per row
/// segment costs little more than one over a batch, and batching would only add its copies
/// (selfie segmentation's 16-channel 1x1s on 128x128 maps were slower batched: 0.12 -> 0.16
/// ms per cached frame).
const L1_WEIGHT_BYTES: usize = 32 * 1024;

/// Whether products over `rects` of a map of `shape`, with `weights` floats of weights, are
/// worth gathering into batches: not for one rectangle of whole rows (already one matrix), nor
/// for weights that stay in L1 ([`L1_WEIGHT_BYTES`]).
fn worth_batching(rects: &[Rect], shape: Shape, weights: usize) -> bool {
    let whole_rows = matches!(rects, [r] if r.x0 == 0 && r.x1 == shape.w);
    !whole_rows && weights * std::mem::size_of::<f32>() > L1_WEIGHT_BYTES
}

/// Two buffers of `cap` pixels from `scratch`, with `a` and `b` floats per pixel.
fn batch_buffers(scratch: &mut Vec<f32>, cap: usize, a: usize, b: usize) -> (&mut [f32], &mut [f32]) {
    if scratch.len() < cap * (a + b) {
        scratch.resize(cap * (a + b), 0.0);
    }
    scratch[..cap * (a + b)].split_at_mut(cap * a)
}

/// A batch of the row segments `(y, x0, x1)` of some rectangles, and its pixel count.
#[derive(Default)]
struct Segments {
    rows: Vec<(usize, usize, usize)>,
    pixels: usize,
}

impl Segments {
    /// Calls `f` on batches of the row segments of `rects`, each of at most `cap` pixels (a
    /// longer segment is cut).
    fn batches(rects: &[Rect], cap: usize, mut f: impl FnMut(&Segments)) {
        let mut batch = Segments::default();
        for r in rects {
            for y in r.y0..r.y1 {
                let mut x0 = r.x0;
                while x0 < r.x1 {
                    let x1 = (x0 + cap - batch.pixels).min(r.x1);
                    batch.rows.push((y, x0, x1));
                    batch.pixels += x1 - x0;
                    x0 = x1;
                    if batch.pixels == cap {
                        f(&batch);
                        batch.rows.clear();
                        batch.pixels = 0;
                    }
                }
            }
        }
        if batch.pixels > 0 {
            f(&batch);
        }
    }
}

/// Copies `src`, the rows of a product over `segments` (`c` floats per pixel, in segment
/// order), to their place in `out`, each row followed by the fused residual add if `residual`
/// holds one.
///
/// # Safety
/// As [`compute_rect`], for every segment.
unsafe fn scatter(
    level: SimdLevel,
    segments: &Segments,
    src: &[f32],
    out: &OutBuf<'_>,
    residual: Option<(Activation, In<'_>)>,
) {
    let c = out.shape.c;
    let mut at = 0;
    for &(y, x0, x1) in &segments.rows {
        let len = (x1 - x0) * c;
        // SAFETY: this task's row segment (the contract).
        unsafe { out.row(y, x0, x1) }.copy_from_slice(&src[at..at + len]);
        at += len;
        if let Some((act, r)) = residual {
            // SAFETY: as above.
            unsafe { add_residual(level, act, r, out, Rect { y0: y, y1: y + 1, x0, x1 }) };
        }
    }
}

/// The rectangles `rects` of a pointwise convolution (with its fused residual add, read from
/// `residual`), batch by batch: the input pixels of every row segment are gathered, one
/// product runs over the batch, and its rows go back to their places. A cached frame's
/// rectangles are small and scattered, and one product per row segment made a pass over the
/// weights for a few pixels each: MobileNetV2's last 1x1 (320 x 1280 weights, a 7x7 map) cost
/// more on cached frames than on dense ones. The copies cost `cin + cout` floats per pixel
/// against `cin · cout` multiply-adds. Each output is summed in the same order whatever batch
/// it lands in, so the bits are those of [`compute_rect`]. One rectangle of whole rows, or
/// weights that stay in L1, go rectangle by rectangle ([`worth_batching`]).
///
/// # Safety
/// As [`compute_rects`].
pub(super) unsafe fn pointwise_rects(
    level: SimdLevel,
    conv: &Conv,
    input: In<'_>,
    residual: Option<In<'_>>,
    out: &OutBuf<'_>,
    rects: &[Rect],
    scratch: &mut Vec<f32>,
) {
    if !worth_batching(rects, out.shape, conv.cin * conv.cout) {
        for &r in rects {
            // SAFETY: forwarded from this function's contract.
            unsafe { conv_rect(level, conv, input, residual, out, r, scratch) };
        }
        return;
    }
    let residual = conv.residual.map(|act| (act, residual.expect("a fused residual add reads a second input")));
    let (cin, cout) = (conv.cin, conv.cout);
    let (sh, sw, iw) = (conv.window.sh, conv.window.sw, input.shape.w);
    let cap = batch_pixels(cin + cout);
    let (gathered, products) = batch_buffers(scratch, cap, cin, cout);
    Segments::batches(rects, cap, |batch| {
        let mut at = 0;
        for &(y, x0, x1) in &batch.rows {
            let row = (y * sh) * iw;
            if sw == 1 {
                let len = (x1 - x0) * cin;
                gathered[at..at + len].copy_from_slice(&input.data[(row + x0) * cin..][..len]);
                at += len;
            } else {
                for x in x0..x1 {
                    gathered[at..at + cin].copy_from_slice(&input.data[(row + x * sw) * cin..][..cin]);
                    at += cin;
                }
            }
        }
        let n = batch.pixels;
        product(level, conv, &gathered[..n * cin], n, &mut products[..n * cout]);
        // SAFETY: forwarded from this function's contract.
        unsafe { scatter(level, batch, &products[..n * cout], out, residual) };
    });
}

/// One pointwise product of `npix` contiguous pixels of `src` into `dst`, with the
/// convolution's activation.
fn product(level: SimdLevel, conv: &Conv, src: &[f32], npix: usize, dst: &mut [f32]) {
    let call = pointwise::Call {
        src,
        src_stride: conv.cin,
        npix,
        cin: conv.cin,
        cout: conv.cout,
        packed: packed(conv, 0),
        act: conv.activation,
        dst_stride: conv.cout,
        runs: pointwise::ONE_RUN,
        blocks: 1,
    };
    pointwise::run(level, &call, dst);
}

/// Floats of im2col rows per band (256 KB).
const IM2COL_FLOATS: usize = 64 * 1024;

/// Whether the kernel row of an output column whose first tap is input column `ix0` reads one
/// contiguous run of `kw · cin` input floats: ungrouped, dilation 1, every tap inside the
/// image. The answer depends on the column only, so every rectangle takes the same path.
fn row_is_one_run(conv: &Conv, ix0: isize, iw: usize) -> bool {
    conv.groups == 1 && conv.window.dw == 1 && ix0 >= 0 && ix0 as usize + conv.window.kw <= iw
}

/// A convolution with several output channels per group. Ungrouped, its output columns whose
/// kernel rows lie inside the image ([`row_is_one_run`]) read the input in place: one product
/// per output row, each pixel's kernel rows as runs of `kw · cin` floats (one per kernel row
/// inside the image; those in the padding add nothing and are skipped), pixels `sw · cin`
/// floats apart, with no im2col copy. A stem's 3x3 window on 3 channels copied 27 floats per
/// pixel, in three `memcpy` calls. The other columns (the borders, grouped and dilated
/// convolutions) go through im2col rows ([`im2col_rect`]). Which way a pixel goes depends only
/// on its position, so every rectangle computes it with the same operations.
///
/// # Safety
/// As [`compute_rect`].
unsafe fn im2col_conv(
    level: SimdLevel,
    conv: &Conv,
    input: In<'_>,
    out: &OutBuf<'_>,
    rect: Rect,
    scratch: &mut Vec<f32>,
) {
    let w = &conv.window;
    let (ih, iw, cin) = (input.shape.h, input.shape.w, input.shape.c);
    let inside = |ox: usize| row_is_one_run(conv, (ox * w.sw) as isize - w.pad[1] as isize, iw);
    let a = (rect.x0..rect.x1).find(|&ox| inside(ox)).unwrap_or(rect.x1);
    let b = (a..rect.x1).find(|&ox| !inside(ox)).unwrap_or(rect.x1);
    if conv.cout == 1 || a == b {
        // SAFETY: forwarded from this function's contract.
        return unsafe { im2col_rect(level, conv, input, out, rect, scratch) };
    }
    let krow = w.kw * cin;
    let mut runs = Vec::with_capacity(w.kh);
    for oy in rect.y0..rect.y1 {
        runs.clear();
        let rows = rows_inside(w, oy, ih);
        let mut first = None;
        for (ky, iy) in rows {
            let iy0 = *first.get_or_insert(iy);
            runs.push(((iy - iy0) * iw * cin, ky));
        }
        let row = Rect { y0: oy, y1: oy + 1, ..rect };
        let Some(iy0) = first else {
            // The whole window is padding: the im2col row of zeros gives the bias.
            // SAFETY: forwarded from this function's contract.
            unsafe { im2col_rect(level, conv, input, out, row, scratch) };
            continue;
        };
        let call = pointwise::Call {
            src: &input.data[(iy0 * iw + a * w.sw - w.pad[1]) * cin..],
            src_stride: w.sw * cin,
            npix: b - a,
            cin: krow,
            cout: conv.cout,
            packed: packed(conv, 0),
            act: conv.activation,
            dst_stride: conv.cout,
            runs: &runs,
            blocks: w.kh,
        };
        // SAFETY: this task's row segment.
        pointwise::run(level, &call, unsafe { out.row(oy, a, b) });
    }
    // The border columns, if the rectangle has any.
    for cols in [(rect.x0, a), (b, rect.x1)] {
        if cols.0 < cols.1 {
            // SAFETY: forwarded from this function's contract, on a part of the rectangle.
            unsafe { im2col_rect(level, conv, input, out, Rect { x0: cols.0, x1: cols.1, ..rect }, scratch) };
        }
    }
}

/// The kernel rows of output row `oy` that fall inside an input of `ih` rows, as `(ky, iy)`.
fn rows_inside(w: &crate::graph::Window, oy: usize, ih: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    (0..w.kh).filter_map(move |ky| {
        let iy = (oy * w.sh + ky * w.dh) as isize - w.pad[0] as isize;
        (iy >= 0 && iy < ih as isize).then_some((ky, iy as usize))
    })
}

/// Rectangle `rect` of a convolution through im2col rows: per pixel, its window's taps copied
/// into one row (zeros for the padding), then one product.
///
/// # Safety
/// As [`compute_rect`].
unsafe fn im2col_rect(
    level: SimdLevel,
    conv: &Conv,
    input: In<'_>,
    out: &OutBuf<'_>,
    rect: Rect,
    scratch: &mut Vec<f32>,
) {
    let w = &conv.window;
    let (ih, iw, cin) = (input.shape.h, input.shape.w, input.shape.c);
    let g = conv.groups;
    let cin_g = cin / g;
    let cout_g = conv.cout / g;
    let kdim = w.kh * w.kw * cin_g;
    let npix = rect.x1 - rect.x0;
    if cout_g == 1 {
        assert_eq!(conv.weights.len(), g * kdim, "convolution weights do not match the window");
        if g == 1 && w.sw == 1 {
            dispatch(level, MaskRows { conv, input, out, rect, scratch: &mut *scratch });
            for oy in rect.y0..rect.y1 {
                // SAFETY: this task's row segment.
                activate(level, conv.activation, unsafe { out.row(oy, rect.x0, rect.x1) });
            }
            return;
        }
        for oy in rect.y0..rect.y1 {
            // SAFETY: this task's row segment.
            let dst = unsafe { out.row(oy, rect.x0, rect.x1) };
            dispatch(level.for_width(cin_g), OneChannelRow { conv, input, oy, x0: rect.x0, dst });
        }
        return;
    }
    // Full-width rows are adjacent in memory, so several can share one product; a band's
    // im2col rows stay within IM2COL_FLOATS, so that they are still in L2 when the product
    // reads them. A row too long for that is cut into segments (so that scratch never exceeds
    // IM2COL_FLOATS or one im2col row, whatever the geometry).
    let full_width = npix == out.shape.w;
    let rows_per_band = if full_width { (IM2COL_FLOATS / (npix * kdim)).max(1) } else { 1 };
    let seg_px = if rows_per_band > 1 { npix } else { (IM2COL_FLOATS / kdim).clamp(1, npix) };
    let mut oy0 = rect.y0;
    let mut x0 = rect.x0;
    while oy0 < rect.y1 {
        let (oy1, x1) = if rows_per_band > 1 {
            ((oy0 + rows_per_band).min(rect.y1), rect.x1)
        } else {
            (oy0 + 1, (x0 + seg_px).min(rect.x1))
        };
        let m = (oy1 - oy0) * (x1 - x0);
        // SAFETY: this task's rows; with several rows they span whole output rows.
        let dst: &mut [f32] = unsafe {
            if oy1 - oy0 > 1 {
                out.rows(oy0, oy1)
            } else {
                out.row(oy0, x0, x1)
            }
        };
        // Every value of the band's rows is written below (copied or zero padding).
        if scratch.len() < m * kdim {
            scratch.resize(m * kdim, 0.0);
        }
        let scratch = &mut scratch[..m * kdim];
        for gi in 0..g {
            for (p, (oy, ox)) in (oy0..oy1).flat_map(|y| (x0..x1).map(move |x| (y, x))).enumerate() {
                let row = &mut scratch[p * kdim..(p + 1) * kdim];
                let ix0 = (ox * w.sw) as isize - w.pad[1] as isize;
                // A kernel row in one run is copied at once (per tap, a stem's 3 channels
                // were one call each).
                let run = row_is_one_run(conv, ix0, iw);
                for ky in 0..w.kh {
                    let iy = (oy * w.sh + ky * w.dh) as isize - w.pad[0] as isize;
                    let taps = &mut row[ky * w.kw * cin_g..][..w.kw * cin_g];
                    if iy < 0 || iy >= ih as isize {
                        taps.fill(0.0);
                        continue;
                    }
                    if run {
                        let base = (iy as usize * iw + ix0 as usize) * cin;
                        taps.copy_from_slice(&input.data[base..base + w.kw * cin]);
                        continue;
                    }
                    for kx in 0..w.kw {
                        let ix = ix0 + (kx * w.dw) as isize;
                        let seg = &mut taps[kx * cin_g..][..cin_g];
                        if ix < 0 || ix >= iw as isize {
                            seg.fill(0.0);
                        } else {
                            let base = (iy as usize * iw + ix as usize) * cin + gi * cin_g;
                            seg.copy_from_slice(&input.data[base..base + cin_g]);
                        }
                    }
                }
            }
            let call = pointwise::Call {
                src: scratch,
                src_stride: kdim,
                npix: m,
                cin: kdim,
                cout: cout_g,
                packed: packed(conv, gi),
                act: conv.activation,
                dst_stride: conv.cout,
                runs: pointwise::ONE_RUN,
                blocks: 1,
            };
            pointwise::run(level, &call, &mut dst[gi * cout_g..]);
        }
        if x1 == rect.x1 || rows_per_band > 1 {
            (oy0, x0) = (oy1, rect.x0);
        } else {
            x0 = x1;
        }
    }
}

/// Adds `a · b` to a vector accumulator (whole vectors) and a scalar one (the tail). `a` and
/// `b` have the same length.
#[inline(always)]
fn dot_into<V: Vector>(a: &[f32], b: &[f32], mut v: V, mut tail: f32) -> (V, f32) {
    assert_eq!(a.len(), b.len());
    let vec_end = a.len() / V::LANES * V::LANES;
    for i in (0..vec_end).step_by(V::LANES) {
        // SAFETY: i + LANES <= len, the length of both slices.
        unsafe { v = V::load(a.as_ptr().add(i)).mul_add(V::load(b.as_ptr().add(i)), v) };
    }
    for i in vec_end..a.len() {
        tail += a[i] * b[i];
    }
    (v, tail)
}

/// The rows of `rect` of an ungrouped stride-1 convolution to one channel (a mask head, as
/// BlazePose's 3x3 convolution from 8 channels at 256x256), vectorised along each row. Every
/// input row the rectangle reads is laid out once, channel by channel (`[ci][x]`, zeros for
/// the padding and for the lanes past the row's end), in a ring of as many rows as the window
/// spans; then each vector of outputs sums `input · weight` over kernel rows, columns and
/// channels in that order, from the bias. Every output is one lane of the same arithmetic
/// wherever the rectangle starts, so cached equals full bit for bit. (Vectorising over the 8
/// channels instead, [`OneChannelRow`], ended every pixel in a horizontal sum: 4 GMAC/s.)
/// Kernel rows in the padding add nothing and are skipped. The activation is the caller's.
struct MaskRows<'a, 'b> {
    conv: &'a Conv,
    input: In<'a>,
    out: &'a OutBuf<'b>,
    rect: Rect,
    scratch: &'a mut Vec<f32>,
}

impl Kernel for MaskRows<'_, '_> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector>(self) {
        let MaskRows { conv, input, out, rect, scratch } = self;
        let w = &conv.window;
        let (ih, iw, cin) = (input.shape.h, input.shape.w, input.shape.c);
        let n = rect.x1 - rect.x0;
        // Input columns a row reads, padded to whole vectors plus one (the last vector of
        // outputs reads LANES - 1 past its start, from every tap).
        let reach = (w.kw - 1) * w.dw;
        let cols = (n + reach).next_multiple_of(V::LANES) + V::LANES;
        let span = (w.kh - 1) * w.dh + 1;
        let plane = cin * cols;
        if scratch.len() < span * plane {
            scratch.resize(span * plane, 0.0);
        }
        let ring = &mut scratch[..span * plane];
        // Which input row each slot of the ring holds, and the kernel rows of the output row.
        let mut held = vec![usize::MAX; span];
        let mut rows = Vec::with_capacity(w.kh);
        let left = rect.x0 as isize - w.pad[1] as isize;
        let bias = V::splat(conv.bias[0]);
        for oy in rect.y0..rect.y1 {
            rows.clear();
            rows.extend(rows_inside(w, oy, ih));
            for &(_, iy) in &rows {
                let slot = iy % span;
                if held[slot] == iy {
                    continue;
                }
                held[slot] = iy;
                let t = &mut ring[slot * plane..(slot + 1) * plane];
                // The columns inside the image; the rest of each channel's row is zeros.
                // (A rectangle can lie wholly in the left padding: then `lo` is its whole width.)
                let lo = (-left).clamp(0, (n + reach) as isize) as usize;
                let hi = (iw as isize - left).clamp(lo as isize, (n + reach) as isize) as usize;
                let src = &input.data[iy * iw * cin..(iy + 1) * iw * cin];
                for (ci, row) in t.chunks_exact_mut(cols).enumerate() {
                    row[..lo].fill(0.0);
                    for (xi, d) in (lo..hi).zip(&mut row[lo..hi]) {
                        *d = src[(left + xi as isize) as usize * cin + ci];
                    }
                    row[hi..].fill(0.0);
                }
            }
            // SAFETY: this task's row segment.
            let dst = unsafe { out.row(oy, rect.x0, rect.x1) };
            // Blocks of BLOCK vectors of outputs, their accumulators in registers, each tap's
            // weight broadcast once per block.
            const BLOCK: usize = 8;
            for xb in (0..n).step_by(BLOCK * V::LANES) {
                let mut acc = [bias; BLOCK];
                for &(ky, iy) in &rows {
                    let t = &ring[(iy % span) * plane..][..plane];
                    for kx in 0..w.kw {
                        let taps = &conv.weights[(ky * w.kw + kx) * cin..][..cin];
                        for (ci, &wv) in taps.iter().enumerate() {
                            let wv = V::splat(wv);
                            let at = ci * cols + xb + kx * w.dw;
                            // The vectors of outputs the row has read inside this channel's
                            // columns; vectors past the row's end (unused) stop at the plane.
                            let row = &t[at..];
                            for (v, a) in acc.iter_mut().enumerate() {
                                let off = v * V::LANES;
                                if off + V::LANES <= row.len() {
                                    // SAFETY: LANES floats of `row` from `off`.
                                    *a = unsafe { V::load(row.as_ptr().add(off)) }.mul_add(wv, *a);
                                }
                            }
                        }
                    }
                }
                for (v, a) in acc.iter().enumerate() {
                    let x = xb + v * V::LANES;
                    if x >= n {
                        break;
                    }
                    let d = &mut dst[x..(x + V::LANES).min(n)];
                    // SAFETY: `d` holds LANES floats, or the first `d.len()` of the last vector.
                    unsafe {
                        if d.len() == V::LANES {
                            a.store(d.as_mut_ptr());
                        } else {
                            a.store_first(d.as_mut_ptr(), d.len());
                        }
                    }
                }
            }
        }
    }
}

/// A convolution with one output channel per group (a mask head), computed directly: per
/// output pixel, the sum over its valid taps of input pixel · weights, vectorised over the
/// input channels. (A GEMM tile would waste all but one of its columns, and im2col rows cost
/// more to build than the product.)
struct OneChannelRow<'a> {
    conv: &'a Conv,
    input: In<'a>,
    oy: usize,
    x0: usize,
    dst: &'a mut [f32],
}

impl Kernel for OneChannelRow<'_> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector>(self) {
        let OneChannelRow { conv, input, oy, x0, dst } = self;
        let (w, g) = (&conv.window, conv.groups);
        let (ih, iw, cin) = (input.shape.h, input.shape.w, input.shape.c);
        let cin_g = cin / g;
        for (p, px) in dst.chunks_exact_mut(conv.cout).enumerate() {
            let ox = x0 + p;
            let ix0 = (ox * w.sw) as isize - w.pad[1] as isize;
            // A kernel row in one run (its weights are one too) is one dot product: whole
            // vectors across the taps, where a tap alone may be shorter than a vector.
            let run = row_is_one_run(conv, ix0, iw);
            for (gi, out) in px.iter_mut().enumerate() {
                let mut v = V::splat(0.0);
                let mut tail = 0.0f32;
                for ky in 0..w.kh {
                    let iy = (oy * w.sh + ky * w.dh) as isize - w.pad[0] as isize;
                    if iy < 0 || iy >= ih as isize {
                        continue;
                    }
                    if run {
                        let inp = &input.data[(iy as usize * iw + ix0 as usize) * cin..][..w.kw * cin];
                        (v, tail) = dot_into(inp, &conv.weights[ky * w.kw * cin..][..w.kw * cin], v, tail);
                        continue;
                    }
                    for kx in 0..w.kw {
                        let ix = ix0 + (kx * w.dw) as isize;
                        if ix < 0 || ix >= iw as isize {
                            continue;
                        }
                        let inp = &input.data[(iy as usize * iw + ix as usize) * cin + gi * cin_g..][..cin_g];
                        let wk = &conv.weights[(gi * w.kh * w.kw + ky * w.kw + kx) * cin_g..][..cin_g];
                        (v, tail) = dot_into(inp, wk, v, tail);
                    }
                }
                *out = conv.bias[gi] + v.sum() + tail;
            }
        }
        // The activation over the whole row in vectors (the same bits as one value at a time).
        Activate(conv.activation, dst).run::<V>();
    }
}

/// A transposed convolution whose kernel equals its stride: each output pixel has one tap, so
/// the `kh x kw` block of outputs of an input pixel is one row of a pointwise product (`cin` to
/// `kh * kw * cout`, padded, [`pack_unshuffle`]), computed for the input rows and columns the
/// rectangle covers and copied out; the activation then runs over whole output rows. Each
/// output is summed over `ci` in order from the bias, whatever the rectangle, so cached and
/// full results are the same bits.
unsafe fn unshuffle(
    level: SimdLevel,
    ct: &ConvTranspose,
    packed: &Packed,
    input: In<'_>,
    out: &OutBuf<'_>,
    rect: Rect,
    scratch: &mut Vec<f32>,
) {
    let (sh, sw, cin, cout) = (ct.window.sh, ct.window.sw, ct.cin, ct.cout);
    let (ih, iw) = (input.shape.h, input.shape.w);
    assert_eq!(input.data.len(), ih * iw * cin, "transposed-conv input does not match its shape");
    // The output is exactly `ih * sh x iw * sw` (`Window::transposed_output_hw`, checked when
    // the plan compiles).
    assert!(rect.y1 <= ih * sh && rect.x1 <= iw * sw, "rectangle outside the transposed-conv output");
    let block = unshuffle_columns(ct);
    let (ix0, ix1) = (rect.x0 / sw, rect.x1.div_ceil(sw));
    let npix = ix1 - ix0;
    if scratch.len() < npix * block {
        scratch.resize(npix * block, 0.0);
    }
    let scratch = &mut scratch[..npix * block];
    for iy in rect.y0 / sh..rect.y1.div_ceil(sh) {
        let call = pointwise::Call {
            src: &input.data[(iy * iw + ix0) * cin..(iy * iw + ix1) * cin],
            src_stride: cin,
            npix,
            cin,
            cout: block,
            packed,
            act: Activation::Identity,
            dst_stride: block,
            runs: pointwise::ONE_RUN,
            blocks: 1,
        };
        pointwise::run(level, &call, scratch);
        for oy in (iy * sh).max(rect.y0)..((iy + 1) * sh).min(rect.y1) {
            let ky = oy - iy * sh;
            // SAFETY: this task's row segment.
            let dst = unsafe { out.row(oy, rect.x0, rect.x1) };
            // Input pixel by input pixel, the `sw * cout` values of its block on this row, clipped
            // to the rectangle at both ends: no division per output pixel, and no `memcpy`
            // call per pixel (for one or a few channels either cost more than the product).
            let span = sw * cout;
            if rect.x0.is_multiple_of(sw) && rect.x1.is_multiple_of(sw) {
                // Whole blocks side by side (every rectangle of a dense frame).
                copy_blocks(dst, scratch, block, ky * span, span);
            } else {
                for (k, src) in scratch.chunks_exact(block).enumerate() {
                    let ox0 = (ix0 + k) * sw;
                    let (a, b) = (ox0.max(rect.x0), (ox0 + sw).min(rect.x1));
                    let from = &src[ky * span + (a - ox0) * cout..ky * span + (b - ox0) * cout];
                    for (d, &v) in dst[(a - rect.x0) * cout..(b - rect.x0) * cout].iter_mut().zip(from) {
                        *d = v;
                    }
                }
            }
            activate(level, ct.activation, dst);
        }
    }
}

unsafe fn conv_transpose(level: SimdLevel, ct: &ConvTranspose, input: In<'_>, out: &OutBuf<'_>, rect: Rect) {
    let w = &ct.window;
    let (ih, iw) = (input.shape.h, input.shape.w);
    assert_eq!(input.data.len(), ih * iw * ct.cin, "transposed-conv input does not match its shape");
    assert_eq!(ct.weights.len(), w.kh * w.kw * ct.cin * ct.cout, "transposed-conv weights do not match");
    // Vectors run along the output channels, or along the input channels for one output channel.
    let vector_level = level.for_width(if ct.cout == 1 { ct.cin } else { ct.cout });
    // The (kernel offset, input position) pairs that reach output coordinate `o` along one axis,
    // appended to `out`.
    let taps = |o: usize, k: usize, s: usize, d: usize, p: usize, n: usize, out: &mut Vec<(usize, usize)>| {
        out.extend((0..k).filter_map(move |kk| {
            let t = o as isize + p as isize - (kk * d) as isize;
            (t >= 0 && t % s as isize == 0 && ((t / s as isize) as usize) < n).then(|| (kk, (t / s as isize) as usize))
        }))
    };
    // Column taps are the same for every row of the rectangle: one flat list, with the end of
    // each column's taps in `col_ends`. A column has at most min(kw, iw) taps (each reads
    // another input column), and the columns go in chunks so that the list stays within
    // about 64K taps whatever the geometry.
    let chunk = (65536 / w.kw.min(iw)).max(1);
    let (mut cols, mut col_ends) = (Vec::new(), Vec::with_capacity(chunk.min(rect.x1 - rect.x0)));
    let mut rows = Vec::with_capacity(w.kh.min(ih));
    for cx0 in (rect.x0..rect.x1).step_by(chunk) {
        let cx1 = (cx0 + chunk).min(rect.x1);
        cols.clear();
        col_ends.clear();
        for ox in cx0..cx1 {
            taps(ox, w.kw, w.sw, w.dw, w.pad[1], iw, &mut cols);
            col_ends.push(cols.len());
        }
        for oy in rect.y0..rect.y1 {
            rows.clear();
            taps(oy, w.kh, w.sh, w.dh, w.pad[0], ih, &mut rows);
            // SAFETY: this task's row segment.
            let dst = unsafe { out.row(oy, cx0, cx1) };
            dispatch(
                vector_level,
                TransposedRow { ct, input, rows: &rows, cols: &cols, col_ends: &col_ends, dst: &mut *dst },
            );
            activate(level, ct.activation, dst);
        }
    }
}

/// One output row segment of a transposed convolution: per pixel, the sum over its taps of
/// input pixel × weight matrix, vectorised over output channels (or, with one output channel,
/// over input channels). Each pixel's sum runs in one fixed order from the bias.
struct TransposedRow<'a> {
    ct: &'a ConvTranspose,
    input: In<'a>,
    rows: &'a [(usize, usize)],
    /// Every column's taps, one after the other; column `p`'s end at `col_ends[p]`.
    cols: &'a [(usize, usize)],
    col_ends: &'a [usize],
    dst: &'a mut [f32],
}

impl Kernel for TransposedRow<'_> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector>(self) {
        let TransposedRow { ct, input, rows, cols, col_ends, dst } = self;
        let (cin, cout, kw, iw) = (ct.cin, ct.cout, ct.window.kw, input.shape.w);
        let lanes = V::LANES;
        for (p, &end) in col_ends.iter().enumerate() {
            let col = &cols[if p == 0 { 0 } else { col_ends[p - 1] }..end];
            if cout == 1 {
                // One output channel (a mask): per tap, one dot product over the input
                // channels, whose weights are contiguous.
                let mut acc = ct.bias[0];
                for &(ky, iy) in rows {
                    for &(kx, ix) in col {
                        let inp = &input.data[(iy * iw + ix) * cin..][..cin];
                        let (v, tail) = dot_into(inp, &ct.weights[(ky * kw + kx) * cin..][..cin], V::splat(0.0), 0.0);
                        acc += v.sum() + tail;
                    }
                }
                dst[p] = acc;
                continue;
            }
            let acc = &mut dst[p * cout..(p + 1) * cout];
            acc.copy_from_slice(&ct.bias);
            for &(ky, iy) in rows {
                for &(kx, ix) in col {
                    let inp = &input.data[(iy * iw + ix) * cin..][..cin];
                    let wk = &ct.weights[(ky * kw + kx) * cin * cout..][..cin * cout];
                    let vec_end = cout / lanes * lanes;
                    for (ci, &a) in inp.iter().enumerate() {
                        let row = &wk[ci * cout..(ci + 1) * cout];
                        let av = V::splat(a);
                        for co in (0..vec_end).step_by(lanes) {
                            // SAFETY: co + lanes <= cout, the length of `acc` and `row`.
                            unsafe {
                                let o = acc.as_mut_ptr().add(co);
                                av.mul_add(V::load(row.as_ptr().add(co)), V::load(o)).store(o);
                            }
                        }
                        for co in vec_end..cout {
                            acc[co] += a * row[co];
                        }
                    }
                }
            }
        }
    }
}

unsafe fn pool(kind: PoolKind, w: &crate::graph::Window, input: In<'_>, out: &OutBuf<'_>, rect: Rect) {
    let (ih, iw, c) = (input.shape.h, input.shape.w, input.shape.c);
    for oy in rect.y0..rect.y1 {
        // SAFETY: this task's row segment.
        let dst = unsafe { out.row(oy, rect.x0, rect.x1) };
        for (p, ox) in (rect.x0..rect.x1).enumerate() {
            let acc = &mut dst[p * c..(p + 1) * c];
            acc.fill(if kind == PoolKind::Max { f32::NEG_INFINITY } else { 0.0 });
            let mut count = 0usize;
            for ky in 0..w.kh {
                let iy = (oy * w.sh + ky * w.dh) as isize - w.pad[0] as isize;
                for kx in 0..w.kw {
                    let ix = (ox * w.sw + kx * w.dw) as isize - w.pad[1] as isize;
                    let inside = iy >= 0 && ix >= 0 && (iy as usize) < ih && (ix as usize) < iw;
                    // Positions in the end padding beyond the padded input never count (ceil mode).
                    let in_padded = iy < (ih + w.pad[2]) as isize && ix < (iw + w.pad[3]) as isize;
                    if !inside {
                        if in_padded && matches!(kind, PoolKind::Avg { count_include_pad: true }) {
                            count += 1;
                        }
                        continue;
                    }
                    count += 1;
                    let src = &input.data[(iy as usize * iw + ix as usize) * c..][..c];
                    match kind {
                        PoolKind::Max => acc.iter_mut().zip(src).for_each(|(a, &s)| *a = a.max(s)),
                        PoolKind::Avg { .. } => acc.iter_mut().zip(src).for_each(|(a, &s)| *a += s),
                    }
                }
            }
            if let PoolKind::Avg { .. } = kind {
                let inv = 1.0 / count.max(1) as f32;
                acc.iter_mut().for_each(|a| *a *= inv);
            }
        }
    }
}

/// Rows per block of a mean over a whole map ([`whole_mean`]): each block's sums are taken
/// pixel by pixel, and the blocks' sums added in row order, so the bits are the same however
/// the blocks are spread over threads (`Session` hands them to its pool).
pub const MEAN_BLOCK_ROWS: usize = 16;

/// Row blocks of a mean over `input` ([`MEAN_BLOCK_ROWS`] rows each, the last one shorter).
pub fn mean_blocks(input: Shape) -> usize {
    input.h.div_ceil(MEAN_BLOCK_ROWS)
}

/// The per-channel sums of row block `block` of `input` into `dst` (`input.shape.c` values).
pub fn mean_block_sums(level: SimdLevel, input: In<'_>, block: usize, dst: &mut [f32]) {
    let row = input.shape.w * input.shape.c;
    let y0 = block * MEAN_BLOCK_ROWS;
    let y1 = (y0 + MEAN_BLOCK_ROWS).min(input.shape.h);
    dispatch(level, SumPixels { src: &input.data[y0 * row..y1 * row], dst });
}

/// The mean from the per-block sums `sums` (`mean_blocks` runs of `c` values, in row order).
pub fn mean_of_blocks(sums: &[f32], input: Shape, dst: &mut [f32]) {
    let c = input.c;
    dst.copy_from_slice(&sums[..c]);
    for block in sums.chunks_exact(c).skip(1) {
        dst.iter_mut().zip(block).for_each(|(d, &s)| *d += s);
    }
    let inv = 1.0 / input.pixels().max(1) as f32;
    dst.iter_mut().for_each(|d| *d *= inv);
}

/// A mean over the whole of `input` on one thread: the same blocks and order as on a pool.
fn whole_mean(level: SimdLevel, input: In<'_>, dst: &mut [f32], scratch: &mut Vec<f32>) {
    let c = input.shape.c;
    let blocks = mean_blocks(input.shape);
    if blocks == 0 {
        dst.fill(0.0);
        return;
    }
    scratch.clear();
    scratch.resize(blocks * c, 0.0);
    for (b, sums) in scratch.chunks_exact_mut(c).enumerate() {
        mean_block_sums(level, input, b, sums);
    }
    mean_of_blocks(scratch, input.shape, dst);
}

/// Per channel of `dst`, the sum of `src`'s pixels (`dst.len()` values each) in pixel order:
/// one IEEE addition per value, so every width gives the same bits.
struct SumPixels<'a> {
    src: &'a [f32],
    dst: &'a mut [f32],
}

impl Kernel for SumPixels<'_> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector>(self) {
        let SumPixels { src, dst } = self;
        let (c, l) = (dst.len(), V::LANES);
        let pixels = src.len().checked_div(c).unwrap_or(0);
        let mut k = 0;
        // Four vectors of channels at a time in registers, then one, then single channels.
        while k + 4 * l <= c {
            let mut a = [V::splat(0.0); 4];
            for p in 0..pixels {
                for (j, a) in a.iter_mut().enumerate() {
                    // SAFETY: k + 4 * l <= c, so every lane is inside pixel p of `src`.
                    *a = a.add(unsafe { V::load(src.as_ptr().add(p * c + k + j * l)) });
                }
            }
            for (j, a) in a.iter().enumerate() {
                // SAFETY: as above, inside `dst`.
                unsafe { a.store(dst.as_mut_ptr().add(k + j * l)) };
            }
            k += 4 * l;
        }
        while k + l <= c {
            let mut a = V::splat(0.0);
            for p in 0..pixels {
                // SAFETY: k + l <= c.
                a = a.add(unsafe { V::load(src.as_ptr().add(p * c + k)) });
            }
            // SAFETY: k + l <= c.
            unsafe { a.store(dst.as_mut_ptr().add(k)) };
            k += l;
        }
        for (i, d) in dst.iter_mut().enumerate().skip(k) {
            *d = (0..pixels).fold(0.0, |a, p| a + src[p * c + i]);
        }
    }
}

/// One output row segment of a resize: per pixel, its two input rows and columns blended
/// (`a + (b - a) · f`, never fused, so every level gives the same bits), vectorised over
/// channels. `rows` and `cols` come from `geometry_taps`; nearest-neighbour taps have
/// fraction 0 and read one pixel.
struct ResizeRow<'a> {
    input: In<'a>,
    rows: (usize, usize, f32),
    cols: &'a [(usize, usize, f32)],
    dst: &'a mut [f32],
}

impl Kernel for ResizeRow<'_> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector>(self) {
        let ResizeRow { input, rows: (y0, y1, fy), cols, dst } = self;
        let (iw, c) = (input.shape.w, input.shape.c);
        let cv = c / V::LANES * V::LANES;
        let r0 = &input.data[y0 * iw * c..(y0 + 1) * iw * c];
        let r1 = &input.data[y1 * iw * c..(y1 + 1) * iw * c];
        let lerp = |a: f32, b: f32, f: f32| a + (b - a) * f;
        let vlerp = |a: V, b: V, f: V| a.add(b.sub(a).mul(f));
        let vfy = V::splat(fy);
        for (px, &(xa, xb, fx)) in dst.chunks_exact_mut(c).zip(cols) {
            let (a, b) = (&r0[xa * c..(xa + 1) * c], &r0[xb * c..(xb + 1) * c]);
            let (cc, d) = (&r1[xa * c..(xa + 1) * c], &r1[xb * c..(xb + 1) * c]);
            let vfx = V::splat(fx);
            for i in (0..cv).step_by(V::LANES) {
                // SAFETY: i + LANES <= cv <= c, the length of every slice here.
                unsafe {
                    let top = vlerp(V::load(a.as_ptr().add(i)), V::load(b.as_ptr().add(i)), vfx);
                    let bot = vlerp(V::load(cc.as_ptr().add(i)), V::load(d.as_ptr().add(i)), vfx);
                    vlerp(top, bot, vfy).store(px.as_mut_ptr().add(i));
                }
            }
            for i in cv..c {
                px[i] = lerp(lerp(a[i], b[i], fx), lerp(cc[i], d[i], fx), fy);
            }
        }
    }
}

unsafe fn binary(
    level: SimdLevel,
    kind: BinaryKind,
    act: Activation,
    inputs: &[In<'_>],
    shape: Shape,
    out: &OutBuf<'_>,
    rect: Rect,
) {
    let (a, b) = (inputs[0], inputs[1]);
    let c = shape.c;
    let at = |t: In<'_>, y: usize, x: usize| {
        let yy = if t.shape.h == 1 { 0 } else { y };
        let xx = if t.shape.w == 1 { 0 } else { x };
        (yy * t.shape.w + xx) * t.shape.c
    };
    // Nothing to write; `BinaryRow` needs runs of at least one value.
    if rect.x0 >= rect.x1 || c == 0 {
        return;
    }
    for y in rect.y0..rect.y1 {
        // SAFETY: this task's row segment.
        let dst = unsafe { out.row(y, rect.x0, rect.x1) };
        if a.shape == shape && b.shape == shape {
            // The whole row segment as one run of values.
            let n = dst.len();
            let (lhs, rhs) = (&a.data[at(a, y, rect.x0)..][..n], &b.data[at(b, y, rect.x0)..][..n]);
            dispatch(level, BinaryRow { kind, dst, lhs, rhs, c: n, lhs_step: 0, rhs_step: 0 });
        } else if a.shape.c == c && b.shape.c == c {
            // Spatial broadcast only (squeeze-excite): whole channel vectors per pixel, a
            // broadcast side staying on its one pixel.
            let pixels = rect.x1 - rect.x0;
            let step = |t: In<'_>| if t.shape.w == 1 { 0 } else { c };
            let span = |t: In<'_>| (pixels - 1) * step(t) + c;
            let lhs = &a.data[at(a, y, rect.x0)..][..span(a)];
            let rhs = &b.data[at(b, y, rect.x0)..][..span(b)];
            dispatch(level, BinaryRow { kind, dst, lhs, rhs, c, lhs_step: step(a), rhs_step: step(b) });
        } else {
            for (p, px) in dst.chunks_exact_mut(c).enumerate() {
                let x = rect.x0 + p;
                let (oa, ob) = (at(a, y, x), at(b, y, x));
                for i in 0..c {
                    let va = a.data[oa + if a.shape.c == 1 { 0 } else { i }];
                    let vb = b.data[ob + if b.shape.c == 1 { 0 } else { i }];
                    px[i] = match kind {
                        BinaryKind::Add => va + vb,
                        BinaryKind::Mul => va * vb,
                    };
                }
            }
        }
        activate(level, act, dst);
    }
}

/// One output row segment of an elementwise Add or Mul, in runs of `c` values (`dst.len() / c`
/// of them, `c` > 0): from one run to the next, `lhs` and `rhs` advance by `lhs_step` and
/// `rhs_step` (0: broadcast). Each value is one IEEE operation, the same bits at every vector
/// width.
struct BinaryRow<'a> {
    kind: BinaryKind,
    dst: &'a mut [f32],
    lhs: &'a [f32],
    rhs: &'a [f32],
    c: usize,
    lhs_step: usize,
    rhs_step: usize,
}

impl Kernel for BinaryRow<'_> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector>(self) {
        let BinaryRow { kind, dst, lhs, rhs, c, lhs_step, rhs_step } = self;
        #[inline(always)]
        fn pixel<V: Vector>(d: &mut [f32], p: &[f32], q: &[f32], f: impl Fn(V, V) -> V, g: impl Fn(f32, f32) -> f32) {
            let (p, q) = (&p[..d.len()], &q[..d.len()]);
            let end = d.len() / V::LANES * V::LANES;
            for i in (0..end).step_by(V::LANES) {
                // SAFETY: i + LANES <= end <= the length of all three slices.
                unsafe { f(V::load(p.as_ptr().add(i)), V::load(q.as_ptr().add(i))).store(d.as_mut_ptr().add(i)) };
            }
            for i in end..d.len() {
                d[i] = g(p[i], q[i]);
            }
        }
        for (k, d) in dst.chunks_exact_mut(c).enumerate() {
            let (p, q) = (&lhs[k * lhs_step..][..c], &rhs[k * rhs_step..][..c]);
            match kind {
                BinaryKind::Add => pixel::<V>(d, p, q, |a, b| a.add(b), |a, b| a + b),
                BinaryKind::Mul => pixel::<V>(d, p, q, |a, b| a.mul(b), |a, b| a * b),
            }
        }
    }
}

unsafe fn concat(inputs: &[In<'_>], shape: Shape, out: &OutBuf<'_>, rect: Rect) {
    for y in rect.y0..rect.y1 {
        // SAFETY: this task's row segment.
        let dst = unsafe { out.row(y, rect.x0, rect.x1) };
        for (p, px) in dst.chunks_exact_mut(shape.c).enumerate() {
            let x = rect.x0 + p;
            let mut off = 0;
            for t in inputs {
                let ci = t.shape.c;
                px[off..off + ci].copy_from_slice(&t.data[(y * t.shape.w + x) * ci..][..ci]);
                off += ci;
            }
        }
    }
}

fn dense(level: SimdLevel, d: &Dense, x: &[f32], dst: &mut [f32]) {
    pointwise::run(level, &dense_call(d, x), dst);
}

/// Dense layer `d` on input `x` as a one-pixel product.
fn dense_call<'a>(d: &'a Dense, x: &'a [f32]) -> pointwise::Call<'a> {
    assert_eq!(d.packed.len(), 1, "dense weights are not packed (kernels::prepare)");
    pointwise::Call {
        src: x,
        src_stride: d.cin,
        npix: 1,
        cin: d.cin,
        cout: d.cout,
        packed: &d.packed[0],
        act: d.activation,
        dst_stride: d.cout,
        runs: pointwise::ONE_RUN,
        blocks: 1,
    }
}

/// The outputs of panels `panels` ([`pointwise::PANEL`] outputs each) of dense layer `d` on
/// input `x`, into `out` (the layer's `1x1xcout` output): one worker's share when a session
/// splits a dense layer among threads by its outputs. The bits are those of the whole layer.
///
/// # Safety
/// No other writer touches those outputs of `out` while this runs.
pub unsafe fn dense_panels(level: SimdLevel, d: &Dense, x: &[f32], out: &OutBuf<'_>, panels: std::ops::Range<usize>) {
    assert_eq!(out.shape.len(), d.cout, "a dense layer's output is one vector");
    // SAFETY: `out` holds `cout` floats from pixel 0; the caller owns these panels' outputs.
    unsafe { pointwise::run_panels(level, &dense_call(d, x), out.row_ptr(0, 0), panels) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dense layer computed in shares of panels (as a session's workers compute it) has the
    /// bits of the whole layer at every level, the partial last panel included.
    #[test]
    fn a_dense_layer_in_shares_of_panels_equals_the_whole() {
        let (cin, cout) = (300, 100);
        let wave = |i: usize, f: f32| (i as f32 * f).sin() * 0.5;
        let mut d = Dense {
            cin,
            cout,
            weights: (0..cin * cout).map(|i| wave(i, 0.37)).collect(),
            bias: (0..cout).map(|i| wave(i, 1.3)).collect(),
            activation: Activation::Relu,
            packed: Vec::new(),
        };
        d.packed = vec![pointwise::pack(&d.weights, &d.bias, cin, cout)];
        let x: Vec<f32> = (0..cin).map(|i| wave(i, 0.11)).collect();
        let panels = cout.div_ceil(pointwise::PANEL);
        for level in SimdLevel::available() {
            let mut whole = vec![0.0; cout];
            dense(level, &d, &x, &mut whole);
            let mut shares = vec![f32::NAN; cout];
            let shape = Shape::new(1, 1, cout);
            let out = OutBuf::new(&mut shares, shape);
            for range in [0..1, 1..3, 3..panels] {
                // SAFETY: the ranges are disjoint, one after the other.
                unsafe { dense_panels(level, &d, &x, &out, range) };
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&shares), bits(&whole), "{level:?}");
        }
    }

    /// The rational sigmoid against the exact one, over the whole useful range and beyond; and
    /// every level gives the scalar form's bits (so tails and vectors agree).
    #[test]
    fn sigmoid_is_within_3e7_of_exact_at_every_level() {
        let xs: Vec<f32> = (-400_000..=400_000).map(|i| i as f32 * 5e-5).chain([-1e30, -88.0, 88.0, 1e30]).collect();
        for level in SimdLevel::available() {
            let mut ys = xs.clone();
            activate(level, Activation::Sigmoid, &mut ys);
            let mut worst = 0.0f64;
            for (&x, &y) in xs.iter().zip(&ys) {
                let exact = 1.0 / (1.0 + (-(x as f64)).exp());
                worst = worst.max((y as f64 - exact).abs());
                assert!((y as f64 - exact).abs() <= 3e-7, "{level:?}: sigmoid({x}) = {y}, exact {exact}");
                assert_eq!(y.to_bits(), Activation::Sigmoid.apply(x).to_bits(), "{level:?} at {x}");
            }
            eprintln!("{level:?}: worst sigmoid error {worst:.2e}");
        }
    }
}
