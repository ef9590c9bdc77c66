//! What the resamplers read: an [`Image`] (packed RGB(A) rows, YUV planes, or 4-byte camera
//! pixels with a row stride, each turned upright by a quarter-turn rotation), sampled band by
//! band through a [`Reader`]. A camera buffer is converted only where the resampler reads it,
//! a band of rows at a time, rotated as it is converted: no full-resolution RGB copy of the
//! frame is ever made.

use std::ops::Range;

use super::{Frame, YuvImage};
use crate::error::{Error, Result};

/// A picture for [`super::Preprocess::resample`], with the clockwise quarter turn (0, 90, 180
/// or 270 degrees) that makes it upright. Every resampler sees the upright picture.
#[derive(Clone, Copy, Debug)]
pub struct Image<'a> {
    pixels: Pixels<'a>,
    degrees: u32,
}

#[derive(Clone, Copy, Debug)]
enum Pixels<'a> {
    Packed(Frame<'a>),
    Yuv(YuvImage<'a>),
    /// 4-byte pixels, rows `stride` bytes apart; `bgra`: blue first.
    Rgba {
        data: &'a [u8],
        width: usize,
        height: usize,
        stride: usize,
        bgra: bool,
    },
}

impl<'a> From<Frame<'a>> for Image<'a> {
    fn from(frame: Frame<'a>) -> Self {
        Self { pixels: Pixels::Packed(frame), degrees: 0 }
    }
}

impl<'a> From<&Frame<'a>> for Image<'a> {
    fn from(frame: &Frame<'a>) -> Self {
        Self::from(*frame)
    }
}

impl<'a> Image<'a> {
    /// YUV planes (checked against their strides), rotated clockwise by `degrees`.
    pub fn yuv(image: YuvImage<'a>, degrees: u32) -> Result<Self> {
        image.validate()?;
        Self { pixels: Pixels::Yuv(image), degrees }.rotated(degrees)
    }

    /// RGBA or BGRA pixels (alpha ignored), rows `stride` bytes apart, rotated clockwise by
    /// `degrees`.
    pub fn rgba(
        data: &'a [u8],
        (width, height): (usize, usize),
        stride: usize,
        bgra: bool,
        degrees: u32,
    ) -> Result<Self> {
        let image = Self { pixels: Pixels::Rgba { data, width, height, stride, bgra }, degrees };
        image.validate()?;
        image.rotated(degrees)
    }

    /// The same pixels, rotated clockwise by `degrees` (0, 90, 180 or 270) before sampling.
    pub fn rotated(self, degrees: u32) -> Result<Self> {
        if !matches!(degrees, 0 | 90 | 180 | 270) {
            return Err(Error::InvalidOption {
                name: "rotation",
                value: degrees.to_string(),
                reason: "a clockwise quarter turn: 0, 90, 180 or 270".into(),
            });
        }
        Ok(Self { degrees, ..self })
    }

    /// The stored (unrotated) size.
    fn stored_size(&self) -> (usize, usize) {
        match self.pixels {
            Pixels::Packed(f) => (f.width, f.height),
            Pixels::Yuv(y) => (y.width, y.height),
            Pixels::Rgba { width, height, .. } => (width, height),
        }
    }

    /// The upright picture's `(width, height)`.
    pub fn size(&self) -> (usize, usize) {
        let (w, h) = self.stored_size();
        if self.degrees.is_multiple_of(180) {
            (w, h)
        } else {
            (h, w)
        }
    }

    /// Checks the geometry against the buffers.
    pub fn validate(&self) -> Result<()> {
        match self.pixels {
            Pixels::Packed(f) => f.validate(),
            Pixels::Yuv(y) => y.validate(),
            Pixels::Rgba { data, width, height, stride, .. } => {
                if width == 0 || height == 0 {
                    return Err(Error::EmptyFrame { width, height });
                }
                let row = width.checked_mul(4);
                if row.is_none_or(|row| row > stride) {
                    return Err(Error::InvalidOption {
                        name: "stride",
                        value: stride.to_string(),
                        reason: format!("a row of {width} pixels of 4 bytes does not fit"),
                    });
                }
                let needed = row.and_then(|row| (height - 1).checked_mul(stride)?.checked_add(row));
                match needed {
                    Some(n) if data.len() >= n => Ok(()),
                    needed => Err(Error::FrameData {
                        width,
                        height,
                        channels: 4,
                        expected: needed.unwrap_or(usize::MAX),
                        got: data.len(),
                    }),
                }
            }
        }
    }

