//! Depthwise convolution, compiled several times for different instruction sets and picked at
//! run time (never by building for the host CPU). The loop body is written once; each variant only
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

/// The best level this CPU supports, or the one forced by [`force_level`].
pub fn detected() -> Level {
    match FORCED.load(std::sync::atomic::Ordering::Relaxed) {
        1 => return Level::Baseline,
        #[cfg(target_arch = "x86_64")]
        2 => return Level::Avx2Fma,
        _ => {}
    }
    best()
}

/// Every level this CPU can run, lowest first.
pub fn available() -> Vec<Level> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut out = vec![Level::Baseline];
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            out.push(Level::Avx2Fma);
        }
        if best() == Level::Avx512 {
            out.push(Level::Avx512);
        }
        out
    }
    #[cfg(not(target_arch = "x86_64"))]
    vec![Level::Baseline]
}

static FORCED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Forces a lower SIMD level process-wide (`None`: the best one), so that tests can check
/// every code path on one machine. Levels the CPU lacks are ignored.
pub fn force_level(level: Option<Level>) {
    let code = match level {
        Some(l) if !available().contains(&l) => 0,
        Some(Level::Baseline) => 1,
        #[cfg(target_arch = "x86_64")]
        Some(Level::Avx2Fma) => 2,
        _ => 0,
    };
    FORCED.store(code, std::sync::atomic::Ordering::Relaxed);
}

fn best() -> Level {
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

/// Floats per accumulator vector (one AVX-512 register, two AVX2 registers).
const LANES: usize = 16;

#[inline(always)]
fn depthwise_row_impl<M: MulAdd>(conv: &Conv, input: In<'_>, oy: usize, x0: usize, dst: &mut [f32]) {
    let w = &conv.window;
    let c = conv.cout;
    let (ih, iw) = (input.shape.h, input.shape.w);
    assert_eq!(input.data.len(), ih * iw * c);
    assert_eq!(conv.weights.len(), w.kh * w.kw * c);
    assert_eq!(dst.len() % c, 0);
    let npix = dst.len() / c;
    let iy0 = (oy * w.sh) as isize - w.pad[0] as isize;
    // Kernel rows whose input row is inside the image (a contiguous range; the rest is padding).
    let ky0 = (0..w.kh).find(|&ky| iy0 + (ky * w.dh) as isize >= 0).unwrap_or(w.kh);
    let ky1 = (ky0..w.kh).take_while(|&ky| iy0 + ((ky * w.dh) as isize) < ih as isize).last().map_or(ky0, |k| k + 1);
    let geo = RowGeometry { iy0, ky0, ky1, x0, npix };
    let mut c0 = 0;
    // Wide blocks first: each tap's bookkeeping is shared by 4 vector FMAs.
    while c0 + 4 * LANES <= c {
        // SAFETY: extents asserted above; c0 + 64 <= c.
        unsafe { block::<M, 4>(conv, input, &geo, c0, dst) };
        c0 += 4 * LANES;
    }
    while c0 + LANES <= c {
        // SAFETY: as above, c0 + 16 <= c.
        unsafe { block::<M, 1>(conv, input, &geo, c0, dst) };
        c0 += LANES;
    }
    for p in 0..npix {
        let (ix0, kx0, kx1) = geo.columns(w, iw, p);
        for ch in c0..c {
            let mut acc = conv.bias[ch];
            for ky in ky0..ky1 {
                let iy = (iy0 + (ky * w.dh) as isize) as usize;
                for kx in kx0..kx1 {
                    let ix = (ix0 + (kx * w.dw) as isize) as usize;
                    acc = M::mul_add(acc, input.data[(iy * iw + ix) * c + ch], conv.weights[(ky * w.kw + kx) * c + ch]);
                }
            }
            dst[p * c + ch] = acc;
        }
    }
    conv.activation.apply_slice(dst);
}

/// Where one output row segment reads: valid kernel rows `ky0..ky1`, first output column `x0`.
struct RowGeometry {
    iy0: isize,
    ky0: usize,
    ky1: usize,
    x0: usize,
    npix: usize,
}

impl RowGeometry {
    /// First input column and the valid kernel columns `kx0..kx1` of pixel `p`.
    #[inline(always)]
    fn columns(&self, w: &crate::graph::Window, iw: usize, p: usize) -> (isize, usize, usize) {
        let ix0 = ((self.x0 + p) * w.sw) as isize - w.pad[1] as isize;
        // Interior pixels (the common case) read every kernel column.
        if ix0 >= 0 && ix0 + (((w.kw - 1) * w.dw) as isize) < iw as isize {
            return (ix0, 0, w.kw);
        }
        let kx0 = (0..w.kw).find(|&kx| ix0 + (kx * w.dw) as isize >= 0).unwrap_or(w.kw);
        let kx1 =
            (kx0..w.kw).take_while(|&kx| ix0 + ((kx * w.dw) as isize) < iw as isize).last().map_or(kx0, |k| k + 1);
        (ix0, kx0, kx1)
    }
}

/// Channels `c0..c0 + NB * LANES` of every pixel of the row segment, accumulators in registers.
///
/// # Safety
/// `input`, `conv.weights` and `dst` must have the extents asserted by the caller, and
/// `c0 + NB * LANES <= conv.cout`.
#[inline(always)]
unsafe fn block<M: MulAdd, const NB: usize>(conv: &Conv, input: In<'_>, geo: &RowGeometry, c0: usize, dst: &mut [f32]) {
    let w = &conv.window;
    let c = conv.cout;
    let iw = input.shape.w;
    let src = input.data.as_ptr();
    let wts = conv.weights.as_ptr();
    for p in 0..geo.npix {
        let (ix0, kx0, kx1) = geo.columns(w, iw, p);
        let mut acc = [[0.0f32; LANES]; NB];
        for (b, a) in acc.iter_mut().enumerate() {
            a.copy_from_slice(&conv.bias[c0 + b * LANES..c0 + (b + 1) * LANES]);
        }
        for ky in geo.ky0..geo.ky1 {
            let iy = (geo.iy0 + (ky * w.dh) as isize) as usize;
            for kx in kx0..kx1 {
                let ix = (ix0 + (kx * w.dw) as isize) as usize;
                // SAFETY: iy < ih and ix < iw by the valid ranges; channel offsets < c.
                let (s, k) = unsafe { (src.add((iy * iw + ix) * c + c0), wts.add((ky * w.kw + kx) * c + c0)) };
                for (b, a) in acc.iter_mut().enumerate() {
                    for j in 0..LANES {
                        // SAFETY: as above.
                        let (sv, kv) = unsafe { (*s.add(b * LANES + j), *k.add(b * LANES + j)) };
                        a[j] = M::mul_add(a[j], sv, kv);
                    }
                }
            }
        }
        for (b, a) in acc.iter().enumerate() {
            dst[p * c + c0 + b * LANES..p * c + c0 + (b + 1) * LANES].copy_from_slice(a);
        }
    }
}
