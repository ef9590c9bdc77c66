//! Depthwise convolution on NHWC rectangles, written once over [`Vector`] and compiled per
//! level.
//!
//! Square 3x3 and 5x5 windows (dilation 1, stride 1 or 2) go row by row and, within a row,
//! channel vector by channel vector, eight interior columns at a time on levels with 32
//! registers and four on AVX2's 16 (at stride 1 they share most input loads). A 3x3 vector's
//! weights stay in registers while the row's outputs go by, and border columns go one at a time
//! over their valid taps only; at stride 2, a row goes block of columns by block of columns
//! instead, every channel vector of a block in turn (its weights loaded again for each). A 5x5
//! vector's 25 weights do not fit in registers beside the outputs: each is loaded where it lies
//! and used by up to eight outputs at once, so border columns and interior ones short of a
//! group go together in blocks that test each tap's column (on a 7x7 map, the whole row is one
//! block). Rows outer and channels inner keeps every access a contiguous run of channels, which
//! the hardware prefetchers follow. Other windows go pixel by pixel; channels beyond the last
//! whole vector go through a scalar loop. Each output is summed over its valid taps in one
//! fixed order from the bias (kernel rows, then columns, ascending), so a value does not
//! depend on the rectangle it is computed in, nor on the path that computed it.

use super::pointwise::STRIPE;
use super::simd::{dispatch, Kernel, Level, Vector};
use super::{vec_act, In, OutBuf};
use crate::graph::{Activation, Conv, Packed, Shape, Window};
use crate::reuse::Rect;

/// The input of a depthwise convolution: the rectangle `view` of a `shape` map, held
/// row-major in `data` (the whole map, or the band of an expanded tensor that a
/// [`super::bottleneck`] kernel holds in its scratch). Positions are the map's, so padding and
/// borders follow the map, not the view.
#[derive(Clone, Copy)]
pub(super) struct Source<'a> {
    pub data: &'a [f32],
    pub shape: Shape,
    pub view: Rect,
}

impl<'a> Source<'a> {
    pub fn whole(input: In<'a>) -> Self {
        Self { data: input.data, shape: input.shape, view: Rect::full(input.shape) }
    }

    /// Offset of pixel `(y, x)` of the map in `data` (inside the view).
    #[inline(always)]
    fn offset(&self, y: usize, x: usize) -> usize {
        super::view_offset(self.view, self.shape.c, y, x)
    }
}

/// The weights by stripe of [`STRIPE`] channels, each stripe's taps one after the other
/// (`[c / STRIPE][ky][kx][STRIPE]`, zero-padded): a channel vector's taps are then whole
/// cache lines at constant distances, which the window kernels read where they lie.
pub(super) fn pack(conv: &Conv) -> Packed {
    let (c, taps) = (conv.cout, conv.window.kh * conv.window.kw);
    let mut w = vec![0.0; c.next_multiple_of(STRIPE) * taps];
    for t in 0..taps {
        for ch in 0..c {
            w[(ch / STRIPE * taps + t) * STRIPE + ch % STRIPE] = conv.weights[t * c + ch];
        }
    }
    Packed { weights: w, bias: Vec::new(), int8: None }
}

/// The input rows and columns that `rect` of `w`'s output reads, clipped to an `h x w` map.
pub(crate) fn input_rect(w: &Window, rect: Rect, (h, iw): (usize, usize)) -> Rect {
    let (y0, y1) = w.input_span(true, rect.y0, rect.y1, h);
    let (x0, x1) = w.input_span(false, rect.x0, rect.x1, iw);
    Rect { y0, y1, x0, x1 }
}

