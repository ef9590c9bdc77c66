//! Pointwise (1x1) convolution micro-kernels: `dst[p][co] = act(bias[co] + Σ_ci src[p][ci] · w[ci][co])`.
//!
//! Weights are packed once per plan into panels of [`PANEL`] output channels
//! (`[panel][ci][PANEL]`, zero-padded), so the inner loop streams one contiguous panel while
//! a tile of pixels × `PANEL` outputs stays in registers: 8 × 32 on AVX-512, 6 × 16 on AVX2.
//! Each output is summed over `ci` in order, starting from the bias, whatever rectangle it
//! is computed in, so cached and full results are bit-identical. CPUs without AVX2+FMA use the
//! `gemm` crate instead ([`super`]).

// The micro-kernels are raw-pointer arithmetic from end to end; their one safety contract
// (extents of src, dst and the panels) is checked once in `run`, so per-operation unsafe
// blocks would add noise, not safety.
#![allow(unsafe_op_in_unsafe_fn)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use crate::graph::Activation;

/// Output channels per packed panel.
pub const PANEL: usize = 32;

/// Packs `[cin][cout]` weights and the bias into panels.
pub fn pack(weights: &[f32], bias: &[f32], cin: usize, cout: usize) -> (Vec<f32>, Vec<f32>) {
    let panels = cout.div_ceil(PANEL);
    let mut w = vec![0.0; panels * cin * PANEL];
    let mut b = vec![0.0; panels * PANEL];
    for p in 0..panels {
        for ci in 0..cin {
            for j in 0..PANEL.min(cout - p * PANEL) {
                w[(p * cin + ci) * PANEL + j] = weights[ci * cout + p * PANEL + j];
            }
        }
    }
    b[..cout].copy_from_slice(bias);
    (w, b)
}

/// Arguments of one pointwise call: `npix` pixels read at `src_stride` floats apart, written
/// at `cout` floats apart.
pub struct Call<'a> {
    pub src: &'a [f32],
    pub src_stride: usize,
    pub npix: usize,
    pub cin: usize,
    pub cout: usize,
    pub packed: &'a [f32],
    pub bias: &'a [f32],
    pub act: Activation,
}

/// Runs the best micro-kernel for this CPU; returns `false` when none applies.
pub fn run(call: &Call<'_>, dst: &mut [f32]) -> bool {
    assert!(call.npix == 0 || call.src.len() >= (call.npix - 1) * call.src_stride + call.cin);
    assert!(dst.len() >= call.npix * call.cout);
    assert_eq!(call.packed.len(), call.cout.div_ceil(PANEL) * call.cin * PANEL);
    let ran = match super::simd::detected() {
        // SAFETY: features detected at run time; extents asserted above.
        #[cfg(target_arch = "x86_64")]
        super::simd::Level::Avx512 => unsafe {
            avx512(call, dst.as_mut_ptr());
            true
        },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        super::simd::Level::Avx2Fma => unsafe {
            avx2(call, dst.as_mut_ptr());
            true
        },
        _ => false,
    };
    if !ran {
        return false;
    }
    match call.act {
        Activation::Identity | Activation::Relu | Activation::Clip { .. } => {}
        // Activations without a vector form run on the stored outputs.
        other => other.apply_slice(&mut dst[..call.npix * call.cout]),
    }
    true
}

/// Bounds of a vectorised activation: Relu and Clip; identity for everything else.
#[cfg(target_arch = "x86_64")]
fn bounds(act: Activation) -> (f32, f32) {
    match act {
        Activation::Relu => (0.0, f32::INFINITY),
        Activation::Clip { min, max } => (min, max),
        _ => (f32::NEG_INFINITY, f32::INFINITY),
    }
}

