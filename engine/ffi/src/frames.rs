//! Frame conversion for the C ABI: 4-byte pixels with a row stride, YUV 4:2:0 planes with
//! strides, and rotation, into the packed RGB the engine takes.

use framecache::frame::Plane;
use framecache::{YuvImage, YuvRange};

use crate::{fail, Fail, FcPlane, FcStatus, FcYuv420, Result};

/// Largest side accepted (a guard against garbage sizes, not a limit of the engine).
pub(crate) const MAX_SIDE: usize = 16384;

pub fn check_size(w: usize, h: usize) -> Result<()> {
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return fail(FcStatus::InvalidArgument, format!("frame size {w}x{h}: each side must be 1 to {MAX_SIDE}"));
    }
    Ok(())
}

/// RGBA or BGRA rows `stride` bytes apart → packed RGB.
pub fn rgba_to_rgb(data: &[u8], w: usize, h: usize, stride: usize, bgra: bool, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(w * h * 3);
    for y in 0..h {
        for p in data[y * stride..y * stride + w * 4].chunks_exact(4) {
            if bgra {
                out.extend_from_slice(&[p[2], p[1], p[0]]);
            } else {
                out.extend_from_slice(&p[..3]);
            }
        }
    }
}

/// Bytes a plane of `w x h` samples spans.
fn span(p: &FcPlane, w: usize, h: usize, name: &str) -> Result<usize> {
    let (row, step) = (p.row_stride as usize, p.pixel_stride as usize);
    if !(1..=2).contains(&step) {
        return fail(FcStatus::InvalidArgument, format!("{name}.pixel_stride {step} must be 1 or 2"));
    }
    let row_bytes = (w - 1) * step + 1;
    if row < row_bytes {
        return fail(
            FcStatus::InvalidArgument,
            format!("{name}.row_stride {row} < {row_bytes} bytes of a {w}-sample row"),
        );
    }
    if p.data.is_null() {
        return fail(FcStatus::NullPointer, format!("`{name}.data` is null"));
    }
    Ok((h - 1) * row + row_bytes)
}

/// The engine's view of an `FcYuv420`, after checking strides.
///
/// # Safety
/// Each plane's `data` points to the bytes its strides imply for its size.
pub unsafe fn yuv_image(f: &FcYuv420) -> Result<YuvImage<'_>> {
    let (w, h) = (f.width as usize, f.height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let plane = |p: &FcPlane, w: usize, h: usize, name: &str| -> Result<Plane<'_>> {
        let len = span(p, w, h, name)?;
        // SAFETY: the caller promises `len` readable bytes at `p.data` (checked non-null).
        let data = unsafe { std::slice::from_raw_parts(p.data, len) };
        Ok(Plane { data, stride: p.row_stride as usize, step: p.pixel_stride as usize })
    };
    let range = match f.full_range {
        0 => YuvRange::Limited,
        1 => YuvRange::Full,
        r => return fail(FcStatus::InvalidArgument, format!("full_range {r} must be 0 or 1")),
    };
    let image = YuvImage {
        width: w,
        height: h,
        y: plane(&f.y, w, h, "y")?,
        u: plane(&f.u, cw, ch, "u")?,
        v: plane(&f.v, cw, ch, "v")?,
        subsample: 2,
        range,
    };
    image.validate().map_err(|e| Fail(FcStatus::Frame, e.report()))?;
    Ok(image)
}

/// Rotates packed RGB clockwise by `degrees` into `out`; returns the new size.
pub fn rotate_rgb(src: &[u8], w: usize, h: usize, degrees: u32, out: &mut Vec<u8>) -> Result<(usize, usize)> {
    let (nw, nh) = match degrees {
        0 | 180 => (w, h),
        90 | 270 => (h, w),
        d => return fail(FcStatus::InvalidArgument, format!("rotation {d} must be 0, 90, 180 or 270")),
    };
    out.clear();
    out.resize(w * h * 3, 0);
    for y in 0..nh {
        for x in 0..nw {
            // The source pixel that lands at (x, y).
            let (sx, sy) = match degrees {
                0 => (x, y),
                90 => (y, h - 1 - x),
                180 => (w - 1 - x, h - 1 - y),
                _ => (w - 1 - y, x),
            };
            out[(y * nw + x) * 3..][..3].copy_from_slice(&src[(sy * w + sx) * 3..][..3]);
        }
    }
    Ok((nw, nh))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3x2 image whose pixel (x, y) is [x, y, 7].
    fn image() -> Vec<u8> {
        (0..2).flat_map(|y| (0..3).flat_map(move |x| [x as u8, y as u8, 7])).collect()
    }

    #[test]
    fn rotation_moves_corners_clockwise() {
        let mut out = Vec::new();
        // 90 clockwise: the bottom-left pixel (0, 1) becomes the top-left.
        assert_eq!(rotate_rgb(&image(), 3, 2, 90, &mut out).ok(), Some((2, 3)));
        assert_eq!(&out[..3], &[0, 1, 7]);
        assert_eq!(&out[3..6], &[0, 0, 7]);
        assert_eq!(rotate_rgb(&image(), 3, 2, 180, &mut out).ok(), Some((3, 2)));
        assert_eq!(&out[..3], &[2, 1, 7]);
        assert_eq!(rotate_rgb(&image(), 3, 2, 270, &mut out).ok(), Some((2, 3)));
        // 270 clockwise: the top-right pixel (2, 0) becomes the top-left.
        assert_eq!(&out[..3], &[2, 0, 7]);
        let mut back = Vec::new();
        let mut tmp = Vec::new();
        rotate_rgb(&image(), 3, 2, 90, &mut tmp).ok();
        rotate_rgb(&tmp, 2, 3, 270, &mut back).ok();
        assert_eq!(back, image());
        assert!(rotate_rgb(&image(), 3, 2, 45, &mut out).is_err());
    }

    #[test]
    fn bgra_rows_with_padding_become_packed_rgb() {
        // 2x2 BGRA with 4 bytes of row padding.
        let data = [3, 2, 1, 255, 6, 5, 4, 255, 0, 0, 0, 0, 9, 8, 7, 255, 12, 11, 10, 255];
        let mut out = Vec::new();
        rgba_to_rgb(&data, 2, 2, 12, true, &mut out);
        assert_eq!(out, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    }
}