/// Rectangle `rect` of a depthwise convolution's output.
///
/// # Safety
/// `rect` lies inside the output, and no other writer touches it meanwhile.
pub(super) unsafe fn rect(level: Level, conv: &Conv, input: Source<'_>, out: &OutBuf<'_>, rect: Rect) {
    let w = &conv.window;
    let c = conv.cout;
    let v = input.view;
    assert!(v.y1 <= input.shape.h && v.x1 <= input.shape.w && input.shape.c == c, "depthwise input view");
    assert_eq!(input.data.len(), v.area() * c, "depthwise input does not match its view");
    assert_eq!(conv.weights.len(), w.kh * w.kw * c, "depthwise weights do not match the window");
    assert_eq!(conv.bias.len(), c, "depthwise bias does not match the channels");
    assert!(
        conv.packed.len() == 1 && conv.packed[0].weights.len() == c.next_multiple_of(STRIPE) * w.kh * w.kw,
        "depthwise weights not packed"
    );
    assert!(rect.y1 <= out.shape.h && rect.x1 <= out.shape.w && out.shape.c == c);
    // Every input position the rectangle reads must be in the view.
    let reads = input_rect(w, rect, (input.shape.h, input.shape.w));
    let held = |(a, b): (usize, usize), (lo, hi): (usize, usize)| a >= b || (lo <= a && b <= hi);
    assert!(
        held((reads.y0, reads.y1), (v.y0, v.y1)) && held((reads.x0, reads.x1), (v.x0, v.x1)),
        "the depthwise input view does not hold what the rectangle reads"
    );
    // One kernel per window, so that each is compiled as a function of its own: in one body,
    // the 5x5 windows' blocks changed the register allocation of the 3x3 ones (8% slower).
    let level = level.for_width(c);
    match (w.kh, w.kw, w.dh, w.dw, w.sw) {
        (3, 3, 1, 1, 1) => dispatch(level, RectKernel::<3, 1> { conv, input, out, rect }),
        (3, 3, 1, 1, 2) => dispatch(level, RectKernel::<3, 2> { conv, input, out, rect }),
        (5, 5, 1, 1, 1) => dispatch(level, RectKernel::<5, 1> { conv, input, out, rect }),
        (5, 5, 1, 1, 2) => dispatch(level, RectKernel::<5, 2> { conv, input, out, rect }),
        _ => dispatch(level, RectKernel::<0, 0> { conv, input, out, rect }),
    }
}

/// Where output row `oy` reads: the input row of kernel row 0 (`iy0`, possibly above the
/// image) and the kernel rows `ky0..ky1` whose input row is inside the image.
#[derive(Clone, Copy)]
struct RowGeometry {
    iy0: isize,
    ky0: usize,
    ky1: usize,
}

impl RowGeometry {
    #[inline(always)]
    fn new(w: &Window, ih: usize, oy: usize) -> Self {
        let iy0 = (oy * w.sh) as isize - w.pad[0] as isize;
        let (ky0, ky1) = valid_taps(iy0, w.kh, w.dh, ih);
        Self { iy0, ky0, ky1 }
    }

    /// Input row of kernel row `ky` (inside the image for `ky0 <= ky < ky1`).
    #[inline(always)]
    fn input_row(&self, w: &Window, ky: usize) -> usize {
        (self.iy0 + (ky * w.dh) as isize) as usize
    }
}

/// First input column of output column `ox`, and its valid kernel columns `kx0..kx1`.
#[inline(always)]
fn columns(w: &Window, iw: usize, ox: usize) -> (isize, usize, usize) {
    let ix0 = (ox * w.sw) as isize - w.pad[1] as isize;
    let (kx0, kx1) = valid_taps(ix0, w.kw, w.dw, iw);
    (ix0, kx0, kx1)
}

/// Along one axis: the taps `k0..k1` of a `k`-tap window with dilation `d` starting at input
/// position `start` that fall inside `0..n` (a contiguous range; empty when none do).
#[inline(always)]
fn valid_taps(start: isize, k: usize, d: usize, n: usize) -> (usize, usize) {
    let inside = |t: usize| (0..n as isize).contains(&(start + (t * d) as isize));
    let k0 = (0..k).find(|&t| inside(t)).unwrap_or(k);
    let k1 = (k0..k).take_while(|&t| inside(t)).last().map_or(k0, |t| t + 1);
    (k0, k1)
}

/// The output columns `xa..xb` of `x0..x1` that read every kernel column (contiguous: the
/// first input column grows with the output column); `xa == xb` when there are none.
fn interior_columns(w: &Window, iw: usize, x0: usize, x1: usize) -> (usize, usize) {
    let interior = |x: usize| {
        let (_, kx0, kx1) = columns(w, iw, x);
        kx0 == 0 && kx1 == w.kw
    };
    let xa = (x0..x1).find(|&x| interior(x)).unwrap_or(x1);
    let xb = (xa..x1).find(|&x| !interior(x)).unwrap_or(x1);
    (xa, xb)
}

/// One rectangle as a [`Kernel`], for a `K x K` window of stride `SW` (`K = 0`: any other).
struct RectKernel<'a, 'b, const K: usize, const SW: usize> {
    conv: &'a Conv,
    input: Source<'a>,
    out: &'a OutBuf<'b>,
    rect: Rect,
}