/// Pixels per block: the block's inputs stay in L1/L2 while every panel passes over them.
#[cfg(target_arch = "x86_64")]
const PIXEL_BLOCK: usize = 64;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512(c: &Call<'_>, dst: *mut f32) {
    let panels = c.cout.div_ceil(PANEL);
    let (lo, hi) = bounds(c.act);
    let mut pb = 0;
    while pb < c.npix {
        let pe = (pb + PIXEL_BLOCK).min(c.npix);
        for panel in 0..panels {
            let ncols = (c.cout - panel * PANEL).min(PANEL);
            let w = c.packed.as_ptr().add(panel * c.cin * PANEL);
            let b = c.bias.as_ptr().add(panel * PANEL);
            let mut p = pb;
            macro_rules! tile {
                ($mr:literal) => {
                    tile512::<$mr>(
                        c.src.as_ptr().add(p * c.src_stride),
                        c.src_stride,
                        c.cin,
                        w,
                        b,
                        dst.add(p * c.cout + panel * PANEL),
                        c.cout,
                        ncols,
                        lo,
                        hi,
                    )
                };
            }
            while p + 8 <= pe {
                tile!(8);
                p += 8;
            }
            match pe - p {
                0 => {}
                1 => tile!(1),
                2 => tile!(2),
                3 => tile!(3),
                4 => tile!(4),
                5 => tile!(5),
                6 => tile!(6),
                _ => tile!(7),
            }
        }
        pb = pe;
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile512<const MR: usize>(
    src: *const f32,
    stride: usize,
    cin: usize,
    w: *const f32,
    bias: *const f32,
    dst: *mut f32,
    dst_stride: usize,
    ncols: usize,
    lo: f32,
    hi: f32,
) {
    let mut a0 = [_mm512_loadu_ps(bias); MR];
    let mut a1 = [_mm512_loadu_ps(bias.add(16)); MR];
    for ci in 0..cin {
        let w0 = _mm512_loadu_ps(w.add(ci * PANEL));
        let w1 = _mm512_loadu_ps(w.add(ci * PANEL + 16));
        for p in 0..MR {
            let x = _mm512_set1_ps(*src.add(p * stride + ci));
            a0[p] = _mm512_fmadd_ps(x, w0, a0[p]);
            a1[p] = _mm512_fmadd_ps(x, w1, a1[p]);
        }
    }
    let (vlo, vhi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
    let m0: __mmask16 = if ncols >= 16 { 0xffff } else { (1u32 << ncols) as u16 - 1 };
    let m1: __mmask16 = if ncols >= 32 {
        0xffff
    } else if ncols <= 16 {
        0
    } else {
        (1u32 << (ncols - 16)) as u16 - 1
    };
    for p in 0..MR {
        let v0 = _mm512_min_ps(_mm512_max_ps(a0[p], vlo), vhi);
        let v1 = _mm512_min_ps(_mm512_max_ps(a1[p], vlo), vhi);
        let d = dst.add(p * dst_stride);
        _mm512_mask_storeu_ps(d, m0, v0);
        _mm512_mask_storeu_ps(d.add(16), m1, v1);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2(c: &Call<'_>, dst: *mut f32) {
    let panels = c.cout.div_ceil(PANEL);
    let (lo, hi) = bounds(c.act);
    let mut pb = 0;
    while pb < c.npix {
        let pe = (pb + PIXEL_BLOCK).min(c.npix);
        for panel in 0..panels {
            for half in 0..2 {
                let col = panel * PANEL + half * 16;
                if col >= c.cout {
                    break;
                }
                let ncols = (c.cout - col).min(16);
                let w = c.packed.as_ptr().add(panel * c.cin * PANEL + half * 16);
                let b = c.bias.as_ptr().add(col);
                let mut p = pb;
                macro_rules! tile {
                    ($mr:literal) => {
                        tile256::<$mr>(
                            c.src.as_ptr().add(p * c.src_stride),
                            c.src_stride,
                            c.cin,
                            w,
                            b,
                            dst.add(p * c.cout + col),
                            c.cout,
                            ncols,
                            lo,
                            hi,
                        )
                    };
                }
                while p + 6 <= pe {
                    tile!(6);
                    p += 6;
                }
                match pe - p {
                    0 => {}
                    1 => tile!(1),
                    2 => tile!(2),
                    3 => tile!(3),
                    4 => tile!(4),
                    _ => tile!(5),
                }
            }
        }
        pb = pe;
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile256<const MR: usize>(
    src: *const f32,
    stride: usize,
    cin: usize,
    w: *const f32,
    bias: *const f32,
    dst: *mut f32,
    dst_stride: usize,
    ncols: usize,
    lo: f32,
    hi: f32,
) {
    let mut a0 = [_mm256_loadu_ps(bias); MR];
    let mut a1 = [_mm256_loadu_ps(bias.add(8)); MR];
    for ci in 0..cin {
        let w0 = _mm256_loadu_ps(w.add(ci * PANEL));
        let w1 = _mm256_loadu_ps(w.add(ci * PANEL + 8));
        for p in 0..MR {
            let x = _mm256_set1_ps(*src.add(p * stride + ci));
            a0[p] = _mm256_fmadd_ps(x, w0, a0[p]);
            a1[p] = _mm256_fmadd_ps(x, w1, a1[p]);
        }
    }
    let (vlo, vhi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
    for p in 0..MR {
        let mut out = [0.0f32; 16];
        _mm256_storeu_ps(out.as_mut_ptr(), _mm256_min_ps(_mm256_max_ps(a0[p], vlo), vhi));
        _mm256_storeu_ps(out.as_mut_ptr().add(8), _mm256_min_ps(_mm256_max_ps(a1[p], vlo), vhi));
        std::ptr::copy_nonoverlapping(out.as_ptr(), dst.add(p * dst_stride), ncols);
    }
}
