//! Change detection: which input tiles differ from their reference.
//!
//! The reference of a tile is the input the cached activations were actually computed from,
//! never "the previous frame". A tile below threshold keeps its old reference, so slow changes
//! accumulate until they cross the threshold instead of drifting away unseen (DeltaCNN,
//! CBinfer). Values are on the 0–255 pixel scale, after resize/crop, before normalisation.

use crate::graph::Shape;
use crate::reuse::Mask;

/// How a tile's difference is summarised before comparing with the threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Metric {
    /// Largest absolute difference of any value in the tile.
    #[default]
    MaxAbs,
    /// Mean absolute difference over the tile's values.
    MeanAbs,
    /// Largest absolute *signed* mean difference over blocks of
    /// [`BLOCK`]x[`BLOCK`] pixels and all channels: a low-passed difference. Averaging 12
    /// values divides independent sensor noise by about 3.5, so noise alone rarely crosses the
    /// level, while an object of 3x3 pixels or more changing by `c` grey levels (it covers a
    /// whole block wherever it lies) shows as `c`, and an edge of contrast `c` moving by one
    /// pixel as at least `c / 2`.
    BlockMean,
}

/// Block size of [`Metric::BlockMean`], in pixels.
pub const BLOCK: usize = 2;

/// The square tiling of a `h x w` input; edge tiles are smaller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiling {
    pub tile: usize,
    pub rows: usize,
    pub cols: usize,
}

impl Tiling {
    pub fn new(h: usize, w: usize, tile: usize) -> Self {
        Self { tile, rows: h.div_ceil(tile), cols: w.div_ceil(tile) }
    }
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Pixel bounds `(y0, y1, x0, x1)` of tile `(ty, tx)`, clipped to `h x w`.
    pub fn bounds(&self, ty: usize, tx: usize, h: usize, w: usize) -> (usize, usize, usize, usize) {
        let t = self.tile;
        (ty * t, ((ty + 1) * t).min(h), tx * t, ((tx + 1) * t).min(w))
    }
}

/// Scores how much each tile of `frame` differs from `reference` (both `shape`, HWC), in grey
/// levels by `metric`; a tile is dirty when its score exceeds the level.
///
/// With `exact` a tile scores 0 when it is bit-identical to its reference and 1 otherwise (the
/// comparison stops at the first difference), for exact mode's level of 0.
pub fn tile_scores(
    reference: &[f32],
    frame: &[f32],
    shape: Shape,
    tiling: Tiling,
    metric: Metric,
    exact: bool,
) -> Vec<f32> {
    let mut out = vec![0.0; tiling.len()];
    tile_row_scores(reference, frame, shape, tiling, (metric, exact), 0, &mut out);
    out
}

/// [`tile_scores`] of the tile rows from `first` on, as many as `out` holds (`tiling.cols`
/// scores per tile row): what one worker computes when the tile rows are split among threads.
pub fn tile_row_scores(
    reference: &[f32],
    frame: &[f32],
    shape: Shape,
    tiling: Tiling,
    (metric, exact): (Metric, bool),
    first: usize,
    out: &mut [f32],
) {
    let row_len = shape.w * shape.c;
    let mut col = vec![0.0; tiling.tile * shape.c];
    for (k, scores) in out.chunks_exact_mut(tiling.cols).enumerate() {
        let ty = first + k;
        for (tx, score) in scores.iter_mut().enumerate() {
            let (y0, y1, x0, x1) = tiling.bounds(ty, tx, shape.h, shape.w);
            let rows = (y0..y1).map(|y| y * row_len + x0 * shape.c..y * row_len + x1 * shape.c);
            if exact {
                *score = if rows.clone().all(|r| reference[r.clone()] == frame[r]) { 0.0 } else { 1.0 };
                continue;
            }
            if metric == Metric::BlockMean {
                *score = block_mean_max(reference, frame, shape, (y0, y1, x0, x1), &mut col);
                continue;
            }
            let mut lanes = AbsDiff::default();
            for r in rows {
                lanes.add(&reference[r.clone()], &frame[r]);
            }
            let (max, sum) = lanes.finish();
            *score = match metric {
                Metric::MaxAbs => max,
                Metric::MeanAbs => sum / ((y1 - y0) * (x1 - x0) * shape.c) as f32,
                Metric::BlockMean => unreachable!("handled above"),
            };
        }
    }
}

