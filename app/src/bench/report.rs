//! The bench report: the JSON schema and its Markdown rendering.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Everything one `framecache bench` invocation measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub version: String,
    pub machine: Machine,
    pub options: Options,
    pub runs: Vec<RunRecord>,
    /// Models or clips that could not be measured, with the reason.
    pub errors: Vec<ErrorRecord>,
    /// Notes such as a baseline that could not run.
    pub notes: Vec<String>,
    /// Ctrl-C stopped the run; `runs` holds what was measured until then.
    pub interrupted: bool,
    /// One markdown report per (bundle, cached mode): see `framecache bundle`.
    #[serde(default)]
    pub bundles: Vec<String>,
    /// Per (model, clip): does some cached mode dominate skip-N? (See [`verdicts`].)
    #[serde(default)]
    pub verdicts: Vec<Verdict>,
}

/// Whether the cache beats frame skipping on one (model, clip).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Verdict {
    pub model: String,
    pub clip: String,
    /// The fidelity compared: "top-1 agreement" or "mask IoU".
    pub metric: String,
    /// Why this pair has no verdict (a mask that covers under 1% of the frame, say).
    pub excluded: Option<String>,
    /// One entry per skip-N baseline measured.
    pub skip: Vec<SkipVerdict>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SkipVerdict {
    pub n: u32,
    pub speedup_mean: f64,
    pub fidelity: f64,
    /// Some cached mode is at least as fast (mean) and at least as faithful.
    pub dominates_skip: bool,
    /// The cached modes that do.
    pub by: Vec<String>,
}

/// Masks covering less than this fraction of the frame make IoU meaningless.
pub const MIN_MASK_COVER: f64 = 0.01;

/// Whether a record is a cached mode of the engine (not engine-full, a baseline or the
/// noise floor).
pub fn is_cached_mode(mode: &str) -> bool {
    mode != "full" && mode != super::measure::NOISE_FLOOR && !mode.starts_with("skip=") && !mode.starts_with("gate=")
}

/// The fidelity that verdicts compare: top-1 agreement for classifiers, mean mask IoU for
/// segmenters; `None` for other tasks.
pub fn verdict_fidelity(r: &RunRecord) -> Option<f64> {
    r.top1_agreement.or(r.mask_iou_mean)
}

