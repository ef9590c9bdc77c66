//! Frames and preprocessing: pixels in, model-sized input out.
//!
//! Preprocessing is split in two steps so that change detection can sit between them:
//! [`Preprocess::resample`] maps the frame to the model's input size on the 0–255 scale
//! (where thresholds are meaningful), and [`Preprocess::normalize`] turns those values into
//! the model's input range.

mod pil;
mod source;
mod yuv;

pub use source::Image;
pub use yuv::{Plane, YuvImage, YuvRange};

use std::ops::Range;

use source::Reader;

use crate::error::{Error, Result};
use crate::graph::Shape;

/// A borrowed 8-bit RGB or RGBA frame, rows packed without padding.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub width: usize,
    pub height: usize,
    /// Bytes per pixel: 3 (RGB) or 4 (RGBA; alpha ignored).
    pub channels: usize,
    pub data: &'a [u8],
}

impl<'a> Frame<'a> {
    pub fn rgb(width: usize, height: usize, data: &'a [u8]) -> Self {
        Self { width, height, channels: 3, data }
    }

    /// Checks the frame's geometry against its buffer.
    pub fn validate(&self) -> Result<()> {
        if self.width == 0 || self.height == 0 {
            return Err(Error::EmptyFrame { width: self.width, height: self.height });
        }
        if self.channels != 3 && self.channels != 4 {
            return Err(Error::FrameChannels { got: self.channels });
        }
        let expected = self.width.checked_mul(self.height).and_then(|n| n.checked_mul(self.channels));
        // A geometry whose size overflows matches no buffer.
        let expected = expected.unwrap_or(usize::MAX);
        if self.data.len() != expected {
            return Err(Error::FrameData {
                width: self.width,
                height: self.height,
                channels: self.channels,
                expected,
                got: self.data.len(),
            });
        }
        Ok(())
    }
}

/// How the frame is fitted to the model's input size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fit {
    /// Resize to the input size, ignoring aspect ratio.
    Stretch,
    /// Resize so the shorter side is `shorter` pixels (keeping aspect ratio), then crop the
    /// centre to the input size. `shorter: None` crops the largest centred region with the
    /// input's aspect ratio.
    CenterCrop { shorter: Option<usize> },
}

/// How frame pixels are resampled to the model's input (`resample = "area" | "pil" |
/// "mediapipe"` in a sidecar).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resample {
    /// Bilinear at half-pixel centres, area-averaged over `k x k` points when shrinking by `k`
    /// (2 or more): the engine's own, and its fastest.
    #[default]
    Area,
    /// Pillow's antialiased bilinear resize, bit for bit, with torchvision's `Resize` and
    /// `CenterCrop` rounding: what torchvision models were trained and evaluated with.
    Pil,
    /// MediaPipe's CPU `ImageToTensorCalculator`: OpenCV's `warpPerspective` with
    /// `INTER_LINEAR` and replicated borders, mapping the region's corners onto the output's
    /// corners (output pixel `x` samples source `x0 + x · w / W`, no half-pixel offset, no
    /// antialiasing), rounded to bytes.
    #[serde(rename = "mediapipe")]
    MediaPipe,
}

/// Whether the model's input size follows the frame's shape (`aspect = "fixed" | "turn" |
/// "follow"` in the `[preprocess]` of a sidecar or a bundle). A session compiles the plan of
/// each new input size on the first frame that needs it ([`crate::Plan::input_for_frame`]).
/// `turn` and `follow` are for fully convolutional models and ones that end in a global pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aspect {
    /// The input size stays as compiled, whatever the frame's shape.
    #[default]
    Fixed,
    /// The compiled size turned a quarter for a frame of the other orientation: a portrait
    /// frame runs a 288x160 model at 160x288 instead of being squashed across; within an
    /// orientation the frame is stretched as with `fixed`. For heads trained on frames
    /// stretched to the compiled size.
    Turn,
    /// The compiled size's shorter side along the frame's shorter side, the longer side the
    /// frame's aspect times it (rounded to a multiple of the model's total stride, at most the
    /// compiled longer side): a 288x160 model runs a 4:3 frame at 224x160 and a portrait 3:4
    /// one at 160x224, at the compiled scale, unstretched, for no more than the compiled cost.
    Follow,
}

/// Frame → model input: fit, then `x = (p / 255 - mean[c]) / std[c]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    pub fit: Fit,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub resample: Resample,
    pub aspect: Aspect,
}

impl Default for Preprocess {
    /// Stretch to size, values in [0, 1].
    fn default() -> Self {
        Self { fit: Fit::Stretch, mean: [0.0; 3], std: [1.0; 3], resample: Resample::Area, aspect: Aspect::Fixed }
    }
}

