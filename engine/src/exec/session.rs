//! [`Session`]: one stream's cache and its node loop. Each frame's input tiles are tested
//! against their references, the changes are propagated node by node, and each node
//! recomputes only the rectangles covering them; [`Session::run_full`] is the reference path.

use std::sync::Arc;
use std::time::Instant;

use super::options::{SessionOptions, GATE_MACS_PER_VALUE};
use super::plan::Plan;
use super::pool::{FrameGuard, SpinPool};
use crate::diff::{self, Metric, Tiling};
use crate::error::{Error, Result};
use crate::frame::{Aspect, Image};
use crate::graph::{Op, Shape};
use crate::kernels::{self, In, OutBuf, SimdLevel};
use crate::reuse::{self, Mask, Rect};
use crate::stats::{FrameStats, HeadStats, HeadStatus, NodeStats, Reset, StageTimes};

/// A pool computes a bottleneck's whole output from expansions in each row band's scratch
/// while that expands at most this share of the input rows again (the bands' halos), and
/// expands into the map first otherwise. The map costs a write and a read of the expanded
/// tensor (6x the input's channels), a few halo rows cost their 1x1 products again; see
/// docs/results-kernels.md for the measurement behind the share.
const MAX_HALO_SHARE: f64 = 0.15;

/// On a cached frame, a bottleneck whose input has at most this many channels computes each
/// rectangle from expansions in scratch (its window's halo expanded again), not from the stored
/// expanded map ([`Session::stale_reads`]). An expanded value then costs at most this many
/// multiply-adds to compute again, against a write of its 4 bytes to the map and a read back
/// (the map of an early block, 6x its input's width at a high resolution, does not stay in
/// cache): about what the few multiply-adds per byte of memory traffic that CPUs do make of 8
/// bytes. Wider blocks keep the map. Measured (docs/results-reuse.md): every block this moved
/// got faster on cached frames (MobileNetV2 `features.2` 0.33 -> 0.22 ms on pedestrians), and
/// the 14x14 blocks of 64 and 96 channels were slower from scratch on the delta presets.
const HALO_MAX_CHANNELS: usize = 32;

/// Below this many MACs (weighted by [`parallel_weight`]) a node runs on the calling thread:
/// forking costs more than it saves. Handing tasks to the pool's spinning workers costs about a
/// microsecond, and 40k MACs are 1–4 µs of work at the kernels' 10–40 GMAC/s
/// (docs/results-kernels.md).
const MIN_PARALLEL_MACS: u64 = 40_000;

/// What one MAC of a node's op weighs against [`MIN_PARALLEL_MACS`]. The convolutions (and
/// fully connected layers) do many multiply-adds per value they move; every other op does one
/// or a few per value read or written, is bound by memory, and runs about a tenth of their rate
/// per MAC (`profile --nodes`: 3–15 G values/s against 40–55 GMAC/s), so its MACs count 8 times.
/// Running such a node on one thread between two nodes on the pool also moves the half of
/// the map that the other core wrote, and back: a squeeze-and-excitation product of
/// 16x16x128 values took longer on two threads than on one, and its consumer as long.
fn parallel_weight(op: &Op) -> u64 {
    match op {
        Op::Conv(_) | Op::ConvTranspose(_) | Op::Bottleneck(_) | Op::Dense(_) => 1,
        _ => 8,
    }
}

/// Fewest output rows in one band of a resample on the pool: each band converts and blends
/// the source rows its taps read, so the rows at a band's edges are read by two bands, and
/// thin bands would repeat much of the work.
const RESAMPLE_BAND_ROWS: usize = 32;
/// Plans of other input sizes that a session following the frame ([`Aspect`]) keeps besides
/// the one it was made with: a phone turned back and forth, or a camera switched between two
/// resolutions, compiles nothing after the first turn.
const KEPT_PLANS: usize = 2;