    /// The upright picture as a packed frame: itself when it is one, else converted into `out`
    /// (four bytes a pixel, the fourth ignored) band by band.
    pub fn to_frame<'o>(&self, out: &'o mut Vec<u8>) -> Frame<'o>
    where
        'a: 'o,
    {
        if let (Pixels::Packed(f), 0) = (self.pixels, self.degrees) {
            return f;
        }
        let (w, h) = self.size();
        out.clear();
        out.reserve(w * h * 4);
        let mut reader = Reader::new(*self, 0..w);
        for y in (0..h).step_by(BAND) {
            let rows = y..(y + BAND).min(h);
            let view = reader.rows(rows.clone());
            rows.for_each(|y| out.extend_from_slice(view.row(y)));
        }
        Frame { width: w, height: h, channels: 4, data: out }
    }

    /// Rows `rows` of the stored picture, columns `cols`, as RGB and a fourth byte per pixel,
    /// each row handed to `put(row, pixels)` from the top.
    fn convert(
        &self,
        rows: Range<usize>,
        cols: Range<usize>,
        scratch: &mut Vec<u8>,
        mut put: impl FnMut(usize, &[u8]),
    ) {
        let (data, stride, channels, order) = match self.pixels {
            Pixels::Yuv(image) => return image.rows_in::<4>(rows, cols, put),
            Pixels::Packed(f) => (f.data, f.width * f.channels, f.channels, [0, 1, 2]),
            Pixels::Rgba { data, stride, bgra, .. } => (data, stride, 4, if bgra { [2, 1, 0] } else { [0, 1, 2] }),
        };
        for y in rows {
            let src = &data[y * stride + cols.start * channels..][..cols.len() * channels];
            scratch.clear();
            scratch.extend(src.chunks_exact(channels).flat_map(|p| [p[order[0]], p[order[1]], p[order[2]], 0]));
            put(y, scratch);
        }
    }
}

/// Upright rows converted per band. A quarter turn converts a band as `BAND` stored columns of
/// each stored row that the window reads, so a band's width is the length of the row segments
/// the conversion runs on, and short segments cost per-row overhead: a 1920x1080 NV21 frame
/// turned a quarter, converted through a reader, took 7.2-8.2 ms with bands of 64 and 6.1-6.6
/// with 128 (a 128-row band of a 1080-pixel window is 553 KB).
const BAND: usize = 128;

/// Stored rows per tile of a quarter turn: each band row then gets runs of 16 pixels, a whole
/// cache line, and a tile of a 64-row band is 4 KB.
const TILE: usize = 16;

/// Reads the upright picture of an [`Image`] in the column window `cols`, a few rows at a time
/// (top to bottom, or overlapping backwards by less than a band). Packed upright frames are
/// read in place; everything else is converted band by band into one buffer (four bytes a
/// pixel, so that a quarter turn moves whole words), and no full-resolution copy of the frame
/// is made.
pub(super) struct Reader<'i> {
    image: Image<'i>,
    cols: Range<usize>,
    buffers: Buffers,
    /// The upright rows the band holds.
    held: Range<usize>,
}

/// A reader's buffers, kept by each thread across frames ([`BUFFERS`]): a band is up to 1 MB,
/// and a fresh allocation per frame would be fresh pages, and page faults, every frame.
#[derive(Default)]
struct Buffers {
    band: Vec<u8>,
    /// One stored row of 4-byte pixels, for sources that are not YUV.
    scratch: Vec<u8>,
    /// A quarter turn's converted stored rows, [`TILE`] at a time.
    tile: Vec<u8>,
}

thread_local! {
    static BUFFERS: std::cell::Cell<Buffers> = std::cell::Cell::new(Buffers::default());
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        BUFFERS.set(std::mem::take(&mut self.buffers));
    }
}

/// Rows `first..` of a [`Reader`]'s window: `row(y)` is the window's pixels of row `y`.
pub(super) struct View<'v> {
    data: &'v [u8],
    stride: usize,
    first: usize,
    len: usize,
    /// Bytes per pixel: 3 or 4 (the fourth ignored).
    pub channels: usize,
}

