//! An inverted-residual block as one kernel ([`Bottleneck`]): for each band of output rows,
//! the expansion of the input rows the band reads, the depthwise convolution of the band and
//! its projection, with the expanded and depthwise bands in the kernel's scratch. So the
//! tensors that are six times the block's width never go out to memory, and the depthwise
//! convolution reads rows that the expansion has just written.
//!
//! Each step is the standalone kernel on a view of the map ([`depthwise::Source`],
//! [`OutBuf::view`]), so every value is the same bits as the three convolutions computed one
//! after the other. Expanded rows shared by two bands are kept, not recomputed; a rectangle
//! narrower than the map expands only the columns it reads.

use super::depthwise::{self, Source};
use super::{packed, pointwise, In, OutBuf, SimdLevel};
use crate::graph::{Bottleneck, Conv, Shape};
use crate::reuse::Rect;

/// Bytes of expanded rows per band: with the depthwise band and the weights, a band's working
/// set stays well inside a 1–2 MiB L2 cache.
const BAND_BYTES: usize = 256 * 1024;

/// One pointwise product of `npix` contiguous pixels of `src` into `dst`.
fn product(level: SimdLevel, conv: &Conv, src: &[f32], npix: usize, dst: &mut [f32]) {
    let call = pointwise::Call {
        src,
        src_stride: conv.cin,
        npix,
        cin: conv.cin,
        cout: conv.cout,
        packed: packed(conv, 0),
        act: conv.activation,
        dst_stride: conv.cout,
    };
    pointwise::run(level, &call, dst);
}

/// Rectangle `rect` of the block's output.
///
/// # Safety
/// As [`super::compute_rect`]: `rect` lies inside the output, and no other writer touches it.
pub(super) unsafe fn rect(
    level: SimdLevel,
    b: &Bottleneck,
    input: In<'_>,
    out: &OutBuf<'_>,
    rect: Rect,
    scratch: &mut Vec<f32>,
) {
    let dw = &b.depthwise;
    let w = &dw.window;
    let e = b.expanded();
    let (ih, iw) = (input.shape.h, input.shape.w);
    let expanded = Shape::new(ih, iw, e);
    let depthwise = Shape::new(out.shape.h, out.shape.w, e);
    // The input columns the rectangle reads, and the band height that keeps the expanded rows
    // within BAND_BYTES (at least one output row).
    let reads = depthwise::input_rect(w, rect, (ih, iw));
    let (cols, width) = (reads.x1 - reads.x0, rect.x1 - rect.x0);
    let span = w.dh * (w.kh - 1) + 1;
    let fit = BAND_BYTES / (4 * (cols * e).max(1));
    let band = (fit.saturating_sub(span) / w.sh + 1).min(rect.y1 - rect.y0);
    let rows_max = if b.expand.is_some() { (band - 1) * w.sh + span } else { 0 };
    let (e_len, d_len) = (rows_max.min(ih) * cols * e, band * width * e);
    if scratch.len() < e_len + d_len {
        scratch.resize(e_len + d_len, 0.0);
    }
    let (ebuf, dbuf) = scratch[..e_len + d_len].split_at_mut(e_len);
    let full_width = rect.x0 == 0 && rect.x1 == out.shape.w;
    // The expanded rows held in `ebuf` (from its start).
    let (mut h0, mut h1) = (0, 0);
    let mut y = rect.y0;
    while y < rect.y1 {
        let band = Rect { y0: y, y1: (y + band).min(rect.y1), ..rect };
        let need = depthwise::input_rect(w, band, (ih, iw));
        let source = match &b.expand {
            None => Source::whole(input),
            Some(ex) => {
                let row = cols * e;
                // Rows computed for the previous band that this one reads move to the front.
                let first_new = if need.y0 >= h0 && need.y0 < h1 {
                    ebuf.copy_within((need.y0 - h0) * row..(h1 - h0) * row, 0);
                    h1
                } else {
                    need.y0
                };
                if first_new < need.y1 {
                    let dst = &mut ebuf[(first_new - need.y0) * row..(need.y1 - need.y0) * row];
                    if cols == iw {
                        let src = &input.data[first_new * iw * ex.cin..need.y1 * iw * ex.cin];
                        product(level, ex, src, (need.y1 - first_new) * iw, dst);
                    } else {
                        for (iy, dst) in (first_new..need.y1).zip(dst.chunks_exact_mut(row)) {
                            let src = &input.data[(iy * iw + reads.x0) * ex.cin..][..cols * ex.cin];
                            product(level, ex, src, cols, dst);
                        }
                    }
                }
                (h0, h1) = (need.y0, need.y1.max(need.y0));
                let view = Rect { y0: h0, y1: h1, x0: reads.x0, x1: reads.x1 };
                Source { data: &ebuf[..view.area() * e], shape: expanded, view }
            }
        };
        let dband = &mut dbuf[..band.area() * e];
        // SAFETY: the band is inside the depthwise map, and its view buffer is ours alone.
        unsafe { depthwise::rect(level, dw, source, &OutBuf::view(dband, depthwise, band), band) };
        if full_width {
            // SAFETY: the band's rows are inside `rect`, which is ours (this function's contract).
            product(level, &b.project, dband, band.area(), unsafe { out.rows(band.y0, band.y1) });
        } else {
            for (oy, src) in (band.y0..band.y1).zip(dband.chunks_exact(width * e)) {
                // SAFETY: as above, one row segment of `rect`.
                product(level, &b.project, src, width, unsafe { out.row(oy, rect.x0, rect.x1) });
            }
        }
        y = band.y1;
    }
}
