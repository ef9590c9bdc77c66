//! One model on one clip: engine-full, every cached mode, the frame-skipping baselines and
//! tract, interleaved frame by frame, then summarised into one record per mode, plus a
//! noise-floor record (engine-full against itself one frame earlier).

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

/// A bench mode: engine-full, the cache in one of its modes, or a baseline that runs full
/// inference on some frames and holds the last result on the others.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BenchMode {
    Full,
    Cached(Mode),
    /// `skip=N`: full inference on every Nth frame (the first of each pass included).
    Skip(u32),
    /// `gate=T`: full inference when the frame's mean absolute difference from the last
    /// computed frame (all pixels and channels, 0–255) exceeds `T`.
    Gate(f32),
}

/// The record name of the noise floor: engine-full at frame t against engine-full at t − 1.
pub const NOISE_FLOOR: &str = "noise-floor";

impl FromStr for BenchMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "full" {
            return Ok(Self::Full);
        }
        if let Some(n) = s.strip_prefix("skip=") {
            return match n.parse::<u32>() {
                Ok(n @ 1..=1000) => Ok(Self::Skip(n)),
                _ => Err(format!("`{s}`: skip=N takes a whole number of frames, 1 to 1000")),
            };
        }
        if let Some(t) = s.strip_prefix("gate=") {
            return match t.parse::<f32>() {
                Ok(t) if (0.0..=255.0).contains(&t) => Ok(Self::Gate(t)),
                _ => Err(format!("`{s}`: gate=T takes grey levels, 0 to 255")),
            };
        }
        s.parse::<Mode>().map(Self::Cached).map_err(|e| format!("{e} (or `full`, `skip=N`, `gate=T`)"))
    }
}

impl fmt::Display for BenchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("full"),
            Self::Cached(m) => write!(f, "{m}"),
            Self::Skip(n) => write!(f, "skip={n}"),
            Self::Gate(t) => write!(f, "gate={t}"),
        }
    }
}

/// Mean absolute difference of two frames of the same size, in grey levels.
fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    let sum: u64 = a.iter().zip(b).map(|(&x, &y)| u64::from(x.abs_diff(y))).sum();
    sum as f64 / a.len().max(1) as f64
}

/// What the statistics of a held frame say: nothing recomputed, everything reused.
fn held_stats(last: &FrameStats) -> FrameStats {
    let mut s = last.clone();
    s.reset = None;
    s.dirty_tiles = 0;
    s.dirty.fill(false);
    s.macs_executed = 0;
    s.times = Default::default();
    for n in &mut s.nodes {
        *n = framecache::stats::NodeStats {
            hit_rate: 1.0,
            macs: 0,
            dense: false,
            changed: 0.0,
            time: Default::default(),
        };
    }
    s
}

#[derive(Clone, Copy, Debug)]
pub struct MeasureOptions {
    pub tile: usize,
    pub threads: usize,
    pub repeat: usize,
    pub warmup: usize,
    pub refresh: Option<crate::args::Refresh>,
    pub bypass: bool,
}

/// What one model on one clip produced.
pub struct Measured {
    pub runs: Vec<RunRecord>,
    /// Engine-full's first output for every measured frame (to check other baselines against).
    pub full_outputs: Vec<Vec<f32>>,
    pub interrupted: bool,
}

/// A variant of the model measured in the same run, on the same frames: its int8 form, or a
/// compressed model (`framecache compress`).
pub struct Variant {
    /// `int8`, or the compressed model's file name: the prefix of its runs' modes.
    pub name: String,
    pub model: Model,
    /// `int8` or `fp32`.
    pub precision: &'static str,
}

/// One measured path of the engine: its session and what it recorded.
struct Lane {
    mode: BenchMode,
    session: Session,
    /// Wall time per frame, one entry per repeat.
    ms: Vec<Vec<f64>>,
    /// Statistics and fidelity of the first pass: a few figures per frame, and per-node and
    /// per-stage sums (so that memory does not grow by a per-node table each frame).
    stats: Stats,
    fidelity: Vec<Fidelity>,
    /// A lane of the variant of this index: its fidelity against the model's engine-full
    /// (`fidelity` is against the variant's own full inference).
    variant: Option<usize>,
    fidelity_fp32: Vec<Fidelity>,
    /// Skip and gate: the last computed outputs and the frame they were computed from.
    held: Option<(Vec<Output>, Vec<u8>)>,
    /// Frames of this pass so far.
    seen: u32,
}

