//! YUV → RGB for camera and video formats: planar I420 and 4:4:4, semi-planar NV12 and NV21,
//! each plane with its own row stride (BT.601, limited or full range).

use std::ops::Range;

use crate::error::{Error, Result};
use crate::kernels::{self, SimdLevel};

/// The sample range of Y, U and V.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum YuvRange {
    /// Y in 16–235, chroma in 16–240 (video, the default of Y4M and most cameras).
    #[default]
    Limited,
    /// All three in 0–255 (JPEG, some camera pipelines).
    Full,
}

/// One plane: `data[y * stride + x * step]` is sample (x, y). With `step` and `stride` both 0
/// the plane is constant.
#[derive(Clone, Copy, Debug)]
pub struct Plane<'a> {
    pub data: &'a [u8],
    /// Bytes from one row to the next.
    pub stride: usize,
    /// Bytes from one sample to the next: 1 for planar, 2 for interleaved chroma (NV12, NV21).
    pub step: usize,
}

/// A YUV image whose chroma is subsampled by `subsample` in both directions (2 for 4:2:0,
/// 1 for 4:4:4). Chroma samples sit centred between luma samples (JPEG / MPEG-1 siting).
#[derive(Clone, Copy, Debug)]
pub struct YuvImage<'a> {
    pub width: usize,
    pub height: usize,
    pub y: Plane<'a>,
    pub u: Plane<'a>,
    pub v: Plane<'a>,
    pub subsample: usize,
    pub range: YuvRange,
}

impl<'a> YuvImage<'a> {
    /// Tightly packed I420 (Y plane, then U, then V), as in YUV4MPEG2 `C420*`.
    pub fn i420(width: usize, height: usize, data: &'a [u8], range: YuvRange) -> Result<Self> {
        Self::packed_planar(width, height, data, 2, range)
    }

    /// Tightly packed 4:4:4 planes (Y, U, V), as in YUV4MPEG2 `C444`.
    pub fn yuv444(width: usize, height: usize, data: &'a [u8], range: YuvRange) -> Result<Self> {
        Self::packed_planar(width, height, data, 1, range)
    }

