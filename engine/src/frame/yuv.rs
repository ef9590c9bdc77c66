//! YUV → RGB for camera and video formats: planar I420 and 4:4:4, semi-planar NV12 and NV21,
//! each plane with its own row stride (BT.601, limited or full range).

use crate::error::{Error, Result};

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
        out.clear();
        out.reserve(self.width * self.height * 3);
        self.for_each_rgb_row(|_, row| out.extend_from_slice(row))
    }

    /// Converts row by row, as [`YuvImage::to_rgb`] does, handing each row's packed RGB to
    /// `put(y, row)` from the top: a caller writes it where it wants it (rotated, say), without
    /// a second pass over the frame.
    pub fn for_each_rgb_row(&self, mut put: impl FnMut(usize, &[u8])) -> Result<()> {
        self.validate()?;
        let (w, h, s) = (self.width, self.height, self.subsample);
        let (cw, ch) = (w.div_ceil(s), h.div_ceil(s));
        let (y_scale, y_off, c_scale) = match self.range {
            YuvRange::Limited => (255.0 / 219.0, 16.0, 255.0 / 224.0),
            YuvRange::Full => (1.0, 0.0, 1.0),
        };
        // Bilinear taps from luma position to chroma samples: (i0, i1, weight of i1).
        let taps = |n: usize, cn: usize| -> Vec<(usize, usize, f32)> {
            (0..n)
                .map(|x| {
                    let c = ((x as f32 + 0.5) / s as f32 - 0.5).clamp(0.0, (cn - 1) as f32);
                    let i0 = c.floor() as usize;
                    (i0, (i0 + 1).min(cn - 1), c - i0 as f32)
                })
                .collect()
        };
        let (tx, ty) = (taps(w, cw), taps(h, ch));
        // Row by row, in passes over whole rows that the compiler vectorises: luma, then each
        // chroma plane (horizontal blends of its two rows, then the vertical one), then the
        // three channels.
        let (mut l, mut cb, mut cr) = (vec![0.0f32; w], vec![0.0f32; w], vec![0.0f32; w]);
        let (mut planar, mut row) = (vec![0u8; w * 3], vec![0u8; w * 3]);
        // The two chroma rows as floats (de-interleaved), then per pixel its taps.
        let (mut c0, mut c1) = (vec![0.0f32; cw], vec![0.0f32; cw]);
        let mut chroma = |p: &Plane<'_>, y0: usize, y1: usize, fy: f32, out: &mut [f32]| {
            for (row, c) in [(y0, &mut c0), (y1, &mut c1)] {
                let r = &p.data[row * p.stride..];
                for (i, v) in c.iter_mut().enumerate() {
                    *v = f32::from(r[i * p.step]);
                }
            }
            for (o, &(x0, x1, fx)) in out.iter_mut().zip(&tx) {
                let (a0, a1, b0, b1) = (c0[x0], c0[x1], c1[x0], c1[x1]);
                let (top, bot) = (a0 + (a1 - a0) * fx, b0 + (b1 - b0) * fx);
                *o = (top + (bot - top) * fy - 128.0) * c_scale;
            }
        };
        for (y, &(cy0, cy1, fy)) in ty.iter().enumerate() {
            let (luma, step) = (&self.y.data[y * self.y.stride..], self.y.step);
            for (x, o) in l.iter_mut().enumerate() {
                *o = (f32::from(luma[x * step]) - y_off) * y_scale;
            }
            chroma(&self.u, cy0, cy1, fy, &mut cb);
            chroma(&self.v, cy0, cy1, fy, &mut cr);
            let (r, gb) = planar.split_at_mut(w);
            let (g, b) = gb.split_at_mut(w);
            for ((((&l, &cb), &cr), r), (g, b)) in l.iter().zip(&cb).zip(&cr).zip(r.iter_mut()).zip(g.iter_mut().zip(b))
            {
                (*r, *g, *b) =
                    (to_u8(l + 1.402 * cr), to_u8(l - 0.344_136 * cb - 0.714_136 * cr), to_u8(l + 1.772 * cb));
            }
            for (x, px) in row.chunks_exact_mut(3).enumerate() {
                px.copy_from_slice(&[planar[x], planar[w + x], planar[2 * w + x]]);
            }
            put(y, &row);
        }
        Ok(())
    }
}

/// `v.round().clamp(0.0, 255.0) as u8` (rounding half away from zero), without the `roundf`
/// call that baseline x86-64 (no SSE4.1) makes of `f32::round`, and without branches (camera
/// pixels saturate unpredictably): clamped first, then truncated (one instruction; NaN to 0),
/// and rounded up when `v - trunc(v)`, exact below 2^23, is at least one half.
#[inline]
fn to_u8(v: f32) -> u8 {
    let c = v.clamp(0.0, 255.0);
    let i = c as i32;
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