impl Lane {
    /// Runs this lane on the next frame of a pass (what the caller times).
    fn run(&mut self, f: &RgbFrame) -> Result<Vec<Output>> {
        let frame = f.as_frame();
        let due = match (&self.held, self.mode) {
            (_, BenchMode::Full) => return Ok(self.session.run_full(frame)?),
            (_, BenchMode::Cached(_)) => return Ok(self.session.process(frame)?),
            (None, _) => true,
            (Some(_), BenchMode::Skip(n)) => self.seen.is_multiple_of(n),
            (Some((_, from)), BenchMode::Gate(t)) => {
                from.len() != f.data.len() || mean_abs_diff(from, &f.data) > f64::from(t)
            }
        };
        self.seen += 1;
        if due {
            let out = self.session.run_full(frame)?;
            // Reuses the held buffers from the last computed frame.
            let (outputs, from) = self.held.get_or_insert_with(Default::default);
            outputs.clone_from(&out);
            from.clone_from(&f.data);
            Ok(out)
        } else {
            Ok(self.held.as_ref().map(|(o, _)| o.clone()).unwrap_or_default())
        }
    }

    /// This frame's statistics: the session's when it computed, a held frame's otherwise.
    fn frame_stats(&self, computed: bool) -> FrameStats {
        let last = self.session.last_stats().expect("stats after a frame");
        if computed {
            last.clone()
        } else {
            held_stats(last)
        }
    }

    fn start_pass(&mut self) {
        self.session.reset();
        self.held = None;
        self.seen = 0;
    }
}

/// What the report keeps of one frame's statistics.
#[derive(Clone, Copy, Debug)]
struct FrameFigures {
    input_hit_rate: f64,
    mac_saving: f64,
    /// The frame's preprocessing (resampling and normalising it into the model's input), ms.
    preprocess_ms: f64,
    computed: bool,
    reset: Option<framecache::Reset>,
}

/// Sums over frames of each node's (hit rate, changed fraction, ms, MACs executed) and of
/// each stage's ms (preprocess, diff, propagate, compute, copy).
#[derive(Clone, Debug, Default)]
struct Sums {
    frames: usize,
    nodes: Vec<[f64; 4]>,
    stages: [f64; 5],
}

impl Sums {
    fn add(&mut self, s: &FrameStats) {
        self.nodes.resize(s.nodes.len(), [0.0; 4]);
        for (sum, n) in self.nodes.iter_mut().zip(&s.nodes) {
            sum[0] += n.hit_rate;
            sum[1] += n.changed;
            sum[2] += n.time.as_secs_f64() * 1e3;
            sum[3] += n.macs as f64;
        }
        let t = &s.times;
        for (sum, d) in self.stages.iter_mut().zip([t.preprocess, t.diff, t.propagate, t.compute, t.copy]) {
            *sum += d.as_secs_f64() * 1e3;
        }
        self.frames += 1;
    }
    fn mean(&self, sum: f64) -> f64 {
        sum / self.frames.max(1) as f64
    }
}

/// A lane's statistics of the first pass: per frame a few figures, per node and stage the sums
/// over the warm frames ([`warm_frames`]: frame 1 is summed apart, for a one-frame run).
#[derive(Clone, Debug, Default)]
struct Stats {
    frames: Vec<FrameFigures>,
    first: Sums,
    warm: Sums,
}

impl Stats {
    fn push(&mut self, s: &FrameStats, i: usize) {
        self.frames.push(FrameFigures {
            input_hit_rate: s.input_hit_rate(),
            mac_saving: s.mac_saving(),
            preprocess_ms: s.times.preprocess.as_secs_f64() * 1e3,
            computed: s.macs_executed > 0 || s.reset.is_some(),
            reset: s.reset,
        });
        if i == 0 { &mut self.first } else { &mut self.warm }.add(s);
    }
    /// The sums over `warm_frames(done)`.
    fn warm_sums(&self, done: usize) -> &Sums {
        if warm_frames(done).start == 0 {
            &self.first
        } else {
            &self.warm
        }
    }
}