impl View<'_> {
    #[inline(always)]
    pub fn row(&self, y: usize) -> &[u8] {
        &self.data[(y - self.first) * self.stride..][..self.len]
    }
}

impl<'i> Reader<'i> {
    pub fn new(image: Image<'i>, cols: Range<usize>) -> Self {
        Self { image, cols, buffers: BUFFERS.take(), held: 0..0 }
    }

    /// Upright rows `rows` (at most one band, unless more are asked at once) of the window.
    pub fn rows(&mut self, rows: Range<usize>) -> View<'_> {
        let cols = self.cols.clone();
        if let (Pixels::Packed(f), 0) = (self.image.pixels, self.image.degrees) {
            let stride = f.width * f.channels;
            return View {
                data: &f.data[cols.start * f.channels..],
                stride,
                first: 0,
                len: cols.len() * f.channels,
                channels: f.channels,
            };
        }
        if rows.start < self.held.start || rows.end > self.held.end {
            let (_, h) = self.image.size();
            let held = rows.start..(rows.start + BAND.max(rows.len())).min(h);
            self.fill(held.clone());
            self.held = held;
        }
        let stride = cols.len() * 4;
        View { data: &self.buffers.band, stride, first: self.held.start, len: stride, channels: 4 }
    }

    /// Converts upright rows `rows` of the window into the band.
    fn fill(&mut self, rows: Range<usize>) {
        let (sw, sh) = self.image.stored_size();
        let (cols, n) = (self.cols.clone(), rows.len());
        let stride = cols.len() * 4;
        let Buffers { band, scratch, tile } = &mut self.buffers;
        band.resize(n * stride, 0);
        let band = &mut band[..];
        match self.image.degrees {
            0 => self.image.convert(rows.clone(), cols, scratch, |sy, px| {
                band[(sy - rows.start) * stride..][..stride].copy_from_slice(px)
            }),
            180 => {
                self.image.convert(sh - rows.end..sh - rows.start, sw - cols.end..sw - cols.start, scratch, |sy, px| {
                    let dst = &mut band[(sh - 1 - sy - rows.start) * stride..][..stride];
                    for (d, s) in dst.chunks_exact_mut(4).rev().zip(px.chunks_exact(4)) {
                        d.copy_from_slice(s);
                    }
                })
            }
            // A quarter turn: stored columns are the band's rows. Stored rows are converted
            // [`TILE`] at a time into a tile, and each of its columns is then written as one run
            // of a band row, not a pixel to each of `n` rows per stored row.
            degrees => {
                let turn = degrees == 90;
                // Upright (x, y) is stored (y, sh - 1 - x) at 90 degrees, (sw - 1 - y, x) at 270.
                let (stored_rows, stored_cols) = if turn {
                    (sh - cols.end..sh - cols.start, rows)
                } else {
                    (cols.clone(), sw - rows.end..sw - rows.start)
                };
                tile.resize(TILE * n * 4, 0);
                let (end, mut held) = (stored_rows.end, 0);
                self.image.convert(stored_rows, stored_cols, scratch, |sy, px| {
                    tile[held * n * 4..][..n * 4].copy_from_slice(px);
                    held += 1;
                    if held < TILE && sy + 1 < end {
                        return;
                    }
                    // The tile holds stored rows `sy + 1 - held..=sy`: upright columns
                    // `x0..x0 + held`, in descending order at 90 degrees.
                    let x0 = if turn { sh - 1 - sy - cols.start } else { sy + 1 - held - cols.start };
                    let tile = &tile[..held * n * 4];
                    for k in 0..n {
                        let row = if turn { k } else { n - 1 - k };
                        let run = band[row * stride + x0 * 4..][..held * 4].chunks_exact_mut(4);
                        let column = tile.chunks_exact(n * 4).map(|t| &t[k * 4..k * 4 + 4]);
                        if turn {
                            run.zip(column.rev()).for_each(|(d, s)| d.copy_from_slice(s));
                        } else {
                            run.zip(column).for_each(|(d, s)| d.copy_from_slice(s));
                        }
                    }
                    held = 0;
                });
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::frame::{Plane, YuvRange};
    use proptest::prelude::*;

    /// An NV21 image (interleaved V, U) of `w x h` over the planes `y` and `vu`, rows `stride`
    /// bytes apart.
    pub(in crate::frame) fn nv21<'a>(
        w: usize,
        h: usize,
        stride: usize,
        y: &'a [u8],
        vu: &'a [u8],
        range: YuvRange,
    ) -> YuvImage<'a> {
        YuvImage {
            width: w,
            height: h,
            y: Plane { data: y, stride, step: 1 },
            u: Plane { data: &vu[1..], stride, step: 2 },
            v: Plane { data: vu, stride, step: 2 },
            subsample: 2,
            range,
        }
    }

    /// The naive rotation of packed RGB: the stored pixel that lands at each upright (x, y).
    pub(in crate::frame) fn rotate(src: &[u8], w: usize, h: usize, degrees: u32) -> Vec<u8> {
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

    /// Every window of rows `rows` read through a reader, against the same rows of `upright`.
    fn check_windows(image: Image<'_>, upright: &[u8], what: &str) {
        let (w, h) = image.size();
        for cols in [0..w, 1..w, 0..(w / 2).max(1), w / 3..w - w / 4] {
            let mut reader = Reader::new(image, cols.clone());
            // Top to bottom in steps of 3 rows, reading 5 at a time (bands overlap), then once
            // more from the top (a reader may be asked for rows behind its band).
            for start in (0..h).step_by(3).chain([0]) {
                let rows = start..(start + 5).min(h);
                let view = reader.rows(rows.clone());
                for y in rows {
                    let want = &upright[(y * w + cols.start) * 3..(y * w + cols.end) * 3];
                    let got: Vec<u8> = view.row(y).chunks(view.channels).flat_map(|p| [p[0], p[1], p[2]]).collect();
                    assert_eq!(got, want, "{what}: row {y}, columns {cols:?}");
                }
            }
        }
    }

    #[test]
    fn rotation_moves_corners_clockwise() {
        // A 3x2 RGBA image whose pixel (x, y) is [x, y, 7].
        let rgba: Vec<u8> = (0..2).flat_map(|y| (0..3).flat_map(move |x| [x as u8, y as u8, 7, 255])).collect();
        let first = |degrees| {
            let image = Image::rgba(&rgba, (3, 2), 12, false, degrees).unwrap();
            Reader::new(image, 0..image.size().0).rows(0..1).row(0)[..3].to_vec()
        };
        assert_eq!(Image::rgba(&rgba, (3, 2), 12, false, 90).unwrap().size(), (2, 3));
        // 90 clockwise: the bottom-left pixel (0, 1) becomes the top-left.
        assert_eq!(first(90), [0, 1, 7]);
        assert_eq!(first(180), [2, 1, 7]);
        // 270 clockwise: the top-right pixel (2, 0) becomes the top-left.
        assert_eq!(first(270), [2, 0, 7]);
        assert!(Image::rgba(&rgba, (3, 2), 12, false, 45).is_err());
    }

    #[test]
    fn every_source_reads_as_converted_then_rotated() {
        // An odd-sized NV21 frame (interleaved V, U) with row padding, larger than a band and
        // not a multiple of it, so that bands end inside the picture.
        let (w, h, stride) = (BAND + 7, BAND + 5, BAND + 10);
        let y: Vec<u8> = (0..stride * h).map(|i| (i * 37 % 251) as u8).collect();
        let vu: Vec<u8> = (0..stride * h.div_ceil(2)).map(|i| (i * 91 % 253) as u8).collect();
        let yuv = nv21(w, h, stride, &y, &vu, YuvRange::Limited);
        let mut rgb = Vec::new();
        yuv.to_rgb(&mut rgb).unwrap();
        // The same picture as BGRA with 8 bytes of row padding, and as packed RGBA.
        let bgra: Vec<u8> =
            rgb.chunks(w * 3).flat_map(|row| row.chunks(3).flat_map(|p| [p[2], p[1], p[0], 9]).chain([0; 8])).collect();
        let rgba: Vec<u8> = rgb.chunks(3).flat_map(|p| [p[0], p[1], p[2], 9]).collect();
        for degrees in [0, 90, 180, 270] {
            let upright = rotate(&rgb, w, h, degrees);
            let images = [
                ("nv21", Image::yuv(yuv, degrees).unwrap()),
                ("bgra", Image::rgba(&bgra, (w, h), w * 4 + 8, true, degrees).unwrap()),
                ("rgb", Image::from(Frame::rgb(w, h, &rgb)).rotated(degrees).unwrap()),
                (
                    "rgba",
                    Image::from(Frame { width: w, height: h, channels: 4, data: &rgba }).rotated(degrees).unwrap(),
                ),
            ];
            for (what, image) in images {
                check_windows(image, &upright, &format!("{what} {degrees}"));
                let mut out = Vec::new();
                let frame = image.to_frame(&mut out);
                let (uw, uh) = image.size();
                assert_eq!((frame.width, frame.height), (uw, uh));
                let packed: Vec<u8> = frame.data.chunks(frame.channels).flat_map(|p| [p[0], p[1], p[2]]).collect();
                assert!(packed == upright, "{what} {degrees}: the packed frame");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random geometries (sizes around a band, odd strides, any rotation, any subsampling
        /// layout and range), random windows and random row requests in the order a resampler
        /// makes them: every row read equals the converted, rotated frame's.
        #[test]
        fn random_geometries_read_as_converted_then_rotated(
            w in 1usize..150,
            h in 1usize..150,
            pad in 0usize..5,
            nv in any::<bool>(),
            full in any::<bool>(),
            degrees in prop::sample::select(vec![0u32, 90, 180, 270]),
            seed in any::<u32>(),
            window in (0.0f64..1.0, 0.0f64..1.0),
            steps in prop::collection::vec((0usize..8, 1usize..20), 1..40),
        ) {
            let mut state = seed;
            let mut next = move || {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            };
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            let range = if full { YuvRange::Full } else { YuvRange::Limited };
            let stride = w + pad;
            let y: Vec<u8> = (0..stride * h).map(|_| next()).collect();
            // NV21 (interleaved chroma) or I420 (two planes), with padded rows.
            let c_stride = if nv { 2 * cw + pad } else { cw + pad };
            let c: Vec<u8> = (0..c_stride * ch * 2).map(|_| next()).collect();
            let (u, v) = if nv {
                (Plane { data: &c[1..], stride: c_stride, step: 2 }, Plane { data: &c, stride: c_stride, step: 2 })
            } else {
                let (u, v) = c.split_at(c_stride * ch);
                (Plane { data: u, stride: c_stride, step: 1 }, Plane { data: v, stride: c_stride, step: 1 })
            };
            let yuv = YuvImage { width: w, height: h, y: Plane { data: &y, stride, step: 1 }, u, v, subsample: 2, range };
            let mut rgb = Vec::new();
            yuv.to_rgb(&mut rgb).unwrap();
            let upright = rotate(&rgb, w, h, degrees);
            let image = Image::yuv(yuv, degrees).unwrap();
            let (uw, uh) = image.size();
            let x0 = ((uw as f64 * window.0) as usize).min(uw - 1);
            let x1 = x0 + 1 + ((uw - x0 - 1) as f64 * window.1) as usize;
            let mut reader = Reader::new(image, x0..x1);
            let mut at = 0usize;
            for (back, len) in steps {
                // Mostly forward, now and then a little back, as the resamplers' taps go.
                let start = at.saturating_sub(back).min(uh - 1);
                let rows = start..(start + len).min(uh);
                let view = reader.rows(rows.clone());
                for y in rows.clone() {
                    let got: Vec<u8> = view.row(y).chunks(view.channels).flat_map(|p| [p[0], p[1], p[2]]).collect();
                    prop_assert_eq!(&got[..], &upright[(y * uw + x0) * 3..(y * uw + x1) * 3], "row {}", y);
                }
                at = rows.end % uh;
            }
        }
    }

    #[test]
    fn short_buffers_are_errors() {
        assert!(Image::rgba(&[0; 4 * 4 * 2 - 1], (4, 2), 16, false, 0).is_err());
        let e = Image::rgba(&[0; 64], (4, 2), 15, false, 0).unwrap_err().to_string();
        assert!(e.contains("stride") && e.contains("15"), "{e}");
        assert!(Image::rgba(&[], (0, 2), 16, false, 0).is_err());
        assert!(Image::rgba(&[0; 32], (4, 2), 16, true, 0).is_ok());
    }
}