/// Per (model, clip), for every skip-N: does some cached mode dominate it (mean speedup and
/// fidelity both at least skip-N's)? Pure: the same runs give the same verdicts.
pub fn verdicts(runs: &[RunRecord]) -> Vec<Verdict> {
    let mut groups: Vec<(&str, &str)> = runs.iter().map(|r| (r.model.as_str(), r.clip.as_str())).collect();
    groups.dedup();
    let mut out = Vec::new();
    for (model, clip) in groups {
        // A variant's runs (int8, a compressed model) compare with its own full inference, not
        // with the model's skip-N: they have their own table.
        let these: Vec<&RunRecord> =
            runs.iter().filter(|r| r.model == model && r.clip == clip && !r.is_variant()).collect();
        let skips: Vec<(u32, &RunRecord)> = these
            .iter()
            .filter_map(|r| r.mode.strip_prefix("skip=").and_then(|n| n.parse().ok()).map(|n| (n, *r)))
            .collect();
        if skips.is_empty() {
            continue;
        }
        let metric = if these.iter().any(|r| r.top1_agreement.is_some()) { "top-1 agreement" } else { "mask IoU" };
        let mut v = Verdict { model: model.into(), clip: clip.into(), metric: metric.into(), ..Default::default() };
        let cover = these.iter().find_map(|r| r.mask_cover);
        if these.iter().all(|r| verdict_fidelity(r).is_none()) {
            v.excluded = Some("no fidelity metric for this task".into());
        } else if let Some(c) = cover.filter(|&c| c < MIN_MASK_COVER) {
            v.excluded = Some(format!("engine-full's mask covers {:.2}% of the frame (< 1%)", 100.0 * c));
        } else {
            for (n, s) in skips {
                let Some(fs) = verdict_fidelity(s) else { continue };
                let by: Vec<String> = these
                    .iter()
                    .filter(|r| is_cached_mode(&r.mode))
                    .filter(|r| r.speedup_mean >= s.speedup_mean && verdict_fidelity(r).is_some_and(|f| f >= fs))
                    .map(|r| r.mode.clone())
                    .collect();
                v.skip.push(SkipVerdict {
                    n,
                    speedup_mean: s.speedup_mean,
                    fidelity: fs,
                    dominates_skip: !by.is_empty(),
                    by,
                });
            }
        }
        out.push(v);
    }
    out
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Machine {
    pub cpus: usize,
    pub simd: String,
    pub os: String,
    pub arch: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Options {
    pub tile: usize,
    /// Full recomputation every N frames in the approximate modes.
    pub refresh: Option<u32>,
    /// The adaptive bypass of the cached modes (`--no-bypass` turns it off).
    #[serde(default)]
    pub bypass: bool,
    pub threads: usize,
    pub repeat: usize,
    pub warmup: usize,
    pub baselines: Vec<String>,
    /// How aggregates are taken.
    pub aggregation: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorRecord {
    pub model: Option<String>,
    pub clip: Option<String>,
    pub message: String,
}

/// `- model on clip: message`, as the report and the final error list it.
impl std::fmt::Display for ErrorRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what: Vec<&str> = [self.model.as_deref(), self.clip.as_deref()].into_iter().flatten().collect();
        write!(f, "- {}: {}", what.join(" on "), self.message)
    }
}

/// One (model, clip, mode).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
// Fields added later read as their default from older reports (`--replot`).
#[serde(default)]
pub struct RunRecord {
    pub model: String,
    pub model_path: String,
    pub clip: String,
    pub clip_path: String,
    pub mode: String,
    pub task: String,
    pub frames: usize,
    pub input_hit_rate_mean: f64,
    pub input_hit_rate_p10: f64,
    pub input_hit_rate_p50: f64,
    pub input_hit_rate_p90: f64,
    /// 1 − MACs executed ÷ MACs of full inference, mean over frames.
    pub mac_saving: f64,
    /// MACs of one full inference.
    pub macs_full: u64,
    pub ms_full_median: f64,
    /// Engine-full's median without its preprocessing (the frame resampled and normalised into
    /// the model's input): the span ONNX Runtime's `run` is timed over, on tensors the engine
    /// preprocessed.
    pub ms_full_inference_median: f64,
    pub ms_full_p90: f64,
    pub ms_cached_median: f64,
    pub ms_cached_p90: f64,
    pub ms_tract_median: Option<f64>,
    pub ms_tract_p90: Option<f64>,
    pub ms_ort_median: Option<f64>,
    pub ms_ort_p90: Option<f64>,
    /// `ms_full_median / ms_cached_median`, both from this run.
    pub speedup_vs_full: f64,
    /// Mean wall time per frame of engine-full and of this mode: the throughput. Skip
    /// schedules mix cheap and full-cost frames, so their medians mislead; compare means.
    pub ms_full_mean: f64,
    pub ms_mean: f64,
    /// Slowest frame of this mode (the latency a user sees when reuse does not pay).
    pub ms_max: f64,
    /// `ms_full_mean / ms_mean`, both from this run.
    pub speedup_mean: f64,
    pub speedup_vs_tract: Option<f64>,
    pub speedup_vs_ort: Option<f64>,
    /// ONNX Runtime's median ÷ `ms_full_inference_median`: engine-full against ONNX Runtime
    /// over the same span (from the input tensor to the outputs), the same for every mode of
    /// a model and clip.
    pub speedup_vs_ort_inference: Option<f64>,
    /// Classifiers: fraction of frames whose top-1 equals engine-full's.
    pub top1_agreement: Option<f64>,
    /// Segmenters: mean IoU of the thresholded masks against engine-full's.
    pub mask_iou_mean: Option<f64>,
    /// Segmenters: the worst decile of the per-frame IoU.
    pub mask_iou_p10: Option<f64>,
    /// Segmenters: mean fraction of the frame in engine-full's mask. Under 1% the IoU means
    /// nothing, and the clip is left out of the mask verdict.
    pub mask_cover: Option<f64>,
    /// Classifiers: mean |top-5 ∩ full's top-5| / 5.
    pub top5_overlap: Option<f64>,
    /// Classifiers: mean KL(full ‖ this) of the softmax outputs, nats.
    pub kl_mean: Option<f64>,
    /// Largest |cached − full| over every output value of every frame.
    pub max_abs_error: f64,
    /// `fp32` or `int8` when the bench measured a variant of the model (`--precision int8`,
    /// `--variant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
    /// The variant's runs: `int8`, or the compressed model's file name (`--variant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// A variant's runs: the (fp32) model's engine-full median ÷ this run's median, same
    /// frames, same run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speedup_vs_fp32: Option<f64>,
    /// A variant's runs: top-1 agreement (classifiers) or mean mask IoU (segmenters) against
    /// the (fp32) model's engine-full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp32_top1_agreement: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp32_mask_iou: Option<f64>,
    /// A classifier variant's runs: top-5 overlap and the mean KL divergence of the softmax
    /// against the (fp32) model's engine-full, which grade what top-1 agreement counts all or
    /// nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp32_top5_overlap: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp32_kl_mean: Option<f64>,
    /// Mean |cached − full| over every output value, averaged over frames.
    pub mean_abs_error: f64,
    /// Largest |tract − engine full| (first output), a check that the baseline computes the same.
    pub tract_max_abs_diff: Option<f64>,
    /// Largest |ONNX Runtime − engine full| (first output).
    pub ort_max_abs_diff: Option<f64>,
    /// Against labels or reference top-1, where the clip has them.
    pub accuracy: Option<Accuracy>,
    /// Mean time per stage of the measured path, ms.
    pub stage_ms: StageMs,
    pub nodes: Vec<NodeRecord>,
    pub per_frame: Vec<FrameRecord>,
    pub interrupted: bool,
}

impl RunRecord {
    /// A run of a variant of the model (`--precision int8`, `--variant`; an int8 run of a
    /// report written before variants were named has only its precision).
    pub fn is_variant(&self) -> bool {
        self.variant.is_some() || self.precision.as_deref() == Some("int8")
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Accuracy {
    /// The labels or reference file.
    pub source: String,
    /// Frames that have a label.
    pub frames: usize,
    /// Fraction of those frames whose engine-full top-1 matches.
    pub top1_full: f64,
    /// The same for this mode.
    pub top1_cached: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StageMs {
    pub preprocess: f64,
    pub diff: f64,
    pub propagate: f64,
    pub compute: f64,
    pub copy: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub op: String,
    /// MACs of this node in one full inference.
    pub macs: u64,
    /// MACs not executed ÷ `macs`, mean over frames (equals `hit_rate` except for a
    /// bottleneck, whose expansion runs on the input positions that changed).
    #[serde(default)]
    pub mac_saving: f64,
    /// Output pixels reused ÷ all, mean over frames.
    pub hit_rate: f64,
    /// Output pixels passed on to consumers as changed ÷ all, mean over frames (below
    /// `1 − hit_rate` only in delta mode).
    pub changed: f64,
    /// Mean kernel time, ms.
    pub ms: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
// Fields added later read as their default from older reports (`--replot`).
#[serde(default)]
pub struct FrameRecord {
    pub frame: String,
    pub input_hit_rate: f64,
    pub mac_saving: f64,
    pub ms_full: f64,
    pub ms_cached: f64,
    pub ms_tract: Option<f64>,
    pub ms_ort: Option<f64>,
    pub max_abs_error: f64,
    pub top1_agree: Option<bool>,
    pub top5_overlap: Option<f64>,
    pub kl: Option<f64>,
    pub mask_iou: Option<f64>,
    pub mask_cover: Option<f64>,
    /// Why this frame was computed densely, if it was (`Cold`, `Bypass`, `Refresh`, `Full`,
    /// `Motion`, `FrameSize`).
    pub dense: Option<String>,
    /// Whether this frame recomputed anything (false: nothing changed, or a skip or gate
    /// baseline held the last result).
    pub computed: bool,
}

/// Nearest-rank percentile of unsorted values (`q` in [0, 1]); 0 for no values.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// The frames that aggregates cover: 2..N (frame 1 is a cold start), or the only frame.
pub fn warm_frames(frames: usize) -> std::ops::Range<usize> {
    if frames > 1 {
        1..frames
    } else {
        0..frames
    }
}

pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "–".into(), f)
}

/// Fidelity in one cell: top-1 agreement, top-5 overlap and KL; mask IoU (worst decile) and
/// cover; or the max error.
fn fidelity(r: &RunRecord) -> String {
    match (r.top1_agreement, r.mask_iou_mean) {
        (Some(t), _) => format!(
            "top-1 {:.1}%, top-5 {:.2}, KL {:.3}",
            100.0 * t,
            r.top5_overlap.unwrap_or(0.0),
            r.kl_mean.unwrap_or(0.0)
        ),
        (None, Some(iou)) => format!(
            "IoU {iou:.3} (p10 {:.3}), cover {:.1}%",
            r.mask_iou_p10.unwrap_or(0.0),
            100.0 * r.mask_cover.unwrap_or(0.0)
        ),
        _ => format!("max err {:.2e}", r.max_abs_error),
    }
}

/// The Markdown report: summary, accuracy against references, and per-node hit rates.
pub fn markdown(report: &Report) -> String {
    let mut s = String::new();
    let ort = report.runs.iter().any(|r| r.ms_ort_median.is_some());
    let _ = writeln!(
        s,
        "framecache bench: {} CPUs ({}), {} thread(s), tile {}, refresh {}, adaptive bypass {}, {} repeat(s), {} warm-up frame(s). {}\n",
        report.machine.cpus,
        report.machine.simd,
        report.options.threads,
        report.options.tile,
        report.options.refresh.map_or_else(|| "never".to_owned(), |n| format!("every {n} frames")),
        if report.options.bypass { "on" } else { "off" },
        report.options.repeat,
        report.options.warmup,
        report.options.aggregation
    );
    let _ = write!(
        s,
        "| model | clip | mode | frames | input hit mean (p10/p50/p90) | MAC saving | ms full mean | ms mean | × full (mean) | ms median | ms p90 | ms max | ms tract |"
    );
    if ort {
        s.push_str(" ms ORT |");
    }
    s.push_str(" × full | × tract |");
    if ort {
        s.push_str(" × ORT | full × ORT, inference only |");
    }
    s.push_str(" fidelity vs full | max abs err | mean abs err |\n|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    if ort {
        s.push_str("---:|");
    }
    s.push_str("---:|---:|");
    if ort {
        s.push_str("---:|---:|");
    }
    s.push_str("---|---:|---:|\n");
    for r in &report.runs {
        let _ = write!(
            s,
            "| {} | {} | {} | {} | {:.1}% ({:.0}/{:.0}/{:.0}) | {:.1}% | {:.2} | {:.2} | {:.2}x | {:.2} | {:.2} | {:.2} | {} |",
            r.model,
            r.clip,
            r.mode,
            r.frames,
            100.0 * r.input_hit_rate_mean,
            100.0 * r.input_hit_rate_p10,
            100.0 * r.input_hit_rate_p50,
            100.0 * r.input_hit_rate_p90,
            100.0 * r.mac_saving,
            r.ms_full_mean,
            r.ms_mean,
            r.speedup_mean,
            r.ms_cached_median,
            r.ms_cached_p90,
            r.ms_max,
            opt(r.ms_tract_median, |v| format!("{v:.2}")),
        );
        if ort {
            let _ = write!(s, " {} |", opt(r.ms_ort_median, |v| format!("{v:.2}")));
        }
        let _ = write!(s, " {:.2}x | {} |", r.speedup_vs_full, opt(r.speedup_vs_tract, |v| format!("{v:.2}x")));
        if ort {
            let x = |v: Option<f64>| opt(v, |v| format!("{v:.2}x"));
            let _ = write!(s, " {} | {} |", x(r.speedup_vs_ort), x(r.speedup_vs_ort_inference));
        }
        let _ = writeln!(s, " {} | {:.2e} | {:.2e} |", fidelity(r), r.max_abs_error, r.mean_abs_error);
    }

    if !report.verdicts.is_empty() {
        s.push_str(
            "\nDoes the cache dominate skip-N (some cached mode at least as fast, by mean time per frame, \
             and at least as faithful, against engine-full on the same frames)?\n\n",
        );
        s.push_str("| model | clip | fidelity | skip-N: × full (mean), fidelity | dominates_skip | by |\n|---|---|---|---|---|---|\n");
        for v in &report.verdicts {
            if let Some(why) = &v.excluded {
                let _ = writeln!(s, "| {} | {} | {} | – | no verdict: {why} | |", v.model, v.clip, v.metric);
                continue;
            }
            for k in &v.skip {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | skip-{}: {:.2}x, {:.3} | {} | {} |",
                    v.model,
                    v.clip,
                    v.metric,
                    k.n,
                    k.speedup_mean,
                    k.fidelity,
                    k.dominates_skip,
                    k.by.join(", ")
                );
            }
        }
    }

    let variants: Vec<&RunRecord> = report.runs.iter().filter(|r| r.is_variant()).collect();
    if !variants.is_empty() {
        s.push_str(
            "\nVariants of the model (its int8 form, compressed models) against the model itself, same frames, \
             same interleaved run: × fp32 is the model's engine-full median ÷ this mode's median; fidelity vs fp32 \
             is against the model's engine-full; × variant full and max abs err are against the variant's own \
             full inference.\n\n",
        );
        s.push_str(
            "| model | clip | mode | ms median | × fp32 | × variant full (mean) | fidelity vs fp32 | max abs err |\n",
        );
        s.push_str("|---|---|---|---:|---:|---:|---|---:|\n");
        for r in variants {
            let fid = match (r.fp32_top1_agreement, r.fp32_mask_iou) {
                (Some(t), _) => format!(
                    "top-1 {:.1}%, top-5 {}, KL {}",
                    100.0 * t,
                    opt(r.fp32_top5_overlap, |v| format!("{:.1}%", 100.0 * v)),
                    opt(r.fp32_kl_mean, |v| format!("{v:.4}"))
                ),
                (None, Some(iou)) => format!("mask IoU {iou:.3}"),
                _ => "–".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.2} | {} | {:.2}x | {fid} | {:.2e} |",
                r.model,
                r.clip,
                r.mode,
                r.ms_cached_median,
                opt(r.speedup_vs_fp32, |v| format!("{v:.2}x")),
                r.speedup_mean,
                r.max_abs_error
            );
        }
    }

    let with_accuracy: Vec<&RunRecord> = report.runs.iter().filter(|r| r.accuracy.is_some()).collect();
    if !with_accuracy.is_empty() {
        s.push_str("\nTop-1 against labels or reference outputs (engine full and this mode):\n\n");
        s.push_str("| model | clip | mode | source | labelled frames | top-1 full | top-1 this mode |\n");
        s.push_str("|---|---|---|---|---:|---:|---:|\n");
        for r in with_accuracy {
            let a = r.accuracy.as_ref().expect("filtered");
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {:.1}% | {:.1}% |",
                r.model,
                r.clip,
                r.mode,
                a.source,
                a.frames,
                100.0 * a.top1_full,
                100.0 * a.top1_cached
            );
        }
    }

    // Per-node hit rates: one table per (model, clip), one column per cached mode.
    let mut groups: Vec<(&str, &str)> = report.runs.iter().map(|r| (r.model.as_str(), r.clip.as_str())).collect();
    groups.dedup();
    for (model, clip) in groups {
        let runs: Vec<&RunRecord> =
            report.runs.iter().filter(|r| r.model == model && r.clip == clip && is_cached_mode(&r.mode)).collect();
        let Some(first) = runs.first() else { continue };
        let _ = writeln!(s, "\nHit rate per node, {model} on {clip}:\n");
        s.push_str("| # | node | op | MMACs |");
        for r in &runs {
            let _ = write!(s, " {} |", r.mode);
        }
        s.push_str("\n|---:|---|---|---:|");
        s.push_str(&"---:|".repeat(runs.len()));
        s.push('\n');
        for (i, n) in first.nodes.iter().enumerate() {
            let _ = write!(s, "| {i} | {} | {} | {:.2} |", n.name, n.op, n.macs as f64 / 1e6);
            for r in &runs {
                let _ = write!(s, " {:.1}% |", 100.0 * r.nodes.get(i).map_or(0.0, |n| n.hit_rate));
            }
            s.push('\n');
        }
    }
    if !report.notes.is_empty() {
        s.push('\n');
        for n in &report.notes {
            let _ = writeln!(s, "Note: {n}");
        }
    }
    for b in &report.bundles {
        s.push('\n');
        s.push_str(b);
    }
    if !report.errors.is_empty() {
        s.push_str("\nNot measured:\n");
        for e in &report.errors {
            let _ = writeln!(s, "{e}");
        }
    }
    if report.interrupted {
        s.push_str("\nInterrupted: the figures above cover only the frames measured before Ctrl-C.\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=11).rev().map(f64::from).collect();
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 0.5), 6.0);
        assert_eq!(percentile(&v, 0.9), 10.0);
        assert_eq!(percentile(&v, 1.0), 11.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
