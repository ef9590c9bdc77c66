//! Int8 products: the GEMM-shaped convolutions of a quantized plan ([`crate::quant`]).
//!
//! The caller's [`Call`] is the same as for a float product (pointwise, im2col rows, kernel
//! rows read in place); [`pointwise::run`] hands it here when the packed weights carry an
//! [`Int8Packed`]. Each block of pixels is quantized once into a scratch of input units (see
//! [`IntVector`]: `i16` pairs, the input minus its zero point, −255..=255; or, with a dot
//! product, quads of bytes: `i8` shifted by 128 for NEON's `sdot`, `u8` for AVX-512 VNNI's
//! `vpdpbusd`), then every panel of weights passes over it: `i32`
//! accumulators, one multiply-add per unit ([`IntVector::madd`]). The epilogue scales each
//! channel back to float, adds the bias and applies the activation, so the tensors between
//! nodes stay `f32` and every other kernel (depthwise, pools, resizes, the session's change
//! detection) runs as before.
//!
//! Integer sums are exact in any order, and the epilogue is one multiply and one add per value,
//! then the activation (whose arithmetic never fuses a multiply-add), so every level and every
//! rectangle gives the same bits as the naive reference [`super::reference::int8_conv`]:
//! cached int8 inference equals full int8 inference exactly.

use std::cell::RefCell;

use super::pointwise::{Call, PANEL, PIXEL_BLOCK, STRIPE};
use super::simd::{dispatch, IntVector, Kernel, Level, Vector};
use super::vec_act;
use crate::graph::Activation;

/// Int8 weights packed for [`run`]: per panel of [`PANEL`] output channels, per stripe of
/// [`STRIPE`] of them (as the float panels, so that a tile streams contiguous lines), per block
/// of `kb` rows (zero-padded to whole units), one line of units per `GROUP` rows, each line
/// holding the stripe's units side by side: `(w[k][c], w[k + 1][c])` as `i16` (`pairs`), and,
/// where the CPU has NEON's dot product, `w[k..k + 4][c]` as `i8` (`quads`).
#[derive(Clone, Debug, Default)]
pub struct Int8Packed {
    pairs: Vec<i16>,
    /// The quads, empty where no level uses them.
    quads: Vec<i8>,
    /// With the quads, per block and channel (zero-padded to whole panels): `(QUAD_BIAS − zero)
    /// · Σ w` over the block's rows, what the quads' offset of the input takes from each sum.
    shift: Vec<i32>,
    /// Per channel (zero-padded to whole panels): `input_scale · weight_scale[c]`.
    scale: Vec<f32>,
    /// Per channel, zero-padded to whole panels.
    bias: Vec<f32>,
    inv_scale: f32,
    /// The input's zero point: its quantized range, relative to it, is `-zero..=255 - zero`.
    zero: f32,
    /// Rows per block: the granularity at which calls address the weights (a kernel row of a
    /// convolution read in place, or the whole inner dimension).
    kb: usize,
    blocks: usize,
}

/// `w`, `[k][n]` weights of blocks of `kb` rows, packed in units of `group` rows (see
/// [`Int8Packed`]), each row padded with zeros to whole units.
fn pack_units<T: Copy + Default>(w: &[T], n: usize, kb: usize, group: usize) -> Vec<T> {
    let blocks = w.len() / (n * kb).max(1);
    let (units, panels) = (kb.div_ceil(group), n.div_ceil(PANEL));
    let mut out = vec![T::default(); panels * blocks * units * group * PANEL];
    for p in 0..panels {
        for b in 0..blocks {
            for r in 0..kb {
                for j in 0..PANEL.min(n - p * PANEL) {
                    let stripe = (p * blocks * units * PANEL + j / STRIPE * blocks * units * STRIPE) * group;
                    let at = stripe + ((b * units + r / group) * STRIPE + j % STRIPE) * group + r % group;
                    out[at] = w[(b * kb + r) * n + p * PANEL + j];
                }
            }
        }
    }
    out
}

