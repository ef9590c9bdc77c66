//! One model on one clip: engine-full, every cached mode and tract, interleaved frame by
//! frame, then summarised into one record per mode.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Result;
use framecache::{FrameStats, Mode, Output, Session, SessionOptions, Task};

use super::reference::Reference;
use super::report::{mean, percentile, warm_frames, Accuracy, FrameRecord, NodeRecord, RunRecord, StageMs};
use crate::baseline::TractModel;
use crate::clip::{Clip, RgbFrame};
use crate::model::{argmax, Model};

/// A bench mode: engine-full, or the cache in one of its modes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BenchMode {
    Full,
    Cached(Mode),
}

impl FromStr for BenchMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "full" {
            Ok(Self::Full)
        } else {
            s.parse::<Mode>().map(Self::Cached).map_err(|e| format!("{e} (or `full`)"))
        }
    }
}

impl fmt::Display for BenchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("full"),
            Self::Cached(m) => write!(f, "{m}"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct MeasureOptions {
    pub tile: usize,
    pub threads: usize,
    pub repeat: usize,
    pub warmup: usize,
    pub refresh: Option<u32>,
    pub search_range: usize,
    pub motion_align: usize,
}

/// What one model on one clip produced.
pub struct Measured {
    pub runs: Vec<RunRecord>,
    /// Engine-full's first output for every measured frame (to check other baselines against).
    pub full_outputs: Vec<Vec<f32>>,
    pub interrupted: bool,
}

/// One measured path of the engine: its session and what it recorded.
struct Lane {
    mode: BenchMode,
    session: Session,
    /// Wall time per frame, one entry per repeat.
    ms: Vec<Vec<f64>>,
    /// Statistics and fidelity of the first pass.
    stats: Vec<FrameStats>,
    fidelity: Vec<Fidelity>,
}

/// Cached outputs against engine-full's, for one frame.
#[derive(Clone, Copy, Debug, Default)]
struct Fidelity {
    max_abs: f64,
    mean_abs: f64,
    top1: Option<usize>,
    top1_agree: Option<bool>,
    iou: Option<f64>,
}

/// Compares `cached` with `full` for a model of the given task.
fn compare(task: Task, mask_threshold: f32, cached: &[Output], full: &[Output]) -> Fidelity {
    let (mut max_abs, mut sum, mut count) = (0.0f64, 0.0f64, 0usize);
    for (c, f) in cached.iter().zip(full) {
        for (a, b) in c.data.iter().zip(&f.data) {
            let d = f64::from((a - b).abs());
            max_abs = max_abs.max(d);
            sum += d;
        }
        count += c.data.len();
    }
    let mut fid = Fidelity { max_abs, mean_abs: sum / count.max(1) as f64, ..Default::default() };
    let (Some(c), Some(f)) = (cached.first(), full.first()) else { return fid };
    match task {
        Task::Classify => {
            let top1 = argmax(&c.data);
            fid.top1 = Some(top1);
            fid.top1_agree = Some(top1 == argmax(&f.data));
        }
        Task::Segment => {
            let (mut inter, mut union) = (0usize, 0usize);
            for (&a, &b) in c.data.iter().zip(&f.data) {
                let (a, b) = (a > mask_threshold, b > mask_threshold);
                inter += usize::from(a && b);
                union += usize::from(a || b);
            }
            fid.iou = Some(if union == 0 { 1.0 } else { inter as f64 / union as f64 });
        }
        Task::Other => {}
    }
    fid
}

fn median(v: &[f64]) -> f64 {
    percentile(v, 0.5)
}

/// Runs engine-full (always), each cached mode and tract over `frames`, interleaving the
/// paths frame by frame in a rotating order, after `warmup` untimed frames.
#[allow(clippy::too_many_arguments)]
pub fn measure(
    model: &Model,
    tract: Option<&TractModel>,
    clip: &Clip,
    frames: &[RgbFrame],
    modes: &[BenchMode],
    opts: MeasureOptions,
    reference: Option<&Reference>,
    tick: &dyn Fn(),
    stop: &AtomicBool,
) -> Result<Measured> {
    let session_opts = |mode: Mode| SessionOptions {
        mode,
        tile: opts.tile,
        threads: Some(opts.threads),
        refresh_interval: opts.refresh,
        search_range: opts.search_range,
        motion_align: opts.motion_align,
        ..Default::default()
    };
    // Lane 0 is engine-full; the others are the cached modes.
    let mut lanes = Vec::new();
    let cached: Vec<Mode> =
        modes.iter().filter_map(|m| if let BenchMode::Cached(c) = m { Some(*c) } else { None }).collect();
    for mode in std::iter::once(BenchMode::Full).chain(cached.iter().map(|&m| BenchMode::Cached(m))) {
        let m = if let BenchMode::Cached(c) = mode { c } else { Mode::Exact };
        let session = Session::new(model.plan.clone(), session_opts(m))?;
        lanes.push(Lane { mode, session, ms: vec![Vec::new(); frames.len()], stats: Vec::new(), fidelity: Vec::new() });
    }
    let dims = model.input_dims();
    let mut tract_ms: Vec<Vec<f64>> = vec![Vec::new(); frames.len()];
    let mut tract_diff = 0.0f64;
    let mut full_outputs = Vec::new();

    // Warm-up: every path on the first frames, untimed; then the caches start cold.
    for f in frames.iter().take(opts.warmup.max(1)) {
        for (k, lane) in lanes.iter_mut().enumerate() {
            if k == 0 {
                lane.session.run_full(&f.as_frame())?;
            } else {
                lane.session.process(&f.as_frame())?;
            }
        }
        if let Some(t) = tract {
            t.run_nchw(&model.input_nchw(&f.as_frame()), dims)?;
        }
    }

    let paths = lanes.len() + usize::from(tract.is_some());
    let mut done = frames.len();
    let mut interrupted = false;
    'passes: for r in 0..opts.repeat {
        for lane in &mut lanes {
            lane.session.reset();
        }
        for (i, f) in frames.iter().enumerate() {
            if stop.load(Ordering::Relaxed) {
                interrupted = true;
                if r == 0 {
                    done = i;
                }
                break 'passes;
            }
            let frame = f.as_frame();
            let mut outs: Vec<Vec<Output>> = vec![Vec::new(); lanes.len()];
            let mut tract_out = None;
            for k in 0..paths {
                let p = (k + i + r) % paths;
                let t = Instant::now();
                if let Some(lane) = lanes.get_mut(p) {
                    let o = if p == 0 { lane.session.run_full(&frame)? } else { lane.session.process(&frame)? };
                    lane.ms[i].push(t.elapsed().as_secs_f64() * 1e3);
                    outs[p] = o;
                } else if let Some(tm) = tract {
                    let o = tm.run_nchw(&model.input_nchw(&frame), dims)?;
                    tract_ms[i].push(t.elapsed().as_secs_f64() * 1e3);
                    tract_out = o.into_iter().next();
                }
            }
            if r == 0 {
                let full = &outs[0];
                if let (Some(t), Some(f0)) = (&tract_out, full.first()) {
                    let d = t.iter().zip(&f0.data).map(|(a, b)| f64::from((a - b).abs())).fold(0.0, f64::max);
                    tract_diff = tract_diff.max(d);
                }
                for (lane, o) in lanes.iter_mut().zip(&outs) {
                    lane.stats.push(lane.session.last_stats().expect("stats after a frame").clone());
                    lane.fidelity.push(compare(model.task(), model.config.mask_threshold, o, full));
                }
                full_outputs.push(full.first().map(|o| o.data.clone()).unwrap_or_default());
            }
            tick();
        }
    }

    let ctx = Summary {
        model,
        clip,
        reference,
        full: &lanes[0],
        tract_ms: tract.map(|_| &tract_ms[..done]),
        tract_diff: tract.map(|_| tract_diff),
        done,
        interrupted,
    };
    let runs = if done == 0 {
        Vec::new()
    } else {
        let mut runs = Vec::new();
        for lane in &lanes {
            if lane.mode == BenchMode::Full && !modes.contains(&BenchMode::Full) {
                continue;
            }
            runs.push(ctx.record(lane));
        }
        runs
    };
    Ok(Measured { runs, full_outputs, interrupted })
}