thread_local! {
    /// Kernel scratch of each pool worker, kept across tasks and frames (see `Session::scratch`).
    static POOL_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Adaptive bypass: the longest run of dense frames after a cached frame that did not pay.
const MAX_BYPASS: u32 = 16;
/// Adaptive bypass: a cached frame pays when it took less than this fraction of a dense one. A
/// tie goes to the dense frame, which also refreshes the cache and its references.
const PAYS: f64 = 0.95;
/// Adaptive bypass: the dense cost is measured again after this many frames without a dense one.
const PROBE_INTERVAL: u32 = 64;

/// The expanded map of a bottleneck with an expansion, filled on demand: a node computed whole
/// on one thread expands its input in the kernel's scratch, band by band, and leaves the map
/// alone; a cached frame expands into the map only the positions that its rectangles read and
/// that are not valid ([`Session::stale_reads`]), so the expansion runs once for each change
/// of the input that some frame needs.
struct ExpandedMap {
    map: Vec<f32>,
    /// Where `map` holds the expansion of the current input (at the input's resolution).
    valid: Mask,
}

/// A node that averages its whole input (a global pool): the per-channel sums of each row
/// block of its input ([`kernels::mean_block_sums`]), kept across frames. A cached frame sums
/// again only the blocks whose input rows changed; the mean adds every block in order, so it
/// has the bits of a full computation (which sums the same blocks the same way).
struct BlockSums {
    /// `kernels::mean_blocks(input)` runs of `c` sums.
    sums: Vec<f32>,
    /// Per block, whether `sums` holds it for the current input.
    valid: Vec<bool>,
}

/// The adaptive bypass (see [`Session`]): what a dense frame costs in this session, and how
/// many of the next frames are computed densely.
#[derive(Clone, Debug, Default)]
struct Bypass {
    /// Running mean (halving weights) of the wall time of dense frames.
    dense_ms: Option<f64>,
    /// Dense frames still to run.
    left: u32,
    /// The length of the next dense run, doubled each time a cached frame does not pay.
    backoff: u32,
    /// Frames since the last dense one.
    since_dense: u32,
}

impl Bypass {
    fn due(&self) -> bool {
        self.left > 0 || self.dense_ms.is_none() || self.since_dense >= PROBE_INTERVAL
    }

    /// A frame that did not pay: the next dense run is twice the last one (1 at first, at most
    /// [`MAX_BYPASS`]).
    fn back_off(&mut self) {
        self.backoff = (self.backoff * 2).clamp(1, MAX_BYPASS);
        self.left = self.backoff;
    }

    /// Records one frame's wall time, with the reason it was dense if it was.
    fn record(&mut self, reset: Option<Reset>, ms: f64) {
        match reset {
            // A cold frame pays for first allocations and cold caches: not a dense frame's cost.
            Some(Reset::Cold) => self.since_dense = 0,
            // The whole scene moved: the frame ran densely after paying for the change
            // detection, so it did not pay, like a cached frame that costs more than a dense
            // one, and starts (or lengthens) a dense run. Its time is not a dense frame's cost.
            Some(Reset::Motion) => {
                self.since_dense = 0;
                self.back_off();
            }
            Some(r) => {
                self.dense_ms = Some(self.dense_ms.map_or(ms, |d| 0.5 * (d + ms)));
                self.since_dense = 0;
                if r == Reset::Bypass {
                    self.left = self.left.saturating_sub(1);
                }
            }
            None => {
                self.since_dense += 1;
                match self.dense_ms {
                    Some(d) if ms > PAYS * d => self.back_off(),
                    _ => self.backoff = 0,
                }
            }
        }
    }
}

/// A graph output in the layout the ONNX model declares (NCHW, `[1, C]`, or a reshaped view).
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    /// Whether the model bounds every value of this output to [0, 1] (its last op ends in a
    /// sigmoid, a hard sigmoid or a clip to [0, 1]): decoders then read it as probabilities,
    /// otherwise as logits. Decided once per model, from the graph.
    pub probabilities: bool,
}

/// One stream's state: cached activations, tile references, statistics.
///
/// Every frame goes through one node loop (`Session::run_nodes`): input tiles are tested
/// against their references, the changed positions are propagated node by node, each node
/// recomputes the rectangles covering them, and in the delta presets passes on only the
/// positions that moved by more than its gate.
///
/// **Adaptive bypass** (`SessionOptions::bypass`): reuse only pays when the bookkeeping costs
/// less than the work it saves, and no constant says when that is for every model, machine
/// and scene. So the session measures it. It times dense frames (after the cold one) and every
/// cached frame; when a cached frame did not take clearly less than a dense one (under 95% of
/// it), the next frames are computed densely, 1, 2, 4, … up to 16 of them while cached frames keep not paying (back to 1 as soon
/// as one pays). The dense cost is first measured on the second frame (the cold one pays for
/// first allocations and cold caches) and again after 64 frames without a dense one. A dense
/// frame is a refresh: the cache and the references are rebuilt from it, so it costs full
/// inference and no more, and fidelity only gains. A frame on which the whole scene moved
/// ([`Reset::Motion`]) counts as a cached frame that did not pay: while the camera keeps
/// moving, the change detection runs on one frame in 17 at most instead of on every frame.
pub struct Session {
    plan: Arc<Plan>,
    options: SessionOptions,
    pool: Option<Arc<SpinPool>>,
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
    /// Per bottleneck node with an expansion, its expanded map (`None` for other nodes).
    expanded: Vec<Option<ExpandedMap>>,
    /// Per global pool, its input's row-block sums (`None` for other nodes).
    means: Vec<Option<BlockSums>>,
    /// Which heads run on the current frame.
    due: Vec<bool>,
    bypass: Bypass,
    /// Kernel scratch (im2col rows) kept across nodes and frames: a fresh large allocation
    /// per call is fresh pages, and page faults, every frame.
    scratch: Vec<f32>,
    /// Instruction-set level of every kernel call.
    level: SimdLevel,
    /// The plan the session was made with: unless [`Aspect::Fixed`], what the input size of
    /// each frame is derived from ([`Plan::input_for_frame`]).
    base: Arc<Plan>,
    /// Unless [`Aspect::Fixed`], the plans of other sizes that earlier frames needed, most
    /// recent last (at most [`KEPT_PLANS`]).
    kept: Vec<Arc<Plan>>,
}

impl Session {
    pub fn new(plan: Arc<Plan>, options: SessionOptions) -> Result<Self> {
        let pool = WorkerPool::new(&options)?;
        Self::with_pool(plan, options, pool)
    }

