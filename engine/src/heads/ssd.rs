//! SSD-style detection as MediaPipe's BlazeFace and palm detector use it: anchors generated from
//! the layer strides, boxes and keypoints regressed relative to them, sigmoid scores, then
//! weighted non-maximum suppression (overlapping boxes are averaged by score, not dropped).

use crate::error::{Error, Result};

/// An anchor centre in normalised input coordinates (anchors have a fixed unit size).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Anchor {
    pub x: f32,
    pub y: f32,
}

/// Anchors of MediaPipe's `SsdAnchorsCalculator` with `fixed_anchor_size`: consecutive layers
/// with the same stride share one grid of `ceil(size / stride)` cells, and every cell holds
/// `per_layer` anchors per layer, centred at `(cell + offset) / grid`.
pub fn anchors(input_h: usize, input_w: usize, strides: &[usize], per_layer: usize, offset: f32) -> Vec<Anchor> {
    let mut out = Vec::new();
    for (stride, layers) in stride_groups(strides) {
        let (gh, gw) = (input_h.div_ceil(stride), input_w.div_ceil(stride));
        for y in 0..gh {
            for x in 0..gw {
                let a = Anchor { x: (x as f32 + offset) / gw as f32, y: (y as f32 + offset) / gh as f32 };
                out.extend(std::iter::repeat_n(a, layers * per_layer));
            }
        }
    }
    out
}

/// Runs of equal strides: (stride, number of layers).
fn stride_groups(strides: &[usize]) -> impl Iterator<Item = (usize, usize)> + '_ {
    strides.chunk_by(|a, b| a == b).map(|run| (run[0], run.len()))
}

/// How many anchors [`anchors`] makes, without making them; `None` when a stride is 0 or the
/// count overflows. Checked before the anchors are allocated.
pub fn anchor_count(input_h: usize, input_w: usize, strides: &[usize], per_layer: usize) -> Option<usize> {
    stride_groups(strides).try_fold(0usize, |acc, (stride, layers)| {
        if stride == 0 {
            return None;
        }
        let cells = input_h.div_ceil(stride).checked_mul(input_w.div_ceil(stride))?;
        acc.checked_add(cells.checked_mul(layers)?.checked_mul(per_layer)?)
    })
}

/// A detection in normalised input coordinates (0..1), before mapping onto the frame.
#[derive(Clone, Debug, PartialEq)]
pub struct RawDetection {
    pub score: f32,
    /// xmin, ymin, xmax, ymax.
    pub bbox: [f32; 4],
    pub keypoints: Vec<[f32; 2]>,
}

/// Decoding parameters of an SSD head.
#[derive(Clone, Debug, PartialEq)]
pub struct SsdConfig {
    pub anchors: Vec<Anchor>,
    /// Keypoints per box (6 for BlazeFace, 7 for the palm detector).
    pub keypoints: usize,
    /// Regressed values are in input pixels: divided by this (the input size) to normalise.
    pub scale: (f32, f32),
    /// Minimum sigmoid score.
    pub score_threshold: f32,
    /// Boxes overlapping more than this (IoU) are merged.
    pub iou_threshold: f32,
}

impl SsdConfig {
    /// Values per anchor in the regressor output: box (4) and keypoints (2 each).
    pub fn values_per_anchor(&self) -> usize {
        4 + 2 * self.keypoints
    }