struct Summary<'a> {
    model: &'a Model,
    clip: &'a Clip,
    reference: Option<&'a Reference>,
    full: &'a Lane,
    tract_ms: Option<&'a [Vec<f64>]>,
    tract_diff: Option<f64>,
    done: usize,
    interrupted: bool,
}

impl Summary<'_> {
    fn record(&self, lane: &Lane) -> RunRecord {
        let warm = warm_frames(self.done);
        let per_frame_ms = |ms: &[Vec<f64>]| -> Vec<f64> { ms[..self.done].iter().map(|r| median(r)).collect() };
        let full_ms = per_frame_ms(&self.full.ms);
        let cached_ms = per_frame_ms(&lane.ms);
        let tract_ms = self.tract_ms.map(per_frame_ms);
        let stats = &lane.stats[..self.done];
        let fid = &lane.fidelity[..self.done];
        let hits: Vec<f64> = stats[warm.clone()].iter().map(FrameStats::input_hit_rate).collect();
        let agg = |v: &[f64]| (median(&v[warm.clone()]), percentile(&v[warm.clone()], 0.9));
        let (ms_full_median, ms_full_p90) = agg(&full_ms);
        let (ms_cached_median, ms_cached_p90) = agg(&cached_ms);
        let tract = tract_ms.as_deref().map(agg);
        let fraction = |f: &dyn Fn(&Fidelity) -> Option<bool>| -> Option<f64> {
            let v: Vec<f64> = fid[warm.clone()].iter().filter_map(f).map(|b| f64::from(u8::from(b))).collect();
            (!v.is_empty()).then(|| mean(&v))
        };
        let ious: Vec<f64> = fid[warm.clone()].iter().filter_map(|f| f.iou).collect();

        let plan = &self.model.plan;
        let graph = plan.graph();
        let nodes = graph
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeRecord {
                name: n.name.clone(),
                op: n.op.name().to_owned(),
                macs: n.shape.pixels() as u64 * plan.macs_per_pixel(i),
                hit_rate: mean(&stats[warm.clone()].iter().map(|s| s.nodes[i].hit_rate).collect::<Vec<_>>()),
                changed: mean(&stats[warm.clone()].iter().map(|s| s.nodes[i].changed).collect::<Vec<_>>()),
                ms: mean(&stats[warm.clone()].iter().map(|s| s.nodes[i].time.as_secs_f64() * 1e3).collect::<Vec<_>>()),
            })
            .collect();
        let stage = |f: &dyn Fn(&FrameStats) -> std::time::Duration| {
            mean(&stats[warm.clone()].iter().map(|s| f(s).as_secs_f64() * 1e3).collect::<Vec<_>>())
        };
        let accuracy = self.reference.filter(|_| self.model.task() == Task::Classify).and_then(|r| {
            let labelled: Vec<(usize, usize)> =
                warm.clone().filter_map(|i| r.expected(&self.clip.frame_name(i)).map(|c| (i, c))).collect();
            let rate = |l: &Lane| {
                labelled.iter().filter(|&&(i, c)| l.fidelity[i].top1 == Some(c)).count() as f64 / labelled.len() as f64
            };
            (!labelled.is_empty()).then(|| Accuracy {
                source: r.label(),
                frames: labelled.len(),
                top1_full: rate(self.full),
                top1_cached: rate(lane),
            })
        });
        let per_frame = (0..self.done)
            .map(|i| FrameRecord {
                frame: self.clip.frame_name(i),
                input_hit_rate: stats[i].input_hit_rate(),
                mac_saving: stats[i].mac_saving(),
                ms_full: full_ms[i],
                ms_cached: cached_ms[i],
                ms_tract: tract_ms.as_ref().map(|t| t[i]),
                ms_ort: None,
                max_abs_error: fid[i].max_abs,
                top1_agree: fid[i].top1_agree,
                mask_iou: fid[i].iou,
            })
            .collect();
        RunRecord {
            model: self.model.name.clone(),
            model_path: self.model.path.display().to_string(),
            clip: self.clip.name.clone(),
            clip_path: self.clip.path.display().to_string(),
            mode: lane.mode.to_string(),
            task: format!("{:?}", self.model.task()).to_lowercase(),
            frames: self.done,
            input_hit_rate_mean: mean(&hits),
            input_hit_rate_p10: percentile(&hits, 0.1),
            input_hit_rate_p50: percentile(&hits, 0.5),
            input_hit_rate_p90: percentile(&hits, 0.9),
            mac_saving: mean(&stats[warm.clone()].iter().map(FrameStats::mac_saving).collect::<Vec<_>>()),
            macs_full: plan.total_macs(),
            ms_full_median,
            ms_full_p90,
            ms_cached_median,
            ms_cached_p90,
            ms_tract_median: tract.map(|t| t.0),
            ms_tract_p90: tract.map(|t| t.1),
            speedup_vs_full: ms_full_median / ms_cached_median,
            speedup_vs_tract: tract.map(|t| t.0 / ms_cached_median),
            top1_agreement: fraction(&|f| f.top1_agree),
            mask_iou_mean: (!ious.is_empty()).then(|| mean(&ious)),
            max_abs_error: fid[warm.clone()].iter().map(|f| f.max_abs).fold(0.0, f64::max),
            mean_abs_error: mean(&fid[warm.clone()].iter().map(|f| f.mean_abs).collect::<Vec<_>>()),
            tract_max_abs_diff: self.tract_diff,
            accuracy,
            stage_ms: StageMs {
                preprocess: stage(&|s| s.times.preprocess),
                diff: stage(&|s| s.times.diff),
                propagate: stage(&|s| s.times.propagate),
                compute: stage(&|s| s.times.compute),
                copy: stage(&|s| s.times.copy),
            },
            nodes,
            per_frame,
            interrupted: self.interrupted,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(data: Vec<f32>) -> Vec<Output> {
        vec![Output { name: "o".into(), shape: vec![1, data.len()], data }]
    }

    #[test]
    fn modes_parse_and_print() {
        for s in ["full", "exact", "threshold=8", "mean-threshold=2"] {
            assert_eq!(s.parse::<BenchMode>().unwrap().to_string(), s);
        }
        assert!("fast".parse::<BenchMode>().unwrap_err().contains("full"));
    }

    #[test]
    fn fidelity_per_task() {
        let f = compare(Task::Classify, 0.5, &out(vec![0.0, 2.0, 1.0]), &out(vec![0.0, 1.0, 1.5]));
        assert_eq!((f.top1, f.top1_agree), (Some(1), Some(false)));
        assert!((f.max_abs - 1.0).abs() < 1e-9 && (f.mean_abs - 0.5).abs() < 1e-9);
        let f = compare(Task::Segment, 0.5, &out(vec![0.9, 0.9, 0.1, 0.1]), &out(vec![0.9, 0.1, 0.9, 0.1]));
        assert!((f.iou.unwrap() - 1.0 / 3.0).abs() < 1e-9);
        let f = compare(Task::Segment, 0.5, &out(vec![0.1; 4]), &out(vec![0.2; 4]));
        assert_eq!(f.iou, Some(1.0), "two empty masks agree");
    }
}