    /// Semi-planar 4:2:0: a Y plane and one interleaved chroma plane, UV order (NV12) or VU
    /// order (NV21, Android's camera default).
    pub fn nv(
        width: usize,
        height: usize,
        y: (&'a [u8], usize),
        uv: (&'a [u8], usize),
        vu_order: bool,
        range: YuvRange,
    ) -> Result<Self> {
        let (first, second) = (uv.0, uv.0.get(1..).unwrap_or_default());
        let (u, v) = if vu_order { (second, first) } else { (first, second) };
        let img = Self {
            width,
            height,
            y: Plane { data: y.0, stride: y.1, step: 1 },
            u: Plane { data: u, stride: uv.1, step: 2 },
            v: Plane { data: v, stride: uv.1, step: 2 },
            subsample: 2,
            range,
        };
        img.validate()?;
        Ok(img)
    }

    fn packed_planar(width: usize, height: usize, data: &'a [u8], subsample: usize, range: YuvRange) -> Result<Self> {
        let (cw, ch) = (width.div_ceil(subsample), height.div_ceil(subsample));
        let sizes = width.checked_mul(height).zip(cw.checked_mul(ch));
        let total = sizes.and_then(|(ly, lc)| lc.checked_mul(2)?.checked_add(ly));
        let (Some((ly, lc)), Some(total)) = (sizes, total) else {
            return Err(Error::YuvLayout { width, height, reason: "the frame size overflows".into() });
        };
        if data.len() != total {
            return Err(Error::YuvLayout {
                width,
                height,
                reason: format!("planar data holds {} bytes, expected {total}", data.len()),
            });
        }
        let img = Self {
            width,
            height,
            y: Plane { data: &data[..ly], stride: width, step: 1 },
            u: Plane { data: &data[ly..ly + lc], stride: cw, step: 1 },
            v: Plane { data: &data[ly + lc..], stride: cw, step: 1 },
            subsample,
            range,
        };
        img.validate()?;
        Ok(img)
    }

    /// Checks that every sample the geometry implies lies inside its plane.
    pub fn validate(&self) -> Result<()> {
        let err = |reason: String| Error::YuvLayout { width: self.width, height: self.height, reason };
        if self.width == 0 || self.height == 0 {
            return Err(Error::EmptyFrame { width: self.width, height: self.height });
        }
        if self.subsample != 1 && self.subsample != 2 {
            return Err(err(format!("chroma subsampling {} is not 1 or 2", self.subsample)));
        }
        let (cw, ch) = (self.width.div_ceil(self.subsample), self.height.div_ceil(self.subsample));
        for (name, p, w, h) in [("Y", self.y, self.width, self.height), ("U", self.u, cw, ch), ("V", self.v, cw, ch)] {
            // A constant plane (step and stride 0: every sample is `data[0]`) is allowed, so
            // greyscale needs no chroma buffer.
            let constant = p.step == 0 && p.stride == 0;
            let row = (w - 1).checked_mul(p.step).and_then(|n| n.checked_add(1));
            if !constant && (p.step == 0 || row.is_none_or(|row| p.stride < row)) {
                return Err(err(format!(
                    "{name} plane: stride {} too small for {w} samples of step {}",
                    p.stride, p.step
                )));
            }
            let needed = row.and_then(|row| (h - 1).checked_mul(p.stride)?.checked_add(row));
            match needed {
                Some(needed) if p.data.len() >= needed => {}
                Some(needed) => return Err(err(format!("{name} plane holds {} bytes, needs {needed}", p.data.len()))),
                None => return Err(err(format!("{name} plane: stride {} by {h} rows overflows", p.stride))),
            }
        }
        Ok(())
    }

    /// Converts to packed RGB (BT.601), chroma upsampled bilinearly.
    pub fn to_rgb(&self, out: &mut Vec<u8>) -> Result<()> {
        self.validate()?;
        out.clear();
        out.reserve(self.width * self.height * 3);
        self.rows_in::<3>(0..self.height, 0..self.width, |_, row| out.extend_from_slice(row));
        Ok(())
    }

    /// Converts the window `rows` x `cols` of a validated image, row by row from the top: each
    /// row goes to `put(y, row)` as `PX` bytes per pixel, packed RGB (3) or RGB and a zero byte
    /// (4). Every pixel gets the value the whole image's conversion gives it, whatever the
    /// window, so a sampler can convert only the windows it reads.
    ///
    /// The row passes are compiled for the best instruction set this CPU runs (as the
    /// kernels are), so that they vectorise as wide as it allows.
    pub(crate) fn rows_in<const PX: usize>(
        &self,
        rows: Range<usize>,
        cols: Range<usize>,
        put: impl FnMut(usize, &[u8]),
    ) {
        debug_assert!(rows.end <= self.height && cols.end <= self.width && !cols.is_empty());
        kernels::dispatch(SimdLevel::best(), RowPasses::<_, PX> { image: self, rows, cols, put });
    }
}

/// [`YuvImage::rows_in`]'s conversion, as a kernel compiled per SIMD level.
struct RowPasses<'i, 'a, F, const PX: usize> {
    image: &'i YuvImage<'a>,
    rows: Range<usize>,
    cols: Range<usize>,
    put: F,
}

impl<F: FnMut(usize, &[u8]), const PX: usize> kernels::Kernel for RowPasses<'_, '_, F, PX> {
    type Output = ();

    #[inline(always)]
    fn run<V: kernels::Vector>(mut self) {
        let image = self.image;
        let (s, cols) = (image.subsample, self.cols.clone());
        let (cw, ch) = (image.width.div_ceil(s), image.height.div_ceil(s));
        let (y_scale, y_off, c_scale) = match image.range {
            YuvRange::Limited => (255.0 / 219.0, 16.0, 255.0 / 224.0),
            YuvRange::Full => (1.0, 0.0, 1.0),
        };
        // Bilinear taps from luma position to chroma samples: (i0, i1, weight of i1).
        let taps = |range: Range<usize>, cn: usize| -> Vec<(usize, usize, f32)> {
            range
                .map(|x| {
                    let c = ((x as f32 + 0.5) / s as f32 - 0.5).clamp(0.0, (cn - 1) as f32);
                    let i0 = c.floor() as usize;
                    (i0, (i0 + 1).min(cn - 1), c - i0 as f32)
                })
                .collect()
        };
        let (tx, ty) = (taps(cols.clone(), cw), taps(self.rows.clone(), ch));
        // The chroma samples the window's columns read.
        let samples_at = tx[0].0..tx[tx.len() - 1].1 + 1;
        let w = cols.len();
        // Row by row, in passes over whole rows that the compiler vectorises: luma, then each
        // chroma plane (its two rows blended horizontally, once per chroma row: they serve up
        // to four output rows, then vertically), then the three channels, then packed.
        let (mut l, mut cb, mut cr) = (vec![0.0f32; w], vec![0.0f32; w], vec![0.0f32; w]);
        // Each pixel's RGB as one word, then stored four bytes at a time (for packed RGB, a
        // byte of slack at the end of the row for the last word's fourth byte).
        let (mut words, mut row) = (vec![0u32; w], vec![0u8; w * PX + 1]);
        let mut samples = vec![0.0f32; samples_at.len()];
        let (mut u_rows, mut v_rows) = (ChromaRows::new(w), ChromaRows::new(w));
        let horizontal = Horizontal { taps: &tx, first_col: cols.start, first_sample: samples_at.start, s };
        for (y, &(cy0, cy1, fy)) in self.rows.clone().zip(&ty) {
            plane_row(&image.y, y, cols.start, &mut l);
            for v in &mut l {
                *v = (*v - y_off) * y_scale;
            }
            for (plane, rows, out) in [(&image.u, &mut u_rows, &mut cb), (&image.v, &mut v_rows, &mut cr)] {
                let (top, bot) = rows.get(plane, cy0, cy1, &horizontal, &mut samples);
                for ((o, &top), &bot) in out.iter_mut().zip(top).zip(bot) {
                    *o = (top + (bot - top) * fy - 128.0) * c_scale;
                }
            }
            let (l, cb, cr, words) = (&l[..w], &cb[..w], &cr[..w], &mut words[..w]);
            for x in 0..w {
                let (l, cb, cr) = (l[x], cb[x], cr[x]);
                let (r, g, b) =
                    (to_u8(l + 1.402 * cr), to_u8(l - 0.344_136 * cb - 0.714_136 * cr), to_u8(l + 1.772 * cb));
                words[x] = u32::from(r) | u32::from(g) << 8 | u32::from(b) << 16;
            }
            for (x, word) in words.iter().enumerate() {
                row[x * PX..x * PX + 4].copy_from_slice(&word.to_le_bytes());
            }
            (self.put)(y, &row[..w * PX]);
        }
    }
}

/// Samples `first..first + out.len()` of row `row` of plane `p`, as floats.
#[inline(always)]
fn plane_row(p: &Plane<'_>, row: usize, first: usize, out: &mut [f32]) {
    let r = &p.data[row * p.stride + first * p.step..];
    match p.step {
        0 => out.fill(f32::from(r[0])),
        1 => {
            let n = out.len();
            for (o, &v) in out.iter_mut().zip(&r[..n]) {
                *o = f32::from(v);
            }
        }
        2 => {
            for (o, v) in out.iter_mut().zip(r.chunks(2)) {
                *o = f32::from(v[0]);
            }
        }
        step => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = f32::from(r[i * step]);
            }
        }
    }
}

