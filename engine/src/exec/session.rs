use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

use super::options::{Mode, SessionOptions};
use super::plan::Plan;
use crate::diff::motion::{self, Search, TileMotion};
use crate::diff::{self, Tiling};
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::graph::Shape;
use crate::kernels::{self, In, OutBuf};
use crate::reuse::motion::{self as motion_labels, Label, Labels};
use crate::reuse::{self, Mask, Rect};
use crate::stats::{FrameStats, HeadStats, HeadStatus, NodeStats, Reset, StageTimes};

/// Below this many MACs a node runs on the calling thread: forking costs more than it saves.
const MIN_PARALLEL_MACS: u64 = 150_000;

/// A graph output in the layout the ONNX model declares (NCHW, `[1, C]`, or a reshaped view).
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// One stream's state: cached activations, tile references, statistics.
pub struct Session {
    plan: Arc<Plan>,
    options: SessionOptions,
    pool: Option<rayon::ThreadPool>,
    threads: usize,
    tiling: Tiling,
    /// Output of every node; `acts[0]` is the normalised input tensor.
    acts: Vec<Vec<f32>>,
    /// The input (0–255 scale, model size) that the cache was computed from, per pixel.
    reference: Vec<f32>,
    /// Scratch for the resampled current frame.
    current: Vec<f32>,
    /// Size of the last frame, `None` when the cache is cold.
    last_frame: Option<(usize, usize)>,
    frames: u64,
    since_refresh: u32,
    last: Option<FrameStats>,
    /// Delta mode: each node's activation scale (root mean square) at the last full
    /// computation.
    scales: Vec<f32>,
    /// Delta mode: per node, a second buffer that recomputed values go to before they are
    /// compared with the cached ones (allocated on first use; only the rectangles are written).
    fresh: Vec<Vec<f32>>,
    /// Per head: whether it runs at all, and on every how many frames.
    enabled: Vec<bool>,
    rates: Vec<u32>,
    /// Per node of a head that did not run: the positions that changed since it last ran,
    /// recomputed when it runs again (propagation distributes over unions, so this is exact).
    pending: Vec<Option<Mask>>,
    /// Which heads run on the current frame.
    due: Vec<bool>,
    /// Motion mode: the reference before matched tiles moved (reused across frames).
    moved_from: Vec<f32>,
}

