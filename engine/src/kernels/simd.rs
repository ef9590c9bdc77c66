//! Depthwise convolution, compiled several times for different instruction sets and picked at
//! run time (never `target-cpu=native`). The loop body is written once; each variant only
//! changes the target features the compiler may use, and whether multiply-add is fused.

use super::In;
use crate::graph::Conv;

trait MulAdd {
    fn mul_add(acc: f32, a: f32, b: f32) -> f32;
}
struct Separate;
impl MulAdd for Separate {
    #[inline(always)]
    fn mul_add(acc: f32, a: f32, b: f32) -> f32 {
        acc + a * b
    }
}
#[cfg(target_arch = "x86_64")]
struct Fused;
#[cfg(target_arch = "x86_64")]
impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(acc: f32, a: f32, b: f32) -> f32 {
        a.mul_add(b, acc)
    }
}

/// Which depthwise variant this CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

pub fn detected() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                return Level::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Level::Avx2Fma;
            }
        }
        Level::Baseline
    })
}

/// One output row segment `x0..x0 + dst.len()/C` of depthwise convolution row `oy`.
pub fn depthwise_row(conv: &Conv, input: In<'_>, oy: usize, x0: usize, dst: &mut [f32]) {
    match detected() {
        Level::Baseline => depthwise_row_impl::<Separate>(conv, input, oy, x0, dst),
        // SAFETY: the features were detected at run time.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2Fma => unsafe { depthwise_row_avx2(conv, input, oy, x0, dst) },
        // SAFETY: the features were detected at run time.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { depthwise_row_avx512(conv, input, oy, x0, dst) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn depthwise_row_avx2(conv: &Conv, input: In<'_>, oy: usize, x0: usize, dst: &mut [f32]) {
    depthwise_row_impl::<Fused>(conv, input, oy, x0, dst)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn depthwise_row_avx512(conv: &Conv, input: In<'_>, oy: usize, x0: usize, dst: &mut [f32]) {
    depthwise_row_impl::<Fused>(conv, input, oy, x0, dst)
}

/// Channels per register-resident accumulator block.
const LANES: usize = 16;

/// Kernels up to this many taps keep a channel block's weights in registers.
const MAX_TAPS: usize = 25;

#[inline(always)]
fn depthwise_row_impl<M: MulAdd>(conv: &Conv, input: In<'_>, oy: usize, x0: usize, dst: &mut [f32]) {
    let w = &conv.window;
    let c = conv.cout;
    let (ih, iw) = (input.shape.h, input.shape.w);
    let npix = dst.len() / c;
    let iy0 = (oy * w.sh) as isize - w.pad[0] as isize;
    // Kernel rows whose input row is inside the image (a contiguous range; the rest is padding).
    let first = (0..w.kh).find(|&ky| iy0 + (ky * w.dh) as isize >= 0).unwrap_or(w.kh);
    let last =
        (first..w.kh).take_while(|&ky| iy0 + ((ky * w.dh) as isize) < ih as isize).last().map_or(first, |k| k + 1);
    let rows = (first..last).map(|ky| (ky, (iy0 + (ky * w.dh) as isize) as usize));
    let taps = w.kh * w.kw;
    let mut c0 = 0;
    // Channel blocks outer, pixels inner: the block's weights are loaded once per row and
    // the accumulator stays in registers across all taps.
    while c0 + LANES <= c && taps <= MAX_TAPS {
        let mut wb = [[0.0f32; LANES]; MAX_TAPS];
        for (t, wt) in wb.iter_mut().enumerate().take(taps) {
            wt.copy_from_slice(&conv.weights[t * c + c0..t * c + c0 + LANES]);
        }
        let bias: [f32; LANES] = conv.bias[c0..c0 + LANES].try_into().expect("block");
        for p in 0..npix {
            let ix0 = ((x0 + p) * w.sw) as isize - w.pad[1] as isize;
            let mut acc = bias;
            for (ky, iy) in rows.clone() {
                let row = &input.data[iy * iw * c..(iy + 1) * iw * c];
                for kx in 0..w.kw {
                    let ix = ix0 + (kx * w.dw) as isize;
                    if ix < 0 || ix >= iw as isize {
                        continue;
                    }
                    let s: &[f32; LANES] = row[ix as usize * c + c0..][..LANES].try_into().expect("block");
                    let k = &wb[ky * w.kw + kx];
                    for j in 0..LANES {
                        acc[j] = M::mul_add(acc[j], s[j], k[j]);
                    }
                }
            }
            dst[p * c + c0..p * c + c0 + LANES].copy_from_slice(&acc);
        }
        c0 += LANES;
    }
    // Remaining channels (and very large kernels).
    for p in 0..npix {
        let ix0 = ((x0 + p) * w.sw) as isize - w.pad[1] as isize;
        for ch in c0..c {
            let mut acc = conv.bias[ch];
            for (ky, iy) in rows.clone() {
                for kx in 0..w.kw {
                    let ix = ix0 + (kx * w.dw) as isize;
                    if ix >= 0 && ix < iw as isize {
                        acc = M::mul_add(
                            acc,
                            input.data[(iy * iw + ix as usize) * c + ch],
                            conv.weights[(ky * w.kw + kx) * c + ch],
                        );
                    }
                }
            }
            dst[p * c + ch] = acc;
        }
    }
    conv.activation.apply_slice(dst);
}
