//! Decoding a model's outputs by the task its sidecar declares: what the demo window and the
//! phone apps (through the C ABI) show.

use crate::config::{ModelConfig, Task};
use crate::exec::Output;

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
}

/// Decodes every output of a model. Classifiers: softmax (unless the scores already are
/// probabilities) and the top [`TOP_K`]; segmenters: the `[1, 1, H, W]` map as probabilities
/// (a sigmoid when the values are logits).
pub fn decode(outputs: &[Output], config: &ModelConfig, labels: Option<&[String]>) -> Vec<Head> {
    outputs
        .iter()
        .map(|o| match (config.task, o.shape.as_slice()) {
            (Task::Classify, [1, n]) => Head::Classes { output: o.name.clone(), top: top_k(&o.data, *n, labels) },
            (Task::Segment, [1, 1, h, w]) => Head::Mask {
                output: o.name.clone(),
                width: *w,
                height: *h,
                probs: as_probabilities(&o.data),
                threshold: config.mask_threshold,
            },
            _ => {
                let (min, max) =
                    o.data.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
                Head::Values { output: o.name.clone(), shape: o.shape.clone(), min, max }
            }
        })
        .collect()
}

/// Softmax of `scores`, unless they already sum to one within 1%.
pub fn softmax(scores: &[f32]) -> Vec<f32> {
    let sum: f32 = scores.iter().sum();
    if scores.iter().all(|&v| (0.0..=1.0).contains(&v)) && (sum - 1.0).abs() < 0.01 {
        return scores.to_vec();
    }
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = scores.iter().map(|&v| (v - max).exp()).collect();
    let total: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / total).collect()
}

fn top_k(scores: &[f32], n: usize, labels: Option<&[String]>) -> Vec<Class> {
    let probs = softmax(scores);
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let name = |i: usize| labels.filter(|l| l.len() == n).map_or_else(|| format!("class {i}"), |l| l[i].clone());
    order.into_iter().take(TOP_K).map(|i| Class { index: i, label: name(i), prob: probs[i] }).collect()
}

/// The map itself when its values lie in [0, 1], else its sigmoid.
fn as_probabilities(values: &[f32]) -> Vec<f32> {
    if values.iter().all(|&v| (0.0..=1.0).contains(&v)) {
        values.to_vec()
    } else {
        values.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let out = Output { name: "logits".into(), shape: vec![1, 3], data: vec![1.0, 3.0, 2.0] };
        let labels = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let heads = decode(&[out], &config(Task::Classify), Some(&labels));
        let Head::Classes { top, .. } = &heads[0] else { panic!("{heads:?}") };
        let names: Vec<_> = top.iter().map(|c| (c.index, c.label.as_str())).collect();
        assert_eq!(names, [(1, "b"), (2, "c"), (0, "a")]);
        let total: f32 = top.iter().map(|c| c.prob).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert!((top[0].prob - 0.665_240_9).abs() < 1e-5, "{}", top[0].prob);
    }

    #[test]
    fn probabilities_pass_through_and_logit_masks_get_a_sigmoid() {
        assert_eq!(softmax(&[0.25, 0.75]), vec![0.25, 0.75]);
        let out = Output { name: "mask".into(), shape: vec![1, 1, 1, 2], data: vec![0.0, 10.0] };
        let heads = decode(&[out], &config(Task::Segment), None);
        let Head::Mask { probs, width, height, .. } = &heads[0] else { panic!("{heads:?}") };
        assert_eq!((*width, *height), (2, 1));
        assert!((probs[0] - 0.5).abs() < 1e-6 && probs[1] > 0.99);
    }

    #[test]
    fn other_outputs_report_shape_and_range() {
        let out = Output { name: "x".into(), shape: vec![1, 2, 2], data: vec![-1.0, 0.0, 2.0, 1.0] };
        let heads = decode(&[out], &config(Task::Other), None);
        assert_eq!(heads[0], Head::Values { output: "x".into(), shape: vec![1, 2, 2], min: -1.0, max: 2.0 });
    }
}