    /// Checks the anchors against the regressor and score outputs (`[1, N, K]`, `[1, N, 1]`).
    /// Errors name the manifest field and its value.
    pub fn check(&self, head: &str, boxes: &[usize], scores: &[usize]) -> Result<()> {
        let bad = |field: &str, value: String, reason: String| Error::AnchorMismatch {
            head: head.to_owned(),
            field: field.to_owned(),
            value,
            reason,
        };
        let n = self.anchors.len();
        match boxes {
            [1, rows, k] if *rows == n && *k == self.values_per_anchor() => {}
            [1, rows, _] if *rows != n => {
                return Err(bad(
                    "strides",
                    format!("{n} anchors"),
                    format!("the strides give {n} anchors but the box output has {rows} rows ({boxes:?})"),
                ))
            }
            [1, _, k] => {
                return Err(bad(
                    "keypoints",
                    self.keypoints.to_string(),
                    format!(
                        "4 + 2 x keypoints = {} values per anchor, the box output has {k}",
                        self.values_per_anchor()
                    ),
                ))
            }
            _ => {
                return Err(bad("outputs", format!("{boxes:?}"), "the box output must be [1, anchors, values]".into()))
            }
        }
        match scores {
            [1, rows, 1] if *rows == n => Ok(()),
            _ => Err(bad(
                "strides",
                format!("{n} anchors"),
                format!("the score output {scores:?} does not hold one score per anchor"),
            )),
        }
    }

    /// Decodes boxes and scores (checked with [`SsdConfig::check`]) into detections above the
    /// threshold, after weighted non-maximum suppression, best first.
    pub fn decode(&self, boxes: &[f32], scores: &[f32]) -> Vec<RawDetection> {
        let k = self.values_per_anchor();
        let (sx, sy) = self.scale;
        let mut found = Vec::new();
        for (i, (a, &logit)) in self.anchors.iter().zip(scores).enumerate() {
            let score = 1.0 / (1.0 + (-logit.clamp(-100.0, 100.0)).exp());
            if score < self.score_threshold {
                continue;
            }
            let r = &boxes[i * k..(i + 1) * k];
            let (cx, cy) = (r[0] / sx + a.x, r[1] / sy + a.y);
            let (w, h) = (r[2] / sx, r[3] / sy);
            let keypoints = (0..self.keypoints).map(|p| [r[4 + 2 * p] / sx + a.x, r[5 + 2 * p] / sy + a.y]).collect();
            found.push(RawDetection {
                score,
                bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
                keypoints,
            });
        }
        weighted_nms(found, self.iou_threshold)
    }
}

