//! Pointwise (1x1) convolution and every other GEMM-shaped product (im2col rows of dense
//! convolutions): `dst[p][co] = act(bias[co] + Σ_ci src[p][ci] · w[ci][co])`.
//!
//! Weights are packed once per plan into panels of [`PANEL`] output channels, each held as
//! stripes of [`STRIPE`] channels (`[panel][stripe][ci][STRIPE]`, zero-padded: one 64-byte
//! cache line per row of a stripe), so the inner loop streams contiguous memory while
//! a tile of `MR` pixels × `NV` vectors of outputs stays in registers. One driver serves every
//! level; only the tile shape differs ([`run`]). Each output is summed over `ci` in order,
//! starting from the bias, whatever rectangle it is computed in, so cached and full results
//! are bit-identical at one level.

use std::ops::Range;

use super::simd::{dispatch, prefetch_l2, Kernel, Level, Vector};
use super::vec_act;
use crate::graph::{Activation, Packed};

/// Output channels per packed panel (a multiple of every level's tile width).
pub const PANEL: usize = 32;

/// Output channels per stripe of a panel: a stripe's rows follow each other, so a tile of at
/// most this width reads one contiguous run of whole cache lines, which the hardware
/// prefetchers follow from memory (with the rows of a whole panel interleaved, a 16-wide tile
/// read every other line, and a product whose weights were not in cache, such as
/// MobileNetV2's 320 x 1280 one, took 1.5x its warm time). A vector never straddles stripes.
pub const STRIPE: usize = 16;

/// Offset in packed weights of `rows` rows per panel of column `col` of a panel (`< PANEL`)
/// in row 0.
#[inline(always)]
const fn column_offset(col: usize, rows: usize) -> usize {
    col / STRIPE * rows * STRIPE + col % STRIPE
}

/// Packs `[cin][cout]` weights and the bias into panels.
pub fn pack(weights: &[f32], bias: &[f32], cin: usize, cout: usize) -> Packed {
    let panels = cout.div_ceil(PANEL);
    let mut w = vec![0.0; panels * cin * PANEL];
    let mut b = vec![0.0; panels * PANEL];
    for p in 0..panels {
        for ci in 0..cin {
            for j in 0..PANEL.min(cout - p * PANEL) {
                w[p * cin * PANEL + column_offset(j, cin) + ci * STRIPE] = weights[ci * cout + p * PANEL + j];
            }
        }
    }
    b[..cout].copy_from_slice(bias);
    Packed { weights: w, bias: b, int8: None }
}

/// One run of a product's inner dimension: `cin` floats read at `offset` floats from each
/// pixel's start, against block `block` of the packed weights (rows `block · cin` on).
pub type Run = (usize, usize);

/// The inner dimension of a plain product: one run of `cin` floats at each pixel's start.
pub const ONE_RUN: &[Run] = &[(0, 0)];

/// Arguments of one product: `npix` pixels read at `src_stride` floats apart, written at
/// `dst_stride` floats apart (`cout` columns each). The inner dimension is `runs` of `cin`
/// floats each (the kernel rows of a convolution read in place, without an im2col copy; one
/// run for a plain product), against packed weights of `blocks · cin` rows.
pub struct Call<'a> {
    pub src: &'a [f32],
    pub src_stride: usize,
    pub npix: usize,
    pub cin: usize,
    pub cout: usize,
    pub packed: &'a Packed,
    pub act: Activation,
    pub dst_stride: usize,
    pub runs: &'a [Run],
    /// Blocks of `cin` rows in the packed weights (1 for a plain product).
    pub blocks: usize,
}

