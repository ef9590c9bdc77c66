//! An inverted-residual block as one kernel ([`Bottleneck`]): for each band of output rows,
//! the expansion of the input rows the band reads, the depthwise convolution of the band and
//! its projection, with the expanded and depthwise bands in the kernel's scratch. So the
//! tensors that are six times the block's width never go out to memory, and the depthwise
//! convolution reads rows that the expansion has just written.
//!
//! Each step is the standalone kernel on a view of the map ([`depthwise::Source`],
//! [`OutBuf::view`]), so every value is the same bits as the three convolutions computed one
//! after the other. Expanded rows shared by two bands are kept, not recomputed; a rectangle
//! narrower than the map expands only the columns it reads. A session computing a cached
//! frame's rectangles keeps the whole expanded map instead, filled on demand ([`expand`],
//! [`from_expanded`]).

use super::depthwise::{self, Source};
use super::pointwise::PIXEL_BLOCK;
use super::{product, In, OutBuf, Segments, SimdLevel};
use crate::graph::{Bottleneck, Shape};
use crate::reuse::Rect;

/// Bytes of expanded rows per band: with the depthwise band and the weights, a band's working
/// set stays well inside a 1–2 MiB L2 cache. A band still has at least [`PIXEL_BLOCK`] output
/// pixels, so that each pass of the expansion and the projection over their weights serves a
/// whole block of pixels: on 14x14 maps with a 5x5 window the byte bound alone gave bands of
/// two rows (28 pixels), and each of seven bands read both products' weights again.
const BAND_BYTES: usize = 256 * 1024;

/// Where the expanded rows a band reads come from.
enum Expanded {
    /// Computed into the kernel's scratch, band by band (rows shared by two bands are kept).
    Scratch,
    /// The kernel's input is already the expanded map (or the block has no expansion).
    Given,
}

/// Rectangle `rect` of the block's output, from the block's input (the expanded rows in the
/// kernel's scratch).
///
/// # Safety
/// As [`super::compute_rect`]: `rect` lies inside the output, and no other writer touches it.
pub(super) unsafe fn rect(
    level: SimdLevel,
    b: &Bottleneck,
    input: In<'_>,
    residual: Option<In<'_>>,
    out: &OutBuf<'_>,
    rect: Rect,
    scratch: &mut Vec<f32>,
) {
    let expanded = if b.expand.is_some() { Expanded::Scratch } else { Expanded::Given };
    // SAFETY: forwarded from this function's contract.
    unsafe { bands(level, b, input, residual, out, rect, scratch, expanded) }
}

/// The disjoint rectangles `rects` of the block's output from its expanded map (whole, held by
/// a session): the depthwise convolution and the projection. One rectangle of whole rows, or a
/// projection whose weights stay in L1, goes band by band ([`super::worth_batching`]).
/// Otherwise (a cached frame's scattered rectangles) the rectangles are cut into
/// bands that fill batches of pixels: the depthwise convolution of every band of a batch goes
/// to the kernel's scratch, one projection runs over the batch, and its rows go back to their
/// places, so that each pass over the projection's weights serves a batch rather than one row
/// segment (as [`super::pointwise_rects`] does). The bits are the same either way.
///
/// # Safety
/// As [`super::compute_rects`].
pub unsafe fn from_expanded(
    level: SimdLevel,
    b: &Bottleneck,
    expanded: In<'_>,
    residual: Option<In<'_>>,
    out: &OutBuf<'_>,
    rects: &[Rect],
    scratch: &mut Vec<f32>,
) {
    assert_eq!(expanded.shape.c, b.expanded(), "the expanded map does not match the block");
    if !super::worth_batching(rects, out.shape, b.project.cin * b.project.cout) {
        for &r in rects {
            // SAFETY: forwarded from this function's contract.
            unsafe { bands(level, b, expanded, residual, out, r, scratch, Expanded::Given) };
        }
        return;
    }
    let (e, cout) = (b.expanded(), b.project.cout);
    let widest = rects.iter().map(|r| r.x1 - r.x0).max().unwrap_or(0);
    let cap = super::batch_pixels(e + cout).max(widest);
    let (dbuf, products) = super::batch_buffers(scratch, cap, e, cout);
    let depthwise = Shape::new(out.shape.h, out.shape.w, e);
    let residual = b.project.residual.map(|act| (act, residual.expect("a fused residual add reads a second input")));
    // The projection of a batch's depthwise pixels, and its rows back to their places.
    let flush = |batch: &mut Segments, dbuf: &[f32], products: &mut [f32]| {
        let n = batch.pixels;
        product(level, &b.project, &dbuf[..n * e], n, &mut products[..n * cout]);
        // SAFETY: forwarded from this function's contract.
        unsafe { super::scatter(level, batch, &products[..n * cout], out, residual) };
        batch.rows.clear();
        batch.pixels = 0;
    };
    let mut batch = Segments::default();
    for r in rects {
        let width = r.x1 - r.x0;
        let mut y = r.y0;
        while y < r.y1 {
            if batch.pixels + width > cap {
                flush(&mut batch, dbuf, products);
            }
            let rows = ((cap - batch.pixels) / width).min(r.y1 - y);
            let band = Rect { y0: y, y1: y + rows, ..*r };
            let slot = &mut dbuf[batch.pixels * e..(batch.pixels + band.area()) * e];
            // SAFETY: the band is inside the depthwise map, and its view buffer is ours alone.
            unsafe {
                depthwise::rect(
                    level,
                    &b.depthwise,
                    Source::whole(expanded),
                    &OutBuf::view(slot, depthwise, band),
                    band,
                )
            };
            batch.rows.extend((band.y0..band.y1).map(|yy| (yy, band.x0, band.x1)));
            batch.pixels += band.area();
            y = band.y1;
        }
    }
    if batch.pixels > 0 {
        flush(&mut batch, dbuf, products);
    }
}

