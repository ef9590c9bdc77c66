//! Camera frames to the packed RGB the resamplers read, rotated upright in the same pass:
//! each pixel is converted and written to its rotated place, so a rotated camera frame costs no
//! second full-resolution pass (the C ABI's path from RGBA/BGRA and YUV 4:2:0 buffers).

use super::YuvImage;
use crate::error::Result;

/// Where the pixels of a `w x h` image land when it is rotated clockwise by 0, 90, 180 or 270
/// degrees: the conversions write each pixel to its rotated place as they convert it, so a
/// rotated camera frame costs no second full-resolution pass.
#[derive(Clone, Copy, Debug)]
pub struct Rotation {
    w: usize,
    h: usize,
    degrees: u32,
}

impl Rotation {
    /// `None` unless `degrees` is 0, 90, 180 or 270.
    pub fn new(w: usize, h: usize, degrees: u32) -> Option<Self> {
        matches!(degrees, 0 | 90 | 180 | 270).then_some(Self { w, h, degrees })
    }

    /// The rotated image's `(width, height)`.
    pub fn size(&self) -> (usize, usize) {
        match self.degrees {
            0 | 180 => (self.w, self.h),
            _ => (self.h, self.w),
        }
    }
}

/// Packed RGB rows, handed over top to bottom, written into an image rotated by a
/// [`Rotation`]. Upright and upside-down rows land as contiguous runs; for a quarter turn a
/// source row becomes a column, so rows are gathered in bands of [`BAND`] and each source
/// column's band is written as one run of its rotated row (not one cache line per pixel).
struct Rotated<'o> {
    rot: Rotation,
    out: &'o mut [u8],
    band: &'o mut [u8],
    /// The first source row in `band`, and how many it holds.
    first: usize,
    rows: usize,
}

/// Source rows per band: a source column's run is then 64 pixels, 192 bytes, three whole
/// cache lines of the output, so no output line is left half written for a later band to
/// complete (1920x1080 NV21 turned a quarter: 10.4 ms with bands of 16, 8.4 with 64, 7.5 with
/// 128, which holds a 0.7 MB band at that width; `cargo bench --bench camera`, `convert_only`).
const BAND: usize = 64;

impl Rotated<'_> {
    /// Runs `write` on a [`Rotated`] writing into `out`, sized to the rotated image. A quarter
    /// turn's band lives past the image's end and is cut off afterwards, so a frame allocates
    /// nothing once `out` has grown.
    fn into<R>(rot: Rotation, out: &mut Vec<u8>, write: impl FnOnce(&mut Rotated<'_>) -> R) -> R {
        let n = rot.w * rot.h * 3;
        let band = if rot.degrees.is_multiple_of(180) { 0 } else { BAND * rot.w * 3 + 1 };
        // Every byte of the image is written, so a buffer of the right size is not cleared.
        out.resize(n + band, 0);
        let (image, band) = out.split_at_mut(n);
        let result = write(&mut Rotated { rot, out: image, band, first: 0, rows: 0 });
        out.truncate(n);
        result
    }

    /// Source row `y` (the next one), `rot.w` packed RGB pixels.
    fn push(&mut self, y: usize, row: &[u8]) {
        let (w, h) = (self.rot.w, self.rot.h);
        match self.rot.degrees {
            0 => self.out[y * w * 3..][..w * 3].copy_from_slice(row),
            180 => {
                let dst = &mut self.out[(h - 1 - y) * w * 3..][..w * 3];
                for (d, s) in dst.chunks_exact_mut(3).rev().zip(row.chunks_exact(3)) {
                    d.copy_from_slice(s);
                }
            }
            _ => {
                self.band[self.rows * w * 3..][..w * 3].copy_from_slice(row);
                self.rows += 1;
                if self.rows == BAND || y + 1 == h {
                    self.flush();
                }
            }
        }
    }

    fn flush(&mut self) {
        let (w, h, n) = (self.rot.w, self.rot.h, self.rows);
        for x in 0..w {
            // Where source pixels (x, first..first + n) land: one run of the rotated row.
            let (start, reversed) = match self.rot.degrees {
                90 => (x * h + h - self.first - n, true),
                _ => ((w - 1 - x) * h + self.first, false),
            };
            let run = &mut self.out[start * 3..][..n * 3];
            let from = |d: usize| (if reversed { n - 1 - d } else { d } * w + x) * 3;
            // The run's pixels in ascending order, four bytes at a time: each store's fourth
            // byte is overwritten by the next pixel's (the band has a byte of slack for the
            // loads), and the last pixel is three bytes, so nothing past the run is touched.
            for d in 0..n - 1 {
                let s = from(d);
                run[d * 3..d * 3 + 4].copy_from_slice(&self.band[s..s + 4]);
            }
            let s = from(n - 1);
            run[(n - 1) * 3..].copy_from_slice(&self.band[s..s + 3]);
        }
        self.first += n;
        self.rows = 0;
    }
}