/// Lanes of [`AbsDiff`]: as wide as the widest vector (AVX-512's 16 floats).
const LANES: usize = 16;

/// The largest and the summed absolute difference of pairs of values, kept per lane so that
/// the loop vectorises: one running maximum and one running sum over every value are chains
/// of dependent operations (a sum's order is fixed without fast-math), which made the max-abs
/// tile test of a 256x256 input cost 0.41 ms (0.09 ms in lanes).
#[derive(Default)]
struct AbsDiff {
    max: [f32; LANES],
    sum: [f32; LANES],
}

impl AbsDiff {
    fn add(&mut self, a: &[f32], b: &[f32]) {
        let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let (ar, br) = (ac.remainder(), bc.remainder());
        for (a, b) in ac.zip(bc) {
            for i in 0..LANES {
                self.lane(i, a[i], b[i]);
            }
        }
        for (i, (&a, &b)) in ar.iter().zip(br).enumerate() {
            self.lane(i, a, b);
        }
    }

    #[inline(always)]
    fn lane(&mut self, i: usize, a: f32, b: f32) {
        let d = (a - b).abs();
        // A comparison rather than `f32::max`, whose NaN rule keeps the loop from vectorising.
        if d > self.max[i] {
            self.max[i] = d;
        }
        self.sum[i] += d;
    }

    /// The largest difference, and the sum of all.
    fn finish(&self) -> (f32, f32) {
        let max = self.max.iter().fold(0.0f32, |m, &x| if x > m { x } else { m });
        (max, self.sum.iter().sum())
    }
}

/// The tiles whose score exceeds `level` (0 in exact mode: any difference).
pub fn dirty(scores: &[f32], level: f32) -> Vec<bool> {
    scores.iter().map(|&s| s > level).collect()
}

/// Whether the scene moved as a whole: more than half of the tiles have drifted by more than
/// half the level from their references. Reuse assumes that most of the picture stays put
/// (a fixed camera, a moving subject). When the camera moves instead, nearly every tile is
/// stale, and the tiles still under the level are exactly the ones whose held content is
/// drifting away from the picture (docs/results-reuse.md, the moving-clip fidelity of the delta
/// presets). Half the tiles is where a frame stops being "a subject on a background"; half the
/// level is where a tile is closer to crossing than to being still. Never in exact mode.
pub fn scene_moved(scores: &[f32], level: f32) -> bool {
    level > 0.0 && 2 * scores.iter().filter(|&&s| s > level / 2.0).count() > scores.len()
}

/// Largest |mean of `frame − reference`| over the [`BLOCK`]-pixel blocks (all channels) of the
/// region `(y0, y1, x0, x1)`; edge blocks are smaller. `col` is scratch of at least the
/// region's width times the channels: per band of block rows, the differences are summed down
/// the columns first (whole rows at a time, so the loop vectorises), then across each block.
fn block_mean_max(
    reference: &[f32],
    frame: &[f32],
    shape: Shape,
    (y0, y1, x0, x1): (usize, usize, usize, usize),
    col: &mut [f32],
) -> f32 {
    let c = shape.c;
    let col = &mut col[..(x1 - x0) * c];
    let mut max = 0.0f32;
    for by in (y0..y1).step_by(BLOCK) {
        let rows = by..(by + BLOCK).min(y1);
        col.fill(0.0);
        for y in rows.clone() {
            let at = (y * shape.w + x0) * c;
            let (p, q) = (&reference[at..at + col.len()], &frame[at..at + col.len()]);
            for ((s, q), p) in col.iter_mut().zip(q).zip(p) {
                *s += q - p;
            }
        }
        for block in col.chunks(BLOCK * c) {
            let sum: f32 = block.iter().sum();
            max = max.max(sum.abs() / (rows.len() * block.len()) as f32);
        }
    }
    max
}

