//! PIL's bilinear resize, as torchvision's `Resize` runs it on PIL images: the triangle filter
//! widened by the scale factor when shrinking (antialiased), coefficients normalised per output
//! pixel and rounded to 22-bit fixed point, the horizontal pass first, then the vertical pass,
//! each rounded to 8 bits (Pillow's `Resample.c`, `ImagingResample` with `BILINEAR`).
//!
//! Only the output pixels inside `window` are computed, so a resize followed by a centre crop
//! costs the crop.

/// The source box `((x0, x1), (y0, y1))` in frame pixels.
pub(super) type SourceBox = ((f64, f64), (f64, f64));
/// A region `(x0, y0, width, height)` of the resized image.
pub(super) type Region = (usize, usize, usize, usize);

use super::source::{Image, Reader};
use super::{has_simd, pad_row};
use crate::kernels::{self, SimdLevel};

/// Fixed-point precision of the coefficients (Pillow: `32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// One output position's taps: the first source index and its fixed-point weights.
struct Taps {
    first: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` for the bilinear filter, then `normalize_coeffs_8bpc`: the taps
/// of output positions `out` of a resize of source span `[in0, in1)` (of `in_size` source
/// pixels) to `out_size` pixels.
fn coeffs(in_size: usize, (in0, in1): (f64, f64), out_size: usize, out: std::ops::Range<usize>) -> Vec<Taps> {
    let scale = (in1 - in0) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // the bilinear filter's support is 1
    let ss = 1.0 / filterscale;
    let triangle = |x: f64| {
        let x = x.abs();
        if x < 1.0 {
            1.0 - x
        } else {
            0.0
        }
    };
    out.map(|xx| {
        let center = in0 + (xx as f64 + 0.5) * scale;
        // C's `(int)` truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).clamp(0, in_size as i64) as usize;
        let w: Vec<f64> = (xmin..xmax.max(xmin)).map(|x| triangle((x as f64 - center + 0.5) * ss)).collect();
        let total: f64 = w.iter().sum();
        let one = f64::from(1u32 << PRECISION_BITS);
        let weights = w
            .iter()
            .map(|&k| {
                let k = if total != 0.0 { k / total } else { k };
                if k < 0.0 {
                    (-0.5 + k * one) as i32
                } else {
                    (0.5 + k * one) as i32
                }
            })
            .collect();
        Taps { first: xmin, weights }
    })
    .collect()
}

/// Pillow's `clip8`: the rounded fixed-point sum as a byte.
#[inline(always)]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The region `window = (x0, y0, w, h)` of the resize of the source box `bx`, `by` of an
/// RGB(A) image (`channels` per pixel) to `size = (width, height)`, as `h x w x 3` values on
/// the 0–255 scale, into `out` (of that length).
///
/// Compiled for the best instruction set this CPU runs (as the kernels are): the 32-bit
/// integer products vectorise only with SSE4.1, AVX2 or NEON.
pub(super) fn resize(image: Image<'_>, source: SourceBox, size: (usize, usize), region: Region, out: &mut [f32]) {
    struct Resize<'a> {
        image: Image<'a>,
        source: SourceBox,
        size: (usize, usize),
        region: Region,
        out: &'a mut [f32],
    }
    impl kernels::Kernel for Resize<'_> {
        type Output = ();
        #[inline(always)]
        fn run<V: kernels::Vector>(self) {
            resize_passes(self.image, self.source, self.size, self.region, self.out)
        }
    }
    kernels::dispatch(SimdLevel::best(), Resize { image, source, size, region, out });
}

#[inline(always)]
fn resize_passes(image: Image<'_>, (bx, by): SourceBox, size: (usize, usize), (x0, y0, w, h): Region, out: &mut [f32]) {
    let (fw, fh) = image.size();
    let mut xt = coeffs(fw, bx, size.0, x0..x0 + w);
    let yt = coeffs(fh, by, size.1, y0..y0 + h);
    // The source columns the taps read; taps then count from the first.
    let cols_lo = xt.iter().map(|t| t.first).min().unwrap_or(0);
    let cols_hi = xt.iter().map(|t| t.first + t.weights.len()).max().unwrap_or(0);
    for t in &mut xt {
        t.first -= cols_lo;
    }
    let mut reader = Reader::new(image, cols_lo..cols_hi.max(cols_lo + 1));
    let rows_lo = yt.iter().map(|t| t.first).min().unwrap_or(0);
    let rows_hi = yt.iter().map(|t| t.first + t.weights.len()).max().unwrap_or(0);
    // Pillow sums in 32-bit ints: 255 x (1 << 22) x (a weight sum of 1 plus rounding) fits.
    let half = 1i32 << (PRECISION_BITS - 1);
    // Horizontal pass over the source rows the vertical pass reads, rounded to bytes.
    let mut mid = vec![0u8; (rows_hi - rows_lo) * w * 3];
    let mut padded = Vec::new();
    let taps = pad_taps(&xt);
    let simd = has_simd();
    for (y, dst) in (rows_lo..rows_hi).zip(mid.chunks_exact_mut(w * 3)) {
        let view = reader.rows(y..y + 1);
        pad_row(view.row(y), view.channels, taps.k, &mut padded);
        horizontal(&padded, view.channels, &taps, half, simd, dst);
    }
    // Vertical pass: whole rows at a time.
    assert_eq!(out.len(), w * h * 3, "output length");
    let mut acc = vec![0i32; w * 3];
    for (t, dst) in yt.iter().zip(out.chunks_exact_mut(w * 3)) {
        acc.fill(half);
        for (k, &wt) in t.weights.iter().enumerate() {
            let src = &mid[(t.first + k - rows_lo) * w * 3..][..w * 3];
            for (a, &v) in acc.iter_mut().zip(src) {
                *a += i32::from(v) * wt;
            }
        }
        for (d, &a) in dst.iter_mut().zip(&acc) {
            *d = f32::from(clip8(a));
        }
    }
}

/// The horizontal taps with one count for all: each output's taps padded with zero weights to
/// the largest count `k`. A fixed count keeps the loop over taps free of branches that change
/// from one output to the next, and zero weights add nothing to the sums.
struct PaddedTaps {
    first: Vec<usize>,
    k: usize,
    /// `k` per output.
    weights: Vec<i32>,
    /// One past the last source pixel any padded tap reads.
    reach: usize,
}

fn pad_taps(taps: &[Taps]) -> PaddedTaps {
    let k = taps.iter().map(|t| t.weights.len()).max().unwrap_or(0);
    let first: Vec<usize> = taps.iter().map(|t| t.first).collect();
    let weights = taps.iter().flat_map(|t| t.weights.iter().copied().chain(std::iter::repeat(0)).take(k)).collect();
    let reach = first.iter().max().map_or(0, |f| f + k);
    PaddedTaps { first, k, weights, reach }
}

/// One row of the horizontal pass: each output pixel's taps summed in 32-bit ints and rounded
/// to bytes. `row` comes from [`pad_row`], so that each tap reads four bytes as one 4-lane
/// multiply-add (SSE4.1 or NEON where `simd`, from [`has_simd`]; otherwise lanes one by one),
/// the fourth lane's sum dropped.
fn horizontal(row: &[u8], channels: usize, taps: &PaddedTaps, half: i32, simd: bool, dst: &mut [u8]) {
    let PaddedTaps { first, k, weights, reach } = taps;
    // Every tap's four bytes lie inside `row` (padded by `pad_row`), whatever the pixel size.
    assert!(*reach == 0 || (reach - 1) * channels + 4 <= row.len(), "taps past the row");
    assert!(weights.len() == first.len() * k && dst.len() >= first.len() * 3);
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: SSE4.1 was detected (`has_simd`); every tap's four bytes lie in `row`, and
        // `weights` and `dst` are as long as `first` needs (asserted above).
        return unsafe { horizontal_sse41(row, channels, taps, half, dst) };
    }
    #[cfg(target_arch = "aarch64")]
    if simd {
        // SAFETY: NEON is part of aarch64; the bounds as above.
        return unsafe { horizontal_neon(row, channels, taps, half, dst) };
    }
    for ((&f, w), d) in first.iter().zip(weights.chunks_exact((*k).max(1))).zip(dst.chunks_exact_mut(3)) {
        let mut acc = [half; 3];
        for (j, &wt) in w.iter().enumerate() {
            for (c, a) in acc.iter_mut().enumerate() {
                *a += i32::from(row[(f + j) * channels + c]) * wt;
            }
        }
        for c in 0..3 {
            d[c] = clip8(acc[c]);
        }
    }
}

/// [`horizontal`] in SSE4.1.
///
/// # Safety
/// SSE4.1 must be available; every tap's four bytes must lie in `row`; `taps.weights` holds
/// `taps.k` per entry of `taps.first`, and `dst` three bytes per entry.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.1")]
unsafe fn horizontal_sse41(row: &[u8], channels: usize, taps: &PaddedTaps, half: i32, dst: &mut [u8]) {
    let PaddedTaps { first, k, weights, .. } = taps;
    let k = *k;
    use std::arch::x86_64::*;
    for (x, &f) in first.iter().enumerate() {
        let mut acc = _mm_set1_epi32(half);
        // SAFETY: the contract: four bytes at `(f + j) * channels` lie in `row` for j < k,
        // `weights` holds `k` per output and `dst` three bytes per output.
        unsafe {
            let src = row.as_ptr().add(f * channels);
            let w = weights.as_ptr().add(x * k);
            for j in 0..k {
                let px = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(src.add(j * channels).cast::<i32>().read_unaligned()));
                acc = _mm_add_epi32(acc, _mm_mullo_epi32(px, _mm_set1_epi32(*w.add(j))));
            }
            let acc = _mm_srai_epi32::<{ PRECISION_BITS as i32 }>(acc);
            // Saturating packs clamp to 0..=255, as `clip8` does.
            let bytes = _mm_cvtsi128_si32(_mm_packus_epi16(_mm_packs_epi32(acc, acc), acc)).to_le_bytes();
            dst.as_mut_ptr().add(x * 3).copy_from_nonoverlapping(bytes.as_ptr(), 3);
        }
    }
}

/// [`horizontal`] in NEON.
///
/// # Safety
/// As for [`horizontal_sse41`], less SSE4.1.
#[cfg(target_arch = "aarch64")]
unsafe fn horizontal_neon(row: &[u8], channels: usize, taps: &PaddedTaps, half: i32, dst: &mut [u8]) {
    let PaddedTaps { first, k, weights, .. } = taps;
    let k = *k;
    use std::arch::aarch64::*;
    for (x, &f) in first.iter().enumerate() {
        let mut out = [0i32; 4];
        // SAFETY: NEON is part of aarch64; the bounds are the contract; `out` holds four lanes.
        unsafe {
            let src = row.as_ptr().add(f * channels);
            let w = weights.as_ptr().add(x * k);
            let mut acc = vdupq_n_s32(half);
            for j in 0..k {
                let px = src.add(j * channels).cast::<u32>().read_unaligned();
                let px = vmovl_u16(vget_low_u16(vmovl_u8(vcreate_u8(u64::from(px)))));
                acc = vmlaq_n_s32(acc, vreinterpretq_s32_u32(px), *w.add(j));
            }
            vst1q_s32(out.as_mut_ptr(), acc);
        }
        for c in 0..3 {
            dst[x * 3 + c] = clip8(out[c]);
        }
    }
}

/// torchvision's `Resize(shorter)` size: the shorter side set to `shorter`, the longer one
/// scaled and truncated (`int(shorter * long / short)`).
pub(super) fn torchvision_size(fw: usize, fh: usize, shorter: usize) -> (usize, usize) {
    let long = |l: usize, s: usize| ((shorter as f64 * l as f64 / s as f64) as usize).max(1);
    if fw <= fh {
        (shorter, long(fh, fw))
    } else {
        (long(fw, fh), shorter)
    }
}

/// torchvision's `CenterCrop` offset: `int(round((size - crop) / 2))`, rounding half to even
/// as Python does; 0 when the crop is larger.
pub(super) fn crop_offset(size: usize, crop: usize) -> usize {
    if crop >= size {
        return 0;
    }
    let twice = size - crop;
    let (q, r) = (twice / 2, twice % 2);
    // r == 1 means a .5: round to the even neighbour.
    if r == 1 && q % 2 == 1 {
        q + 1
    } else {
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;

    /// The horizontal pass (SIMD, and lanes one by one) gives Pillow's per-channel sums: every output pixel
    /// of rows of RGB and RGBA, shrunk, kept and enlarged, the last pixel's taps included.
    #[test]
    fn horizontal_pass_equals_the_per_channel_sums() {
        let half = 1i32 << (PRECISION_BITS - 1);
        for (fw, out) in [(1usize, 1usize), (7, 3), (57, 16), (640, 224), (100, 100), (9, 31)] {
            let taps = coeffs(fw, (0.0, fw as f64), out, 0..out);
            for ch in [3usize, 4] {
                let row: Vec<u8> = (0..fw * ch).map(|i| ((i * 2654435761) >> 9) as u8).collect();
                let padded_taps = pad_taps(&taps);
                let mut padded = Vec::new();
                pad_row(&row, ch, padded_taps.k, &mut padded);
                let mut fast = vec![0u8; out * 3];
                let mut plain = vec![0u8; out * 3];
                horizontal(&padded, ch, &padded_taps, half, has_simd(), &mut fast);
                horizontal(&padded, ch, &padded_taps, half, false, &mut plain);
                assert_eq!(fast, plain, "{fw} -> {out}, {ch} channels, SIMD against lanes one by one");
                let slow: Vec<u8> = taps
                    .iter()
                    .flat_map(|t| {
                        let row = &row;
                        (0..3).map(move |c| {
                            let sum: i32 = t
                                .weights
                                .iter()
                                .enumerate()
                                .map(|(k, &w)| i32::from(row[(t.first + k) * ch + c]) * w)
                                .sum();
                            clip8(half + sum)
                        })
                    })
                    .collect();
                assert_eq!(fast, slow, "{fw} -> {out}, {ch} channels");
            }
        }
    }

    #[test]
    fn torchvision_sizes_and_crop_offsets() {
        assert_eq!(torchvision_size(768, 576, 256), (341, 256));
        assert_eq!(torchvision_size(576, 768, 256), (256, 341));
        assert_eq!(crop_offset(341, 224), 58); // round(58.5) = 58
        assert_eq!(crop_offset(343, 224), 60); // round(59.5) = 60
        assert_eq!(crop_offset(256, 224), 16);
        assert_eq!(crop_offset(100, 224), 0);
    }

    #[test]
    fn an_identity_resize_is_exact_and_coefficients_sum_to_one() {
        let data: Vec<u8> = (0..5 * 4 * 3).map(|i| (i * 37 % 256) as u8).collect();
        let mut out = vec![0.0; 5 * 4 * 3];
        resize(Frame::rgb(5, 4, &data).into(), ((0.0, 5.0), (0.0, 4.0)), (5, 4), (0, 0, 5, 4), &mut out);
        assert_eq!(out, data.iter().map(|&v| f32::from(v)).collect::<Vec<_>>());
        for t in coeffs(768, (0.0, 768.0), 341, 0..341) {
            let sum: i64 = t.weights.iter().map(|&w| i64::from(w)).sum();
            assert!((sum - (1 << PRECISION_BITS)).abs() <= t.weights.len() as i64, "{sum}");
        }
    }
}
