//! Decoders: what the demo window, the phone apps (through the C ABI) and the bundles show.
//! Classification (softmax top-k with labels), segmentation (a probability mask, resizable to
//! the frame), SSD detection ([`ssd`]: anchors, boxes and keypoints, weighted NMS), sliding-window
//! detection ([`grid`]: MTCNN's P-Net, NMS) and
//! keypoints (landmarks with visibility).

pub mod grid;
pub mod ssd;

use crate::config::{ModelConfig, Task};
use crate::exec::Output;
use crate::frame::Preprocess;
use crate::graph::Shape;

/// How many classes a classification head reports.
pub const TOP_K: usize = 5;

/// One class of a classification head.
#[derive(Clone, Debug, PartialEq)]
pub struct Class {
    /// Index in the model's output vector.
    pub index: usize,
    pub label: String,
    pub prob: f32,
}

/// One decoded output.
#[derive(Clone, Debug, PartialEq)]
pub enum Head {
    /// Top classes with probabilities, best first.
    Classes { output: String, top: Vec<Class> },
    /// A probability map (row-major, `width x height`) over the model's input region.
    Mask { output: String, width: usize, height: usize, probs: Vec<f32>, threshold: f32 },
    /// An output this build has no decoder for: its shape and value range.
    Values { output: String, shape: Vec<usize>, min: f32, max: f32 },
    /// Detected boxes in frame pixels, best first.
    Detections { output: String, detections: Vec<Detection> },
    /// Landmarks in frame pixels, with visibility where the model gives it, and the model's
    /// presence score for the whole set.
    Keypoints { output: String, points: Vec<Keypoint>, presence: Option<f32> },
}

/// One detected box, in frame pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    pub score: f32,
    /// xmin, ymin, xmax, ymax.
    pub bbox: [f32; 4],
    pub keypoints: Vec<[f32; 2]>,
}

/// One landmark: `x`, `y` in frame pixels, `z` in model-input pixels (depth, relative),
/// `visibility` a probability.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Keypoint {
    pub x: f32,
    pub y: f32,
    pub z: f32,
    pub visibility: Option<f32>,
}

/// Maps normalised model-input coordinates (0..1) onto the frame: the region of the frame the
/// model sees after preprocessing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameMap {
    pub x0: f32,
    pub y0: f32,
    pub w: f32,
    pub h: f32,
}

impl FrameMap {
    pub fn new(pre: &Preprocess, frame_w: usize, frame_h: usize, input: Shape) -> Self {
        let (x0, y0, w, h) = pre.source_region(frame_w, frame_h, input);
        Self { x0, y0, w, h }
    }
    pub fn point(&self, u: f32, v: f32) -> [f32; 2] {
        [self.x0 + u * self.w, self.y0 + v * self.h]
    }
}

/// How a head's outputs are decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum Decoder {
    /// Output 0: class scores `[1, N]`.
    Classify { labels: Option<Vec<String>>, top_k: usize },
    /// Output 0: a `[1, 1, H, W]` probability or logit map.
    Segment { threshold: f32 },
    /// Output 0: box regressors `[1, anchors, 4 + 2k]`, output 1: score logits `[1, anchors, 1]`.
    DetectSsd(ssd::SsdConfig),
    /// Output 0: class probabilities `[1, 2, h, w]`, output 1: box offsets `[1, 4, h, w]` of
    /// a sliding-window detector (MTCNN's P-Net, [`grid`]).
    DetectGrid(grid::GridConfig),
    /// Output 0: `count x values` per-landmark values (x, y, z in input pixels, then the
    /// visibility logit at `visibility`); output 1 (optional): a presence score.
    Keypoints { count: usize, values: usize, visibility: Option<usize>, input: (usize, usize) },
    /// Shape and value range only (heatmaps, world coordinates).
    Raw,
}