/// The horizontal chroma blend of a window of luma columns: `taps[i]` is column
/// `first_col + i`'s `(i0, i1, fx)`, and the samples it reads start at `first_sample`.
struct Horizontal<'t> {
    taps: &'t [(usize, usize, f32)],
    first_col: usize,
    first_sample: usize,
    s: usize,
}

impl Horizontal<'_> {
    /// `out[i] = a0 + (a1 - a0) * fx` for each column's taps into `samples`. With 4:2:0
    /// (`s == 2`) the taps between the edges are known: columns `2k + 1` and `2k + 2` blend
    /// samples `k` and `k + 1` by 1/4 and 3/4 (exact in binary), so they are computed as one
    /// pass over neighbouring samples, with the same operations as the taps.
    #[inline(always)]
    fn blend(&self, samples: &[f32], out: &mut [f32]) {
        let (c0, n, base) = (self.first_col, out.len(), self.first_sample);
        let tap = |i: usize| {
            let (x0, x1, fx) = self.taps[i];
            let (a0, a1) = (samples[x0 - base], samples[x1 - base]);
            a0 + (a1 - a0) * fx
        };
        // The columns of the known taps, `1..=2 * (last sample)`, that fall in the window, from
        // the first odd one: pairs (2k + 1, 2k + 2) that read samples k and k + 1.
        let last_sample = base + samples.len() - 1;
        let (lo, hi) = if self.s == 2 { ((c0 | 1).max(1), (2 * last_sample).min(c0 + n - 1) + 1) } else { (0, 0) };
        let pairs = hi.saturating_sub(lo) / 2;
        if pairs > 0 {
            let k0 = (lo - 1) / 2 - base;
            let run = &mut out[lo - c0..lo - c0 + 2 * pairs];
            for ((o, &a), &b) in run.chunks_exact_mut(2).zip(&samples[k0..k0 + pairs]).zip(&samples[k0 + 1..]) {
                o[0] = a + (b - a) * 0.25;
                o[1] = a + (b - a) * 0.75;
            }
        }
        let known = if pairs > 0 { lo - c0..lo - c0 + 2 * pairs } else { 0..0 };
        for i in (0..known.start).chain(known.end..n) {
            out[i] = tap(i);
        }
    }
}