/// Outputs against engine-full's, for one frame: one definition per head kind.
#[derive(Clone, Copy, Debug, Default)]
struct Fidelity {
    max_abs: f64,
    mean_abs: f64,
    top1: Option<usize>,
    top1_agree: Option<bool>,
    /// Classifiers: |top-5 ∩ full's top-5| / 5.
    top5_overlap: Option<f64>,
    /// Classifiers: KL(full ‖ this) of the softmax distributions, nats.
    kl: Option<f64>,
    /// Segmenters: IoU of the masks `p > mask_threshold` (1 when both are empty).
    iou: Option<f64>,
    /// Segmenters: fraction of positions in full's mask.
    cover: Option<f64>,
}

/// Indices of the `k` largest values, largest first.
fn top_k(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    idx.truncate(k);
    idx
}

/// Softmax in f64 (stable).
fn softmax(v: &[f32]) -> Vec<f64> {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = v.iter().map(|&x| f64::from(x - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|x| x / sum).collect()
}

/// KL(p ‖ q) in nats, with q floored so that a zero does not make it infinite.
fn kl_divergence(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).filter(|(&a, _)| a > 0.0).map(|(&a, &b)| a * (a / b.max(1e-12)).ln()).sum()
}

/// The verdict fidelity of one frame's `outputs` against `reference`: 1 or 0 for a classifier's
/// top-1 agreement, the mask IoU for a segmenter, `None` for other tasks.
pub fn agreement(task: Task, mask_threshold: f32, outputs: &[Output], reference: &[Output]) -> Option<f64> {
    let f = compare(task, mask_threshold, outputs, reference);
    f.top1_agree.map(|a| f64::from(u8::from(a))).or(f.iou)
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
    if c.data.len() != f.data.len() || c.data.is_empty() {
        return fid;
    }
    match task {
        Task::Classify => {
            let top1 = argmax(&c.data);
            fid.top1 = Some(top1);
            fid.top1_agree = Some(top1 == argmax(&f.data));
            let (a, b) = (top_k(&c.data, 5), top_k(&f.data, 5));
            fid.top5_overlap = Some(a.iter().filter(|i| b.contains(i)).count() as f64 / b.len() as f64);
            fid.kl = Some(kl_divergence(&softmax(&f.data), &softmax(&c.data)));
        }
        Task::Segment => {
            let (iou, cover) = framecache::heads::mask_iou(&c.data, &f.data, mask_threshold);
            fid.iou = Some(iou);
            fid.cover = Some(cover);
        }
        Task::Other => {}
    }
    fid
}

fn median(v: &[f64]) -> f64 {
    percentile(v, 0.5)
}

