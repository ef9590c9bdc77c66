//! Frame conversion for the C ABI: 4-byte pixels with a row stride, YUV 4:2:0 planes with
//! strides, and rotation, checked into the engine's [`framecache::Image`].

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