/// The two chroma rows that output rows blend, each already blended horizontally to the
/// luma width. Output rows go top to bottom, so a row's horizontal blend is computed once and
/// kept while the output rows that read it pass.
struct ChromaRows {
    index: [Option<usize>; 2],
    rows: [Vec<f32>; 2],
}

impl ChromaRows {
    fn new(w: usize) -> Self {
        Self { index: [None; 2], rows: [vec![0.0; w], vec![0.0; w]] }
    }

    /// Chroma rows `cy0` and `cy1` of `p`, blended by `horizontal`.
    #[inline(always)]
    fn get(
        &mut self,
        p: &Plane<'_>,
        cy0: usize,
        cy1: usize,
        horizontal: &Horizontal<'_>,
        samples: &mut [f32],
    ) -> (&[f32], &[f32]) {
        if self.index[1] == Some(cy0) && self.index[0] != Some(cy0) {
            self.index.swap(0, 1);
            self.rows.swap(0, 1);
        }
        for (k, cy) in [(0, cy0), (1, cy1)] {
            if self.index[k] != Some(cy) {
                plane_row(p, cy, horizontal.first_sample, samples);
                horizontal.blend(samples, &mut self.rows[k]);
                self.index[k] = Some(cy);
            }
        }
        (&self.rows[0], &self.rows[1])
    }
}