impl Decoder {
    /// Decodes a head's outputs (in the order the head lists them) for a frame mapped by `map`.
    pub fn decode(&self, outputs: &[&Output], map: &FrameMap) -> Head {
        let o = outputs[0];
        let output = o.name.clone();
        match self {
            Decoder::Classify { labels, top_k } => {
                let top = top_k_of(o, o.data.len(), labels.as_deref(), *top_k);
                Head::Classes { output, top }
            }
            Decoder::Segment { threshold } => {
                let (h, w) = mask_dims(&o.shape).unwrap_or((1, o.data.len()));
                Head::Mask { output, width: w, height: h, probs: as_probabilities(o), threshold: *threshold }
            }
            Decoder::DetectSsd(cfg) => detections(output, cfg.decode(&o.data, &outputs[1].data), map),
            Decoder::DetectGrid(cfg) => {
                let (h, w) = (o.shape[o.shape.len() - 2], o.shape[o.shape.len() - 1]);
                detections(output, cfg.decode(&o.data, &outputs[1].data, h, w), map)
            }
            Decoder::Keypoints { count, values, visibility, input } => {
                let (ih, iw) = (input.0 as f32, input.1 as f32);
                let points = o
                    .data
                    .chunks_exact(*values)
                    .take(*count)
                    .map(|v| {
                        let [x, y] = map.point(v[0] / iw, v[1] / ih);
                        let z = v.get(2).copied().unwrap_or(0.0);
                        Keypoint { x, y, z, visibility: visibility.map(|i| sigmoid(v[i])) }
                    })
                    .collect();
                let presence = outputs.get(1).and_then(|p| p.data.first()).map(|&p| {
                    if (0.0..=1.0).contains(&p) {
                        p
                    } else {
                        sigmoid(p)
                    }
                });
                Head::Keypoints { output, points, presence }
            }
            Decoder::Raw => values_of(o),
        }
    }
}

/// How closely a head's output on the cached path agrees with full inference of the same
/// frame: `("top-1 agreement", 0 or 1)`, `("mask IoU", ..)` (thresholded masks; two empty
/// masks agree), `("boxes matched", ..)` (boxes of either side with a partner of IoU >= 0.5 on
/// the other, over all boxes; 1 when both are empty) or `("keypoint error px", ..)` (mean
/// distance). `None` for raw values or mismatched kinds.
pub fn agreement(cached: &Head, full: &Head) -> Option<(&'static str, f64)> {
    match (cached, full) {
        (Head::Classes { top: a, .. }, Head::Classes { top: b, .. }) => {
            Some(("top-1 agreement", f64::from(u8::from(a.first()?.index == b.first()?.index))))
        }
        (Head::Mask { probs: a, threshold, .. }, Head::Mask { probs: b, .. }) if a.len() == b.len() => {
            Some(("mask IoU", mask_iou(a, b, *threshold).0))
        }
        (Head::Detections { detections: a, .. }, Head::Detections { detections: b, .. }) => {
            let total = a.len() + b.len();
            let matched = |xs: &[Detection], ys: &[Detection]| {
                xs.iter().filter(|x| ys.iter().any(|y| ssd::iou(&x.bbox, &y.bbox) >= 0.5)).count()
            };
            let m = matched(a, b) + matched(b, a);
            Some(("boxes matched", if total == 0 { 1.0 } else { m as f64 / total as f64 }))
        }
        (Head::Keypoints { points: a, .. }, Head::Keypoints { points: b, .. })
            if a.len() == b.len() && !a.is_empty() =>
        {
            let d: f64 = a.iter().zip(b).map(|(p, q)| f64::from((p.x - q.x).hypot(p.y - q.y))).sum();
            Some(("keypoint error px", d / a.len() as f64))
        }
        _ => None,
    }
}

/// The one mask comparison of every report: IoU of the masks `a > threshold` and
/// `b > threshold` (1 when both are empty), and the cover of `b` (the fraction of positions in
/// its mask), which says whether the IoU means anything (under 1%, it does not).
pub fn mask_iou(a: &[f32], b: &[f32], threshold: f32) -> (f64, f64) {
    let (mut inter, mut union, mut cover) = (0usize, 0usize, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x > threshold, y > threshold);
        inter += usize::from(x && y);
        union += usize::from(x || y);
        cover += usize::from(y);
    }
    let iou = if union == 0 { 1.0 } else { inter as f64 / union as f64 };
    (iou, cover as f64 / b.len().max(1) as f64)
}

/// Detections in normalised input coordinates, mapped onto the frame.
fn detections(output: String, raw: Vec<ssd::RawDetection>, map: &FrameMap) -> Head {
    let detections = raw
        .into_iter()
        .map(|d| {
            let [x0, y0] = map.point(d.bbox[0], d.bbox[1]);
            let [x1, y1] = map.point(d.bbox[2], d.bbox[3]);
            let keypoints = d.keypoints.iter().map(|p| map.point(p[0], p[1])).collect();
            Detection { score: d.score, bbox: [x0, y0, x1, y1], keypoints }
        })
        .collect();
    Head::Detections { output, detections }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn values_of(o: &Output) -> Head {
    let (min, max) = o.data.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    Head::Values { output: o.name.clone(), shape: o.shape.clone(), min, max }
}

/// A model-resolution probability mask (`width x height`, row-major) resampled bilinearly onto
/// a `frame_w x frame_h` frame; pixels outside the region the model sees are 0.
pub fn mask_to_frame(
    probs: &[f32],
    width: usize,
    height: usize,
    map: &FrameMap,
    frame_w: usize,
    frame_h: usize,
) -> Vec<f32> {
    let mut out = vec![0.0; frame_w * frame_h];
    let sample = |u: f32, v: f32| {
        let x = (u * width as f32 - 0.5).clamp(0.0, (width - 1) as f32);
        let y = (v * height as f32 - 0.5).clamp(0.0, (height - 1) as f32);
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(width - 1), (y0 + 1).min(height - 1));
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let at = |yy: usize, xx: usize| probs[yy * width + xx];
        let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
        let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
        top * (1.0 - fy) + bottom * fy
    };
    for fy in 0..frame_h {
        let v = (fy as f32 + 0.5 - map.y0) / map.h;
        if !(0.0..1.0).contains(&v) {
            continue;
        }
        for fx in 0..frame_w {
            let u = (fx as f32 + 0.5 - map.x0) / map.w;
            if (0.0..1.0).contains(&u) {
                out[fy * frame_w + fx] = sample(u, v);
            }
        }
    }
    out
}