/// RGBA or BGRA rows (`rot`'s size) `stride` bytes apart → packed RGB, rotated by `rot`.
pub fn rgba_to_rgb(data: &[u8], stride: usize, bgra: bool, rot: Rotation, out: &mut Vec<u8>) {
    let mut row = vec![0u8; rot.w * 3];
    Rotated::into(rot, out, |rotated| {
        for y in 0..rot.h {
            for (d, p) in row.chunks_exact_mut(3).zip(data[y * stride..y * stride + rot.w * 4].chunks_exact(4)) {
                d.copy_from_slice(&if bgra { [p[2], p[1], p[0]] } else { [p[0], p[1], p[2]] });
            }
            rotated.push(y, &row);
        }
    })
}

/// A YUV image (`rot`'s size) → packed RGB ([`YuvImage::to_rgb`]'s values), rotated by `rot`.
pub fn yuv_to_rgb(image: &YuvImage<'_>, rot: Rotation, out: &mut Vec<u8>) -> Result<()> {
    Rotated::into(rot, out, |rotated| image.for_each_rgb_row(|y, row| rotated.push(y, row)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Plane, YuvRange};

    /// A 3x2 RGBA image whose pixel (x, y) is [x, y, 7].
    fn image() -> Vec<u8> {
        (0..2).flat_map(|y| (0..3).flat_map(move |x| [x as u8, y as u8, 7, 255])).collect()
    }

    /// The naive rotation: the source pixel that lands at each (x, y) of the rotated image.
    fn rotate(src: &[u8], w: usize, h: usize, degrees: u32) -> Vec<u8> {
        let (nw, nh) = if degrees.is_multiple_of(180) { (w, h) } else { (h, w) };
        let mut out = vec![0; w * h * 3];
        for y in 0..nh {
            for x in 0..nw {
                let (sx, sy) = match degrees {
                    0 => (x, y),
                    90 => (y, h - 1 - x),
                    180 => (w - 1 - x, h - 1 - y),
                    _ => (w - 1 - y, x),
                };
                out[(y * nw + x) * 3..][..3].copy_from_slice(&src[(sy * w + sx) * 3..][..3]);
            }
        }
        out
    }

    fn rgb(degrees: u32) -> Vec<u8> {
        let mut out = Vec::new();
        rgba_to_rgb(&image(), 12, false, Rotation::new(3, 2, degrees).unwrap(), &mut out);
        out
    }

    #[test]
    fn rotation_moves_corners_clockwise() {
        assert_eq!(Rotation::new(3, 2, 90).unwrap().size(), (2, 3));
        // 90 clockwise: the bottom-left pixel (0, 1) becomes the top-left.
        assert_eq!(&rgb(90)[..6], &[0, 1, 7, 0, 0, 7]);
        assert_eq!(&rgb(180)[..3], &[2, 1, 7]);
        // 270 clockwise: the top-right pixel (2, 0) becomes the top-left.
        assert_eq!(&rgb(270)[..3], &[2, 0, 7]);
        for d in [0, 90, 180, 270] {
            assert_eq!(rgb(d), rotate(&rgb(0), 3, 2, d), "{d} degrees");
        }
        assert!(Rotation::new(3, 2, 45).is_none());
    }

    #[test]
    fn yuv_converted_rotated_equals_converted_then_rotated() {
        // An odd-sized NV21 frame (interleaved V, U) with row padding, taller than a band and
        // not a multiple of it.
        let (w, h, stride) = (37usize, BAND + 5, 40usize);
        let y: Vec<u8> = (0..stride * h).map(|i| (i * 37 % 251) as u8).collect();
        let vu: Vec<u8> = (0..stride * h.div_ceil(2)).map(|i| (i * 91 % 253) as u8).collect();
        let image = YuvImage {
            width: w,
            height: h,
            y: Plane { data: &y, stride, step: 1 },
            u: Plane { data: &vu[1..], stride, step: 2 },
            v: Plane { data: &vu, stride, step: 2 },
            subsample: 2,
            range: YuvRange::Limited,
        };
        let mut plain = Vec::new();
        image.to_rgb(&mut plain).unwrap();
        for d in [0, 90, 180, 270] {
            let mut out = Vec::new();
            yuv_to_rgb(&image, Rotation::new(w, h, d).unwrap(), &mut out).unwrap();
            assert_eq!(out, rotate(&plain, w, h, d), "{d} degrees");
        }
    }

    #[test]
    fn bgra_rows_with_padding_become_packed_rgb() {
        // 2x2 BGRA with 4 bytes of row padding.
        let data = [3, 2, 1, 255, 6, 5, 4, 255, 0, 0, 0, 0, 9, 8, 7, 255, 12, 11, 10, 255];
        let mut out = Vec::new();
        rgba_to_rgb(&data, 12, true, Rotation::new(2, 2, 0).unwrap(), &mut out);
        assert_eq!(out, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    }
}