/// `v.round().clamp(0.0, 255.0) as u8` (rounding half away from zero), without the `roundf`
/// call that baseline x86-64 (no SSE4.1) makes of `f32::round`, and without branches (camera
/// pixels saturate unpredictably): clamped first (NaN to 0), then truncated (one instruction
/// per lane, with none of the saturating cast's fix-ups, which cost a fifth of a conversion),
/// and rounded up when `v - trunc(v)`, exact below 2^23, is at least one half.
#[inline(always)]
fn to_u8(v: f32) -> u8 {
    // `max` first: it returns 0 for NaN, so `c` is a number in 0..=255 (`clamp` keeps NaN).
    #[allow(clippy::manual_clamp)]
    let c = v.max(0.0).min(255.0);
    // SAFETY: `c` is finite and in 0..=255, so its truncation fits an i32.
    let i = unsafe { c.to_int_unchecked::<i32>() };
    (i + i32::from(c - i as f32 >= 0.5)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_u8_rounds_as_f32_round_then_clamp() {
        let reference = |v: f32| v.round().clamp(0.0, 255.0) as u8;
        // Every 1/4096 step over the range and past it, and each half-way point with its two
        // neighbouring floats.
        let steps = (-4096 * 2..=4096 * 260).map(|k| k as f32 / 4096.0);
        let halves = (-2..=260).flat_map(|i| {
            let h = i as f32 + 0.5;
            [f32::from_bits(h.to_bits() - 1), h, f32::from_bits(h.to_bits() + 1)]
        });
        let special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 0.0, 1e-30, 254.99998, 255.0, 1e9];
        for v in steps.chain(halves).chain(special) {
            assert_eq!(to_u8(v), reference(v), "{v:?}");
        }
    }

    /// BT.601 forward transform, the inverse of `to_rgb`.
    fn to_yuv(rgb: [u8; 3], range: YuvRange) -> [u8; 3] {
        let [r, g, b] = rgb.map(f32::from);
        let l = 0.299 * r + 0.587 * g + 0.114 * b;
        let (cb, cr) = ((b - l) / 1.772, (r - l) / 1.402);
        let (ys, yo, cs) = match range {
            YuvRange::Limited => (219.0 / 255.0, 16.0, 224.0 / 255.0),
            YuvRange::Full => (1.0, 0.0, 1.0),
        };
        [l * ys + yo, cb * cs + 128.0, cr * cs + 128.0].map(|v| v.round().clamp(0.0, 255.0) as u8)
    }

    fn pattern(w: usize, h: usize) -> Vec<[u8; 3]> {
        (0..w * h).map(|i| [(i * 37 % 256) as u8, (i * 91 % 256) as u8, (i * 13 % 256) as u8]).collect()
    }

    #[test]
    fn yuv444_round_trips_within_rounding() {
        for range in [YuvRange::Limited, YuvRange::Full] {
            let (w, h) = (7, 5);
            let px = pattern(w, h);
            let yuv: Vec<[u8; 3]> = px.iter().map(|&p| to_yuv(p, range)).collect();
            let planes: Vec<u8> = (0..3).flat_map(|c| yuv.iter().map(move |p| p[c])).collect();
            let mut rgb = Vec::new();
            YuvImage::yuv444(w, h, &planes, range).unwrap().to_rgb(&mut rgb).unwrap();
            let worst = rgb.iter().zip(px.iter().flatten()).map(|(&a, &b)| a.abs_diff(b)).max().unwrap();
            assert!(worst <= 3, "{range:?}: worst error {worst}");
        }
    }

    #[test]
    fn nv12_nv21_and_i420_agree_with_padding_strides() {
        let (w, h) = (6, 4);
        let (cw, ch) = (3, 2);
        let y: Vec<u8> = (0..h * 8).map(|i| (i * 7 % 251) as u8).collect(); // stride 8
        let u: Vec<u8> = (0..cw * ch).map(|i| (100 + i * 9) as u8).collect();
        let v: Vec<u8> = (0..cw * ch).map(|i| (160 - i * 5) as u8).collect();
        let mut i420 = Vec::new();
        for r in 0..h {
            i420.extend_from_slice(&y[r * 8..r * 8 + w]);
        }
        i420.extend(&u);
        i420.extend(&v);
        let mut a = Vec::new();
        YuvImage::i420(w, h, &i420, YuvRange::Limited).unwrap().to_rgb(&mut a).unwrap();
        let stride = 10;
        let (mut uv, mut vu) = (vec![0u8; ch * stride], vec![0u8; ch * stride]);
        for r in 0..ch {
            for c in 0..cw {
                uv[r * stride + 2 * c] = u[r * cw + c];
                uv[r * stride + 2 * c + 1] = v[r * cw + c];
                vu[r * stride + 2 * c] = v[r * cw + c];
                vu[r * stride + 2 * c + 1] = u[r * cw + c];
            }
        }
        for (buf, vu_order) in [(&uv, false), (&vu, true)] {
            let mut b = Vec::new();
            YuvImage::nv(w, h, (&y, 8), (buf, stride), vu_order, YuvRange::Limited).unwrap().to_rgb(&mut b).unwrap();
            assert_eq!(a, b, "vu_order {vu_order}");
        }
    }

    /// The conversion pixel by pixel: each sample read from its plane, the chroma taps computed
    /// per pixel, the way the row passes must reproduce bit for bit.
    fn to_rgb_reference(img: &YuvImage<'_>) -> Vec<u8> {
        let (w, h, s) = (img.width, img.height, img.subsample);
        let (cw, ch) = (w.div_ceil(s), h.div_ceil(s));
        let (ys, yo, cs) = match img.range {
            YuvRange::Limited => (255.0 / 219.0, 16.0, 255.0 / 224.0),
            YuvRange::Full => (1.0, 0.0, 1.0),
        };
        let tap = |x: usize, cn: usize| {
            let c = ((x as f32 + 0.5) / s as f32 - 0.5).clamp(0.0, (cn - 1) as f32);
            let i0 = c.floor() as usize;
            (i0, (i0 + 1).min(cn - 1), c - i0 as f32)
        };
        let at = |p: &Plane<'_>, x: usize, y: usize| f32::from(p.data[y * p.stride + x * p.step]);
        let mut out = Vec::new();
        for y in 0..h {
            let (y0, y1, fy) = tap(y, ch);
            for x in 0..w {
                let (x0, x1, fx) = tap(x, cw);
                let c = |p: &Plane<'_>| {
                    let (a0, a1, b0, b1) = (at(p, x0, y0), at(p, x1, y0), at(p, x0, y1), at(p, x1, y1));
                    let (top, bot) = (a0 + (a1 - a0) * fx, b0 + (b1 - b0) * fx);
                    (top + (bot - top) * fy - 128.0) * cs
                };
                let (l, cb, cr) = ((at(&img.y, x, y) - yo) * ys, c(&img.u), c(&img.v));
                let round = |v: f32| v.round().clamp(0.0, 255.0) as u8;
                out.extend([round(l + 1.402 * cr), round(l - 0.344_136 * cb - 0.714_136 * cr), round(l + 1.772 * cb)]);
            }
        }
        out
    }

    #[test]
    fn row_passes_equal_the_per_pixel_conversion_bit_for_bit() {
        let bytes =
            |n: usize, seed: usize| -> Vec<u8> { (0..n).map(|i| ((i * 2654435761 + seed) >> 7) as u8).collect() };
        for (w, h) in [(1usize, 1usize), (2, 1), (1, 3), (3, 2), (5, 5), (8, 3), (17, 9), (34, 7)] {
            for range in [YuvRange::Limited, YuvRange::Full] {
                let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
                let i420 = bytes(w * h + 2 * cw * ch, w * 31 + h);
                let yuv444 = bytes(3 * w * h, w + h * 17);
                let (y, uv) = (bytes(h * (w + 3), 5), bytes(ch * (2 * cw + 1), 9));
                let grey = YuvImage {
                    width: w,
                    height: h,
                    y: Plane { data: &y, stride: w + 3, step: 1 },
                    u: Plane { data: &[90], stride: 0, step: 0 },
                    v: Plane { data: &[200], stride: 0, step: 0 },
                    subsample: 2,
                    range,
                };
                let images = [
                    YuvImage::i420(w, h, &i420, range).unwrap(),
                    YuvImage::yuv444(w, h, &yuv444, range).unwrap(),
                    YuvImage::nv(w, h, (&y, w + 3), (&uv, 2 * cw + 1), true, range).unwrap(),
                    grey,
                ];
                for (k, img) in images.iter().enumerate() {
                    let (mut rgb, want) = (Vec::new(), to_rgb_reference(img));
                    img.to_rgb(&mut rgb).unwrap();
                    assert_eq!(rgb, want, "{w}x{h} {range:?} image {k}");
                    // Every window converts to the whole conversion's values.
                    for x0 in 0..w {
                        for x1 in x0 + 1..=w {
                            let (rows, mut got) = (h / 3..h, Vec::new());
                            img.rows_in::<4>(rows.clone(), x0..x1, |_, row| got.extend_from_slice(row));
                            let want: Vec<u8> = rows
                                .flat_map(|y| {
                                    want[(y * w + x0) * 3..(y * w + x1) * 3]
                                        .chunks(3)
                                        .flat_map(|p| [p[0], p[1], p[2], 0])
                                })
                                .collect();
                            assert_eq!(got, want, "{w}x{h} {range:?} image {k}, columns {x0}..{x1}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bad_layouts_are_errors() {
        assert!(YuvImage::i420(4, 4, &[0; 23], YuvRange::Limited).is_err());
        let y = [0u8; 16];
        let uv = [0u8; 7];
        let e = YuvImage::nv(4, 4, (&y, 4), (&uv, 4), false, YuvRange::Full).unwrap_err().to_string();
        assert!(e.contains("plane"), "{e}");
        assert!(YuvImage::nv(4, 4, (&y, 3), (&[0; 8], 4), false, YuvRange::Full).is_err());
        assert!(YuvImage::i420(0, 4, &[], YuvRange::Full).is_err());
    }
}