/// `(height, width)` of a one-channel map: `[1, 1, H, W]` (ONNX, NCHW) or `[1, H, W, 1]`
/// (TFLite, NHWC); the buffer is row-major `H x W` either way.
pub fn mask_dims(shape: &[usize]) -> Option<(usize, usize)> {
    match shape {
        [1, 1, h, w] | [1, h, w, 1] => Some((*h, *w)),
        _ => None,
    }
}

/// The decoder of each output of a single model, from its sidecar's task: a classifier's
/// `[1, N]` output gives its top [`TOP_K`] classes (softmax unless the scores already are
/// probabilities), a segmenter's one-channel map its mask at the sidecar's `mask_threshold` (a
/// sigmoid when the values are logits), anything else its values. A bundle's manifest names
/// its decoders instead; both decode through [`Decoder::decode`].
pub fn sidecar_decoders<'a>(
    shapes: impl IntoIterator<Item = &'a [usize]>,
    config: &ModelConfig,
    labels: Option<&[String]>,
) -> Vec<Decoder> {
    shapes
        .into_iter()
        .map(|shape| match (config.task, shape) {
            (Task::Classify, [1, _]) => Decoder::Classify { labels: labels.map(<[String]>::to_vec), top_k: TOP_K },
            (Task::Segment, shape) if mask_dims(shape).is_some() => {
                Decoder::Segment { threshold: config.mask_threshold }
            }
            _ => Decoder::Raw,
        })
        .collect()
}

/// Decodes every output of a single model with its [`sidecar_decoders`].
pub fn decode(decoders: &[Decoder], outputs: &[Output], map: &FrameMap) -> Vec<Head> {
    decoders.iter().zip(outputs).map(|(d, o)| d.decode(&[o], map)).collect()
}

/// Softmax of `scores`.
pub fn softmax(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = scores.iter().map(|&v| (v - max).exp()).collect();
    let total: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / total).collect()
}

/// The `k` best classes of `o`: its scores as they are when the model ends in an activation
/// bounded to [0, 1] ([`Output::probabilities`], decided once per model), else their softmax.
fn top_k_of(o: &Output, n: usize, labels: Option<&[String]>, k: usize) -> Vec<Class> {
    let probs = if o.probabilities { o.data.clone() } else { softmax(&o.data) };
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let name = |i: usize| labels.filter(|l| l.len() == n).map_or_else(|| format!("class {i}"), |l| l[i].clone());
    order.into_iter().take(k).map(|i| Class { index: i, label: name(i), prob: probs[i] }).collect()
}