/// Runs the product at `level` into `dst`. Panics if the extents do not hold (a kernel bug,
/// never a property of the model: shapes are validated when the plan compiles).
pub fn run(level: Level, call: &Call<'_>, dst: &mut [f32]) {
    if call.npix == 0 || call.cout == 0 {
        return;
    }
    // Source pixels may overlap (a convolution's kernel rows read in place, `sw · cin` apart);
    // outputs may not.
    assert!(call.dst_stride >= call.cout);
    let reach = call.runs.iter().map(|&(offset, _)| offset + call.cin).max().unwrap_or(0);
    assert!(call.src.len() >= (call.npix - 1) * call.src_stride + reach, "pointwise source too short");
    assert!(call.runs.iter().all(|&(_, block)| block < call.blocks), "a run past the packed weights");
    assert!(dst.len() >= (call.npix - 1) * call.dst_stride + call.cout, "pointwise destination too short");
    if let Some(q) = &call.packed.int8 {
        return super::int8::run(level, call, q, dst);
    }
    dispatch(float_level(level, call), Product { call, dst: dst.as_mut_ptr() });
}

/// The level a float product runs `call` at, once its packed weights are checked against it.
/// At most 8 output channels fill one 8-lane vector: a 16-lane one would compute as many
/// columns again for nothing. The choice depends on `cout` alone, so every rectangle of a node
/// (and every worker's share of a dense layer) runs the same code, and every level sums each
/// output in the same order.
fn float_level(level: Level, call: &Call<'_>) -> Level {
    assert_eq!(call.packed.weights.len(), call.cout.div_ceil(PANEL) * call.blocks * call.cin * PANEL);
    assert_eq!(call.packed.bias.len(), call.cout.div_ceil(PANEL) * PANEL);
    if call.cout <= 8 {
        level.for_width(call.cout)
    } else {
        level
    }
}

/// One product as a [`Kernel`]: `dst` holds the rows [`run`] checked.
struct Product<'a, 'b> {
    call: &'a Call<'b>,
    dst: *mut f32,
}

impl Kernel for Product<'_, '_> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector>(self) {
        // Tile shapes: MR x NV accumulators fill most of the register file. Outputs of one
        // vector's width or less take one vector per row: a wider tile would compute columns
        // past `cout` (selfie segmentation's and BlazePose's 8- and 16-channel maps).
        let thin = self.call.cout <= V::LANES;
        // A product of one plain run is the common case (pointwise convolutions, im2col rows,
        // dense layers): it gets a tile without the loop over runs, which costs registers.
        macro_rules! tiles {
            ($runs:literal) => {
                match (V::LANES, V::REGISTERS) {
                    (16, _) if thin => drive::<V, 12, 1, 12, $runs>(self.call, self.dst),
                    (16, _) => drive::<V, 12, 2, 12, $runs>(self.call, self.dst),
                    // 10 accumulators, the weights and the broadcast input: 12 of the 16 registers.
                    (8, _) if thin => drive::<V, 10, 1, 10, $runs>(self.call, self.dst),
                    (4, 32) => drive::<V, 6, 4, 12, $runs>(self.call, self.dst),
                    // 16 registers: 10 accumulators, 2 weights and the broadcast input, with room
                    // to spare (at 12 accumulators the compiler spills one, through memory, every
                    // iteration).
                    (8, _) => drive::<V, 5, 2, 10, $runs>(self.call, self.dst),
                    _ => drive::<V, 4, 2, 8, $runs>(self.call, self.dst),
                }
            };
        }
        if self.call.runs == ONE_RUN && self.call.npix == 1 {
            // One pixel (a dense layer): a matrix-vector product, panels side by side.
            gemv_tiles::<V>(self.call, self.dst, 0..self.call.cout.div_ceil(PANEL));
        } else if self.call.runs == ONE_RUN {
            tiles!(false)
        } else {
            tiles!(true)
        }
    }
}

/// Pixels per block: the block's inputs stay in L1/L2 while every panel passes over them.
pub(crate) const PIXEL_BLOCK: usize = 96;