impl Preprocess {
    /// torchvision ImageNet: resize 256, centre crop 224, ImageNet mean and std.
    pub fn imagenet() -> Self {
        Self {
            fit: Fit::CenterCrop { shorter: Some(256) },
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            ..Self::default()
        }
    }
    /// `(p - 127) / 128`, centre crop (EfficientNet-Lite).
    pub fn tf_symmetric() -> Self {
        Self {
            fit: Fit::CenterCrop { shorter: Some(256) },
            mean: [127.0 / 255.0; 3],
            std: [128.0 / 255.0; 3],
            ..Self::default()
        }
    }
    /// Values in [-1, 1], stretched (MediaPipe detectors).
    pub fn signed_unit() -> Self {
        Self { mean: [0.5; 3], std: [0.5; 3], ..Self::default() }
    }

    /// Pillow's resize of `fit`: the source box, the full resized size and the window of it
    /// that is the model input.
    fn pil_geometry(&self, fw: usize, fh: usize, input: Shape) -> (pil::SourceBox, (usize, usize), pil::Region) {
        let full = ((0.0, fw as f64), (0.0, fh as f64));
        let whole = (0, 0, input.w, input.h);
        match self.fit {
            Fit::Stretch => (full, (input.w, input.h), whole),
            Fit::CenterCrop { shorter: Some(s) } => {
                // A crop larger than the resized frame: the frame is resized to cover it.
                let (rw, rh) = pil::torchvision_size(fw, fh, s);
                let (rw, rh) = (rw.max(input.w), rh.max(input.h));
                let window = (pil::crop_offset(rw, input.w), pil::crop_offset(rh, input.h), input.w, input.h);
                (full, (rw, rh), window)
            }
            Fit::CenterCrop { shorter: None } => {
                let (x0, y0, w, h) = self.area_region(fw, fh, input);
                let (x0, y0, w, h) = (f64::from(x0), f64::from(y0), f64::from(w), f64::from(h));
                (((x0, x0 + w), (y0, y0 + h)), (input.w, input.h), whole)
            }
        }
    }

    /// The source region `(x0, y0, width, height)` in frame pixels that maps onto the input.
    pub fn source_region(&self, fw: usize, fh: usize, input: Shape) -> (f32, f32, f32, f32) {
        match self.resample {
            Resample::Area | Resample::MediaPipe => self.area_region(fw, fh, input),
            Resample::Pil => {
                let (((bx0, bx1), (by0, by1)), (rw, rh), (x0, y0, w, h)) = self.pil_geometry(fw, fh, input);
                let (sx, sy) = ((bx1 - bx0) / rw as f64, (by1 - by0) / rh as f64);
                let at = |o: f64, v: usize, s: f64| (o + v as f64 * s) as f32;
                (at(bx0, x0, sx), at(by0, y0, sy), at(0.0, w, sx), at(0.0, h, sy))
            }
        }
    }

    fn area_region(&self, fw: usize, fh: usize, input: Shape) -> (f32, f32, f32, f32) {
        match self.fit {
            Fit::Stretch => (0.0, 0.0, fw as f32, fh as f32),
            Fit::CenterCrop { shorter } => {
                // Scale from frame pixels to resized pixels.
                let scale = match shorter {
                    Some(s) => s as f32 / fw.min(fh) as f32,
                    None => (input.w as f32 / fw as f32).max(input.h as f32 / fh as f32),
                };
                let (cw, ch) = (input.w as f32 / scale, input.h as f32 / scale);
                let (cw, ch) = (cw.min(fw as f32), ch.min(fh as f32));
                ((fw as f32 - cw) / 2.0, (fh as f32 - ch) / 2.0, cw, ch)
            }
        }
    }