impl Session {
    pub fn new(plan: Arc<Plan>, options: SessionOptions) -> Result<Self> {
        options.validate()?;
        let threads = options.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let pool = if threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("framecache-{i}"))
                    .build()
                    .map_err(|e| Error::ThreadPool { threads, reason: e.to_string() })?,
            )
        } else {
            None
        };
        let input = plan.graph().input_shape();
        let acts: Vec<Vec<f32>> = plan.graph().nodes.iter().map(|n| vec![0.0; n.shape.len()]).collect();
        let fresh = vec![Vec::new(); acts.len()];
        let heads = plan.heads().len();
        let rates = plan.heads().iter().map(|h| h.rate.max(1)).collect();
        let pending = vec![None; acts.len()];
        Ok(Self {
            enabled: vec![true; heads],
            rates,
            pending,
            due: vec![true; heads],
            moved_from: Vec::new(),
            tiling: Tiling::new(input.h, input.w, options.tile),
            plan,
            options,
            pool,
            threads,
            acts,
            reference: Vec::new(),
            current: Vec::new(),
            last_frame: None,
            frames: 0,
            since_refresh: 0,
            last: None,
            scales: Vec::new(),
            fresh,
        })
    }

    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }
    pub fn options(&self) -> &SessionOptions {
        &self.options
    }
    /// Statistics of the last frame.
    pub fn last_stats(&self) -> Option<&FrameStats> {
        self.last.as_ref()
    }

    /// Turns head `k` on or off. An off head costs nothing; when it is turned on again it
    /// recomputes what changed meanwhile.
    pub fn set_head_enabled(&mut self, k: usize, on: bool) -> Result<()> {
        let slot = self.enabled.get_mut(k).ok_or_else(|| bad_head(k))?;
        *slot = on;
        Ok(())
    }

    /// Runs head `k` on every `rate`-th frame (counted from the session's first frame).
    pub fn set_head_rate(&mut self, k: usize, rate: u32) -> Result<()> {
        if rate == 0 {
            return Err(Error::InvalidOption { name: "rate", value: "0".into(), reason: "at least 1 frame".into() });
        }
        *self.rates.get_mut(k).ok_or_else(|| bad_head(k))? = rate;
        Ok(())
    }

    /// Whether node `i` is computed this frame: backbone nodes always, head nodes when their
    /// head is due.
    fn active(&self, i: usize) -> bool {
        self.plan.part(i).is_none_or(|k| self.due[k])
    }

    /// Head node `i` does not run this frame: remember what changed for when it does.
    fn defer(&mut self, i: usize, m: &Mask) {
        match &mut self.pending[i] {
            Some(p) => p.union_with(m),
            slot => *slot = Some(m.clone()),
        }
    }

    /// Forgets the cache: the next frame is computed in full.
    pub fn reset(&mut self) {
        self.last_frame = None;
        self.since_refresh = 0;
    }

    /// Reference path: preprocesses `frame` and recomputes every node in full.
    pub fn run_full(&mut self, frame: &Frame<'_>) -> Result<Vec<Output>> {
        self.step(frame, true)
    }

    /// Cached path: recomputes only what changed since the cached references.
    pub fn process(&mut self, frame: &Frame<'_>) -> Result<Vec<Output>> {
        self.step(frame, false)
    }

    /// The cached output of node `i` (NHWC), for tests and inspection.
    pub fn activation(&self, i: usize) -> &[f32] {
        &self.acts[i]
    }

    fn step(&mut self, frame: &Frame<'_>, force_full: bool) -> Result<Vec<Output>> {
        frame.validate()?;
        let plan = Arc::clone(&self.plan);
        let graph = plan.graph();
        let input = graph.input_shape();
        let mut times = StageTimes::default();
        self.frames += 1;
        for k in 0..self.due.len() {
            self.due[k] = force_full || (self.enabled[k] && (self.frames - 1).is_multiple_of(u64::from(self.rates[k])));
        }

        let t = Instant::now();
        plan.preprocess().resample(frame, input, &mut self.current);
        times.preprocess = t.elapsed();

        let size = (frame.width, frame.height);
        let refresh_due = self.options.refresh_interval.is_some_and(|n| self.since_refresh + 1 >= n);
        let reset = match self.last_frame {
            _ if force_full => Some(Reset::Full),
            None => Some(Reset::Cold),
            Some(prev) if prev != size => Some(Reset::FrameSize { from: prev, to: size }),
            Some(_) if refresh_due => Some(Reset::Refresh),
            Some(_) => None,
        };
        self.last_frame = Some(size);

        // Change detection, and the new input written where it changed.
        let t = Instant::now();
        let (metric, level) = self.options.mode.level();
        let mut tiles = match reset {
            Some(_) => vec![true; self.tiling.len()],
            None => diff::dirty_tiles(&self.reference, &self.current, input, self.tiling, metric, level),
        };
        // Motion mode: look for the changed tiles in the reference.
        let motion = match self.options.mode {
            Mode::Motion { level } if reset.is_none() => {
                let search = Search { range: self.options.search_range, align: self.options.motion_align, level };
                let (m, _) = motion::match_tiles(&self.reference, &self.current, input, self.tiling, &tiles, search);
                for (d, t) in tiles.iter_mut().zip(&m) {
                    *d = *t == TileMotion::Dirty;
                }
                Some(m)
            }
            _ => None,
        };
        times.diff = t.elapsed();

        let t = Instant::now();
        if reset.is_some() {
            self.since_refresh = 0;
            self.reference.clone_from(&self.current);
            plan.preprocess().normalize(&self.reference, &mut self.acts[0]);
        } else {
            self.since_refresh += 1;
            if let Some(m) = &motion {
                self.write_shifted_tiles(m, input);
            }
            self.write_dirty_tiles(&tiles, input);
        }
        times.copy = t.elapsed();

        let input_mask = match reset {
            Some(_) => Mask::full(input.h, input.w),
            None => diff::tile_mask(&tiles, self.tiling, input.h, input.w),
        };
        let delta = self.options.mode.node_delta().filter(|_| reset.is_none());
        let shifted_tiles =
            motion.as_ref().map_or(0, |m| m.iter().filter(|t| matches!(t, TileMotion::Shift { .. })).count());
        // Motion mode without any matched tile is delta mode.
        let (nodes, macs_executed) = match (delta, motion) {
            (_, Some(m)) if shifted_tiles > 0 => self.run_motion(&m, delta, &mut times),
            (Some(rel), _) => self.run_delta(input_mask, rel, &mut times),
            (None, _) => self.run_static(input_mask, reset.is_some(), &mut times),
        };
        if reset.is_some() && self.options.mode.node_delta().is_some() {
            self.scales = self.acts.iter().map(|a| rms(a)).collect();
        }

        let t = Instant::now();
        let outputs = self.outputs();
        times.copy += t.elapsed();

        let heads = self.head_stats(&nodes);
        self.last = Some(FrameStats {
            heads,
            frame_index: self.frames,
            reset,
            tiles: tiles.len(),
            dirty_tiles: tiles.iter().filter(|&&d| d).count(),
            shifted_tiles,
            tiling: self.tiling,
            dirty: tiles,
            nodes,
            macs_executed,
            macs_full: plan.total_macs(),
            times,
        });
        Ok(outputs)
    }

    /// Per head: whether it ran, and what it cost this frame.
    fn head_stats(&self, nodes: &[NodeStats]) -> Vec<HeadStats> {
        self.plan
            .heads()
            .iter()
            .enumerate()
            .map(|(k, h)| {
                let macs: u64 = h.nodes.iter().map(|&i| nodes[i].macs).sum();
                let time = h.nodes.iter().map(|&i| nodes[i].time).sum();
                let inputs_changed = h.reads.iter().any(|&j| nodes[j].changed > 0.0);
                let status = if !self.due[k] {
                    HeadStatus::Skipped
                } else if macs > 0 || inputs_changed {
                    HeadStatus::Computed
                } else {
                    HeadStatus::Unchanged
                };
                HeadStats { status, macs, time }
            })
            .collect()
    }

    /// The work for node `i` given its mask: rectangles, whether dense, dirty fraction.
    fn work_for(&self, i: usize, m: &Mask) -> (Vec<Rect>, bool, f64) {
        let node = &self.plan.graph().nodes[i];
        let frac = m.fraction();
        if frac == 0.0 {
            (Vec::new(), false, 0.0)
        } else if frac > self.options.dense_crossover || node.op.is_global() {
            (vec![Rect::full(node.shape)], true, 1.0)
        } else {
            (reuse::cover(m), false, frac)
        }
    }

    /// Exact and threshold modes: the masks follow from the input mask alone. `full` computes
    /// every position of every node, including positions that read no input at all (a
    /// transposed convolution whose kernel is smaller than its stride leaves such gaps, which
    /// hold the bias).
    fn run_static(&mut self, input_mask: Mask, full: bool, times: &mut StageTimes) -> (Vec<NodeStats>, u64) {
        let t = Instant::now();
        let plan = Arc::clone(&self.plan);
        let none = (Vec::new(), false, 0.0);
        let work: Vec<_> = if full {
            let nodes = &plan.graph().nodes;
            (0..nodes.len())
                .map(|i| {
                    let s = nodes[i].shape;
                    if self.active(i) {
                        (vec![Rect::full(s)], true, 1.0)
                    } else {
                        self.pending[i] = Some(Mask::full(s.h, s.w));
                        none.clone()
                    }
                })
                .collect()
        } else {
            let masks = reuse::propagate(plan.graph(), input_mask);
            masks
                .into_iter()
                .enumerate()
                .map(|(i, mut m)| {
                    if !self.active(i) {
                        self.defer(i, &m);
                        return none.clone();
                    }
                    if let Some(p) = self.pending[i].take() {
                        m.union_with(&p);
                    }
                    self.work_for(i, &m)
                })
                .collect()
        };
        times.propagate = t.elapsed();

        let t = Instant::now();
        let mut nodes = Vec::with_capacity(work.len());
        let mut macs_executed = 0;
        for (i, (rects, dense, frac)) in work.iter().enumerate() {
            let pixels: usize = rects.iter().map(Rect::area).sum();
            let macs = pixels as u64 * plan.macs_per_pixel(i);
            macs_executed += macs;
            let started = Instant::now();
            if i > 0 && !rects.is_empty() {
                self.compute_node(i, rects, macs, false);
            }
            let hit_rate = 1.0 - if *dense { 1.0 } else { *frac };
            let time = started.elapsed();
            nodes.push(NodeStats { hit_rate, macs, dense: *dense, changed: 1.0 - hit_rate, time });
        }
        times.compute = t.elapsed();
        (nodes, macs_executed)
    }

    /// Delta mode: node by node, recompute what changed inputs reach, then pass on only the
    /// positions that moved by more than the node's threshold and keep the cached value of the
    /// others.
    fn run_delta(&mut self, input_mask: Mask, rel: f32, times: &mut StageTimes) -> (Vec<NodeStats>, u64) {
        let plan = Arc::clone(&self.plan);
        let graph = plan.graph();
        let mut nodes = Vec::with_capacity(graph.nodes.len());
        let input_frac = input_mask.fraction();
        nodes.push(NodeStats {
            hit_rate: 1.0 - input_frac,
            macs: 0,
            dense: false,
            changed: input_frac,
            time: Default::default(),
        });
        let mut changed = Vec::with_capacity(graph.nodes.len());
        changed.push(input_mask);
        let mut macs_executed = 0;
        for (i, node) in graph.nodes.iter().enumerate().skip(1) {
            let t = Instant::now();
            let mut m = reuse::propagate_node(graph, node, &changed);
            if !self.active(i) {
                self.defer(i, &m);
                nodes.push(NodeStats { hit_rate: 1.0, macs: 0, dense: false, changed: 0.0, time: Default::default() });
                changed.push(m);
                times.propagate += t.elapsed();
                continue;
            }
            if let Some(p) = self.pending[i].take() {
                m.union_with(&p);
            }
            let (rects, dense, frac) = self.work_for(i, &m);
            times.propagate += t.elapsed();

            let pixels: usize = rects.iter().map(Rect::area).sum();
            let macs = pixels as u64 * plan.macs_per_pixel(i);
            macs_executed += macs;
            // Nodes that nobody reads are written in place; the others into `fresh[i]`, then
            // compared with their cached values.
            let suppress = !rects.is_empty() && plan.has_consumers(i);
            let started = Instant::now();
            if !rects.is_empty() {
                self.compute_node(i, &rects, macs, suppress);
            }
            let time = started.elapsed();
            times.compute += time;
            let t = Instant::now();
            let out = if suppress {
                let threshold = rel * self.scales.get(i).copied().unwrap_or(0.0);
                self.keep_large_changes(i, &rects, threshold)
            } else {
                m
            };
            times.copy += t.elapsed();
            let hit_rate = 1.0 - if dense { 1.0 } else { frac };
            nodes.push(NodeStats { hit_rate, macs, dense, changed: out.fraction(), time });
            changed.push(out);
        }
        (nodes, macs_executed)
    }

    /// Compares the values recomputed into `fresh[i]` with node `i`'s cached ones: positions
    /// where some channel moved by more than `threshold` take the new value and are returned as
    /// changed; the others keep their cached value. A node recomputed in full swaps its buffers
    /// and copies back only the held-back positions; otherwise the moved positions are copied.
    fn keep_large_changes(&mut self, i: usize, rects: &[Rect], threshold: f32) -> Mask {
        let s = self.plan.graph().nodes[i].shape;
        let mut out = Mask::new(s.h, s.w);
        let whole = rects.len() == 1 && rects[0] == Rect::full(s);
        let (cached, fresh) = (&mut self.acts[i], &mut self.fresh[i]);
        for r in rects {
            let len = (r.x1 - r.x0) * s.c;
            for y in r.y0..r.y1 {
                let at = (y * s.w + r.x0) * s.c;
                let pixels = cached[at..at + len].chunks_exact_mut(s.c).zip(fresh[at..at + len].chunks_exact_mut(s.c));
                for (x, (old, new)) in (r.x0..).zip(pixels) {
                    // A count rather than an early exit, so that the loop vectorises.
                    let moved = new.iter().zip(&*old).map(|(n, o)| u32::from((n - o).abs() > threshold)).sum::<u32>();
                    match (moved > 0, whole) {
                        (true, true) => out.set(y, x, true),
                        (true, false) => {
                            old.copy_from_slice(new);
                            out.set(y, x, true);
                        }
                        (false, true) => new.copy_from_slice(old),
                        (false, false) => {}
                    }
                }
            }
        }
        if whole {
            std::mem::swap(cached, fresh);
        }
        out
    }

    /// Motion mode: every matched tile takes its reference from the shifted place of the old one
    /// (the cache was computed from that), read from a snapshot so that tiles moving onto each
    /// other's sources see the old values, and its input tensor is normalised from it.
    fn write_shifted_tiles(&mut self, motion: &[TileMotion], input: Shape) {
        if !motion.iter().any(|t| matches!(t, TileMotion::Shift { .. })) {
            return;
        }
        let old_ref = &mut self.moved_from;
        old_ref.clone_from(&self.reference);
        let pre = self.plan.preprocess();
        let c = input.c;
        for ty in 0..self.tiling.rows {
            for tx in 0..self.tiling.cols {
                let TileMotion::Shift { dy, dx } = motion[ty * self.tiling.cols + tx] else { continue };
                let (y0, y1, x0, x1) = self.tiling.bounds(ty, tx, input.h, input.w);
                for y in y0..y1 {
                    // In bounds: the search only accepts sources inside the image.
                    let sy = (y as i64 - i64::from(dy)) as usize;
                    let sx0 = (x0 as i64 - i64::from(dx)) as usize;
                    let dst = (y * input.w + x0) * c..(y * input.w + x1) * c;
                    let src = (sy * input.w + sx0) * c..(sy * input.w + sx0 + x1 - x0) * c;
                    self.reference[dst.clone()].copy_from_slice(&old_ref[src]);
                    pre.normalize(&self.reference[dst.clone()], &mut self.acts[0][dst]);
                }
            }
        }
    }

    /// Motion mode: labels from the input tiles through the graph; per node, shifted positions
    /// are copied from a snapshot of the cached output and dirty ones recomputed.
    fn run_motion(
        &mut self,
        tiles: &[TileMotion],
        delta: Option<f32>,
        times: &mut StageTimes,
    ) -> (Vec<NodeStats>, u64) {
        let t = Instant::now();
        let plan = Arc::clone(&self.plan);
        let graph = plan.graph();
        let input = graph.input_shape();
        let mut labels = Labels::new(input.h, input.w, Label::Clean);
        for ty in 0..self.tiling.rows {
            for tx in 0..self.tiling.cols {
                let l = match tiles[ty * self.tiling.cols + tx] {
                    TileMotion::Clean => continue,
                    TileMotion::Dirty => Label::Dirty,
                    TileMotion::Shift { dy, dx } => Label::Shift(dy, dx),
                };
                let (y0, y1, x0, x1) = self.tiling.bounds(ty, tx, input.h, input.w);
                for y in y0..y1 {
                    for x in x0..x1 {
                        labels.set(y, x, l);
                    }
                }
            }
        }
        times.propagate = t.elapsed();
        let input_changed = (input.pixels() - labels.count(|x| x == Label::Clean)) as f64 / input.pixels() as f64;
        let mut nodes = vec![NodeStats {
            hit_rate: 1.0 - labels.count(|x| x == Label::Dirty) as f64 / input.pixels() as f64,
            macs: 0,
            dense: false,
            changed: input_changed,
            time: Default::default(),
        }];
        let mut all = vec![labels];
        let mut macs_executed = 0;
        for (i, node) in graph.nodes.iter().enumerate().skip(1) {
            let t = Instant::now();
            let mut l = motion_labels::propagate_node(graph, node, &all);
            times.propagate += t.elapsed();
            let t = Instant::now();
            let s = node.shape;
            let mut dirty = l.dirty();
            let shifted = l.count(|x| matches!(x, Label::Shift(..)));
            if !self.active(i) {
                // A skipped head catches up later by recomputing whatever moved.
                self.defer(i, &l.mask(|x| x != Label::Clean));
                nodes.push(NodeStats { hit_rate: 1.0, macs: 0, dense: false, changed: 0.0, time: Default::default() });
                all.push(l);
                continue;
            }
            if let Some(p) = self.pending[i].take() {
                dirty.union_with(&p);
                for y in 0..s.h {
                    for x in 0..s.w {
                        if p.get(y, x) {
                            l.set(y, x, Label::Dirty);
                        }
                    }
                }
            }
            if shifted > 0 {
                shift_in_place(&mut self.acts[i], &mut self.fresh[i], s, &l, &dirty);
            }
            times.copy += t.elapsed();
            let (rects, dense, frac) = self.work_for(i, &dirty);
            let pixels: usize = rects.iter().map(Rect::area).sum();
            let macs = pixels as u64 * plan.macs_per_pixel(i);
            macs_executed += macs;
            // With node deltas, recomputed positions that moved less than the node's threshold
            // keep their cached value and become clean for the consumers.
            let suppress = delta.filter(|_| !rects.is_empty() && plan.has_consumers(i));
            let started = Instant::now();
            if !rects.is_empty() {
                self.compute_node(i, &rects, macs, suppress.is_some());
            }
            let time = started.elapsed();
            times.compute += time;
            if let Some(rel) = suppress {
                let t = Instant::now();
                let threshold = rel * self.scales.get(i).copied().unwrap_or(0.0);
                let moved = self.keep_large_changes(i, &rects, threshold);
                for r in &rects {
                    for y in r.y0..r.y1 {
                        for x in r.x0..r.x1 {
                            match (moved.get(y, x), l.get(y, x)) {
                                (true, _) => l.set(y, x, Label::Dirty),
                                (false, Label::Dirty) => l.set(y, x, Label::Clean),
                                _ => {}
                            }
                        }
                    }
                }
                times.copy += t.elapsed();
            }
            let hit_rate = 1.0 - if dense { 1.0 } else { frac };
            let changed = (s.pixels() - l.count(|x| x == Label::Clean)) as f64 / s.pixels().max(1) as f64;
            nodes.push(NodeStats { hit_rate, macs, dense, changed, time });
            all.push(l);
        }
        (nodes, macs_executed)
    }

    /// Copies the dirty tiles of the current frame into the reference and the input tensor.
    fn write_dirty_tiles(&mut self, tiles: &[bool], input: Shape) {
        let pre = self.plan.preprocess();
        for ty in 0..self.tiling.rows {
            for tx in 0..self.tiling.cols {
                if !tiles[ty * self.tiling.cols + tx] {
                    continue;
                }
                let (y0, y1, x0, x1) = self.tiling.bounds(ty, tx, input.h, input.w);
                for y in y0..y1 {
                    let r = (y * input.w + x0) * 3..(y * input.w + x1) * 3;
                    self.reference[r.clone()].copy_from_slice(&self.current[r.clone()]);
                    pre.normalize(&self.current[r.clone()], &mut self.acts[0][r]);
                }
            }
        }
    }

    /// Computes `rects` of node `i` into its cached buffer, or into `fresh[i]` when `into_fresh`.
    fn compute_node(&mut self, i: usize, rects: &[Rect], macs: u64, into_fresh: bool) {
        let graph = self.plan.graph();
        let node = &graph.nodes[i];
        // Inputs always precede the node, so split the buffers there.
        let (before, rest) = self.acts.split_at_mut(i);
        let inputs: Vec<In<'_>> =
            node.inputs.iter().map(|&j| In { data: &before[j], shape: graph.nodes[j].shape }).collect();
        let len = node.shape.len();
        let dst = if into_fresh {
            let fresh = &mut self.fresh[i];
            if fresh.len() != len {
                fresh.resize(len, 0.0);
            }
            &mut fresh[..]
        } else {
            &mut rest[0][..]
        };
        let out = OutBuf::new(dst, node.shape);
        match &self.pool {
            Some(pool) if macs >= MIN_PARALLEL_MACS && !node.op.is_global() => {
                let tasks = split_rows(rects, self.threads * 2);
                pool.install(|| {
                    tasks.par_iter().for_each_init(Vec::new, |scratch, r| {
                        // SAFETY: tasks are disjoint pieces of a disjoint cover.
                        unsafe { kernels::compute_rect(node, &inputs, &out, *r, scratch) }
                    })
                });
            }
            _ => {
                let mut scratch = Vec::new();
                for r in rects {
                    // SAFETY: disjoint rectangles, computed one after the other.
                    unsafe { kernels::compute_rect(node, &inputs, &out, *r, &mut scratch) }
                }
            }
        }
    }

    fn outputs(&self) -> Vec<Output> {
        let graph = self.plan.graph();
        graph
            .outputs
            .iter()
            .map(|o| {
                let s = graph.nodes[o.node].shape;
                let src = &self.acts[o.node];
                let data = if o.nchw { s.nhwc_to_nchw(src) } else { src.clone() };
                Output { name: o.name.clone(), shape: o.onnx_shape.clone(), data }
            })
            .collect()
    }
}

