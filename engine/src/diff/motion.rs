//! Block matching for motion-compensated reuse (DeepCache's idea, per region and aligned).
//!
//! For each dirty input tile, a search looks for the place in the tile's **reference** (the
//! input the cache was computed from) that the tile's new content came from: predictors first
//! (the neighbours' vectors and this frame's most common one), then every vector when the grid
//! holds at most [`EXHAUSTIVE`] of them, else a diamond search (the large diamond, then the
//! small one, as video encoders do). Vectors are searched on a grid of
//! `align` input pixels, so that they stay usable at layers whose cumulative stride divides
//! `align`, within `range` pixels, and only where the whole source block lies inside the
//! reference. The search minimises the mean absolute difference; the best match is accepted
//! like a clean tile, when no value differs by more than `level` grey levels. A predictor that already matches ends the search, so a pan costs a
//! probe or two per tile once the first tile has found it.

use super::Tiling;
use crate::graph::Shape;

/// Grids of at most this many vectors are searched exhaustively; larger ones by diamond search.
pub const EXHAUSTIVE: i32 = 81;

/// What change detection and block matching decided for one input tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileMotion {
    /// Within threshold of its reference: reuse in place.
    Clean,
    /// Changed and not found in the reference: recompute.
    Dirty,
    /// Its content is the reference block `dy, dx` input pixels away, i.e. the new input at
    /// `p` matches the reference at `p - (dy, dx)`.
    Shift { dy: i32, dx: i32 },
}

/// Parameters of the search.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Search {
    /// Largest |dy| and |dx|, in input pixels.
    pub range: usize,
    /// Vectors are multiples of this many input pixels (>= 1).
    pub align: usize,
    /// Accept a match whose largest absolute difference is at most this (grey levels), as a
    /// clean tile is accepted in threshold mode.
    pub level: f32,
}

/// Mean (`max == false`) or largest absolute difference between the tile `(y0..y1, x0..x1)`
/// of `current` and the same box moved by `-(dy, dx)` in `reference`; `None` when that box
/// leaves the image.
fn block_cost(
    reference: &[f32],
    current: &[f32],
    shape: Shape,
    b: (usize, usize, usize, usize),
    (dy, dx): (i32, i32),
    max: bool,
) -> Option<f32> {
    let (y0, y1, x0, x1) = b;
    let (sy0, sx0) = (y0 as i64 - i64::from(dy), x0 as i64 - i64::from(dx));
    let (sy1, sx1) = (sy0 + (y1 - y0) as i64, sx0 + (x1 - x0) as i64);
    if sy0 < 0 || sx0 < 0 || sy1 > shape.h as i64 || sx1 > shape.w as i64 {
        return None;
    }
    let (c, row) = (shape.c, shape.w * shape.c);
    let len = (x1 - x0) * c;
    let (mut sum, mut largest) = (0.0f32, 0.0f32);
    for y in y0..y1 {
        let sy = (y as i64 - i64::from(dy)) as usize;
        let a = &current[y * row + x0 * c..][..len];
        let r = &reference[sy * row + sx0 as usize * c..][..len];
        if max {
            largest = a.iter().zip(r).map(|(p, q)| (p - q).abs()).fold(largest, f32::max);
        } else {
            sum += a.iter().zip(r).map(|(p, q)| (p - q).abs()).sum::<f32>();
        }
    }
    Some(if max { largest } else { sum / ((y1 - y0) * len) as f32 })
}