/// Whether `level` multiplies quads: NEON's `sdot`, AVX-VNNI's and AVX-512 VNNI's
/// `vpdpbusd`.
fn is_dot(level: Level) -> bool {
    match level {
        #[cfg(target_arch = "aarch64")]
        Level::NeonDot => true,
        #[cfg(target_arch = "x86_64")]
        Level::Avx2Vnni | Level::Avx512Vnni => true,
        _ => false,
    }
}

/// Whether the int8 products can run on a dot-product level here, so that the quads are
/// packed.
fn dot_product() -> bool {
    Level::detected().iter().copied().any(is_dot)
}

/// What a quad's input bytes are offset by: each is `q + zero − QUAD_BIAS`, an `i8` for NEON's
/// `sdot` (which multiplies signed bytes), a `u8` for `vpdpbusd` (unsigned inputs, signed
/// weights). The packed `shift` gives each sum back what the offset took.
#[cfg(target_arch = "aarch64")]
pub(crate) const QUAD_BIAS: i32 = 128;
#[cfg(not(target_arch = "aarch64"))]
pub(crate) const QUAD_BIAS: i32 = 0;

/// The most rows one int8 product may sum: `255 · 127 · rows` stays below `2^31`, so no
/// accumulator overflows (the plan's validation refuses more).
pub const MAX_ROWS: usize = (i32::MAX as usize) / (255 * 127);

/// The int8 input value of `x`: `x / scale` rounded to nearest (ties to even), clamped to the
/// zero point's range. The one definition every level and the reference use.
#[inline(always)]
pub fn quantize(x: f32, inv_scale: f32, lo: f32, hi: f32) -> i16 {
    (x * inv_scale).round_ties_even().clamp(lo, hi) as i16
}

impl Int8Packed {
    /// Packs group `group` of `q`, a convolution's int8 form whose groups each have `[k][n]`
    /// weights (`k = blocks · kb`), with that group's bias.
    pub fn new(q: &crate::graph::ConvQuant, group: usize, bias: &[f32], k: usize, n: usize, kb: usize) -> Self {
        let weights = &q.weights[group * k * n..(group + 1) * k * n];
        let weight_scale = &q.weight_scale[group * n..(group + 1) * n];
        assert!(kb > 0 && k.is_multiple_of(kb) && bias.len() == n);
        assert!(k <= MAX_ROWS, "an int8 product of {k} rows could overflow");
        let (blocks, panels) = (k / kb, n.div_ceil(PANEL));
        let wide: Vec<i16> = weights.iter().map(|&w| i16::from(w)).collect();
        let pad = |v: Vec<f32>| {
            let mut v = v;
            v.resize(panels * PANEL, 0.0);
            v
        };
        let (quads, shift) = if dot_product() {
            let mut shift = vec![0i32; blocks * panels * PANEL];
            for (r, row) in weights.chunks_exact(n).enumerate() {
                for (c, &w) in row.iter().enumerate() {
                    shift[r / kb * panels * PANEL + c] += (QUAD_BIAS - i32::from(q.input_zero)) * i32::from(w);
                }
            }
            (pack_units(weights, n, kb, 4), shift)
        } else {
            (Vec::new(), Vec::new())
        };
        Self {
            pairs: pack_units(&wide, n, kb, 2),
            quads,
            shift,
            scale: pad(weight_scale.iter().map(|s| q.input_scale * s).collect()),
            bias: pad(bias.to_vec()),
            inv_scale: 1.0 / q.input_scale,
            zero: f32::from(q.input_zero),
            kb,
            blocks,
        }
    }
}