impl<const K: usize, const SW: usize> Kernel for RectKernel<'_, '_, K, SW> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector>(self) {
        // Eight outputs per block where the level has 32 registers (AVX-512, NEON), four with
        // 16 (AVX2): each output is one chain of dependent multiply-adds, and four chains keep
        // at most one FMA a cycle busy, where these cores issue two. With eight, a 5x5 window's
        // weights no longer fit beside the accumulators and are read where they lie (L1), and
        // 5x5 layers take 20-27% less time (14x14x672: 0.088 -> 0.064 ms; `layers` example).
        // SAFETY: `rect`'s contract is forwarded from `rect`.
        unsafe {
            if V::REGISTERS >= 32 {
                rect_impl::<V, K, SW, 8>(self.conv, self.input, self.out, self.rect)
            } else {
                rect_impl::<V, K, SW, 4>(self.conv, self.input, self.out, self.rect)
            }
        }
    }
}

/// Most output columns of one checked block ([`Taps::edge`]): the border columns and the
/// interior ones short of a group (on a 7x7 map with a 5x5 window, the whole row).
const EDGE: usize = 8;

/// The rectangle. With `K > 0` (a `K x K` window of stride `SW`, dilation 1), row by row and
/// channel vector by channel vector through [`Taps`]; other windows pixel by pixel.
///
/// # Safety
/// As [`rect`].
#[inline(always)]
unsafe fn rect_impl<V: Vector, const K: usize, const SW: usize, const GROUP: usize>(
    conv: &Conv,
    input: Source<'_>,
    out: &OutBuf<'_>,
    rect: Rect,
) {
    let w = &conv.window;
    let c = conv.cout;
    let (ih, iw) = (input.shape.h, input.shape.w);
    let cv = c / V::LANES * V::LANES;
    // Where pixel (0, 0) of the map would be: positions are the map's, the data the view's
    // (only positions inside the view are read, which `rect` checked).
    let vw = input.view.x1 - input.view.x0;
    let src = input.data.as_ptr().wrapping_sub((input.view.y0 * vw + input.view.x0) * c);
    let (xa, xb) = if K > 0 { interior_columns(w, iw, rect.x0, rect.x1) } else { (rect.x0, rect.x0) };
    // Rows outer, channel vectors inner: a row's pixels are read and written as whole
    // contiguous runs of channels, which the hardware prefetchers follow (channel vectors
    // outer, each pass would touch one cache line in every `c / LANES`).
    let fast = if K > 0 { cv } else { 0 };
    let row = vw * c;
    for oy in rect.y0..rect.y1 {
        let geo = RowGeometry::new(w, ih, oy);
        if K > 0 && Taps::<V, K, GROUP>::HOLD && SW > 1 {
            // A 3x3 window of stride 2: column block by column block, every channel vector of
            // a block before the next block, so that the block's input pixels are read as
            // whole runs of channels (with channel vectors outer, a pass over the row reads
            // one cache line in every `c / LANES`, twice as many per output as at stride 1).
            // The weights go back into registers for each block and channel vector. Measured
            // (`layers`): 112x112x96 17% faster, and MobileNetV2's first stride-2 block's
            // depthwise band 18%; at stride 1 the same order was 7-10% slower, so it keeps the
            // row-by-row passes below.
            // SAFETY (every pointer below): the valid taps of rows ky0..ky1 are inside the
            // input; cb + LANES <= cv <= c; outputs are inside `rect`, which is ours.
            unsafe {
                for ox in (rect.x0..xa).chain(xb..rect.x1) {
                    let (ix0, kx0, kx1) = columns(w, iw, ox);
                    for cb in (0..fast).step_by(V::LANES) {
                        let (t, row0) = Taps::<V, K, GROUP>::new(conv, src, row, cb, geo);
                        // The first valid tap's column is inside the image.
                        let first = row0.wrapping_add((ix0 + kx0 as isize) as usize * c).wrapping_sub(kx0 * c);
                        t.block::<SW, 1>(first, (kx0, kx1), out.row_ptr(oy, ox).add(cb));
                    }
                }
                let mut ox = xa;
                while ox + GROUP <= xb {
                    for cb in (0..fast).step_by(V::LANES) {
                        let (t, row0) = Taps::<V, K, GROUP>::new(conv, src, row, cb, geo);
                        let first = row0.wrapping_add((ox * SW - w.pad[1]) * c);
                        t.block::<SW, GROUP>(first, (0, K), out.row_ptr(oy, ox).add(cb));
                    }
                    ox += GROUP;
                }
                // The interior columns short of a group in blocks of four and two, then
                // one: a lone output is one chain of dependent multiply-adds, and a row of
                // 14 left six of them after a group of eight.
                while ox < xb {
                    let n = if GROUP > 4 && ox + 4 <= xb {
                        4
                    } else if ox + 2 <= xb {
                        2
                    } else {
                        1
                    };
                    for cb in (0..fast).step_by(V::LANES) {
                        let (t, row0) = Taps::<V, K, GROUP>::new(conv, src, row, cb, geo);
                        let first = row0.wrapping_add((ox * SW - w.pad[1]) * c);
                        let dst = out.row_ptr(oy, ox).add(cb);
                        match n {
                            4 => t.block::<SW, 4>(first, (0, K), dst),
                            2 => t.block::<SW, 2>(first, (0, K), dst),
                            _ => t.block::<SW, 1>(first, (0, K), dst),
                        }
                    }
                    ox += n;
                }
            }
        } else {
            for cb in (0..fast).step_by(V::LANES) {
                // SAFETY: cb + LANES <= cv <= c, inside the packed stripe and the bias.
                let (taps, row0) = unsafe { Taps::<V, K, GROUP>::new(conv, src, row, cb, geo) };
                let at = |ix: usize| row0.wrapping_add(ix * c);
                // SAFETY (every pointer below): the valid taps of rows ky0..ky1 are inside the
                // input; outputs are inside `rect`, which is ours.
                if Taps::<V, K, GROUP>::HOLD {
                    unsafe {
                        // Weights in registers: a border column costs only its own loads. (This
                        // path keeps its own loops in this order: sharing the group loop with the
                        // 5x5 path below, in either order, made 56x56x144 8% slower.)
                        for ox in (rect.x0..xa).chain(xb..rect.x1) {
                            let (ix0, kx0, kx1) = columns(w, iw, ox);
                            // The first valid tap's column is inside the image.
                            let first = at((ix0 + kx0 as isize) as usize).wrapping_sub(kx0 * c);
                            taps.block::<SW, 1>(first, (kx0, kx1), out.row_ptr(oy, ox).add(cb));
                        }
                        let mut ox = xa;
                        while ox + GROUP <= xb {
                            taps.block::<SW, GROUP>(at(ox * SW - w.pad[1]), (0, K), out.row_ptr(oy, ox).add(cb));
                            ox += GROUP;
                        }
                        // Blocks of four and two, then one, as at stride 2 above.
                        if GROUP > 4 && ox + 4 <= xb {
                            taps.block::<SW, 4>(at(ox * SW - w.pad[1]), (0, K), out.row_ptr(oy, ox).add(cb));
                            ox += 4;
                        }
                        if ox + 2 <= xb {
                            taps.block::<SW, 2>(at(ox * SW - w.pad[1]), (0, K), out.row_ptr(oy, ox).add(cb));
                            ox += 2;
                        }
                        for ox in ox..xb {
                            taps.block::<SW, 1>(at(ox * SW - w.pad[1]), (0, K), out.row_ptr(oy, ox).add(cb));
                        }
                    }
                    continue;
                }
                // Weights loaded per use: the columns beside the groups (borders, and
                // interior columns short of a group) go in checked blocks of up to
                // `EDGE`, which load each weight once for all of them.
                unsafe {
                    let (ga, gb) = (xa, xa + (xb - xa) / GROUP * GROUP);
                    for (a, b) in [(rect.x0, ga), (gb, rect.x1)] {
                        for x in (a..b).step_by(EDGE) {
                            let n = (b - x).min(EDGE);
                            let dst = out.row_ptr(oy, x).add(cb);
                            taps.edge::<SW>(row0, (x, n), (iw, w.pad[1]), dst);
                        }
                    }
                    let mut ox = ga;
                    while ox < gb {
                        taps.block::<SW, GROUP>(at(ox * SW - w.pad[1]), (0, K), out.row_ptr(oy, ox).add(cb));
                        ox += GROUP;
                    }
                }
            }
        }
        // SAFETY: the row segment is inside `rect`, which is ours (this function's contract);
        // no pointer above is used past this point of the row.
        let dst = unsafe { out.row(oy, rect.x0, rect.x1) };
        for ox in rect.x0..rect.x1 {
            let px = &mut dst[(ox - rect.x0) * c..][..c];
            if K == 0 {
                pixel::<V>(conv, input, geo, ox, px);
            } else {
                scalar_tail(conv, input, geo, ox, cv, px);
            }
        }
    }
}