/// The disjoint rectangles `rects` of the block's expanded map (`store`, whole) from the
/// block's input ([`super::pointwise_rects`]).
///
/// # Safety
/// As [`super::compute_rects`], for `store`.
pub unsafe fn expand(
    level: SimdLevel,
    b: &Bottleneck,
    input: In<'_>,
    store: &OutBuf<'_>,
    rects: &[Rect],
    scratch: &mut Vec<f32>,
) {
    let ex = b.expand.as_ref().expect("a bottleneck with an expansion");
    // SAFETY: forwarded from this function's contract.
    unsafe { super::pointwise_rects(level, ex, input, None, store, rects, scratch) }
}

/// The one band loop of every entry point: per band of output rows, the expanded rows it
/// reads (`expanded` says from where), then [`project_band`]. `input` is the block's input,
/// or its expanded map with [`Expanded::Given`]; `residual` is the node's second input when
/// the projection has a fused residual add.
///
/// # Safety
/// As [`rect`].
#[allow(clippy::too_many_arguments)]
unsafe fn bands(
    level: SimdLevel,
    b: &Bottleneck,
    input: In<'_>,
    residual: Option<In<'_>>,
    out: &OutBuf<'_>,
    rect: Rect,
    scratch: &mut Vec<f32>,
    expanded: Expanded,
) {
    let w = &b.depthwise.window;
    let e = b.expanded();
    let (ih, iw) = (input.shape.h, input.shape.w);
    let map = Shape::new(ih, iw, e);
    // The input columns the rectangle reads, and the band height that keeps the expanded rows
    // within BAND_BYTES (at least one output row).
    let reads = depthwise::input_rect(w, rect, (ih, iw));
    let (cols, width) = (reads.x1 - reads.x0, rect.x1 - rect.x0);
    let span = w.dh * (w.kh - 1) + 1;
    let fit = BAND_BYTES / (4 * (cols * e).max(1));
    let band = (fit.saturating_sub(span) / w.sh + 1).max(PIXEL_BLOCK.div_ceil(width.max(1))).min(rect.y1 - rect.y0);
    let rows_max = if matches!(expanded, Expanded::Scratch) { (band - 1) * w.sh + span } else { 0 };
    let (e_len, d_len) = (rows_max.min(ih) * cols * e, band * width * e);
    if scratch.len() < e_len + d_len {
        scratch.resize(e_len + d_len, 0.0);
    }
    let (ebuf, dbuf) = scratch[..e_len + d_len].split_at_mut(e_len);
    // The expanded rows computed so far (held from the start of `ebuf`).
    let (mut h0, mut h1) = (0, 0);
    let mut y = rect.y0;
    while y < rect.y1 {
        let band = Rect { y0: y, y1: (y + band).min(rect.y1), ..rect };
        let need = depthwise::input_rect(w, band, (ih, iw));
        let source = match (&b.expand, &expanded) {
            (None, _) | (_, Expanded::Given) => Source::whole(input),
            (Some(ex), Expanded::Scratch) => {
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
                Source { data: &ebuf[..view.area() * e], shape: map, view }
            }
        };
        // SAFETY: forwarded from this function's contract.
        unsafe { project_band(level, b, source, residual, out, band, dbuf) };
        y = band.y1;
    }
}

/// The depthwise convolution of `band` from `source` into `dbuf`, then its projection into
/// `out`, and the fused residual add if the projection has one.
///
/// # Safety
/// As [`rect`], for `band`.
unsafe fn project_band(
    level: SimdLevel,
    b: &Bottleneck,
    source: Source<'_>,
    residual: Option<In<'_>>,
    out: &OutBuf<'_>,
    band: Rect,
    dbuf: &mut [f32],
) {
    let e = b.expanded();
    let width = band.x1 - band.x0;
    let dband = &mut dbuf[..band.area() * e];
    let depthwise = Shape::new(out.shape.h, out.shape.w, e);
    // SAFETY: the band is inside the depthwise map, and its view buffer is ours alone.
    unsafe { depthwise::rect(level, &b.depthwise, source, &OutBuf::view(dband, depthwise, band), band) };
    if band.x0 == 0 && band.x1 == out.shape.w {
        // SAFETY: the band's rows are ours (this function's contract).
        product(level, &b.project, dband, band.area(), unsafe { out.rows(band.y0, band.y1) });
    } else {
        for (oy, src) in (band.y0..band.y1).zip(dband.chunks_exact(width * e)) {
            // SAFETY: as above, one row segment of the band.
            product(level, &b.project, src, width, unsafe { out.row(oy, band.x0, band.x1) });
        }
    }
    if let Some(act) = b.project.residual {
        let r = residual.expect("a fused residual add reads the node's second input");
        // SAFETY: the band's rows are ours; `r` is the node's residual, the output's shape.
        unsafe { super::add_residual(level, act, r, out, band) };
    }
}
