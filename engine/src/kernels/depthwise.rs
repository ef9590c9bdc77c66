//! Depthwise convolution on NHWC rows, one channel vector at a time, written once over
//! [`Vector`] and compiled per level.
//!
//! Interior pixels of 3x3 and 5x5 windows (dilation 1) go four at a time: per kernel row, the
//! four outputs share the row's weight vectors and, at stride 1, most input loads. Border
//! pixels read only their valid taps; channels beyond the last whole vector go through a
//! scalar loop. Each output is summed over the taps in one fixed order from the bias, so a
//! value does not depend on the rectangle it is computed in.

use super::simd::{dispatch, Kernel, Level, Vector};
use super::{vec_act, In};
use crate::graph::{Conv, Window};

/// One output row segment `x0..x0 + dst.len()/C` of depthwise convolution row `oy`.
pub fn row(level: Level, conv: &Conv, input: In<'_>, oy: usize, x0: usize, dst: &mut [f32]) {
    let w = &conv.window;
    let c = conv.cout;
    let (ih, iw) = (input.shape.h, input.shape.w);
    assert_eq!(input.data.len(), ih * iw * c, "depthwise input does not match its shape");
    assert_eq!(conv.weights.len(), w.kh * w.kw * c, "depthwise weights do not match the window");
    assert_eq!(conv.bias.len(), c, "depthwise bias does not match the channels");
    assert_eq!(dst.len() % c.max(1), 0);
    let npix = dst.len() / c.max(1);
    let iy0 = (oy * w.sh) as isize - w.pad[0] as isize;
    // Kernel rows whose input row is inside the image (a contiguous range; the rest is padding).
    let ky0 = (0..w.kh).find(|&ky| iy0 + (ky * w.dh) as isize >= 0).unwrap_or(w.kh);
    let ky1 = (ky0..w.kh).take_while(|&ky| iy0 + ((ky * w.dh) as isize) < ih as isize).last().map_or(ky0, |k| k + 1);
    let geo = RowGeometry { iy0, ky0, ky1, x0, npix };
    dispatch(level.for_width(c), Row { conv, input, geo: &geo, dst });
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
    fn columns(&self, w: &Window, iw: usize, p: usize) -> (isize, usize, usize) {
        let ix0 = ((self.x0 + p) * w.sw) as isize - w.pad[1] as isize;
        if self.interior(w, iw, p) {
            return (ix0, 0, w.kw);
        }
        let kx0 = (0..w.kw).find(|&kx| ix0 + (kx * w.dw) as isize >= 0).unwrap_or(w.kw);
        let kx1 =
            (kx0..w.kw).take_while(|&kx| ix0 + ((kx * w.dw) as isize) < iw as isize).last().map_or(kx0, |k| k + 1);
        (ix0, kx0, kx1)
    }

    /// Whether pixel `p` reads every kernel column.
    #[inline(always)]
    fn interior(&self, w: &Window, iw: usize, p: usize) -> bool {
        let ix0 = ((self.x0 + p) * w.sw) as isize - w.pad[1] as isize;
        ix0 >= 0 && ix0 + (((w.kw - 1) * w.dw) as isize) < iw as isize
    }

    /// Input row of kernel row `ky` (inside the image for `ky0 <= ky < ky1`).
    #[inline(always)]
    fn input_row(&self, w: &Window, ky: usize) -> usize {
        (self.iy0 + (ky * w.dh) as isize) as usize
    }
}

/// One row segment as a [`Kernel`].
struct Row<'a, 'b> {
    conv: &'a Conv,
    input: In<'a>,
    geo: &'a RowGeometry,
    dst: &'b mut [f32],
}

impl Kernel for Row<'_, '_> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector>(self) {
        row_impl::<V>(self.conv, self.input, self.geo, self.dst)
    }
}

/// Output pixels per group on the interior fast path.
const GROUP: usize = 4;