/// Intersection over union of two boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// MediaPipe's weighted NMS: take the best remaining detection, gather every remaining one
/// that overlaps it by more than `threshold`, and replace the group by the score-weighted
/// mean of its boxes and keypoints (keeping the best score).
pub fn weighted_nms(mut dets: Vec<RawDetection>, threshold: f32) -> Vec<RawDetection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    while !dets.is_empty() {
        let best = dets.remove(0);
        // The best box always leads its group, whatever the overlap test gives for it (a
        // degenerate or NaN box overlaps nothing, not even itself).
        let (others, rest): (Vec<_>, Vec<_>) = dets.into_iter().partition(|d| iou(&best.bbox, &d.bbox) > threshold);
        dets = rest;
        let group: Vec<RawDetection> = std::iter::once(best).chain(others).collect();
        let total: f32 = group.iter().map(|d| d.score).sum();
        let mut merged = RawDetection { score: group[0].score, bbox: [0.0; 4], keypoints: group[0].keypoints.clone() };
        merged.keypoints.iter_mut().for_each(|p| *p = [0.0; 2]);
        for d in &group {
            let w = d.score / total;
            for (m, v) in merged.bbox.iter_mut().zip(&d.bbox) {
                *m += w * v;
            }
            for (m, v) in merged.keypoints.iter_mut().zip(&d.keypoints) {
                m[0] += w * v[0];
                m[1] += w * v[1];
            }
        }
        out.push(merged);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blazeface_anchors_are_896_at_mediapipe_centres() {
        let a = anchors(128, 128, &[8, 16, 16, 16], 2, 0.5);
        assert_eq!(a.len(), 896);
        // Stride 8: 16x16 cells, 2 anchors each; the first two share the first centre.
        assert_eq!(a[0], Anchor { x: 0.5 / 16.0, y: 0.5 / 16.0 });
        assert_eq!(a[1], a[0]);
        assert_eq!(a[2], Anchor { x: 1.5 / 16.0, y: 0.5 / 16.0 });
        // Stride 16 (three layers): 8x8 cells, 6 anchors each.
        assert_eq!(a[512], Anchor { x: 0.5 / 8.0, y: 0.5 / 8.0 });
        assert_eq!(a[517], a[512]);
        assert_eq!(a[518], Anchor { x: 1.5 / 8.0, y: 0.5 / 8.0 });
        assert_eq!(a[895], Anchor { x: 7.5 / 8.0, y: 7.5 / 8.0 });
    }

    fn config() -> SsdConfig {
        SsdConfig {
            anchors: vec![Anchor { x: 0.5, y: 0.5 }, Anchor { x: 0.25, y: 0.25 }, Anchor { x: 0.75, y: 0.75 }],
            keypoints: 1,
            scale: (100.0, 100.0),
            score_threshold: 0.5,
            iou_threshold: 0.3,
        }
    }

    #[test]
    fn boxes_are_relative_to_anchors_and_low_scores_are_dropped() {
        let c = config();
        // Anchor 0: centre moved by (10, -10) px, 20x40 px box, keypoint at (+5, +5) px.
        let mut boxes = vec![0.0; 3 * 6];
        boxes[..6].copy_from_slice(&[10.0, -10.0, 20.0, 40.0, 5.0, 5.0]);
        let dets = c.decode(&boxes, &[2.0, -3.0, -1.0]);
        assert_eq!(dets.len(), 1);
        let d = &dets[0];
        assert!((d.score - 0.880_797).abs() < 1e-5);
        let want = [0.5, 0.2, 0.7, 0.6];
        assert!(d.bbox.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{:?}", d.bbox);
        assert!((d.keypoints[0][0] - 0.55).abs() < 1e-6 && (d.keypoints[0][1] - 0.55).abs() < 1e-6);
    }

    #[test]
    fn overlapping_boxes_are_averaged_by_score() {
        let d =
            |score: f32, x0: f32| RawDetection { score, bbox: [x0, 0.0, x0 + 1.0, 1.0], keypoints: vec![[x0, 0.0]] };
        let out = weighted_nms(vec![d(0.6, 0.2), d(0.9, 0.0), d(0.8, 5.0)], 0.3);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].score, 0.9);
        assert!((out[0].bbox[0] - 0.6 * 0.2 / 1.5).abs() < 1e-6, "{:?}", out[0].bbox);
        assert!((out[0].keypoints[0][0] - 0.08).abs() < 1e-6);
        assert_eq!(out[1].bbox[0], 5.0);
    }

    #[test]
    fn suppression_never_panics_on_degenerate_thresholds_or_boxes() {
        // An IoU threshold of 1 or NaN, or a NaN box, used to leave the best box out of its
        // own group and index an empty one.
        let d = |score: f32, x0: f32| RawDetection { score, bbox: [x0, 0.0, x0 + 1.0, 1.0], keypoints: vec![] };
        for threshold in [1.0, f32::NAN, 2.0] {
            let out = weighted_nms(vec![d(0.6, 0.2), d(0.9, 0.0)], threshold);
            assert_eq!(out.len(), 2, "{threshold}: nothing merges, nothing is lost");
        }
        let out = weighted_nms(vec![d(0.5, f32::NAN), d(0.7, 0.0)], 0.3);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn anchor_count_matches_the_anchors_and_overflow_is_none() {
        assert_eq!(
            anchor_count(128, 128, &[8, 16, 16, 16], 2),
            Some(anchors(128, 128, &[8, 16, 16, 16], 2, 0.5).len())
        );
        assert_eq!(anchor_count(128, 128, &[8, 0], 2), None);
        assert_eq!(anchor_count(128, 128, &[1, 1], usize::MAX / 2), None);
    }

    #[test]
    fn anchor_count_mismatch_names_the_field() {
        let c = config();
        let e = c.check("faces", &[1, 4, 6], &[1, 4, 1]).unwrap_err().to_string();
        assert!(e.contains("head 'faces': strides") && e.contains("3 anchors") && e.contains("4 rows"), "{e}");
        let e = c.check("faces", &[1, 3, 16], &[1, 3, 1]).unwrap_err().to_string();
        assert!(e.contains("keypoints") && e.contains("16"), "{e}");
    }
}