/// One channel vector of a `K x K` window in one output row: its weights (held in registers
/// when they fit, else read where they lie in the packed stripe: `wp`, [`STRIPE`] floats
/// apart) and bias, the channel count `c` (the distance between pixels), the floats per input
/// row and the row's valid kernel rows.
struct Taps<V, const K: usize, const GROUP: usize> {
    weights: [[V; K]; K],
    wp: *const f32,
    bias: V,
    c: usize,
    row: usize,
    act: Activation,
    geo: RowGeometry,
}

impl<V: Vector, const K: usize, const GROUP: usize> Taps<V, K, GROUP> {
    /// Whether the window's weights stay in registers beside a block's accumulators and one
    /// input (3x3 windows). A 5x5 window's 25 would be copied to the stack for every row and
    /// channel vector and read back from there; they are read from the packed stripe instead,
    /// the same loads without the copies (on a 7x7 map, 25 copies per 7 outputs).
    const HOLD: bool = K * K + GROUP < V::REGISTERS;

    /// The taps of channel vector `cb` of `conv` in the row of `geo`, and that vector's
    /// pointer at input column 0 of kernel row 0's input row (which may be above the image:
    /// only valid rows are read). `src` is where pixel (0, 0) of the map would be, `row` the
    /// floats per input row.
    ///
    /// # Safety
    /// `cb + LANES <= c`, and `conv`'s weights are packed.
    #[inline(always)]
    unsafe fn new(conv: &Conv, src: *const f32, row: usize, cb: usize, geo: RowGeometry) -> (Self, *const f32) {
        // SAFETY: the function's contract.
        unsafe {
            let wp = conv.packed[0].weights.as_ptr().add(cb / STRIPE * K * K * STRIPE + cb % STRIPE);
            let mut weights = [[V::splat(0.0); K]; K];
            if Self::HOLD {
                for (ky, r) in weights.iter_mut().enumerate() {
                    for (kx, v) in r.iter_mut().enumerate() {
                        *v = V::load(wp.add((ky * K + kx) * STRIPE));
                    }
                }
            }
            let bias = V::load(conv.bias.as_ptr().add(cb));
            let row0 = src.wrapping_offset(geo.iy0 * row as isize).wrapping_add(cb);
            (Self { weights, wp, bias, c: conv.cout, row, act: conv.activation, geo }, row0)
        }
    }