/// Copies every position labelled `Shift(dy, dx)` (and not in `dirty`) of `buf` from
/// `(y - dy, x - dx)` of the values `buf` held before. With one vector in the node the copy
/// runs in place, against the direction of the vector, so every source is read before it is
/// overwritten; with several, from a snapshot in `scratch`.
fn shift_in_place(buf: &mut [f32], scratch: &mut Vec<f32>, s: Shape, l: &Labels, dirty: &Mask) {
    let mut vectors = l.labels.iter().filter_map(|x| match x {
        Label::Shift(dy, dx) => Some((*dy, *dx)),
        _ => None,
    });
    let first = vectors.next();
    let single = first.filter(|v| vectors.all(|w| w == *v));
    let rows: Vec<usize> = match single {
        Some((dy, _)) if dy > 0 => (0..s.h).rev().collect(),
        _ => (0..s.h).collect(),
    };
    let cols: Vec<usize> = match single {
        Some((0, dx)) if dx > 0 => (0..s.w).rev().collect(),
        _ => (0..s.w).collect(),
    };
    if single.is_none() {
        scratch.clear();
        scratch.extend_from_slice(buf);
    }
    for &y in &rows {
        for &x in &cols {
            let Label::Shift(dy, dx) = l.get(y, x) else { continue };
            if dirty.get(y, x) {
                continue;
            }
            let (sy, sx) = ((y as i64 - i64::from(dy)) as usize, (x as i64 - i64::from(dx)) as usize);
            debug_assert!(sy < s.h && sx < s.w, "a shifted source outside the cached map");
            let (d, from) = ((y * s.w + x) * s.c, (sy * s.w + sx) * s.c);
            if single.is_some() {
                buf.copy_within(from..from + s.c, d);
            } else {
                buf[d..d + s.c].copy_from_slice(&scratch[from..from + s.c]);
            }
        }
    }
}

fn bad_head(k: usize) -> Error {
    Error::InvalidOption { name: "head", value: k.to_string(), reason: "no such head in this plan".into() }
}

/// Root mean square of a buffer (0 for an empty one).
fn rms(a: &[f32]) -> f32 {
    let sum: f64 = a.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    (sum / a.len().max(1) as f64).sqrt() as f32
}

/// Splits rectangles into row bands so that there are about `target` tasks.
fn split_rows(rects: &[Rect], target: usize) -> Vec<Rect> {
    let rows: usize = rects.iter().map(|r| r.y1 - r.y0).sum();
    let per = rows.div_ceil(target.max(1)).max(1);
    let mut out = Vec::new();
    for r in rects {
        let mut y = r.y0;
        while y < r.y1 {
            let y1 = (y + per).min(r.y1);
            out.push(Rect { y0: y, y1, ..*r });
            y = y1;
        }
    }
    out
}