/// Expands a tile map to a pixel mask over the `h x w` input.
pub fn tile_mask(tiles: &[bool], tiling: Tiling, h: usize, w: usize) -> Mask {
    let mut m = Mask::new(h, w);
    for ty in 0..tiling.rows {
        for tx in 0..tiling.cols {
            if tiles[ty * tiling.cols + tx] {
                let (y0, y1, x0, x1) = tiling.bounds(ty, tx, h, w);
                m.set_rect(y0, y1, x0, x1);
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_mode_sees_any_change_and_threshold_mode_ignores_small_ones() {
        let shape = Shape::new(4, 4, 1);
        let t = Tiling::new(4, 4, 2);
        let a = vec![10.0; 16];
        let mut b = a.clone();
        b[0] = 12.0; // tile (0,0), +2
        b[15] = 30.0; // tile (1,1), +20
        let scores = |m, level: f32| dirty(&tile_scores(&a, &b, shape, t, m, level == 0.0), level);
        assert_eq!(scores(Metric::MaxAbs, 0.0), vec![true, false, false, true]);
        assert_eq!(scores(Metric::MaxAbs, 4.0), vec![false, false, false, true]);
        // Mean over 4 values: 20/4 = 5 > 4, 2/4 = 0.5.
        assert_eq!(scores(Metric::MeanAbs, 4.0), vec![false, false, false, true]);
        assert_eq!(scores(Metric::MeanAbs, 5.0), vec![false; 4]);
    }

    #[test]
    fn block_means_ignore_zero_mean_noise_and_see_shifts_and_small_objects() {
        let shape = Shape::new(8, 8, 3);
        let t = Tiling::new(8, 8, 4);
        let a = vec![100.0; shape.len()];
        // +-9 grey levels alternating per value: max-abs sees it, block means do not.
        let noisy: Vec<f32> = a.iter().enumerate().map(|(i, v)| v + if i % 2 == 0 { 9.0 } else { -9.0 }).collect();
        assert_eq!(dirty(&tile_scores(&a, &noisy, shape, t, Metric::MaxAbs, false), 8.0), vec![true; 4]);
        assert_eq!(dirty(&tile_scores(&a, &noisy, shape, t, Metric::BlockMean, false), 8.0), vec![false; 4]);
        // One 3x3 object of +20 at pixels (5..8, 1..4), not aligned with the blocks: it covers
        // the block (6..8, 2..4) whole, in tile (1, 0) only.
        let mut obj = a.clone();
        for y in 5..8 {
            for x in 1..4 {
                for ch in 0..3 {
                    obj[(y * 8 + x) * 3 + ch] += 20.0;
                }
            }
        }
        assert_eq!(
            dirty(&tile_scores(&a, &obj, shape, t, Metric::BlockMean, false), 8.0),
            vec![false, false, true, false]
        );
        // A vertical edge (0 | 60 at x = 4) moved one pixel left: half of a block changes by 60.
        let edge =
            |at: usize| -> Vec<f32> { (0..shape.len()).map(|i| if (i / 3) % 8 >= at { 60.0 } else { 0.0 }).collect() };
        assert_eq!(
            dirty(&tile_scores(&edge(4), &edge(3), shape, t, Metric::BlockMean, false), 8.0),
            vec![true, false, true, false]
        );
    }

    #[test]
    fn edge_tiles_are_clipped() {
        let t = Tiling::new(5, 7, 4);
        assert_eq!((t.rows, t.cols), (2, 2));
        let m = tile_mask(&[false, false, false, true], t, 5, 7);
        assert_eq!(m.count(), 3);
        assert!(m.get(4, 6));
    }
}