/// The map itself when the model ends in an activation bounded to [0, 1]
/// ([`Output::probabilities`], decided once per model, not per frame), else its sigmoid.
fn as_probabilities(o: &Output) -> Vec<f32> {
    if o.probabilities {
        o.data.clone()
    } else {
        o.data.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `outputs` as a single model with the sidecar of `task` decodes them.
    fn decode_as(task: Task, outputs: &[Output], labels: Option<&[String]>) -> Vec<Head> {
        let decoders = sidecar_decoders(outputs.iter().map(|o| o.shape.as_slice()), &config(task), labels);
        decode(&decoders, outputs, &FrameMap { x0: 0.0, y0: 0.0, w: 1.0, h: 1.0 })
    }

    fn config(task: Task) -> ModelConfig {
        let text = match task {
            Task::Classify => "task = \"classify\"\n[preprocess]\nfit = \"stretch\"\n",
            Task::Segment => "task = \"segment\"\nmask_threshold = 0.5\n[preprocess]\nfit = \"stretch\"\n",
            Task::Other => "task = \"other\"\n[preprocess]\nfit = \"stretch\"\n",
        };
        ModelConfig::parse(text, std::path::Path::new("m.onnx.toml")).unwrap()
    }

    #[test]
    fn classes_are_softmaxed_and_ranked_with_names() {
        let out = Output { name: "logits".into(), shape: vec![1, 3], data: vec![1.0, 3.0, 2.0], probabilities: false };
        let labels = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let heads = decode_as(Task::Classify, &[out], Some(&labels));
        let Head::Classes { top, .. } = &heads[0] else { panic!("{heads:?}") };
        let names: Vec<_> = top.iter().map(|c| (c.index, c.label.as_str())).collect();
        assert_eq!(names, [(1, "b"), (2, "c"), (0, "a")]);
        let total: f32 = top.iter().map(|c| c.prob).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert!((top[0].prob - 0.665_240_9).abs() < 1e-5, "{}", top[0].prob);
    }

    #[test]
    fn top_k_gives_k_classes_beyond_five() {
        // A manifest's top_k = 7 used to give 5.
        let out = Output {
            name: "s".into(),
            shape: vec![1, 10],
            data: (0..10).map(|i| i as f32).collect(),
            probabilities: false,
        };
        let top = top_k_of(&out, 10, None, 7);
        assert_eq!(top.iter().map(|c| c.index).collect::<Vec<_>>(), [9, 8, 7, 6, 5, 4, 3]);
    }

    #[test]
    fn probabilities_pass_through_and_logit_masks_get_a_sigmoid() {
        let mask = |data: Vec<f32>, probabilities| Output {
            name: "mask".into(),
            shape: vec![1, 1, 1, 2],
            data,
            probabilities,
        };
        let heads = decode_as(Task::Segment, &[mask(vec![0.0, 10.0], false)], None);
        let Head::Mask { probs, width, height, .. } = &heads[0] else { panic!("{heads:?}") };
        assert_eq!((*width, *height), (2, 1));
        assert!((probs[0] - 0.5).abs() < 1e-6 && probs[1] > 0.99);
        // Decided by the model, not by the frame: logits that happen to lie in [0, 1] are
        // still logits (they used to pass through as probabilities on such frames).
        let heads = decode_as(Task::Segment, &[mask(vec![0.0, 1.0], false)], None);
        let Head::Mask { probs, .. } = &heads[0] else { panic!("{heads:?}") };
        assert!((probs[0] - 0.5).abs() < 1e-6 && (probs[1] - 0.731_058_6).abs() < 1e-6, "{probs:?}");
        let heads = decode_as(Task::Segment, &[mask(vec![0.25, 0.75], true)], None);
        let Head::Mask { probs, .. } = &heads[0] else { panic!("{heads:?}") };
        assert_eq!(probs, &[0.25, 0.75]);
    }

    #[test]
    fn agreement_per_kind() {
        let classes = |i: usize| Head::Classes {
            output: "c".into(),
            top: vec![Class { index: i, label: String::new(), prob: 1.0 }],
        };
        assert_eq!(agreement(&classes(1), &classes(1)), Some(("top-1 agreement", 1.0)));
        assert_eq!(agreement(&classes(1), &classes(2)), Some(("top-1 agreement", 0.0)));
        let mask = |p: Vec<f32>| Head::Mask { output: "m".into(), width: 2, height: 2, probs: p, threshold: 0.5 };
        assert_eq!(
            agreement(&mask(vec![1.0, 1.0, 0.0, 0.0]), &mask(vec![1.0, 0.0, 1.0, 0.0])),
            Some(("mask IoU", 1.0 / 3.0))
        );
        let det = |x: f32| Detection { score: 1.0, bbox: [x, 0.0, x + 10.0, 10.0], keypoints: vec![] };
        let dets = |d: Vec<Detection>| Head::Detections { output: "d".into(), detections: d };
        assert_eq!(
            agreement(&dets(vec![det(0.0), det(50.0)]), &dets(vec![det(1.0)])),
            Some(("boxes matched", 2.0 / 3.0))
        );
        assert_eq!(agreement(&dets(vec![]), &dets(vec![])), Some(("boxes matched", 1.0)));
        let kp = |x: f32| Head::Keypoints {
            output: "k".into(),
            points: vec![Keypoint { x, y: 0.0, z: 0.0, visibility: None }; 2],
            presence: None,
        };
        assert_eq!(agreement(&kp(3.0), &kp(0.0)), Some(("keypoint error px", 3.0)));
    }

    #[test]
    fn other_outputs_report_shape_and_range() {
        let out =
            Output { name: "x".into(), shape: vec![1, 2, 2], data: vec![-1.0, 0.0, 2.0, 1.0], probabilities: false };
        let heads = decode_as(Task::Other, &[out], None);
        assert_eq!(heads[0], Head::Values { output: "x".into(), shape: vec![1, 2, 2], min: -1.0, max: 2.0 });
    }
}