    /// Resamples `image` (bilinear, half-pixel centres, area-averaged when shrinking by 2x or
    /// more) to `input.h x input.w x 3` values on the 0–255 scale.
    /// With [`Resample::Pil`], Pillow's resize instead ([`pil`]).
    ///
    /// A camera buffer (YUV planes, rotated) is converted only in the bands of rows and the
    /// columns that the resampler reads ([`Image`]), to the values its whole conversion has.
    ///
    /// `out` is cleared and refilled whole, whatever it held.
    pub fn resample<'f>(&self, image: impl Into<Image<'f>>, input: Shape, out: &mut Vec<f32>) {
        out.clear();
        out.resize(input.h * input.w * 3, 0.0);
        self.resample_rows(image, input, 0..input.h, out);
    }

    /// Rows `rows` of what [`Preprocess::resample`] gives, into `out` (`rows.len() * input.w * 3`
    /// values). Each output row is computed as in the whole resample, so bands resampled apart
    /// (on several threads) make up the same bits.
    pub(crate) fn resample_rows<'f>(
        &self,
        image: impl Into<Image<'f>>,
        input: Shape,
        rows: Range<usize>,
        out: &mut [f32],
    ) {
        assert!(rows.end <= input.h && out.len() == rows.len() * input.w * 3, "output rows out of range");
        let image = image.into();
        let (fw, fh) = image.size();
        match self.resample {
            Resample::Pil => {
                let (boxes, size, (x0, y0, w, _)) = self.pil_geometry(fw, fh, input);
                return pil::resize(image, boxes, size, (x0, y0 + rows.start, w, rows.len()), out);
            }
            Resample::MediaPipe => {
                let region = self.area_region(fw, fh, input);
                return warp_linear(image, region, input, rows, out);
            }
            Resample::Area => {}
        }
        let (sx0, sy0, sw, sh) = self.area_region(fw, fh, input);
        // Supersample enough points per output pixel that shrinking does not alias.
        let ky = ((sh / input.h as f32).floor() as usize).max(1);
        let kx = ((sw / input.w as f32).floor() as usize).max(1);
        let inv = 1.0 / (kx * ky) as f32;
        // Bilinear taps (first index, second index, weight of the second), computed once per
        // axis: `kx` per output column, `ky` per output row.
        let taps = |n_out: usize, k: usize, start: f32, span: f32, n_in: usize| -> Vec<(usize, usize, f32)> {
            let mut t = Vec::with_capacity(n_out * k);
            for o in 0..n_out {
                for sub in 0..k {
                    let pos = start + (o as f32 + (sub as f32 + 0.5) / k as f32) * span / n_out as f32 - 0.5;
                    let p = pos.clamp(0.0, n_in as f32 - 1.0);
                    let i0 = p.floor() as usize;
                    t.push((i0, (i0 + 1).min(n_in - 1), p - i0 as f32));
                }
            }
            t
        };
        let xt = taps(input.w, kx, sx0, sw, fw);
        let yt = taps(input.h, ky, sy0, sh, fh);
        // A frame of the input's size, taken whole (a camera pipeline that scales on its own):
        // every tap falls on a pixel with weight 0, and each value below is that pixel's own
        // (`0 + (p + (q − p)·0)`, times 1, is `p` exactly), so the rows are converted as they are.
        let on_pixels = |t: &[(usize, usize, f32)], k: usize| {
            k == 1 && t.iter().enumerate().all(|(o, x)| x.2 == 0.0 && x.0 == t[0].0 + o)
        };
        if on_pixels(&xt, kx) && on_pixels(&yt, ky) {
            let mut reader = Reader::new(image, xt[0].0..xt[0].0 + input.w);
            for (oy, out_row) in rows.zip(out.chunks_exact_mut(input.w * 3)) {
                let y = yt[oy].0;
                let view = reader.rows(y..y + 1);
                match view.channels {
                    4 => widen::<4>(view.row(y), out_row),
                    _ => widen::<3>(view.row(y), out_row),
                }
            }
            return;
        }
        // Separable: per output row, the `ky` vertical blends summed per source column (whole
        // rows, contiguous), then the `kx` horizontal blends of those sums per output pixel.
        let xlo = xt.iter().map(|t| t.0).min().unwrap_or(0);
        let xhi = xt.iter().map(|t| t.1).max().unwrap_or(0);
        let mut cols = vec![0.0f32; (xhi + 1 - xlo) * 3];
        let cols = cols.as_mut_slice();
        let mut reader = Reader::new(image, xlo..xhi + 1);
        for (oy, out_row) in rows.zip(out.chunks_exact_mut(input.w * 3)) {
            cols.fill(0.0);
            let yt = &yt[oy * ky..(oy + 1) * ky];
            let rows = yt.iter().map(|t| t.0).min().unwrap_or(0)..yt.iter().map(|t| t.1).max().unwrap_or(0) + 1;
            let view = reader.rows(rows);
            for &(y0, y1, ty) in yt {
                let (r0, r1) = (view.row(y0), view.row(y1));
                match view.channels {
                    4 => blend_rows::<4>(r0, r1, ty, cols),
                    _ => blend_rows::<3>(r0, r1, ty, cols),
                }
            }
            for (ox, o) in out_row.chunks_exact_mut(3).enumerate() {
                let mut acc = [0.0f32; 3];
                for &(x0, x1, tx) in &xt[ox * kx..(ox + 1) * kx] {
                    let (p, q) = (&cols[(x0 - xlo) * 3..][..3], &cols[(x1 - xlo) * 3..][..3]);
                    for c in 0..3 {
                        acc[c] += p[c] + (q[c] - p[c]) * tx;
                    }
                }
                for c in 0..3 {
                    o[c] = acc[c] * inv;
                }
            }
        }
    }

    /// Normalises one pixel run (0–255 scale, RGB interleaved) into `dst`.
    pub fn normalize(&self, src: &[f32], dst: &mut [f32]) {
        // Four pixels at a time (twelve values, the channels' factors repeated), which
        // vectorises; then the pixels left over.
        let scale: [f32; 12] = std::array::from_fn(|i| 1.0 / (255.0 * self.std[i % 3]));
        let shift: [f32; 12] = std::array::from_fn(|i| self.mean[i % 3] / self.std[i % 3]);
        let mut d = dst.chunks_exact_mut(12);
        let mut s = src.chunks_exact(12);
        for (d, s) in (&mut d).zip(&mut s) {
            for i in 0..12 {
                d[i] = s[i] * scale[i] - shift[i];
            }
        }
        for (d, s) in d.into_remainder().chunks_exact_mut(3).zip(s.remainder().chunks_exact(3)) {
            for c in 0..3 {
                d[c] = s[c] * scale[c] - shift[c];
            }
        }
    }
}