/// Every tile of the product. `dst` must hold `npix` rows at `dst_stride` (checked by [`run`]).
///
/// Tiles are `MR` pixels by `NV` vectors. Where the columns end one vector or less into a
/// tile's width (24 or 40 output channels with 16-column tiles), that last sub-panel takes
/// tiles of `MR1` pixels by one vector instead: a full-width tile would spend half its
/// multiply-adds on padding. Every output is still summed over `ci` in order from the bias,
/// so the bits do not depend on the tile.
#[inline(always)]
fn drive<V: Vector, const MR: usize, const NV: usize, const MR1: usize, const RUNS: bool>(c: &Call<'_>, dst: *mut f32) {
    let width = NV * V::LANES;
    debug_assert_eq!(PANEL % width, 0);
    let panels = c.cout.div_ceil(PANEL);
    let rows = c.blocks * c.cin;
    // The packed weights of the tiles' columns from `col` on (`wrapping_add`: past the last
    // column it is only prefetched, never read).
    let weights_at = |col: usize| {
        let (panel, sub) = (col / PANEL, col % PANEL);
        c.packed.weights.as_ptr().wrapping_add(panel * rows * PANEL + column_offset(sub, rows))
    };
    let mut pb = 0;
    while pb < c.npix {
        let pe = (pb + PIXEL_BLOCK).min(c.npix);
        for panel in 0..panels {
            for sub in 0..PANEL / width {
                let col = panel * PANEL + sub * width;
                if col >= c.cout {
                    break;
                }
                let ncols = (c.cout - col).min(width);
                let t = Tile {
                    rows: c.blocks * c.cin,
                    cin: c.cin,
                    src_stride: c.src_stride,
                    dst_stride: c.dst_stride,
                    ncols,
                    act: c.act,
                    runs: c.runs,
                    next: if col + width < c.cout { weights_at(col + width) } else { std::ptr::null() },
                };
                // SAFETY: panel columns col..col + width of every block are inside the
                // zero-padded packed weights and bias; pixels pb..pe and columns col..col +
                // ncols are inside the source and destination. All checked by `run`.
                unsafe {
                    let w = weights_at(col);
                    let b = c.packed.bias.as_ptr().add(col);
                    if NV > 1 && ncols <= V::LANES {
                        t.pixels::<V, MR1, 1, RUNS>(c.src.as_ptr(), w, b, dst, pb..pe, col);
                    } else {
                        t.pixels::<V, MR, NV, RUNS>(c.src.as_ptr(), w, b, dst, pb..pe, col);
                    }
                }
            }
        }
        pb = pe;
    }
}

/// Panels `panels` of a product of one pixel (a whole one from [`run`], a worker's share from
/// [`run_panels`]), with the tile shape of this vector width.
#[inline(always)]
fn gemv_tiles<V: Vector>(c: &Call<'_>, dst: *mut f32, panels: Range<usize>) {
    match (V::LANES, V::REGISTERS) {
        (16, _) => gemv::<V, 2, 4>(c, dst, panels),
        (8, _) => gemv::<V, 4, 3>(c, dst, panels),
        (4, 32) => gemv::<V, 8, 2>(c, dst, panels),
        (4, _) => gemv::<V, 8, 1>(c, dst, panels),
        (lanes, _) => unreachable!("no level has {lanes} lanes"),
    }
}

/// Output panels `panels` of the one-pixel product `call` (a dense layer) into `dst`, which
/// holds all `cout` outputs: what one worker computes when a dense layer's outputs are split
/// among threads. Each output gets the bits [`run`] gives it.
///
/// # Safety
/// `dst` is valid for writing `call.cout` floats, and no other thread touches the outputs of
/// these panels while this runs.
pub unsafe fn run_panels(level: Level, call: &Call<'_>, dst: *mut f32, panels: Range<usize>) {
    assert!(call.npix == 1 && call.runs == ONE_RUN && call.packed.int8.is_none(), "not a float one-pixel product");
    assert!(panels.end <= call.cout.div_ceil(PANEL) && call.src.len() >= call.cin);
    dispatch(float_level(level, call), Gemv { call, dst, panels });
}

