//! Sliding-window face proposals: MTCNN's P-Net, a fully convolutional net whose output cell
//! `(y, x)` looks at a `cell`-pixel window at `stride · (x, y)` of its input. Output 0 holds the
//! class probabilities `[1, 2, h, w]` (channel 1: face), output 1 the box offsets
//! `[1, 4, h, w]` (x0, y0, x1, y1, as fractions of the window's side). Windows above the score
//! threshold are regressed, then overlapping boxes are suppressed (plain NMS, as in MTCNN: the
//! best box of each overlapping group is kept, the others dropped).
//!
//! This is the first stage of the cascade at one scale. R-Net and O-Net refine crops of these
//! boxes, which a manifest cannot express (its heads read tensors of the same frame, not
//! crops of it).

use super::ssd::{iou, RawDetection};

/// Decoding parameters of a grid head.
#[derive(Clone, Debug, PartialEq)]
pub struct GridConfig {
    /// Input pixels between neighbouring cells (2 for P-Net).
    pub stride: usize,
    /// Side of the window each cell sees, in input pixels (12 for P-Net).
    pub cell: usize,
    /// The model's input `(width, height)`, to normalise boxes.
    pub input: (usize, usize),
    /// Minimum face probability.
    pub score_threshold: f32,
    /// Boxes overlapping a better one by more than this (IoU) are dropped.
    pub iou_threshold: f32,
}

impl GridConfig {
    /// Decodes the probability map (`2 x h x w`, channel-major) and the offset map
    /// (`4 x h x w`) into boxes in normalised input coordinates, best first.
    pub fn decode(&self, probs: &[f32], offsets: &[f32], h: usize, w: usize) -> Vec<RawDetection> {
        let n = h * w;
        if probs.len() < 2 * n || offsets.len() < 4 * n {
            return Vec::new();
        }
        let (iw, ih) = (self.input.0 as f32, self.input.1 as f32);
        let side = self.cell as f32;
        let mut found = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let score = probs[n + i];
                // NaN is not `>=` anything: skipped too.
                if score.is_nan() || score < self.score_threshold {
                    continue;
                }
                let (x0, y0) = ((self.stride * x) as f32, (self.stride * y) as f32);
                let r = [offsets[i], offsets[n + i], offsets[2 * n + i], offsets[3 * n + i]];
                let bbox = [
                    (x0 + r[0] * side) / iw,
                    (y0 + r[1] * side) / ih,
                    (x0 + side + r[2] * side) / iw,
                    (y0 + side + r[3] * side) / ih,
                ];
                found.push(RawDetection { score, bbox, keypoints: Vec::new() });
            }
        }
        nms(found, self.iou_threshold)
    }
}

/// Plain non-maximum suppression: best first, each box dropped when it overlaps a kept one by
/// more than `threshold`.
pub fn nms(mut dets: Vec<RawDetection>, threshold: f32) -> Vec<RawDetection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<RawDetection> = Vec::new();
    for d in dets {
        if kept.iter().all(|k| iou(&k.bbox, &d.bbox) <= threshold) {
            kept.push(d);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GridConfig {
        GridConfig { stride: 2, cell: 12, input: (20, 16), score_threshold: 0.6, iou_threshold: 0.5 }
    }

    #[test]
    fn a_cell_above_the_threshold_gives_its_regressed_window() {
        let (h, w) = (3, 5);
        let n = h * w;
        let mut probs = vec![0.0; 2 * n];
        let mut offsets = vec![0.0; 4 * n];
        // Cell (y=1, x=2): window at (4, 2), 12 px; shifted by +1/12 of the side to the right.
        let i = w + 2;
        probs[n + i] = 0.9;
        offsets[i] = 1.0 / 12.0;
        offsets[2 * n + i] = 1.0 / 12.0;
        let d = cfg().decode(&probs, &offsets, h, w);
        assert_eq!(d.len(), 1);
        let b = d[0].bbox;
        let want = [5.0 / 20.0, 2.0 / 16.0, 17.0 / 20.0, 14.0 / 16.0];
        for (a, e) in b.iter().zip(want) {
            assert!((a - e).abs() < 1e-6, "{b:?} vs {want:?}");
        }
        assert_eq!(d[0].score, 0.9);
    }

    #[test]
    fn overlapping_windows_keep_the_best_and_nan_scores_are_skipped() {
        let (h, w) = (1, 3);
        let n = h * w;
        // Cells 0 and 1 overlap (IoU 10/14 = 0.71); cell 2 is NaN.
        let probs = [0.0, 0.0, 0.0, 0.7, 0.8, f32::NAN];
        let d = cfg().decode(&probs, &vec![0.0; 4 * n], h, w);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].score, 0.8);
        assert!((d[0].bbox[0] - 2.0 / 20.0).abs() < 1e-6);
    }

    #[test]
    fn short_outputs_decode_to_nothing() {
        assert!(cfg().decode(&[0.9; 3], &[0.0; 8], 2, 2).is_empty());
    }
}