/// Classifies every tile: `dirty[i] == false` tiles are [`TileMotion::Clean`]; dirty tiles are
/// searched and become [`TileMotion::Shift`] when a match is found, else stay
/// [`TileMotion::Dirty`]. Returns the classification and the number of blocks compared.
pub fn match_tiles(
    reference: &[f32],
    current: &[f32],
    shape: Shape,
    tiling: Tiling,
    dirty: &[bool],
    search: Search,
) -> (Vec<TileMotion>, usize) {
    let a = search.align.max(1) as i32;
    let range = (search.range as i32 / a) * a;
    let mut out = vec![TileMotion::Clean; tiling.len()];
    let mut probes = 0;
    // Vectors accepted so far in this frame, with how many tiles took each.
    let mut found: Vec<((i32, i32), usize)> = Vec::new();
    for ty in 0..tiling.rows {
        for tx in 0..tiling.cols {
            let i = ty * tiling.cols + tx;
            if !dirty[i] {
                continue;
            }
            let b = tiling.bounds(ty, tx, shape.h, shape.w);
            let mut cost = |dy: i32, dx: i32| -> Option<f32> {
                if dy.abs() > range || dx.abs() > range || (dy, dx) == (0, 0) {
                    return None;
                }
                probes += 1;
                block_cost(reference, current, shape, b, (dy, dx), false)
            };
            // Predictors first: the left and upper neighbours' vectors and the vector found
            // most often so far in this frame (a pan moves every tile alike).
            let mut best: Option<(f32, i32, i32)> = None;
            let consider = |c: Option<f32>, dy: i32, dx: i32, best: &mut Option<(f32, i32, i32)>| {
                if let Some(c) = c {
                    if best.is_none_or(|(b, _, _)| c < b) {
                        *best = Some((c, dy, dx));
                    }
                }
            };
            let neighbours =
                [tx.checked_sub(1).map(|x| ty * tiling.cols + x), ty.checked_sub(1).map(|y| y * tiling.cols + tx)];
            let mut predictors: Vec<(i32, i32)> = neighbours
                .into_iter()
                .flatten()
                .filter_map(|n| match out[n] {
                    TileMotion::Shift { dy, dx } => Some((dy, dx)),
                    _ => None,
                })
                .collect();
            if let Some(&(v, _)) = found.iter().max_by_key(|(_, n)| *n) {
                predictors.push(v);
            }
            predictors.dedup();
            for (dy, dx) in predictors {
                let c = cost(dy, dx);
                consider(c, dy, dx, &mut best);
            }
            // A predictor within a quarter of the level on average ends the search.
            if best.is_none_or(|(c, _, _)| c > search.level / 4.0) {
                let steps = range / a;
                if (2 * steps + 1).pow(2) <= EXHAUSTIVE {
                    // A small grid: try every vector.
                    for sy in -steps..=steps {
                        for sx in -steps..=steps {
                            let c = cost(sy * a, sx * a);
                            consider(c, sy * a, sx * a, &mut best);
                        }
                    }
                } else {
                    // Large diamond from the best of the eight smallest steps until its centre
                    // is best, then one small diamond.
                    for (dy, dx) in [(0, a), (0, -a), (a, 0), (-a, 0), (a, a), (a, -a), (-a, a), (-a, -a)] {
                        let c = cost(dy, dx);
                        consider(c, dy, dx, &mut best);
                    }
                    if let Some(mut at) = best {
                        let large =
                            [(-2 * a, 0), (2 * a, 0), (0, -2 * a), (0, 2 * a), (-a, -a), (-a, a), (a, -a), (a, a)];
                        let small = [(-a, 0), (a, 0), (0, -a), (0, a)];
                        for pattern in [&large[..], &small[..]] {
                            loop {
                                let centre = at;
                                for &(py, px) in pattern {
                                    let (dy, dx) = (centre.1 + py, centre.2 + px);
                                    let c = cost(dy, dx);
                                    let mut b = Some(at);
                                    consider(c, dy, dx, &mut b);
                                    at = b.expect("set");
                                }
                                if at == centre || pattern.len() == small.len() {
                                    break;
                                }
                            }
                        }
                        best = Some(at);
                    }
                }
            }
            let Some(at) = best else {
                out[i] = TileMotion::Dirty;
                continue;
            };
            // Accepted like a clean tile: no value further than `level` from the moved reference.
            let largest = block_cost(reference, current, shape, b, (at.1, at.2), true).unwrap_or(f32::INFINITY);
            out[i] = if largest <= search.level {
                let v = (at.1, at.2);
                match found.iter_mut().find(|(f, _)| *f == v) {
                    Some(f) => f.1 += 1,
                    None => found.push((v, 1)),
                }
                TileMotion::Shift { dy: at.1, dx: at.2 }
            } else {
                TileMotion::Dirty
            };
        }
    }
    (out, probes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth but non-periodic test image, `h x w x 3`.
    fn image(h: usize, w: usize) -> Vec<f32> {
        (0..h * w * 3)
            .map(|i| {
                let (p, c) = (i / 3, i % 3);
                let (y, x) = ((p / w) as f32, (p % w) as f32);
                (128.0 + 60.0 * (0.21 * x + 0.13 * y + c as f32).sin() + 50.0 * (0.05 * x * y / 7.0).cos()).round()
            })
            .collect()
    }

    fn shifted(img: &[f32], h: usize, w: usize, dy: i32, dx: i32) -> Vec<f32> {
        let mut out = vec![0.0; img.len()];
        for y in 0..h {
            for x in 0..w {
                let (sy, sx) = (y as i32 - dy, x as i32 - dx);
                for c in 0..3 {
                    out[(y * w + x) * 3 + c] = if sy >= 0 && sx >= 0 && (sy as usize) < h && (sx as usize) < w {
                        img[(sy as usize * w + sx as usize) * 3 + c]
                    } else {
                        255.0
                    };
                }
            }
        }
        out
    }

    #[test]
    fn a_pan_is_found_per_tile_and_the_new_strip_stays_dirty() {
        let (h, w) = (64, 64);
        let shape = Shape::new(h, w, 3);
        let tiling = Tiling::new(h, w, 16);
        let reference = image(h, w);
        let current = shifted(&reference, h, w, 4, 8);
        let dirty = vec![true; tiling.len()];
        let search = Search { range: 16, align: 4, level: 1.0 };
        let (m, probes) = match_tiles(&reference, &current, shape, tiling, &dirty, search);
        assert!(probes > 0);
        for ty in 0..4 {
            for tx in 0..4 {
                let got = m[ty * 4 + tx];
                // Tiles in the first row or column hold some of the new strip: no source.
                let want = if ty == 0 || tx == 0 { TileMotion::Dirty } else { TileMotion::Shift { dy: 4, dx: 8 } };
                assert_eq!(got, want, "tile {ty},{tx}");
            }
        }
    }

    #[test]
    fn clean_tiles_are_not_searched_and_vectors_stay_on_the_grid_and_in_range() {
        let (h, w) = (48, 48);
        let shape = Shape::new(h, w, 3);
        let tiling = Tiling::new(h, w, 16);
        let reference = image(h, w);
        let current = shifted(&reference, h, w, 3, -5);
        let mut dirty = vec![true; tiling.len()];
        dirty[4] = false;
        let (m, _) =
            match_tiles(&reference, &current, shape, tiling, &dirty, Search { range: 8, align: 2, level: 200.0 });
        assert_eq!(m[4], TileMotion::Clean);
        for t in m {
            if let TileMotion::Shift { dy, dx } = t {
                assert!(dy % 2 == 0 && dx % 2 == 0 && dy.abs() <= 8 && dx.abs() <= 8, "{dy},{dx}");
            }
        }
    }
}