    /// The weight of tap `(ky, kx)`.
    ///
    /// # Safety
    /// `ky, kx < K`, and `wp` points at this channel vector's packed taps.
    #[inline(always)]
    unsafe fn weight(&self, ky: usize, kx: usize) -> V {
        if Self::HOLD {
            self.weights[ky][kx]
        } else {
            // SAFETY: the function's contract.
            unsafe { V::load(self.wp.add((ky * K + kx) * STRIPE)) }
        }
    }

    /// `G` outputs whose kernel column 0 reads at `first` (in the input row of kernel row 0,
    /// moved to its row per kernel row; possibly outside the image for a border output),
    /// written at `out`, `out + c`, ...; each summed from the bias over the valid kernel rows
    /// and the kernel columns `kx0..kx1` in the order of [`pixel`]. Interior outputs pass
    /// `0..K`, a constant, so their loop has no column test.
    ///
    /// # Safety
    /// Every valid tap of the `G` pixels is inside the input, and `out` is valid for writing
    /// `G` pixels.
    #[inline(always)]
    unsafe fn block<const SW: usize, const G: usize>(
        &self,
        first: *const f32,
        (kx0, kx1): (usize, usize),
        out: *mut f32,
    ) {
        let mut acc = [self.bias; G];
        for ky in 0..K {
            if ky < self.geo.ky0 || ky >= self.geo.ky1 {
                continue;
            }
            let r = first.wrapping_offset(ky as isize * self.row as isize);
            for (p, a) in acc.iter_mut().enumerate() {
                for kx in kx0..kx1 {
                    // SAFETY: the function's contract (a valid tap).
                    let s = unsafe { V::load(r.wrapping_add((p * SW + kx) * self.c)) };
                    // SAFETY: ky, kx < K; `wp` is this vector's (set by `rect_impl`).
                    *a = s.mul_add(unsafe { self.weight(ky, kx) }, *a);
                }
            }
        }
        for (p, a) in acc.iter().enumerate() {
            // SAFETY: the function's contract.
            unsafe { vec_act(self.act, *a).store(out.add(p * self.c)) };
        }
    }