/// MediaPipe's resampling ([`Resample::MediaPipe`]) of the frame region `(x0, y0, w, h)` to
/// `input`: bilinear at `x0 + x · w / W` (corner-aligned), borders replicated, each value
/// rounded to a byte (half to even). All in f32, which is OpenCV 5's `warpPerspective` for an
/// upright region exactly; OpenCV 4's fixed-point path (5-bit positions, 15-bit weights) is
/// within one grey level of it. Output rows `rows` only, into `out`.
fn warp_linear(
    image: Image<'_>,
    (x0, y0, w, h): (f32, f32, f32, f32),
    input: Shape,
    rows: Range<usize>,
    out: &mut [f32],
) {
    let (fw, fh) = image.size();
    let (xt, yt) = (ColumnTaps::new(warp_taps(input.w, x0, w, fw)), warp_taps(input.h, y0, h, fh));
    let mut reader = Reader::new(image, xt.xlo..xt.xlo + xt.reach.max(1));
    // Separable in the order of the per-pixel formula: each source row's horizontal blends (the
    // `top` and `bottom` of a pixel) are computed once, into one of two slots, and kept while
    // the next output rows read the same source row (an upscale reads each about twice).
    let w3 = input.w * 3;
    let mut slots = vec![0.0f32; 2 * w3];
    let (mut a, mut b) = slots.split_at_mut(w3);
    // The source rows that `a` and `b` hold (`a` the top of the current output row, `b` its
    // bottom).
    let mut held = [usize::MAX; 2];
    let mut padded = Vec::new();
    let simd = has_simd();
    for (&(r0, r1, fy), out_row) in yt[rows].iter().zip(out.chunks_exact_mut(w3)) {
        if held[1] == r0 && held[0] != r0 {
            // The last output row's bottom is this one's top.
            std::mem::swap(&mut a, &mut b);
            held.swap(0, 1);
        }
        let [top, bottom] = &mut held;
        for (r, slot, tag) in [(r0, &mut *a, top), (r1, &mut *b, bottom)] {
            if *tag != r {
                let view = reader.rows(r..r + 1);
                pad_row(view.row(r), view.channels, 0, &mut padded);
                blend_columns(&padded, view.channels, &xt, simd, slot);
                *tag = r;
            }
        }
        for ((o, &t), &u) in out_row.iter_mut().zip(&*a).zip(&*b) {
            *o = round_to_byte(t * (1.0 - fy) + u * fy);
        }
    }
}

/// Copies `row` into `out` with `k` zero pixels and one spare byte after it, so that a
/// resampler can read any of its pixels, and up to `k` past them, as four bytes (for RGB, the
/// next pixel's first byte comes along and its lane is dropped).
fn pad_row(row: &[u8], channels: usize, k: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(row);
    out.resize(row.len() + k * channels + 1, 0);
}

/// Whether the resamplers' 4-lane paths run on this CPU: SSE4.1 (every x86-64 CPU with AVX2
/// has it) or NEON (every aarch64 CPU).
fn has_simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("sse4.1")
    }
    #[cfg(target_arch = "aarch64")]
    {
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// One source row's horizontal blends for [`warp_linear`], three per output column:
/// `row[c0] * (1 - fx) + row[c1] * fx` (`channels` bytes per pixel, the window starting at
/// `xlo`). `row` comes from [`pad_row`]; where `simd` ([`has_simd`]) each blend is one 4-lane
/// operation on four bytes of each pixel, with the same products and sum per lane (the same
/// bits).
fn blend_columns(row: &[u8], channels: usize, taps: &ColumnTaps, simd: bool, dst: &mut [f32]) {
    let ColumnTaps { taps: xt, xlo, reach } = taps;
    let (xt, xlo) = (xt.as_slice(), *xlo);
    // Every pixel's four bytes lie in `row`, whatever the pixel size, and `dst` holds three
    // values per column.
    assert!(*reach == 0 || (reach - 1) * channels + 4 <= row.len(), "blend_columns: taps past the row");
    assert!(dst.len() >= xt.len() * 3, "blend_columns: output too short");
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: SSE4.1 was detected (`has_simd`); the bounds were asserted above.
        return unsafe { blend_columns_sse41(row, channels, xt, xlo, dst) };
    }
    #[cfg(target_arch = "aarch64")]
    if simd {
        // SAFETY: NEON is part of aarch64; the bounds were asserted above.
        return unsafe { blend_columns_neon(row, channels, xt, xlo, dst) };
    }
    let _ = simd;
    for (d, &(c0, c1, fx)) in dst.chunks_exact_mut(3).zip(xt) {
        let (p, q) = (&row[(c0 - xlo) * channels..][..3], &row[(c1 - xlo) * channels..][..3]);
        for k in 0..3 {
            d[k] = f32::from(p[k]) * (1.0 - fx) + f32::from(q[k]) * fx;
        }
    }
}