/// [`run_panels`] as a [`Kernel`].
struct Gemv<'a, 'b> {
    call: &'a Call<'b>,
    dst: *mut f32,
    panels: Range<usize>,
}

impl Kernel for Gemv<'_, '_> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector>(self) {
        gemv_tiles::<V>(self.call, self.dst, self.panels);
    }
}

/// A product of one pixel: `Q` panels at a time, `NV` vectors each (a whole panel). A tile of
/// one pixel keeps its few accumulators each in a chain of `cin` dependent multiply-adds, so
/// the FMA latency bounds it (a dense layer of 1280 x 1000 ran at 3 GMAC/s); side by side,
/// `Q` panels give 8 to 16 independent chains. Each output is still summed over `ci` in order
/// from the bias, with the same multiply-adds as [`Tile::run`], so the bits are the same.
#[inline(always)]
fn gemv<V: Vector, const NV: usize, const Q: usize>(c: &Call<'_>, dst: *mut f32, panels: Range<usize>) {
    debug_assert_eq!(NV * V::LANES, PANEL);
    let (mut p, panels) = (panels.start, panels.end);
    // SAFETY (every call): panels p.. exist in the packed weights and bias (checked by `run`
    // and `run_panels`), the source holds `cin` floats and `dst` holds `cout` (checked by
    // `run` for one pixel; `run_panels`' contract).
    unsafe {
        while p + Q <= panels {
            gemv_panels::<V, NV, Q>(c, p, dst);
            p += Q;
        }
        match panels - p {
            0 => {}
            1 => gemv_panels::<V, NV, 1>(c, p, dst),
            2 if Q > 2 => gemv_panels::<V, NV, 2>(c, p, dst),
            3 if Q > 3 => gemv_panels::<V, NV, 3>(c, p, dst),
            n => unreachable!("{n} panels left with {Q} at a time"),
        }
    }
}

/// Panels `panel..panel + Q` of a one-pixel product.
///
/// # Safety
/// Those panels lie inside the packed weights and bias; `c.src` holds `cin` floats and `dst`
/// is valid for writing `cout` floats.
#[inline(always)]
unsafe fn gemv_panels<V: Vector, const NV: usize, const Q: usize>(c: &Call<'_>, panel: usize, dst: *mut f32) {
    // SAFETY: the function's contract.
    unsafe {
        // A panel holds every block's rows; a one-run product reads block 0 (the first rows).
        let rows = c.blocks * c.cin;
        let stride = rows * PANEL;
        let w = c.packed.weights.as_ptr().add(panel * stride);
        let b = c.packed.bias.as_ptr().add(panel * PANEL);
        let mut acc: [[V; NV]; Q] =
            std::array::from_fn(|q| std::array::from_fn(|j| V::load(b.add(q * PANEL + j * V::LANES))));
        for ci in 0..c.cin {
            let x = V::splat(*c.src.as_ptr().add(ci));
            for q in 0..Q {
                for j in 0..NV {
                    let at = q * stride + column_offset(j * V::LANES, rows) + ci * STRIPE;
                    acc[q][j] = x.mul_add(V::load(w.add(at)), acc[q][j]);
                }
            }
        }
        // As in `Tile::run`: a copy for the epilogue keeps `acc` in registers.
        let out = std::hint::black_box(acc);
        for q in 0..Q {
            for j in 0..NV {
                let col = (panel + q) * PANEL + j * V::LANES;
                if col >= c.cout {
                    break;
                }
                let v = vec_act(c.act, out[q][j]);
                if col + V::LANES <= c.cout {
                    v.store(dst.add(col));
                } else {
                    v.store_first(dst.add(col), c.cout - col);
                }
            }
        }
    }
}