#[inline(always)]
fn row_impl<V: Vector>(conv: &Conv, input: In<'_>, geo: &RowGeometry, dst: &mut [f32]) {
    let w = &conv.window;
    let c = conv.cout;
    let iw = input.shape.w;
    let cv = c / V::LANES * V::LANES;
    let src = input.data.as_ptr();
    let wts = conv.weights.as_ptr();
    let act = conv.activation;
    let grouped = w.dw == 1 && (w.kw == 3 || w.kw == 5);
    // SAFETY (every pointer below): rows ky0..ky1 and the columns `columns` returns are inside
    // the input (asserted extents in `row`); channel offsets cb + LANES <= cv <= c; pixel p <
    // npix writes dst[p * c..][..c], and dst holds npix * c floats.
    // Pixels outer, channel vectors inner: a pixel group's input window is read from memory
    // once and stays in L1 while every channel vector passes over it.
    let mut p = 0;
    while p < geo.npix {
        if grouped && p + GROUP <= geo.npix && geo.interior(w, iw, p) && geo.interior(w, iw, p + GROUP - 1) {
            // Interior: the first tap is inside the image, so this does not underflow.
            let ix0 = (geo.x0 + p) * w.sw - w.pad[1];
            for cb in (0..cv).step_by(V::LANES) {
                unsafe {
                    let bias = V::load(conv.bias.as_ptr().add(cb));
                    let acc = if w.kw == 3 {
                        group::<V, 3>(src, wts, c, iw, w, geo, ix0, cb, bias)
                    } else {
                        group::<V, 5>(src, wts, c, iw, w, geo, ix0, cb, bias)
                    };
                    for (k, a) in acc.iter().enumerate() {
                        vec_act(act, *a).store(dst.as_mut_ptr().add((p + k) * c + cb));
                    }
                }
            }
            for k in p..p + GROUP {
                scalar_tail(conv, input, geo, k, cv, dst);
            }
            p += GROUP;
            continue;
        }
        let (ix0, kx0, kx1) = geo.columns(w, iw, p);
        for cb in (0..cv).step_by(V::LANES) {
            unsafe {
                let mut acc = V::load(conv.bias.as_ptr().add(cb));
                for ky in geo.ky0..geo.ky1 {
                    let iy = geo.input_row(w, ky);
                    for kx in kx0..kx1 {
                        let ix = (ix0 + (kx * w.dw) as isize) as usize;
                        let s = V::load(src.add((iy * iw + ix) * c + cb));
                        acc = s.mul_add(V::load(wts.add((ky * w.kw + kx) * c + cb)), acc);
                    }
                }
                vec_act(act, acc).store(dst.as_mut_ptr().add(p * c + cb));
            }
        }
        scalar_tail(conv, input, geo, p, cv, dst);
        p += 1;
    }
}

/// Channels `c0..` of pixel `p`, one at a time (those past the last whole vector).
#[inline(always)]
fn scalar_tail(conv: &Conv, input: In<'_>, geo: &RowGeometry, p: usize, c0: usize, dst: &mut [f32]) {
    let (w, c, iw, act) = (&conv.window, conv.cout, input.shape.w, conv.activation);
    if c0 == c {
        return;
    }
    let (ix0, kx0, kx1) = geo.columns(w, iw, p);
    for ch in c0..c {
        let mut acc = conv.bias[ch];
        for ky in geo.ky0..geo.ky1 {
            let iy = geo.input_row(w, ky);
            for kx in kx0..kx1 {
                let ix = (ix0 + (kx * w.dw) as isize) as usize;
                acc += input.data[(iy * iw + ix) * c + ch] * conv.weights[(ky * w.kw + kx) * c + ch];
            }
        }
        dst[p * c + ch] = act.apply(acc);
    }
}

/// [`GROUP`] interior pixels from input column `ix0` (stride `w.sw`), channels `cb..cb + LANES`.
///
/// # Safety
/// Every tap of the four pixels must be inside the input, and `cb + LANES <= c`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn group<V: Vector, const KW: usize>(
    src: *const f32,
    wts: *const f32,
    c: usize,
    iw: usize,
    w: &Window,
    geo: &RowGeometry,
    ix0: usize,
    cb: usize,
    bias: V,
) -> [V; GROUP] {
    let mut acc = [bias; GROUP];
    for ky in geo.ky0..geo.ky1 {
        // SAFETY: the function's contract.
        unsafe {
            let row = src.add((geo.input_row(w, ky) * iw + ix0) * c + cb);
            let mut wk = [V::splat(0.0); KW];
            for (kx, v) in wk.iter_mut().enumerate() {
                *v = V::load(wts.add((ky * KW + kx) * c + cb));
            }
            for (p, a) in acc.iter_mut().enumerate() {
                for (kx, wv) in wk.iter().enumerate() {
                    *a = V::load(row.add((p * w.sw + kx) * c)).mul_add(*wv, *a);
                }
            }
        }
    }
    acc
}