/// [`blend_columns`] in SSE4.1.
///
/// # Safety
/// SSE4.1 must be available; four bytes at every tap's pixel must lie in `row`, and `dst` must
/// hold three values per tap.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.1")]
unsafe fn blend_columns_sse41(row: &[u8], channels: usize, xt: &[(usize, usize, f32)], xlo: usize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    /// The four bytes at `p` as floats.
    ///
    /// # Safety
    /// SSE4.1; four bytes at `p`.
    #[inline]
    #[target_feature(enable = "sse4.1")]
    unsafe fn floats(p: *const u8) -> __m128 {
        // SAFETY: the contract.
        let v = unsafe { p.cast::<i32>().read_unaligned() };
        _mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(v)))
    }
    for (x, &(c0, c1, fx)) in xt.iter().enumerate() {
        // SAFETY: SSE4.1 (the contract); four bytes at pixels `c0 - xlo` and `c1 - xlo` lie in
        // `row` (the contract).
        let (p, q) = unsafe {
            (floats(row.as_ptr().add((c0 - xlo) * channels)), floats(row.as_ptr().add((c1 - xlo) * channels)))
        };
        let v = _mm_add_ps(_mm_mul_ps(p, _mm_set1_ps(1.0 - fx)), _mm_mul_ps(q, _mm_set1_ps(fx)));
        let mut lanes = [0.0f32; 4];
        // SAFETY: `lanes` holds four floats.
        unsafe { _mm_storeu_ps(lanes.as_mut_ptr(), v) };
        dst[x * 3..x * 3 + 3].copy_from_slice(&lanes[..3]);
    }
}

/// [`blend_columns`] in NEON.
///
/// # Safety
/// As for [`blend_columns_sse41`], less SSE4.1.
#[cfg(target_arch = "aarch64")]
unsafe fn blend_columns_neon(row: &[u8], channels: usize, xt: &[(usize, usize, f32)], xlo: usize, dst: &mut [f32]) {
    use std::arch::aarch64::*;
    for (x, &(c0, c1, fx)) in xt.iter().enumerate() {
        let mut lanes = [0.0f32; 4];
        // SAFETY: NEON is part of aarch64; four bytes at pixels `c0 - xlo` and `c1 - xlo` lie
        // in `row` (the contract); `lanes` holds four floats.
        unsafe {
            let floats = |p: *const u8| {
                let v = p.cast::<u32>().read_unaligned();
                vcvtq_f32_u32(vmovl_u16(vget_low_u16(vmovl_u8(vcreate_u8(u64::from(v))))))
            };
            let p = floats(row.as_ptr().add((c0 - xlo) * channels));
            let q = floats(row.as_ptr().add((c1 - xlo) * channels));
            // Two products and a sum, not a fused multiply-add, as in the scalar form.
            vst1q_f32(lanes.as_mut_ptr(), vaddq_f32(vmulq_n_f32(p, 1.0 - fx), vmulq_n_f32(q, fx)));
        }
        dst[x * 3..x * 3 + 3].copy_from_slice(&lanes[..3]);
    }
}

/// The column taps of [`warp_linear`] ([`warp_taps`]) and the source window they read: columns
/// `xlo..xlo + reach`, found once per frame so that each row's bounds check is one comparison.
struct ColumnTaps {
    taps: Vec<(usize, usize, f32)>,
    xlo: usize,
    reach: usize,
}

impl ColumnTaps {
    fn new(taps: Vec<(usize, usize, f32)>) -> Self {
        let xlo = taps.iter().map(|t| t.0.min(t.1)).min().unwrap_or(0);
        let reach = taps.iter().map(|t| t.0.max(t.1)).max().map_or(0, |c| c + 1 - xlo);
        Self { taps, xlo, reach }
    }
}

/// Per output index of one axis of [`warp_linear`]: the two source indices (clamped: replicated
/// borders) and the weight of the second.
fn warp_taps(n_out: usize, start: f32, span: f32, n_in: usize) -> Vec<(usize, usize, f32)> {
    let scale = span / n_out as f32;
    let clamp = |v: f32| v.clamp(0.0, (n_in - 1) as f32) as usize;
    (0..n_out)
        .map(|o| {
            let p = start + o as f32 * scale;
            let i = p.floor();
            (clamp(i), clamp(i + 1.0), p - i)
        })
        .collect()
}