    /// The `n <= EDGE` outputs `x..x + n` of the row, any of them at the border: each summed
    /// from the bias over its valid taps only, kernel rows then columns ascending (the order
    /// of [`pixel`]). Each weight is loaded once for all `n` outputs, where a block per border
    /// column loaded all its weights again. `row0` is this channel vector at input column 0 of
    /// kernel row 0's input row; `(iw, pad)` the input's width and the window's left padding.
    ///
    /// # Safety
    /// Row `row0` lies in the input for the valid kernel rows, and `out` is valid for writing
    /// `n` pixels.
    #[inline(always)]
    unsafe fn edge<const SW: usize>(
        &self,
        row0: *const f32,
        (x, n): (usize, usize),
        (iw, pad): (usize, usize),
        out: *mut f32,
    ) {
        let mut acc = [self.bias; EDGE];
        for ky in self.geo.ky0..self.geo.ky1 {
            let r = row0.wrapping_add(ky * self.row);
            for kx in 0..K {
                // SAFETY: ky, kx < K; `wp` is this vector's (set by `rect_impl`).
                let wv = unsafe { self.weight(ky, kx) };
                for (p, a) in acc.iter_mut().enumerate().take(n) {
                    // The input column of this tap, when it lies inside the image.
                    let ix = ((x + p) * SW + kx).wrapping_sub(pad);
                    if ix < iw {
                        // SAFETY: a valid tap of a valid kernel row (the contract).
                        let s = unsafe { V::load(r.wrapping_add(ix * self.c)) };
                        *a = s.mul_add(wv, *a);
                    }
                }
            }
        }
        for (p, a) in acc.iter().enumerate().take(n) {
            // SAFETY: the function's contract.
            unsafe { vec_act(self.act, *a).store(out.add(p * self.c)) };
        }
    }
}

/// Every channel of output column `ox` in the row of `geo`, reading only its valid taps, into
/// `dst` (the pixel's `c` floats).
#[inline(always)]
fn pixel<V: Vector>(conv: &Conv, input: Source<'_>, geo: RowGeometry, ox: usize, dst: &mut [f32]) {
    let w = &conv.window;
    let c = conv.cout;
    let iw = input.shape.w;
    let cv = c / V::LANES * V::LANES;
    let (src, wts) = (input.data.as_ptr(), conv.weights.as_ptr());
    let (ix0, kx0, kx1) = columns(w, iw, ox);
    assert_eq!(dst.len(), c);
    for cb in (0..cv).step_by(V::LANES) {
        // SAFETY: rows ky0..ky1 and columns kx0..kx1 are inside the input (asserted extents
        // in `rect`); cb + LANES <= cv <= c = dst.len().
        unsafe {
            let mut acc = V::load(conv.bias.as_ptr().add(cb));
            for ky in geo.ky0..geo.ky1 {
                let iy = geo.input_row(w, ky);
                for kx in kx0..kx1 {
                    let ix = (ix0 + (kx * w.dw) as isize) as usize;
                    let s = V::load(src.add(input.offset(iy, ix) + cb));
                    acc = s.mul_add(V::load(wts.add((ky * w.kw + kx) * c + cb)), acc);
                }
            }
            vec_act(conv.activation, acc).store(dst.as_mut_ptr().add(cb));
        }
    }
    scalar_tail(conv, input, geo, ox, cv, dst);
}

/// Channels `c0..` of output column `ox` (those past the last whole vector), one at a time.
#[inline(always)]
fn scalar_tail(conv: &Conv, input: Source<'_>, geo: RowGeometry, ox: usize, c0: usize, dst: &mut [f32]) {
    let (w, c, iw, act) = (&conv.window, conv.cout, input.shape.w, conv.activation);
    if c0 == c {
        return;
    }
    let (ix0, kx0, kx1) = columns(w, iw, ox);
    for ch in c0..c {
        let mut acc = conv.bias[ch];
        for ky in geo.ky0..geo.ky1 {
            let iy = geo.input_row(w, ky);
            for kx in kx0..kx1 {
                let ix = (ix0 + (kx * w.dw) as isize) as usize;
                acc += input.data[input.offset(iy, ix) + ch] * conv.weights[(ky * w.kw + kx) * c + ch];
            }
        }
        dst[ch] = act.apply(acc);
    }
}