    /// A session that computes on `pool`, made (and `options` validated) by
    /// [`WorkerPool::new`], which other sessions may share: the backbones of a
    /// [`crate::model::BundleSession`] run one after the other, so one pool serves them all.
    pub(crate) fn with_pool(plan: Arc<Plan>, options: SessionOptions, pool: WorkerPool) -> Result<Self> {
        let WorkerPool { pool, threads } = pool;
        let input = plan.graph().input_shape();
        // Zeros written now (`vec![0.0; n]` would map zero pages lazily), so that page faults
        // do not land in the first frame, whose time the adaptive bypass takes as what a dense
        // frame costs.
        let acts: Vec<Vec<f32>> = plan.graph().nodes.iter().map(|n| touched_zeros(n.shape.len())).collect();
        let fresh = vec![Vec::new(); acts.len()];
        let heads = plan.heads().len();
        let rates = plan.heads().iter().map(|h| h.rate.max(1)).collect();
        let pending = vec![None; acts.len()];
        let graph = plan.graph();
        let expanded = graph
            .nodes
            .iter()
            .map(|n| match &n.op {
                Op::Bottleneck(b) if b.expand.is_some() => {
                    let x = graph.nodes[n.inputs[0]].shape;
                    Some(ExpandedMap { map: touched_zeros(n.expanded_len(graph)), valid: Mask::new(x.h, x.w) })
                }
                _ => None,
            })
            .collect();
        let means = graph
            .nodes
            .iter()
            .map(|n| {
                let x = graph.nodes[*n.inputs.first()?].shape;
                let blocks = kernels::mean_blocks(x);
                (!x.is_empty() && n.averages_whole_input(x))
                    .then(|| BlockSums { sums: touched_zeros(blocks * x.c), valid: vec![false; blocks] })
            })
            .collect();
        Ok(Self {
            expanded,
            means,
            enabled: vec![true; heads],
            rates,
            pending,
            due: vec![true; heads],
            bypass: Bypass::default(),
            scratch: Vec::new(),
            level: options.simd.unwrap_or_else(SimdLevel::best),
            tiling: Tiling::new(input.h, input.w, options.tile),
            base: Arc::clone(&plan),
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
            kept: Vec::new(),
        })
    }