/// `v.round_ties_even().clamp(0.0, 255.0)` for a blend of bytes (`v` in [0, 2^22]), bit for bit:
/// adding and taking away 2^23 rounds to the nearest integer, ties to even, in the default
/// rounding mode. `round_ties_even` is a library call on x86-64 without SSE4.1; this is two adds.
fn round_to_byte(v: f32) -> f32 {
    const MAGIC: f32 = 8_388_608.0;
    ((v + MAGIC) - MAGIC).clamp(0.0, 255.0)
}

/// The first three channels of each `CH`-byte pixel of `row`, as floats.
fn widen<const CH: usize>(row: &[u8], out: &mut [f32]) {
    if CH == 3 {
        for (d, &s) in out.iter_mut().zip(row) {
            *d = f32::from(s);
        }
        return;
    }
    for (d, s) in out.chunks_exact_mut(3).zip(row.chunks_exact(CH)) {
        for c in 0..3 {
            d[c] = f32::from(s[c]);
        }
    }
}

/// Adds the vertical blend `r0 + (r1 - r0) * t` of two source rows (`CH` channels per pixel,
/// the first three kept) to `cols` (three per pixel).
fn blend_rows<const CH: usize>(r0: &[u8], r1: &[u8], t: f32, cols: &mut [f32]) {
    if CH == 3 {
        // The same sums over the rows as flat runs of values, which vectorise.
        for ((&a, &b), d) in r0.iter().zip(r1).zip(cols.iter_mut()) {
            let (p, q) = (f32::from(a), f32::from(b));
            *d += p + (q - p) * t;
        }
        return;
    }
    for ((a, b), d) in r0.chunks_exact(CH).zip(r1.chunks_exact(CH)).zip(cols.chunks_exact_mut(3)) {
        for c in 0..3 {
            let (p, q) = (f32::from(a[c]), f32::from(b[c]));
            d[c] += p + (q - p) * t;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Preprocess {
        /// The straightforward per-pixel resampler that `resample` must reproduce bit for bit.
        fn resample_reference(&self, frame: &Frame<'_>, input: Shape, out: &mut Vec<f32>) {
            let (sx0, sy0, sw, sh) = self.source_region(frame.width, frame.height, input);
            out.clear();
            out.resize(input.h * input.w * 3, 0.0);
            let (fw, fh, ch) = (frame.width, frame.height, frame.channels);
            let px = |x: usize, y: usize, c: usize| frame.data[(y * fw + x) * ch + c] as f32;
            let sample = |pos: f32, n: usize| {
                let p = pos.clamp(0.0, n as f32 - 1.0);
                let i0 = p.floor() as usize;
                (i0, (i0 + 1).min(n - 1), p - i0 as f32)
            };
            // Supersample enough points per output pixel that shrinking does not alias.
            let ky = ((sh / input.h as f32).floor() as usize).max(1);
            let kx = ((sw / input.w as f32).floor() as usize).max(1);
            let inv = 1.0 / (kx * ky) as f32;
            for oy in 0..input.h {
                for ox in 0..input.w {
                    // Bilinear, blended vertically first: per tap column, the sum over the
                    // vertical taps, then the horizontal blend of the two column sums.
                    let mut acc = [0.0f32; 3];
                    for sx in 0..kx {
                        let fx = sx0 + (ox as f32 + (sx as f32 + 0.5) / kx as f32) * sw / input.w as f32 - 0.5;
                        let (x0, x1, tx) = sample(fx, fw);
                        let (mut c0, mut c1) = ([0.0f32; 3], [0.0f32; 3]);
                        for sy in 0..ky {
                            let fy = sy0 + (oy as f32 + (sy as f32 + 0.5) / ky as f32) * sh / input.h as f32 - 0.5;
                            let (y0, y1, ty) = sample(fy, fh);
                            for c in 0..3 {
                                c0[c] += px(x0, y0, c) + (px(x0, y1, c) - px(x0, y0, c)) * ty;
                                c1[c] += px(x1, y0, c) + (px(x1, y1, c) - px(x1, y0, c)) * ty;
                            }
                        }
                        for (c, a) in acc.iter_mut().enumerate() {
                            *a += c0[c] + (c1[c] - c0[c]) * tx;
                        }
                    }
                    let o = &mut out[(oy * input.w + ox) * 3..][..3];
                    for c in 0..3 {
                        o[c] = acc[c] * inv;
                    }
                }
            }
        }
    }

    /// A reproducible stream of pseudo-random bytes (a linear congruential generator).
    fn bytes(mut seed: u32) -> impl FnMut() -> u8 {
        move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 24) as u8
        }
    }

    /// `(width, height, stride)` of the NV21 test frames: padded rows, larger than a reader's
    /// band in both directions, and odd.
    const NV21: (usize, usize, usize) = (203, 131, 208);

    /// The Y and VU planes of an [`NV21`] frame, drawn from `next`.
    fn nv21_planes(next: &mut impl FnMut() -> u8) -> (Vec<u8>, Vec<u8>) {
        let (_, h, stride) = NV21;
        let y = (0..stride * h).map(|_| next()).collect();
        (y, (0..stride * h.div_ceil(2)).map(|_| next()).collect())
    }

    /// The per-pixel form of [`warp_linear`] that it must reproduce bit for bit.
    fn warp_linear_reference(
        data: &[u8],
        (fw, fh, ch): (usize, usize, usize),
        (x0, y0, w, h): (f32, f32, f32, f32),
        input: Shape,
    ) -> Vec<f32> {
        let mut out = vec![0.0; input.h * input.w * 3];
        let (xt, yt) = (warp_taps(input.w, x0, w, fw), warp_taps(input.h, y0, h, fh));
        for (oy, &(r0, r1, fy)) in yt.iter().enumerate() {
            for (ox, &(c0, c1, fx)) in xt.iter().enumerate() {
                for c in 0..3 {
                    let px = |y: usize, x: usize| f32::from(data[(y * fw + x) * ch + c]);
                    let top = px(r0, c0) * (1.0 - fx) + px(r0, c1) * fx;
                    let bottom = px(r1, c0) * (1.0 - fx) + px(r1, c1) * fx;
                    let v = top * (1.0 - fy) + bottom * fy;
                    out[(oy * input.w + ox) * 3 + c] = v.round_ties_even().clamp(0.0, 255.0);
                }
            }
        }
        out
    }

    #[test]
    fn warp_linear_matches_the_per_pixel_reference_bit_for_bit() {
        let mut next = bytes(5);
        // Every byte pair and every rounding tie, beside real geometries.
        for v in 0..=(255 * 8) {
            let v = v as f32 / 8.0;
            assert_eq!(round_to_byte(v).to_bits(), v.round_ties_even().clamp(0.0, 255.0).to_bits(), "{v}");
        }
        for (fw, fh, ch) in [(320, 240, 3), (320, 180, 4), (57, 91, 3), (640, 480, 3), (5, 7, 3)] {
            let data: Vec<u8> = (0..fw * fh * ch).map(|_| next()).collect();
            let frame = Frame { width: fw, height: fh, channels: ch, data: &data };
            for input in [Shape::new(256, 256, 3), Shape::new(144, 256, 3), Shape::new(64, 48, 3)] {
                for fit in [Fit::Stretch, Fit::CenterCrop { shorter: None }] {
                    let p = Preprocess { fit, resample: Resample::MediaPipe, ..Preprocess::default() };
                    let region = p.area_region(fw, fh, input);
                    let mut fast = Vec::new();
                    p.resample(frame, input, &mut fast);
                    let slow = warp_linear_reference(&data, (fw, fh, ch), region, input);
                    assert!(
                        fast.iter().zip(&slow).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{fw}x{fh}x{ch} -> {input:?}"
                    );
                }
            }
        }
    }

    /// The 4-lane column blends give the bits of the blends one value at a time, RGB and RGBA,
    /// up to the row's last pixel.
    #[test]
    fn simd_column_blends_equal_the_scalar_ones() {
        for channels in [3usize, 4] {
            let mut next = bytes(channels as u32);
            let row: Vec<u8> = (0..37 * channels).map(|_| next()).collect();
            let mut padded = Vec::new();
            pad_row(&row, channels, 0, &mut padded);
            let xt = ColumnTaps::new(warp_taps(50, 0.3, 36.9, 37));
            let (mut fast, mut plain) = (vec![0.0; 150], vec![0.0; 150]);
            blend_columns(&padded, channels, &xt, has_simd(), &mut fast);
            blend_columns(&padded, channels, &xt, false, &mut plain);
            assert_eq!(
                fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                plain.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }

    /// Normalising runs of whole groups of four pixels and the pixels left over gives each
    /// value of the per-value formula, bit for bit.
    #[test]
    fn normalize_matches_the_per_value_formula() {
        let p = Preprocess::imagenet();
        for pixels in [0usize, 1, 3, 4, 5, 9, 224 * 224] {
            let mut next = bytes(pixels as u32);
            let src: Vec<f32> = (0..pixels * 3).map(|_| f32::from(next())).collect();
            let mut dst = vec![f32::NAN; src.len()];
            p.normalize(&src, &mut dst);
            for (i, (&d, &s)) in dst.iter().zip(&src).enumerate() {
                let c = i % 3;
                let want = s * (1.0 / (255.0 * p.std[c])) - p.mean[c] / p.std[c];
                assert_eq!(d.to_bits(), want.to_bits(), "{pixels} pixels, value {i}");
            }
        }
    }

    #[test]
    fn resample_matches_the_per_pixel_reference_bit_for_bit() {
        let mut next = bytes(17);
        let fits = [Fit::Stretch, Fit::CenterCrop { shorter: Some(256) }, Fit::CenterCrop { shorter: None }];
        for (fw, fh, ch) in
            [(320, 240, 3), (320, 180, 4), (57, 91, 3), (640, 480, 3), (224, 224, 3), (48, 64, 4), (5, 7, 3)]
        {
            let data: Vec<u8> = (0..fw * fh * ch).map(|_| next()).collect();
            let frame = Frame { width: fw, height: fh, channels: ch, data: &data };
            for fit in fits {
                for input in
                    [Shape::new(224, 224, 3), Shape::new(256, 256, 3), Shape::new(144, 256, 3), Shape::new(64, 48, 3)]
                {
                    let p = Preprocess { fit, ..Preprocess::default() };
                    let (mut fast, mut slow) = (Vec::new(), Vec::new());
                    p.resample(frame, input, &mut fast);
                    p.resample_reference(&frame, input, &mut slow);
                    assert!(fast == slow, "{fw}x{fh}x{ch} -> {input:?} with {fit:?}");
                }
            }
        }
    }

    /// Bands of rows resampled apart (as the session's pool resamples them) make up the whole
    /// resample bit for bit, for every resampler and fit, from packed pixels and camera planes.
    #[test]
    fn bands_of_rows_make_up_the_whole_resample() {
        let mut next = bytes(41);
        let (w, h, stride) = NV21;
        let (y, vu) = nv21_planes(&mut next);
        let planes = Image::yuv(source::tests::nv21(w, h, stride, &y, &vu, YuvRange::Full), 90).unwrap();
        let rgba: Vec<u8> = (0..320 * 180 * 4).map(|_| next()).collect();
        let packed = Image::from(Frame { width: 320, height: 180, channels: 4, data: &rgba });
        let resamples = [Resample::Area, Resample::Pil, Resample::MediaPipe];
        let fits = [Fit::Stretch, Fit::CenterCrop { shorter: Some(256) }, Fit::CenterCrop { shorter: None }];
        for (image, (resample, fit)) in [planes, packed]
            .into_iter()
            .flat_map(|i| resamples.into_iter().flat_map(move |r| fits.map(move |f| (i, (r, f)))))
        {
            for input in [Shape::new(224, 224, 3), Shape::new(160, 288, 3), Shape::new(7, 5, 3)] {
                let p = Preprocess { fit, resample, ..Preprocess::default() };
                let mut whole = Vec::new();
                p.resample(image, input, &mut whole);
                for bands in [2, 3, 7] {
                    let rows = input.h.div_ceil(bands);
                    let mut banded = vec![f32::NAN; whole.len()];
                    for (k, band) in banded.chunks_mut(rows * input.w * 3).enumerate() {
                        p.resample_rows(image, input, k * rows..k * rows + band.len() / (input.w * 3), band);
                    }
                    assert!(banded == whole, "{resample:?}, {fit:?} -> {input:?} in {bands} bands");
                }
            }
        }
    }

    /// The contract for camera frames: each resampler reading the planes (rotated as it
    /// samples, converted band by band) gives what it gives on the whole frame converted to RGB
    /// and then rotated, bit for bit.
    #[test]
    fn resampling_camera_planes_equals_converting_then_resampling() {
        let mut next = bytes(29);
        let (w, h, stride) = NV21;
        let (y, vu) = nv21_planes(&mut next);
        let yuv = source::tests::nv21(w, h, stride, &y, &vu, YuvRange::Full);
        let mut rgb = Vec::new();
        yuv.to_rgb(&mut rgb).unwrap();
        let resamples = [Resample::Area, Resample::Pil, Resample::MediaPipe];
        let fits = [Fit::Stretch, Fit::CenterCrop { shorter: Some(100) }, Fit::CenterCrop { shorter: None }];
        for degrees in [0u32, 90, 180, 270] {
            // The converted frame, rotated upright by moving each pixel.
            let (uw, uh) = if degrees.is_multiple_of(180) { (w, h) } else { (h, w) };
            let upright = source::tests::rotate(&rgb, w, h, degrees);
            let planes = Image::yuv(yuv, degrees).unwrap();
            assert_eq!(planes.size(), (uw, uh));
            for (resample, fit) in resamples.into_iter().flat_map(|r| fits.map(|f| (r, f))) {
                for input in [Shape::new(64, 48, 3), Shape::new(24, 24, 3), Shape::new(150, 90, 3)] {
                    let p = Preprocess { fit, resample, ..Preprocess::default() };
                    let (mut sampled, mut converted) = (Vec::new(), Vec::new());
                    p.resample(planes, input, &mut sampled);
                    p.resample(Frame::rgb(uw, uh, &upright), input, &mut converted);
                    assert!(sampled == converted, "{degrees} degrees, {resample:?}, {fit:?} -> {input:?}");
                }
            }
        }
    }
}