/// Runs engine-full (always), each cached mode and baseline, and tract over the first
/// `count` frames of `clip`, interleaving the paths frame by frame in a rotating order, after
/// `warmup` untimed frames. Frames are decoded one at a time (untimed), so memory does not grow
/// with the clip; what is kept per frame is the report's figures, and engine-full's first output
/// only when `keep_outputs` (for another baseline to be checked against).
#[allow(clippy::too_many_arguments)]
pub fn measure(
    model: &Model,
    variants: &[Variant],
    tract: Option<&TractModel>,
    clip: &Clip,
    count: usize,
    keep_outputs: bool,
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
        refresh_interval: crate::args::refresh_interval(opts.refresh, mode),
        bypass: opts.bypass,
        ..Default::default()
    };
    // Lane 0 is engine-full; the others are the cached modes and the baselines. Each variant's
    // full inference and cached modes follow, interleaved with the rest on the same frames.
    let mut lanes = Vec::new();
    let others = modes.iter().copied().filter(|m| *m != BenchMode::Full);
    let variant_modes = others.clone().filter(|m| matches!(m, BenchMode::Cached(_)));
    let fp32 = std::iter::once(BenchMode::Full).chain(others).map(|m| (m, model, None));
    let variant_lanes = variants.iter().enumerate().flat_map(|(v, q)| {
        std::iter::once(BenchMode::Full).chain(variant_modes.clone()).map(move |m| (m, &q.model, Some(v)))
    });
    for (mode, model, variant) in fp32.chain(variant_lanes) {
        let m = if let BenchMode::Cached(c) = mode { c } else { Mode::Exact };
        let session = Session::new(model.plan.clone(), session_opts(m))?;
        lanes.push(Lane {
            mode,
            session,
            ms: vec![Vec::new(); count],
            stats: Stats::default(),
            fidelity: Vec::new(),
            variant,
            fidelity_fp32: Vec::new(),
            held: None,
            seen: 0,
        });
    }
    // The lane of each variant's full inference.
    let variant_full: Vec<usize> =
        (0..variants.len()).map(|v| lanes.iter().position(|l| l.variant == Some(v)).unwrap_or(0)).collect();
    let dims = model.input_dims();
    let mut tract_ms: Vec<Vec<f64>> = vec![Vec::new(); count];
    let mut tract_diff = 0.0f64;
    let mut full_outputs = Vec::new();
    // Engine-full's outputs of the previous frame, for the noise floor.
    let mut previous_full: Option<Vec<Output>> = None;
    let mut noise = Vec::new();

    let first = clip.decode(0)?;
    let size = (first.width, first.height);
    let frame = |i: usize| if i == 0 { Ok(first.clone()) } else { clip.decode_sized(i, size) };
    // Warm-up: every path on the first frames, untimed; then the caches start cold.
    for i in 0..opts.warmup.max(1).min(count) {
        let f = &frame(i)?;
        for lane in &mut lanes {
            lane.run(f)?;
        }
        if let Some(t) = tract {
            t.run_nchw(&model.input_nchw(&f.as_frame()), dims)?;
        }
    }

    let paths = lanes.len() + usize::from(tract.is_some());
    let mut done = count;
    let mut interrupted = false;
    'passes: for r in 0..opts.repeat {
        for lane in &mut lanes {
            lane.start_pass();
        }
        for i in 0..count {
            let f = &frame(i)?;
            if stop.load(Ordering::Relaxed) {
                interrupted = true;
                if r == 0 {
                    done = i;
                }
                break 'passes;
            }
            let mut outs: Vec<Vec<Output>> = vec![Vec::new(); lanes.len()];
            let mut computed = vec![true; lanes.len()];
            let mut tract_out = None;
            for k in 0..paths {
                let p = (k + i + r) % paths;
                if let Some(lane) = lanes.get_mut(p) {
                    let frame_before = lane.session.last_stats().map(|s| s.frame_index);
                    let t = Instant::now();
                    let o = lane.run(f)?;
                    lane.ms[i].push(t.elapsed().as_secs_f64() * 1e3);
                    computed[p] = lane.session.last_stats().map(|s| s.frame_index) != frame_before;
                    outs[p] = o;
                } else if let Some(tm) = tract {
                    let t = Instant::now();
                    let o = tm.run_nchw(&model.input_nchw(&f.as_frame()), dims)?;
                    tract_ms[i].push(t.elapsed().as_secs_f64() * 1e3);
                    tract_out = o.into_iter().next();
                }
            }
            // A skip or gate lane's computed frame is engine-full's computation, and is charged
            // engine-full's time on this frame. Timed in its own lane it ran cold, after every
            // other lane's frames since its last one: on the CI-class VM 1.2x engine-full's time
            // at skip=2 and 1.7x at skip=8, which a model running alone would not pay, and
            // which made skip-N look slower than it is against the cached modes.
            let full_ms = lanes[0].ms[i].last().copied();
            for (lane, &c) in lanes.iter_mut().zip(&computed) {
                if c && matches!(lane.mode, BenchMode::Skip(_) | BenchMode::Gate(_)) {
                    if let (Some(t), Some(full)) = (lane.ms[i].last_mut(), full_ms) {
                        *t = full;
                    }
                }
            }
            if r == 0 {
                let full = &outs[0];
                if let (Some(t), Some(f0)) = (&tract_out, full.first()) {
                    let d = t.iter().zip(&f0.data).map(|(a, b)| f64::from((a - b).abs())).fold(0.0, f64::max);
                    tract_diff = tract_diff.max(d);
                }
                let compare =
                    |o: &[Output], full: &[Output]| compare(model.task(), model.config.mask_threshold, o, full);
                for ((lane, o), &c) in lanes.iter_mut().zip(&outs).zip(&computed) {
                    let s = lane.frame_stats(c);
                    lane.stats.push(&s, i);
                    if let Some(v) = lane.variant {
                        lane.fidelity.push(compare(o, &outs[variant_full[v]]));
                        lane.fidelity_fp32.push(compare(o, full));
                    } else {
                        lane.fidelity.push(compare(o, full));
                    }
                }
                let before = previous_full.as_ref().unwrap_or(full);
                noise.push(compare(before, full));
                previous_full = Some(full.clone());
                if keep_outputs {
                    full_outputs.push(full.first().map(|o| o.data.clone()).unwrap_or_default());
                }
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
    let mut runs = Vec::new();
    if done > 0 {
        let precision = (!variants.is_empty()).then(|| "fp32".to_owned());
        for lane in lanes.iter().filter(|l| l.variant.is_none()) {
            if lane.mode == BenchMode::Full && !modes.contains(&BenchMode::Full) {
                continue;
            }
            let mut r = ctx.record(&lane.mode.to_string(), &lane.ms, &lane.stats, &lane.fidelity);
            r.precision.clone_from(&precision);
            runs.push(r);
        }
        let full = &lanes[0];
        runs.push(ctx.record(NOISE_FLOOR, &full.ms, &full.stats, &noise));
        let ms_fp32 = runs[0].ms_full_median;
        for (v, q) in variants.iter().enumerate() {
            // A variant's runs: speed and fidelity against its own full inference (as for any
            // mode), and against the model's engine-full of the same frames.
            let ctx_v =
                Summary { model: &q.model, full: &lanes[variant_full[v]], tract_ms: None, tract_diff: None, ..ctx };
            for lane in lanes.iter().filter(|l| l.variant == Some(v)) {
                let mut r = ctx_v.record(&format!("{} {}", q.name, lane.mode), &lane.ms, &lane.stats, &lane.fidelity);
                let vs_fp32 = ctx_v.record("", &lane.ms, &lane.stats, &lane.fidelity_fp32);
                r.precision = Some(q.precision.into());
                r.variant = Some(q.name.clone());
                r.speedup_vs_fp32 = Some(ms_fp32 / r.ms_cached_median);
                r.fp32_top1_agreement = vs_fp32.top1_agreement;
                r.fp32_mask_iou = vs_fp32.mask_iou_mean;
                r.fp32_top5_overlap = vs_fp32.top5_overlap;
                r.fp32_kl_mean = vs_fp32.kl_mean;
                runs.push(r);
            }
        }
    }
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
    fn record(&self, mode: &str, ms: &[Vec<f64>], stats: &Stats, fid: &[Fidelity]) -> RunRecord {
        let warm = warm_frames(self.done);
        let per_frame_ms = |ms: &[Vec<f64>]| -> Vec<f64> { ms[..self.done].iter().map(|r| median(r)).collect() };
        let full_ms = per_frame_ms(&self.full.ms);
        let cached_ms = per_frame_ms(ms);
        let tract_ms = self.tract_ms.map(per_frame_ms);
        let sums = stats.warm_sums(self.done);
        let stats = &stats.frames[..self.done];
        let fid = &fid[..self.done];
        let hits: Vec<f64> = stats[warm.clone()].iter().map(|s| s.input_hit_rate).collect();
        let agg = |v: &[f64]| (median(&v[warm.clone()]), percentile(&v[warm.clone()], 0.9));
        let (ms_full_median, ms_full_p90) = agg(&full_ms);
        // Engine-full from its input tensor on: what ONNX Runtime's `run` is timed over.
        let full_inference: Vec<f64> =
            full_ms.iter().zip(&self.full.stats.frames).map(|(ms, f)| ms - f.preprocess_ms).collect();
        let ms_full_inference_median = median(&full_inference[warm.clone()]);
        let (ms_cached_median, ms_cached_p90) = agg(&cached_ms);
        let tract = tract_ms.as_deref().map(agg);
        let fraction = |f: &dyn Fn(&Fidelity) -> Option<bool>| -> Option<f64> {
            let v: Vec<f64> = fid[warm.clone()].iter().filter_map(f).map(|b| f64::from(u8::from(b))).collect();
            (!v.is_empty()).then(|| mean(&v))
        };
        let ious: Vec<f64> = fid[warm.clone()].iter().filter_map(|f| f.iou).collect();
        let opt_mean = |f: &dyn Fn(&Fidelity) -> Option<f64>| -> Option<f64> {
            let v: Vec<f64> = fid[warm.clone()].iter().filter_map(f).collect();
            (!v.is_empty()).then(|| mean(&v))
        };
        let (ms_full_mean, ms_mean) = (mean(&full_ms[warm.clone()]), mean(&cached_ms[warm.clone()]));

        let plan = &self.model.plan;
        let graph = plan.graph();
        let nodes = graph
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeRecord {
                name: n.name.clone(),
                op: n.op.name().to_owned(),
                macs: n.macs(graph),
                mac_saving: if n.macs(graph) == 0 {
                    0.0
                } else {
                    1.0 - sums.mean(sums.nodes[i][3]) / n.macs(graph) as f64
                },
                hit_rate: sums.mean(sums.nodes[i][0]),
                changed: sums.mean(sums.nodes[i][1]),
                ms: sums.mean(sums.nodes[i][2]),
            })
            .collect();
        let stage = |k: usize| sums.mean(sums.stages[k]);
        let accuracy = self.reference.filter(|_| self.model.task() == Task::Classify).and_then(|r| {
            let labelled: Vec<(usize, usize)> =
                warm.clone().filter_map(|i| r.expected(&self.clip.frame_name(i)).map(|c| (i, c))).collect();
            let rate = |f: &[Fidelity]| {
                labelled.iter().filter(|&&(i, c)| f[i].top1 == Some(c)).count() as f64 / labelled.len() as f64
            };
            (!labelled.is_empty()).then(|| Accuracy {
                source: r.label(),
                frames: labelled.len(),
                top1_full: rate(&self.full.fidelity),
                top1_cached: rate(fid),
            })
        });
        let per_frame = (0..self.done)
            .map(|i| FrameRecord {
                frame: self.clip.frame_name(i),
                input_hit_rate: stats[i].input_hit_rate,
                mac_saving: stats[i].mac_saving,
                ms_full: full_ms[i],
                ms_cached: cached_ms[i],
                ms_tract: tract_ms.as_ref().map(|t| t[i]),
                ms_ort: None,
                max_abs_error: fid[i].max_abs,
                top1_agree: fid[i].top1_agree,
                top5_overlap: fid[i].top5_overlap,
                kl: fid[i].kl,
                mask_iou: fid[i].iou,
                mask_cover: fid[i].cover,
                computed: stats[i].computed,
                dense: stats[i].reset.map(|r| format!("{r:?}")),
            })
            .collect();
        RunRecord {
            model: self.model.name.clone(),
            model_path: self.model.path.display().to_string(),
            clip: self.clip.name.clone(),
            clip_path: self.clip.path.display().to_string(),
            mode: mode.to_owned(),
            task: format!("{:?}", self.model.task()).to_lowercase(),
            frames: self.done,
            input_hit_rate_mean: mean(&hits),
            input_hit_rate_p10: percentile(&hits, 0.1),
            input_hit_rate_p50: percentile(&hits, 0.5),
            input_hit_rate_p90: percentile(&hits, 0.9),
            mac_saving: mean(&stats[warm.clone()].iter().map(|s| s.mac_saving).collect::<Vec<_>>()),
            macs_full: plan.total_macs(),
            ms_full_median,
            ms_full_inference_median,
            ms_full_p90,
            ms_cached_median,
            ms_cached_p90,
            ms_tract_median: tract.map(|t| t.0),
            ms_tract_p90: tract.map(|t| t.1),
            speedup_vs_full: ms_full_median / ms_cached_median,
            ms_full_mean,
            ms_mean,
            ms_max: cached_ms[warm.clone()].iter().copied().fold(0.0, f64::max),
            speedup_mean: ms_full_mean / ms_mean,
            speedup_vs_tract: tract.map(|t| t.0 / ms_cached_median),
            top1_agreement: fraction(&|f| f.top1_agree),
            mask_iou_mean: (!ious.is_empty()).then(|| mean(&ious)),
            mask_iou_p10: (!ious.is_empty()).then(|| percentile(&ious, 0.1)),
            mask_cover: opt_mean(&|f| f.cover),
            top5_overlap: opt_mean(&|f| f.top5_overlap),
            kl_mean: opt_mean(&|f| f.kl),
            max_abs_error: fid[warm.clone()].iter().map(|f| f.max_abs).fold(0.0, f64::max),
            mean_abs_error: mean(&fid[warm.clone()].iter().map(|f| f.mean_abs).collect::<Vec<_>>()),
            tract_max_abs_diff: self.tract_diff,
            accuracy,
            stage_ms: StageMs {
                preprocess: stage(0),
                diff: stage(1),
                propagate: stage(2),
                compute: stage(3),
                copy: stage(4),
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
        vec![Output { name: "o".into(), shape: vec![1, data.len()], data, probabilities: false }]
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