/// What every tile of one product shares.
#[derive(Clone, Copy)]
struct Tile<'a> {
    /// Rows of the packed weights per panel (every block's).
    rows: usize,
    cin: usize,
    src_stride: usize,
    dst_stride: usize,
    ncols: usize,
    act: Activation,
    runs: &'a [Run],
    /// The packed weights of the columns after these (null: none), which the first tile of
    /// these columns prefetches into L2 while it computes: a model's weights do not stay in
    /// cache from one frame to the next, and the next panel's then arrive while this one's
    /// tiles run, instead of each panel's first tile waiting on memory.
    next: *const f32,
}

impl Tile<'_> {
    /// Pixels `pixels` of columns `col..col + ncols`, in tiles of `MR` pixels and a tail.
    ///
    /// A short tail after whole tiles would keep its few accumulators each in a long chain of
    /// dependent multiply-adds, at a fraction of a whole tile's rate: a 7x7 map's 49 pixels
    /// made four tiles of 12 and a tail of one, which took about two thirds of a whole tile's
    /// time for one twelfth of its work. So a tail of fewer than `MR / 2` pixels and the last
    /// whole tile are cut into two tiles of about half as many pixels each (49: three tiles of
    /// 12, then 7 and 6). Every output is summed alike in any tile, so the bits do not change.
    ///
    /// # Safety
    /// As [`Tile::run`] for every tile: `w` and `b` point at column `col` of the packed
    /// weights and bias, and the pixels and columns lie inside `src` and `dst` (row 0 of each).
    #[inline(always)]
    unsafe fn pixels<V: Vector, const MR: usize, const NV: usize, const RUNS: bool>(
        self,
        src: *const f32,
        w: *const f32,
        b: *const f32,
        dst: *mut f32,
        pixels: std::ops::Range<usize>,
        col: usize,
    ) {
        let (mut p, pe) = (pixels.start, pixels.end);
        let (whole, tail) = ((pe - p) / MR, (pe - p) % MR);
        let split = whole > 0 && tail > 0 && 2 * tail < MR;
        let last_whole = pe - tail - if split { MR } else { 0 };
        // SAFETY: pixel p < pe reads src[p * src_stride + offset..][..cin] for each run and
        // writes dst[p * dst_stride + col..][..ncols] (the function's contract).
        unsafe {
            while p < last_whole {
                let (s, d) = (src.add(p * self.src_stride), dst.add(p * self.dst_stride + col));
                if p == pixels.start && !self.next.is_null() {
                    self.run::<V, MR, NV, RUNS, true>(s, w, b, d);
                } else {
                    self.run::<V, MR, NV, RUNS, false>(s, w, b, d);
                }
                p += MR;
            }
            if split {
                let first = (pe - p).div_ceil(2);
                self.short::<V, MR, NV, RUNS>(first, src, w, b, dst, p, col);
                p += first;
            }
            if p < pe {
                self.short::<V, MR, NV, RUNS>(pe - p, src, w, b, dst, p, col);
            }
        }
    }

    /// One tile of `n < MR` pixels from pixel `p` on (the arms for `MR` or more are compiled
    /// out).
    ///
    /// # Safety
    /// As [`Tile::pixels`], for pixels `p..p + n`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn short<V: Vector, const MR: usize, const NV: usize, const RUNS: bool>(
        self,
        n: usize,
        src: *const f32,
        w: *const f32,
        b: *const f32,
        dst: *mut f32,
        p: usize,
        col: usize,
    ) {
        // SAFETY: the function's contract.
        unsafe {
            let (s, d) = (src.add(p * self.src_stride), dst.add(p * self.dst_stride + col));
            match n {
                1 => self.run::<V, 1, NV, RUNS, false>(s, w, b, d),
                2 if MR > 2 => self.run::<V, 2, NV, RUNS, false>(s, w, b, d),
                3 if MR > 3 => self.run::<V, 3, NV, RUNS, false>(s, w, b, d),
                4 if MR > 4 => self.run::<V, 4, NV, RUNS, false>(s, w, b, d),
                5 if MR > 5 => self.run::<V, 5, NV, RUNS, false>(s, w, b, d),
                6 if MR > 6 => self.run::<V, 6, NV, RUNS, false>(s, w, b, d),
                7 if MR > 7 => self.run::<V, 7, NV, RUNS, false>(s, w, b, d),
                8 if MR > 8 => self.run::<V, 8, NV, RUNS, false>(s, w, b, d),
                9 if MR > 9 => self.run::<V, 9, NV, RUNS, false>(s, w, b, d),
                10 if MR > 10 => self.run::<V, 10, NV, RUNS, false>(s, w, b, d),
                11 if MR > 11 => self.run::<V, 11, NV, RUNS, false>(s, w, b, d),
                n => unreachable!("a short tile of {n} pixels with tiles of {MR}"),
            }
        }
    }

    /// `MR` pixels × `NV` vectors of outputs, accumulated in registers.
    ///
    /// # Safety
    /// `src` holds `MR` pixels at `src_stride`, each with `cin` floats at every run's offset;
    /// `w` holds `NV` vectors per row of every run's block (at [`column_offset`]s from it, row
    /// stride [`STRIPE`]) and `b` `NV` vectors; `dst` holds `MR` rows of `ncols` floats at
    /// `dst_stride`.
    #[inline(always)]
    unsafe fn run<V: Vector, const MR: usize, const NV: usize, const RUNS: bool, const PREFETCH: bool>(
        self,
        src: *const f32,
        w: *const f32,
        b: *const f32,
        dst: *mut f32,
    ) {
        // SAFETY: the function's contract.
        unsafe {
            let bias: [V; NV] = std::array::from_fn(|j| V::load(b.add(j * V::LANES)));
            let mut acc = [bias; MR];
            let runs = if RUNS { self.runs } else { ONE_RUN };
            for &(offset, block) in runs {
                let (src, w) = (src.add(offset), w.add(block * self.cin * STRIPE));
                // Each vector's column (the tile starts inside one stripe, and a vector never
                // straddles two: every level's lanes divide STRIPE).
                let w: [*const f32; NV] = std::array::from_fn(|j| w.add(column_offset(j * V::LANES, self.rows)));
                let next = self.next.wrapping_add(block * self.cin * STRIPE);
                for ci in 0..self.cin {
                    if PREFETCH {
                        // One cache line per stripe and input channel.
                        for j in (0..NV).filter(|j| j * V::LANES % STRIPE == 0) {
                            prefetch_l2(next.wrapping_add(column_offset(j * V::LANES, self.rows) + ci * STRIPE));
                        }
                    }
                    let wv: [V; NV] = std::array::from_fn(|j| V::load(w[j].add(ci * STRIPE)));
                    #[allow(clippy::needless_range_loop)]
                    for p in 0..MR {
                        let x = V::splat(*src.add(p * self.src_stride + ci));
                        for j in 0..NV {
                            acc[p][j] = x.mul_add(wv[j], acc[p][j]);
                        }
                    }
                }
            }
            // The epilogue indexes rows at run time (its loop is too big to unroll). Reading the
            // accumulators through a copy keeps `acc` itself constant-indexed, so it stays in
            // registers through the loop above (indexed directly, LLVM kept it on the stack and
            // stored all MR x NV accumulators back on every input channel).
            let out = std::hint::black_box(acc);
            #[allow(clippy::needless_range_loop)]
            for p in 0..MR {
                let d = dst.add(p * self.dst_stride);
                if self.ncols == NV * V::LANES {
                    for j in 0..NV {
                        vec_act(self.act, out[p][j]).store(d.add(j * V::LANES));
                    }
                } else {
                    // Whole vectors, then the first lanes of the one the columns end in.
                    let full = self.ncols / V::LANES;
                    for j in 0..full {
                        vec_act(self.act, out[p][j]).store(d.add(j * V::LANES));
                    }
                    let rest = self.ncols - full * V::LANES;
                    if rest > 0 {
                        vec_act(self.act, out[p][full]).store_first(d.add(full * V::LANES), rest);
                    }
                }
            }
        }
    }
}