thread_local! {
    /// Quantized input units of one pixel block, per thread.
    static UNITS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Runs the int8 product `call` (already checked by [`pointwise::run`]) with `q` into `dst`.
pub(super) fn run(level: Level, call: &Call<'_>, q: &Int8Packed, dst: &mut [f32]) {
    assert!(call.cin.is_multiple_of(q.kb), "an int8 call must address whole blocks");
    let per_run = call.cin / q.kb;
    // The packed block of each segment of a pixel's quantized row, in order (on the stack for
    // the usual few: one for a pointwise product, a kernel's rows for a convolution).
    let blocks = call.runs.iter().flat_map(|&(_, b)| (0..per_run).map(move |j| b * per_run + j));
    let (mut small, large): ([usize; 16], Vec<usize>);
    let n = call.runs.len() * per_run;
    let segments: &[usize] = if n <= 16 {
        small = [0; 16];
        small.iter_mut().zip(blocks).for_each(|(s, b)| *s = b);
        &small[..n]
    } else {
        large = blocks.collect();
        &large
    };
    assert!(segments.iter().all(|&s| s < q.blocks), "an int8 run past the packed weights");
    assert!(q.scale.len() >= call.cout.div_ceil(PANEL) * PANEL);
    let dot = is_dot(level);
    // Quads are packed wherever the CPU runs the dot-product level.
    assert!(!dot || !q.quads.is_empty(), "int8 weights packed without their quads");
    let group = if dot { 4 } else { 2 };
    UNITS.with(|units| {
        let mut units = units.borrow_mut();
        let row = segments.len() * q.kb.div_ceil(group);
        units.resize(PIXEL_BLOCK.min(call.npix) * row, 0);
        let product = Product { call, q, segments, units: &mut units, row, dst: dst.as_mut_ptr() };
        #[cfg(target_arch = "aarch64")]
        if dot {
            // SAFETY: `Level::NeonDot` is available (the session validated its level, and the
            // quads exist only where it is).
            return unsafe { neon_dot(product) };
        }
        #[cfg(target_arch = "x86_64")]
        match level {
            // SAFETY: the level is available, as above.
            Level::Avx512Vnni => return unsafe { avx512_vnni(product) },
            // SAFETY: as above.
            Level::Avx2Vnni => return unsafe { avx2_vnni(product) },
            _ => {}
        }
        dispatch(level, product);
    });
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon,dotprod")]
unsafe fn neon_dot(p: Product<'_, '_>) {
    use super::simd::NeonDot;
    if p.call.cout <= NeonDot::LANES {
        drive::<NeonDot, 8, 1>(p)
    } else {
        drive::<NeonDot, 4, 4>(p)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni,avx2,fma")]
unsafe fn avx512_vnni(p: Product<'_, '_>) {
    use super::simd::Avx512Dot;
    // One vector is a whole stripe of 16 channels; two take a panel's two stripes. Eight
    // pixels, the most the tails handle: 16 accumulators, 2 weight vectors and the broadcast
    // unit of 32 registers.
    if p.call.cout <= Avx512Dot::LANES {
        drive::<Avx512Dot, 8, 1>(p)
    } else {
        drive::<Avx512Dot, 8, 2>(p)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avxvnni")]
unsafe fn avx2_vnni(p: Product<'_, '_>) {
    use super::simd::Avx2Dot;
    // Sixteen registers: as `Level::Avx2Fma`'s pairs, with no register for the product
    // (`vpdpbusd` accumulates in place): 12 accumulators, 2 weight vectors and the broadcast
    // unit.
    if p.call.cout <= Avx2Dot::LANES {
        drive::<Avx2Dot, 8, 1>(p)
    } else {
        drive::<Avx2Dot, 6, 2>(p)
    }
}

struct Product<'a, 'b> {
    call: &'a Call<'b>,
    q: &'a Int8Packed,
    segments: &'a [usize],
    units: &'a mut [u32],
    /// Units per pixel.
    row: usize,
    dst: *mut f32,
}

impl Kernel for Product<'_, '_> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector>(self) {
        let thin = self.call.cout <= <V::Int as IntVector>::LANES;
        match (<V::Int as IntVector>::LANES, <V::Int as IntVector>::REGISTERS) {
            // Accumulators, the weights, the broadcast unit and the product: within 16 registers.
            (8, _) if thin => drive::<V::Int, 8, 1>(self),
            (8, _) => drive::<V::Int, 5, 2>(self),
            (4, 32) if thin => drive::<V::Int, 8, 1>(self),
            (4, 32) => drive::<V::Int, 4, 4>(self),
            (_, _) if thin => drive::<V::Int, 4, 1>(self),
            _ => drive::<V::Int, 4, 2>(self),
        }
    }
}

/// Quantizes pixels `pb..pe` of the call into `units` (`row` units per pixel): each segment's
/// `kb` values, then zeros to a whole unit.
#[inline(always)]
fn quantize_block<I: IntVector>(p: &mut Product<'_, '_>, pb: usize, pe: usize) {
    let (c, q) = (p.call, p.q);
    let per_run = c.cin / q.kb;
    let (size, padded) = (4 / I::GROUP, q.kb.next_multiple_of(I::GROUP));
    let (lo, hi) = (-q.zero, 255.0 - q.zero);
    for (i, px) in (pb..pe).enumerate() {
        let out = &mut p.units[i * p.row..(i + 1) * p.row];
        let out = out.as_mut_ptr().cast::<u8>();
        let mut at = 0;
        for &(offset, _) in c.runs {
            for j in 0..per_run {
                let src = &c.src[px * c.src_stride + offset + j * q.kb..][..q.kb];
                // SAFETY: `src` holds `kb` floats; the pixel's `row` units hold every segment's
                // `padded >= kb` values of `size` bytes (`row = segments · padded / GROUP`, and
                // `at` steps by `padded`).
                unsafe {
                    I::quantize(src.as_ptr(), q.kb, q.inv_scale, lo, hi, q.zero, out.add(at * size));
                    std::ptr::write_bytes(out.add((at + q.kb) * size), 0, (padded - q.kb) * size);
                }
                at += padded;
            }
        }
        debug_assert_eq!(at * size, 4 * p.row);
    }
}

/// Every tile of the product, block of pixels by block of pixels.
#[inline(always)]
fn drive<I: IntVector, const MR: usize, const NV: usize>(mut p: Product<'_, '_>) {
    let width = NV * I::LANES;
    debug_assert_eq!(PANEL % width, 0);
    let c = p.call;
    let panels = c.cout.div_ceil(PANEL);
    // Units per block and channel.
    let units = p.q.kb.div_ceil(I::GROUP);
    let panel_len = p.q.blocks * units * PANEL;
    let (weights, shift) = if I::GROUP == 4 {
        (p.q.quads.as_ptr().cast::<u32>(), p.q.shift.as_ptr())
    } else {
        (p.q.pairs.as_ptr().cast::<u32>(), std::ptr::null())
    };
    let mut pb = 0;
    while pb < c.npix {
        let pe = (pb + PIXEL_BLOCK).min(c.npix);
        quantize_block::<I>(&mut p, pb, pe);
        for panel in 0..panels {
            for sub in 0..PANEL / width {
                let col = panel * PANEL + sub * width;
                if col >= c.cout {
                    break;
                }
                let t = Tile {
                    segments: p.segments,
                    units,
                    stripe_len: p.q.blocks * units * STRIPE,
                    row: p.row,
                    dst_stride: c.dst_stride,
                    ncols: (c.cout - col).min(width),
                    act: c.act,
                };
                // SAFETY: pixel i of the block has `row` units in `units`; panel columns
                // col..col + width of every block lie inside the zero-padded packed weights,
                // shifts, scales and bias (checked by `run`); `dst` holds `npix` rows of `cout`
                // at `dst_stride` (checked by `pointwise::run`).
                unsafe {
                    let stripe = sub * width / STRIPE * p.q.blocks * units * STRIPE;
                    let w = weights.add(panel * panel_len + stripe + sub * width % STRIPE);
                    // Quads start from what their shift took from each segment's sum: the same
                    // for every pixel of these columns.
                    let mut sh = [I::zero(); NV];
                    if I::GROUP == 4 {
                        for &seg in p.segments {
                            for (j, v) in sh.iter_mut().enumerate() {
                                *v = v.add(I::load(shift.add(seg * panels * PANEL + col + j * I::LANES)));
                            }
                        }
                    }
                    let (s, b) = (p.q.scale.as_ptr().add(col), p.q.bias.as_ptr().add(col));
                    let mut px = pb;
                    while px + MR <= pe {
                        let a = p.units.as_ptr().add((px - pb) * p.row);
                        t.run::<I, MR, NV>(a, w, sh, s, b, p.dst.add(px * c.dst_stride + col));
                        px += MR;
                    }
                    if px == pe {
                        continue;
                    }
                    let (a, d) = (p.units.as_ptr().add((px - pb) * p.row), p.dst.add(px * c.dst_stride + col));
                    match pe - px {
                        1 => t.run::<I, 1, NV>(a, w, sh, s, b, d),
                        2 if MR > 2 => t.run::<I, 2, NV>(a, w, sh, s, b, d),
                        3 if MR > 3 => t.run::<I, 3, NV>(a, w, sh, s, b, d),
                        4 if MR > 4 => t.run::<I, 4, NV>(a, w, sh, s, b, d),
                        5 if MR > 5 => t.run::<I, 5, NV>(a, w, sh, s, b, d),
                        6 if MR > 6 => t.run::<I, 6, NV>(a, w, sh, s, b, d),
                        7 if MR > 7 => t.run::<I, 7, NV>(a, w, sh, s, b, d),
                        n => unreachable!("a tail of {n} pixels with tiles of {MR}"),
                    }
                }
            }
        }
        pb = pe;
    }
}

/// What every tile of one product shares.
#[derive(Clone, Copy)]
struct Tile<'a> {
    segments: &'a [usize],
    /// Units per block and channel.
    units: usize,
    /// Units of one stripe of the panel: a tile wider than a stripe reads its vectors past the
    /// first from the next stripe.
    stripe_len: usize,
    row: usize,
    dst_stride: usize,
    ncols: usize,
    act: Activation,
}

impl Tile<'_> {
    /// `MR` pixels × `NV` vectors of outputs.
    ///
    /// # Safety
    /// `a` holds `MR` pixels of `row` units; `w` is a panel's weights at this tile's first
    /// column, holding every segment's block; `start` is each column's sum before the first
    /// product (zero with pairs); `s` and `b` hold `NV` vectors; `dst` holds `MR` rows of
    /// `ncols` floats at `dst_stride`.
    #[inline(always)]
    unsafe fn run<I: IntVector, const MR: usize, const NV: usize>(
        self,
        a: *const u32,
        w: *const u32,
        start: [I; NV],
        s: *const f32,
        b: *const f32,
        dst: *mut f32,
    ) {
        // SAFETY: the function's contract.
        unsafe {
            let mut acc = [start; MR];
            let mut k = 0;
            for &seg in self.segments {
                let w = w.add(seg * self.units * STRIPE);
                for i in 0..self.units {
                    let wv: [I::W; NV] = std::array::from_fn(|j| {
                        let (stripe, lane) = (j * I::LANES / STRIPE, j * I::LANES % STRIPE);
                        I::load_w(w.add(stripe * self.stripe_len + i * STRIPE + lane))
                    });
                    for p in 0..MR {
                        let x = I::splat_a(*a.add(p * self.row + k));
                        for j in 0..NV {
                            acc[p][j] = acc[p][j].madd(x, wv[j]);
                        }
                    }
                    k += 1;
                }
            }
            // As in the float tile: a copy for the epilogue keeps `acc` in registers.
            let out = std::hint::black_box(acc);
            let scale: [I::F; NV] = std::array::from_fn(|j| <I::F as Vector>::load(s.add(j * I::LANES)));
            let bias: [I::F; NV] = std::array::from_fn(|j| <I::F as Vector>::load(b.add(j * I::LANES)));
            for p in 0..MR {
                let d = dst.add(p * self.dst_stride);
                for j in 0..NV {
                    let col = j * I::LANES;
                    if col >= self.ncols {
                        break;
                    }
                    let v = vec_act(self.act, out[p][j].to_f32().mul(scale[j]).add(bias[j]));
                    if col + I::LANES <= self.ncols {
                        v.store(d.add(col));
                    } else {
                        v.store_first(d.add(col), self.ncols - col);
                    }
                }
            }
        }
    }
}