    /// Unless [`Aspect::Fixed`], makes the session run the plan of the input size that a `w x h`
    /// frame needs ([`Plan::input_for_frame`]). A plan of a size not seen recently is compiled
    /// ([`Plan::at_input_size`]); the last [`KEPT_PLANS`] are kept, so that turning a phone
    /// back and forth compiles nothing. The session's buffers are rebuilt for the plan, and the
    /// frame, being of another size, is computed in full ([`Reset::FrameSize`]).
    fn follow_frame(&mut self, (w, h): (usize, usize)) -> Result<()> {
        // A frame of the last frame's size runs the plan that frame ran.
        if self.base.preprocess().aspect == Aspect::Fixed || self.last_frame == Some((w, h)) {
            return Ok(());
        }
        let (ih, iw) = self.base.input_for_frame(w, h);
        let input = self.plan.graph().input_shape();
        if (input.h, input.w) == (ih, iw) {
            return Ok(());
        }
        let at = |p: &Arc<Plan>| (p.graph().input_shape().h, p.graph().input_shape().w) == (ih, iw);
        let plan = match self.kept.iter().position(at) {
            Some(k) => self.kept.remove(k),
            None if at(&self.base) => Arc::clone(&self.base),
            None => self.base.at_input_size(ih, iw)?,
        };
        let pool = WorkerPool { pool: self.pool.clone(), threads: self.threads };
        let mut next = Self::with_pool(plan, self.options.clone(), pool)?;
        let mut kept = std::mem::take(&mut self.kept);
        if !Arc::ptr_eq(&self.plan, &self.base) {
            kept.push(Arc::clone(&self.plan));
        }
        if kept.len() > KEPT_PLANS {
            kept.remove(0);
        }
        next.kept = kept;
        next.base = Arc::clone(&self.base);
        next.enabled = std::mem::take(&mut self.enabled);
        next.rates = std::mem::take(&mut self.rates);
        next.frames = self.frames;
        next.last_frame = self.last_frame;
        next.level = self.level;
        *self = next;
        Ok(())
    }

    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }
    /// The instruction-set level this session's kernels run at.
    pub fn simd_level(&self) -> SimdLevel {
        self.level
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

    /// For a bottleneck, the share of its input rows that the pool's row bands would expand
    /// more than once: each of the bands of a whole output ([`Tasks::run`], one per worker)
    /// reads `kh - sh` rows beyond its own.
    fn halo_share(&self, i: usize) -> f64 {
        let graph = self.plan.graph();
        let node = &graph.nodes[i];
        let Op::Bottleneck(b) = &node.op else { return 0.0 };
        let w = b.depthwise.window;
        (self.threads * w.kh.saturating_sub(w.sh)) as f64 / graph.nodes[node.inputs[0]].shape.h.max(1) as f64
    }

    /// For a bottleneck with an expansion, computed on `rects` of its output from its expanded
    /// map: the rectangles of the map that those read and that are stale, which are then
    /// taken as expanded. `None` for other nodes.
    fn stale_reads(&mut self, i: usize, rects: &[Rect]) -> Option<Vec<Rect>> {
        let graph = self.plan.graph();
        let node = &graph.nodes[i];
        let (Op::Bottleneck(b), Some(ExpandedMap { valid, .. })) = (&node.op, &mut self.expanded[i]) else {
            return None;
        };
        let x = graph.nodes[node.inputs[0]].shape;
        let mut stale = Mask::new(x.h, x.w);
        for &r in rects {
            let read = kernels::depthwise_input_rect(&b.depthwise.window, r, (x.h, x.w));
            stale.set_rect(read.y0, read.y1, read.x0, read.x1);
        }
        stale.subtract(valid);
        valid.union_with(&stale);
        Some(if stale.fraction() > self.options.dense_crossover { vec![Rect::full(x)] } else { reuse::cover(&stale) })
    }

    /// Forgets the cache: the next frame is computed in full.
    pub fn reset(&mut self) {
        self.last_frame = None;
        self.pending.iter_mut().for_each(|p| *p = None);
        self.since_refresh = 0;
        self.bypass = Bypass::default();
    }

    /// Reference path: preprocesses `frame` and recomputes every node in full.
    pub fn run_full<'f>(&mut self, frame: impl Into<Image<'f>>) -> Result<Vec<Output>> {
        self.step(frame.into(), true)
    }

    /// Cached path: recomputes only what changed since the cached references.
    ///
    /// `frame` is a [`Frame`](crate::Frame) (by reference) or an [`Image`]: a camera buffer (YUV planes, or
    /// 4-byte pixels with a row stride, rotated upright) is sampled from its planes, without a
    /// full-resolution copy.
    pub fn process<'f>(&mut self, frame: impl Into<Image<'f>>) -> Result<Vec<Output>> {
        self.step(frame.into(), false)
    }

    /// The cached output of node `i` (NHWC), for tests and inspection.
    pub fn activation(&self, i: usize) -> &[f32] {
        &self.acts[i]
    }

    /// The gate of node `i` in the approximate presets: how far one of its output values may
    /// move before the position is passed on as changed (`level / 255` times the node's scale
    /// at the last dense frame). `None` for nodes that are not gated, and in exact mode.
    pub fn gate_threshold(&self, i: usize) -> Option<f32> {
        let (rel, all) = self.options.mode.node_delta()?;
        (gated(&self.plan, i, all) && self.scales.len() > i).then(|| rel * self.scales[i])
    }

    /// Resamples `frame` into `current`: on the pool in one band of rows per worker, else
    /// whole. Each output row is computed alike either way ([`crate::Preprocess::resample_rows`]).
    fn resample(&mut self, frame: Image<'_>, input: Shape) {
        let pre = self.plan.preprocess();
        self.current.resize(input.h * input.w * 3, 0.0);
        match self.pool.as_deref().zip(self.input_band_rows(input)) {
            Some((pool, rows)) => {
                pool.run_chunks(&mut self.current, rows * input.w * 3, &|k, band| {
                    let start = k * rows;
                    pre.resample_rows(frame, input, start..start + band.len() / (input.w * 3), band);
                });
            }
            _ => pre.resample_rows(frame, input, 0..input.h, &mut self.current),
        }
    }

    /// Every tile's score against its reference ([`diff::tile_scores`]): on the pool in one band
    /// of tile rows per worker (each tile is scored alike either way), else whole.
    fn tile_scores(&self, input: Shape, metric: Metric, exact: bool) -> Vec<f32> {
        let (tiling, (reference, current)) = (self.tiling, (&self.reference, &self.current));
        let mut scores = vec![0.0; tiling.len()];
        match self.pool.as_deref() {
            Some(pool) if tiling.rows >= 2 => {
                let rows = tiling.rows.div_ceil(self.threads);
                pool.run_chunks(&mut scores, rows * tiling.cols, &|k, band| {
                    diff::tile_row_scores(reference, current, input, tiling, (metric, exact), k * rows, band)
                });
            }
            _ => diff::tile_row_scores(reference, current, input, tiling, (metric, exact), 0, &mut scores),
        }
        scores
    }

    /// Rows of the input per band when the pool resamples and normalises it (one band per
    /// worker, at least [`RESAMPLE_BAND_ROWS`]); `None` when the input is too short to split.
    fn input_band_rows(&self, input: Shape) -> Option<usize> {
        (input.h >= 2 * RESAMPLE_BAND_ROWS).then(|| input.h.div_ceil(self.threads).max(RESAMPLE_BAND_ROWS))
    }

    /// Normalises the whole reference into the input tensor: on the pool in one band of rows
    /// per worker (the rows each worker resampled), else whole. Each value is normalised alike
    /// either way.
    fn normalize_input(&mut self, input: Shape) {
        let (pre, reference) = (self.plan.preprocess(), &self.reference);
        match self.pool.as_deref().zip(self.input_band_rows(input)) {
            Some((pool, rows)) if self.acts[0].len() == reference.len() => {
                let len = rows * input.w * 3;
                pool.run_chunks(&mut self.acts[0], len, &|k, band| {
                    pre.normalize(&reference[k * len..][..band.len()], band)
                });
            }
            _ => pre.normalize(reference, &mut self.acts[0]),
        }
    }

    fn step(&mut self, frame: Image<'_>, force_full: bool) -> Result<Vec<Output>> {
        frame.validate()?;
        // The workers wake now and spin through the frame (see `SpinPool::frame`).
        let pool = self.pool.clone();
        let _frame = pool.as_deref().map(SpinPool::frame);
        self.follow_frame(frame.size())?;
        let started = Instant::now();
        let plan = Arc::clone(&self.plan);
        let graph = plan.graph();
        let input = graph.input_shape();
        let mut times = StageTimes::default();
        self.frames += 1;
        for k in 0..self.due.len() {
            self.due[k] = force_full || (self.enabled[k] && (self.frames - 1).is_multiple_of(u64::from(self.rates[k])));
        }

        let t = Instant::now();
        self.resample(frame, input);
        times.preprocess = t.elapsed();

        let size = frame.size();
        let refresh_due = self.options.refresh_interval.is_some_and(|n| self.since_refresh + 1 >= n);
        let reset = match self.last_frame {
            _ if force_full => Some(Reset::Full),
            None => Some(Reset::Cold),
            Some(prev) if prev != size => Some(Reset::FrameSize { from: prev, to: size }),
            Some(_) if refresh_due => Some(Reset::Refresh),
            Some(_) if self.options.bypass && self.bypass.due() => Some(Reset::Bypass),
            Some(_) => None,
        };
        self.last_frame = Some(size);

        // Change detection, and the new input written where it changed.
        let t = Instant::now();
        let (metric, level) = self.options.mode.level();
        let mut reset = reset;
        let tiles = match reset {
            Some(_) => vec![true; self.tiling.len()],
            None => {
                let scores = self.tile_scores(input, metric, level == 0.0);
                if diff::scene_moved(&scores, level) {
                    reset = Some(Reset::Motion);
                    vec![true; self.tiling.len()]
                } else {
                    diff::dirty(&scores, level)
                }
            }
        };
        times.diff = t.elapsed();

        let t = Instant::now();
        if reset.is_some() {
            self.since_refresh = 0;
            // The new input becomes the reference. Resampling refills `current` whole on every
            // frame, so the old reference can be handed back to it rather than copied over.
            std::mem::swap(&mut self.reference, &mut self.current);
            self.normalize_input(input);
        } else {
            self.since_refresh += 1;
            self.write_dirty_tiles(&tiles, input);
        }
        times.copy = t.elapsed();

        let input_mask = match reset {
            Some(_) => Mask::full(input.h, input.w),
            None => diff::tile_mask(&tiles, self.tiling, input.h, input.w),
        };
        let full = reset.is_some();
        let (nodes, macs_executed) = self.run_nodes(input_mask, full, &mut times);
        if let Some((_, all)) = self.options.mode.node_delta().filter(|_| reset.is_some()) {
            let nodes = &graph.nodes;
            self.scales = (0..nodes.len())
                .map(|i| if gated(&plan, i, all) { rms(&self.acts[i], nodes[i].shape.c) } else { 0.0 })
                .collect();
        }

        let t = Instant::now();
        let outputs = self.outputs();
        times.copy += t.elapsed();
        if self.options.bypass {
            self.bypass.record(reset, started.elapsed().as_secs_f64() * 1e3);
        }

        let heads = self.head_stats(&nodes);
        self.last = Some(FrameStats {
            heads,
            frame_index: self.frames,
            reset,
            tiles: tiles.len(),
            dirty_tiles: tiles.iter().filter(|&&d| d).count(),
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

    /// The node loop of every mode. Node by node: the positions to recompute follow from what
    /// changed in its inputs (`full`: every position, including positions that read no input
    /// at all, such as the gaps a transposed convolution whose kernel is smaller than its
    /// stride leaves, which hold the bias); the rectangles covering them are recomputed; on a
    /// cached frame, a gated node ([`Session::gate_threshold`]) passes on only the positions
    /// that moved by more than its threshold, and the others keep their cached value.
    fn run_nodes(&mut self, input_mask: Mask, full: bool, times: &mut StageTimes) -> (Vec<NodeStats>, u64) {
        let plan = Arc::clone(&self.plan);
        let graph = plan.graph();
        let mut nodes = Vec::with_capacity(graph.nodes.len());
        let input_frac = input_mask.fraction();
        nodes.push(NodeStats {
            hit_rate: 1.0 - input_frac,
            macs: 0,
            dense: full,
            changed: input_frac,
            time: Default::default(),
        });
        let mut changed = Vec::with_capacity(graph.nodes.len());
        changed.push(input_mask);
        let mut macs_executed = 0;
        for (i, node) in graph.nodes.iter().enumerate().skip(1) {
            let t = Instant::now();
            let s = node.shape;
            let mut m =
                if full { Mask::full(s.h, s.w) } else { reuse::propagate_node(graph, plan.reach(), i, &changed) };
            // A bottleneck's expanded map is stale wherever its input changed.
            if let Some(ExpandedMap { valid, .. }) = &mut self.expanded[i] {
                if full {
                    valid.fill(false);
                } else {
                    valid.subtract(&changed[node.inputs[0]]);
                }
            }
            // A global pool's block sums are stale wherever a row of its input changed.
            if let Some(BlockSums { valid, .. }) = &mut self.means[i] {
                if full {
                    valid.fill(false);
                } else {
                    let x: &Mask = &changed[node.inputs[0]];
                    for (b, v) in valid.iter_mut().enumerate() {
                        let y0 = b * kernels::MEAN_BLOCK_ROWS;
                        *v &= !(y0..(y0 + kernels::MEAN_BLOCK_ROWS).min(x.h)).any(|y| x.row_any(y));
                    }
                }
            }
            if !self.active(i) {
                // A skipped head catches up later by recomputing whatever changed meanwhile.
                self.defer(i, &m);
                nodes.push(NodeStats { hit_rate: 1.0, macs: 0, dense: false, changed: 0.0, time: Default::default() });
                changed.push(m);
                times.propagate += t.elapsed();
                continue;
            }
            if let Some(p) = self.pending[i].take() {
                m.union_with(&p);
            }
            let (rects, dense, frac) = if full { (vec![Rect::full(s)], true, 1.0) } else { self.work_for(i, &m) };
            // A whole output expands in scratch (`compute_node`), on one thread or per row band
            // of the pool, unless the bands would expand too many halo rows again
            // ([`MAX_HALO_SHARE`]): then the pool expands into the map first. Part of the output
            // expands in scratch too, each rectangle's window, where the block is narrow
            // ([`HALO_MAX_CHANNELS`]); otherwise from the map.
            let whole = rects.len() == 1 && rects[0] == Rect::full(s);
            let in_scratch = if whole {
                self.pool.is_none() || self.halo_share(i) <= MAX_HALO_SHARE
            } else {
                node.inputs.first().is_some_and(|&j| graph.nodes[j].shape.c <= HALO_MAX_CHANNELS)
            };
            let input_rects = if in_scratch { None } else { self.stale_reads(i, &rects) };
            times.propagate += t.elapsed();

            let pixels: usize = rects.iter().map(Rect::area).sum();
            let macs = match &node.op {
                // A whole output expands every input position it reads, once.
                Op::Bottleneck(b) if b.expand.is_some() => {
                    let x = graph.nodes[node.inputs[0]].shape;
                    let window = |&r: &Rect| kernels::depthwise_input_rect(&b.depthwise.window, r, (x.h, x.w)).area();
                    let expanded = match &input_rects {
                        Some(r) => r.iter().map(Rect::area).sum(),
                        None if whole => x.pixels(),
                        // Each rectangle expands its whole window.
                        None => rects.iter().map(window).sum(),
                    };
                    b.macs(expanded, pixels)
                }
                _ => pixels as u64 * plan.macs_per_pixel(i),
            };
            macs_executed += macs;
            // Gated nodes compute into `fresh[i]`, then compare with their cached values; the
            // others (and nodes nobody reads) write in place.
            let gate = if full || rects.is_empty() { None } else { self.gate_threshold(i) };
            let started = Instant::now();
            if !rects.is_empty() {
                self.compute_node(i, &rects, input_rects.as_deref(), macs, gate.is_some());
            }
            let time = started.elapsed();
            times.compute += time;
            let out = match gate {
                Some(threshold) => {
                    let t = Instant::now();
                    let out = self.keep_large_changes(i, &rects, threshold);
                    times.copy += t.elapsed();
                    out
                }
                None => m,
            };
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
    /// A bottleneck with an expansion first expands `input_rects` of its input into its
    /// expanded map and reads the map ([`Session::stale_reads`]); computed whole on one thread
    /// (`input_rects` is `None`), it expands each band's rows in scratch just before they are
    /// read, and leaves the map alone.
    fn compute_node(&mut self, i: usize, rects: &[Rect], input_rects: Option<&[Rect]>, macs: u64, into_fresh: bool) {
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
        let level = self.level;
        let x = inputs.first().copied();
        let parallel = macs * parallel_weight(&node.op) >= MIN_PARALLEL_MACS;
        // A mean over a whole map (global pooling) has one output pixel: its row blocks go to
        // the pool instead, and their sums ([`BlockSums`], kept across frames) are added in
        // order (the same bits as on one thread). Only the blocks whose input rows changed
        // since they were summed are summed again.
        if let (Some(x), Some(BlockSums { sums, valid })) = (x, self.means[i].as_mut()) {
            let c = x.shape.c;
            let block = |b: usize, part: &mut [f32]| {
                if !valid[b] {
                    kernels::mean_block_sums(level, x, b, part);
                }
            };
            match self.pool.as_deref().filter(|_| parallel) {
                Some(pool) => pool.run_chunks(sums, c, &block),
                None => sums.chunks_exact_mut(c).enumerate().for_each(|(b, part)| block(b, part)),
            }
            valid.fill(true);
            kernels::mean_of_blocks(sums, x.shape, &mut dst[..c]);
            return;
        }
        let out = OutBuf::new(dst, node.shape);
        // A dense layer has one output pixel: the workers split its outputs, whole panels each,
        // instead (each reads only its panels' weights, the most of what the layer moves).
        if let (Op::Dense(d), Some(pool), Some(x)) = (&node.op, self.pool.as_deref().filter(|_| parallel), x) {
            let panels = d.cout.div_ceil(kernels::pointwise::PANEL);
            let per = panels.div_ceil(self.threads);
            // SAFETY: each task writes the outputs of its own panels.
            pool.run(panels.div_ceil(per), &|k| unsafe {
                kernels::dense_panels(level, d, x.data, &out, k * per..((k + 1) * per).min(panels))
            });
            return;
        }
        let pool = self.pool.as_deref().filter(|_| parallel && !node.op.is_global());
        let tasks = Tasks { pool, threads: self.threads };
        let scratch = &mut self.scratch;
        match (&node.op, input_rects) {
            (Op::Bottleneck(b), Some(input_rects)) => {
                let (x, residual) = (inputs[0], inputs.get(1).copied());
                let store = &mut self.expanded[i].as_mut().expect("a bottleneck with an expansion has a map").map;
                let e = Shape::new(x.shape.h, x.shape.w, b.expanded());
                {
                    let map = OutBuf::new(store, e);
                    // SAFETY: disjoint rectangles of the map (a cover, split into row bands).
                    tasks.run(input_rects, scratch, |r, scratch| unsafe {
                        kernels::bottleneck::expand(level, b, x, &map, r, scratch)
                    });
                }
                let map = In { data: store, shape: e };
                // SAFETY: disjoint rectangles of the output, reading the map expanded above.
                tasks.run(rects, scratch, |r, scratch| unsafe {
                    kernels::bottleneck::from_expanded(level, b, map, residual, &out, r, scratch)
                });
            }
            // SAFETY: disjoint rectangles of the output (a cover, split into row bands).
            _ => tasks.run(rects, scratch, |r, scratch| unsafe {
                kernels::compute_rects(level, node, &inputs, &out, r, scratch)
            }),
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
                let probabilities = graph.nodes[o.node].op.activation().is_unit_bounded();
                Output { name: o.name.clone(), shape: o.onnx_shape.clone(), data, probabilities }
            })
            .collect()
    }
}

fn bad_head(k: usize) -> Error {
    Error::InvalidOption { name: "head", value: k.to_string(), reason: "no such head in this plan".into() }
}

/// `len` zeros in memory that has been written, not the lazily mapped zero pages of
/// `vec![0.0; len]`.
fn touched_zeros(len: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    v.resize(len, 0.0);
    v
}

/// Whether node `i` passes on only the positions that moved by more than its gate: among the
/// nodes with consumers, those with a single output position, and in the delta presets
/// (`all`) also the convolutions that narrow the channels with at least
/// [`GATE_MACS_PER_VALUE`] multiply-adds per output value.
fn gated(plan: &Plan, i: usize, all: bool) -> bool {
    let graph = plan.graph();
    let node = &graph.nodes[i];
    let s = node.shape;
    // A bottleneck ends in its projection, which is what narrows: the same rule as the
    // projection on its own.
    let (cin, macs) = match &node.op {
        Op::Conv(_) => (graph.nodes[node.inputs[0]].shape.c, plan.macs_per_pixel(i)),
        Op::Bottleneck(b) => (b.project.cin, b.project.macs_per_output_pixel()),
        _ => (0, 0),
    };
    let costly = cin > s.c && macs >= GATE_MACS_PER_VALUE * s.c as u64;
    plan.has_consumers(i) && (s.pixels() == 1 || (all && costly))
}

/// Root mean square of an NHWC buffer with `c` channels (0 for an empty one), over evenly
/// spaced positions (all their channels), about 16k values in all: a scale, not an exact
/// statistic, so that taking it after a dense frame costs nothing next to the frame.
fn rms(a: &[f32], c: usize) -> f32 {
    let c = c.max(1);
    let pixels = a.len() / c;
    // An odd step, so that period-2 patterns (the gaps of a stride-2 transposed conv) do not
    // alias with it.
    let step = match (pixels * c).div_ceil(16 * 1024) {
        0 | 1 => 1,
        n => n | 1,
    };
    let (mut sum, mut n) = (0.0f64, 0usize);
    for p in (0..pixels).step_by(step) {
        for &v in &a[p * c..(p + 1) * c] {
            sum += f64::from(v) * f64::from(v);
        }
        n += c;
    }
    (sum / n.max(1) as f64).sqrt() as f32
}

/// The worker threads of one or more sessions: none for one thread, else a [`SpinPool`] of
/// `threads` threads, the calling one among them ([`SessionOptions::threads`], all cores
/// when unset).
#[derive(Clone)]
pub(crate) struct WorkerPool {
    pool: Option<Arc<SpinPool>>,
    threads: usize,
}

impl WorkerPool {
    /// Marks a frame in progress, for a caller that runs several sessions in one frame (see
    /// [`SpinPool::frame`]); `None` without workers.
    pub(crate) fn frame(&self) -> Option<FrameGuard<'_>> {
        self.pool.as_deref().map(SpinPool::frame)
    }

    /// Validates `options` (the thread count among them), then starts the workers.
    pub(crate) fn new(options: &SessionOptions) -> Result<Self> {
        options.validate()?;
        let threads = options.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let pool = if threads > 1 {
            let pool = SpinPool::new(threads).map_err(|source| Error::ThreadPool { threads, source })?;
            Some(Arc::new(pool))
        } else {
            None
        };
        Ok(Self { pool, threads })
    }
}

/// Where a node's rectangles are computed: on the pool when it has one (each worker with its
/// own kernel scratch), otherwise one after the other on the calling thread.
struct Tasks<'a> {
    pool: Option<&'a SpinPool>,
    threads: usize,
}

impl Tasks<'_> {
    /// Runs `f` on the rectangles `rects`: all of them at once on the calling thread, or cut
    /// into one group of similar area per worker for the pool (row bands of the map, the same
    /// cut from node to node, so that a worker mostly reads rows it wrote itself for the node
    /// before). Two groups per worker, handed out as workers came free, were measured slower
    /// (docs/results-kernels.md, ninth session: whole frames at two threads 1–10% slower):
    /// rows went back and forth between the cores' caches, and a product reads all its
    /// weights once per group. Kernels batch the rectangles of one call
    /// (`kernels::compute_rects`).
    fn run(&self, rects: &[Rect], scratch: &mut Vec<f32>, f: impl Fn(&[Rect], &mut Vec<f32>) + Sync) {
        match self.pool {
            Some(pool) => {
                let groups = split_area(rects, self.threads);
                pool.run(groups.len(), &|g| POOL_SCRATCH.with_borrow_mut(|scratch| f(&groups[g], scratch)));
            }
            None => f(rects, scratch),
        }
    }
}

/// Splits rectangles into about `target` groups of similar area, cutting rectangles into row
/// bands where a group ends inside one.
fn split_area(rects: &[Rect], target: usize) -> Vec<Vec<Rect>> {
    let area: usize = rects.iter().map(Rect::area).sum();
    let per = area.div_ceil(target.max(1)).max(1);
    let (mut groups, mut group, mut filled) = (Vec::new(), Vec::new(), 0);
    for r in rects.iter().filter(|r| !r.is_empty()) {
        let width = r.x1 - r.x0;
        let mut y = r.y0;
        while y < r.y1 {
            let rows = (per - filled).div_ceil(width).min(r.y1 - y);
            group.push(Rect { y0: y, y1: y + rows, ..*r });
            filled += rows * width;
            y += rows;
            if filled >= per {
                groups.push(std::mem::take(&mut group));
                filled = 0;
            }
        }
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool's groups cover every position of the rectangles once, in about `target`
    /// groups of similar area.
    #[test]
    fn split_area_covers_each_position_once() {
        let rects = [
            Rect { y0: 0, y1: 7, x0: 0, x1: 5 },
            Rect { y0: 2, y1: 3, x0: 6, x1: 20 },
            Rect { y0: 4, y1: 4, x0: 6, x1: 9 },
            Rect { y0: 8, y1: 20, x0: 1, x1: 2 },
        ];
        for target in 1..9 {
            let groups = split_area(&rects, target);
            assert!(groups.len() <= target, "{} groups for {target}", groups.len());
            let mut seen = Mask::new(20, 20);
            for r in groups.iter().flatten() {
                for y in r.y0..r.y1 {
                    for x in r.x0..r.x1 {
                        assert!(!seen.get(y, x), "({y},{x}) twice");
                        seen.set(y, x, true);
                    }
                }
            }
            let want: usize = rects.iter().map(Rect::area).sum();
            assert_eq!(seen.count(), want);
        }
    }

    /// The bypass state machine on made-up times: dense frames cost 10 ms.
    #[test]
    fn bypass_backs_off_exponentially_and_returns_when_reuse_pays() {
        let mut b = Bypass::default();
        b.record(Some(Reset::Cold), 30.0);
        assert!(b.due(), "the second frame measures the dense cost");
        b.record(Some(Reset::Bypass), 10.0);
        assert_eq!(b.dense_ms, Some(10.0), "the cold frame is not a dense frame's cost");
        assert!(!b.due());
        // Cached frames that pay: never dense.
        for _ in 0..5 {
            b.record(None, 4.0);
            assert!(!b.due());
        }
        // Cached frames that do not pay: runs of 1, 2, 4, ... dense frames, at most MAX_BYPASS.
        let mut runs = Vec::new();
        for _ in 0..7 {
            b.record(None, 12.0);
            let mut n = 0;
            while b.due() {
                b.record(Some(Reset::Bypass), 10.0);
                n += 1;
            }
            runs.push(n);
        }
        assert_eq!(runs, [1, 2, 4, 8, 16, 16, 16]);
        // One cached frame that pays resets the back-off.
        b.record(None, 4.0);
        b.record(None, 12.0);
        assert_eq!(b.left, 1);
        b.record(Some(Reset::Bypass), 10.0);
        // The dense cost is re-measured after PROBE_INTERVAL frames without a dense one.
        for _ in 0..PROBE_INTERVAL {
            assert!(!b.due());
            b.record(None, 4.0);
        }
        assert!(b.due());
        b.record(Some(Reset::Bypass), 20.0);
        assert_eq!(b.dense_ms, Some(15.0), "running mean of 10 and 20");
        assert!(!b.due());
    }

    /// A moving camera: every tested frame is a whole-scene motion frame, which backs off like a
    /// cached frame that does not pay, and its time (change detection included) is not taken as
    /// the dense cost.
    #[test]
    fn whole_scene_motion_backs_off_like_a_frame_that_does_not_pay() {
        let mut b = Bypass::default();
        b.record(Some(Reset::Cold), 30.0);
        b.record(Some(Reset::Bypass), 10.0);
        let mut runs = Vec::new();
        for _ in 0..6 {
            assert!(!b.due());
            b.record(Some(Reset::Motion), 11.0);
            let mut n = 0;
            while b.due() {
                b.record(Some(Reset::Bypass), 10.0);
                n += 1;
            }
            runs.push(n);
        }
        assert_eq!(runs, [1, 2, 4, 8, 16, 16]);
        assert_eq!(b.dense_ms, Some(10.0));
        // The camera stops: the first cached frame that pays ends the back-off.
        b.record(None, 4.0);
        assert!(!b.due());
        b.record(Some(Reset::Motion), 11.0);
        assert_eq!(b.left, 1);
    }
}
