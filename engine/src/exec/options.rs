//! Session options and the user-facing reuse presets ([`Mode`]), with their ranges and the
//! defaults chosen by measurement.

use crate::diff::Metric;
use crate::error::{Error, Result};
use crate::kernels::SimdLevel;

/// Default tile size in input pixels (chosen by measurement; see README "Tile size").
pub const DEFAULT_TILE: usize = 16;

/// Dirty fraction above which a node is computed densely rather than rectangle by rectangle
/// (measured; see README "Dense crossover").
pub const DEFAULT_DENSE_CROSSOVER: f64 = 0.9;

/// Delta presets: a node with several output positions is gated only when it is a
/// convolution that narrows the channels (fewer output channels than input channels: the
/// projection at the end of a bottleneck block) and does at least this many multiply-adds per
/// output value. The gate reads every recomputed value once more and compares it with the
/// cached one, which costs about what an elementwise op costs to compute, so it pays only where
/// few values stand for much work: gating residual adds, products and thin maps cost more than
/// it saved, and gating the expanded tensors inside inverted-residual blocks (the 1x1
/// expansions and the depthwise convolutions on them) read six values for every one a
/// projection gate reads, and stacked a second held-back error on each block
/// (docs/results-reuse.md: the gate pass fell 0.97 -> 0.18 ms and top-1 agreement rose
/// 86% -> 91% on MobileNetV2).
pub const GATE_MACS_PER_VALUE: u64 = 8;

/// Most worker threads of one session.
pub const MAX_THREADS: usize = 256;

const EXPECTED: &str = "expected exact, threshold=N, mean-threshold=N, block-threshold=N, delta=N or block-delta=N";

/// The mode the app starts in (`framecache run`, `bench`, `demo`): the approximate preset that
/// dominated on the static clips while the adaptive bypass keeps it out of the way elsewhere
/// (docs/results-reuse.md: how it was chosen). The library's own default stays `Exact`.
pub const DEFAULT_MODE: Mode = Mode::Threshold { metric: Metric::BlockMean, level: 8.0 };

/// How often the app's approximate modes compute a frame densely even when the cache would
/// serve it (`SessionOptions::refresh_interval`; `framecache run`, `bench`, `demo` and
/// `bundle`, and the phone library): every 16th frame, about half a second at 30 frames a
/// second. The rule: an approximation is held for at most that long, whatever it is (a slow
/// change of light under the level, a reference that drifts with sensor noise), and the
/// refresh costs at most 1/16 of the difference between a dense and a cached frame. Exact mode
/// needs none: its outputs are full inference's. Measured, not fitted (docs/results-reuse.md,
/// ninth session): every block-mean preset on the static clips gained 1–19 points of
/// fidelity against engine-full (top-1 agreement, mask IoU), at speeds within the run-to-run
/// noise of the VM (MobileNetV2's default on the surveillance clip 1.35x at 0.848 → 1.25x at
/// 0.911 of engine-full); the moving clips' frames are mostly dense already.
pub const DEFAULT_REFRESH: u32 = 16;

/// What a session reuses, as a user-facing preset. Two orthogonal parts sit under it: the
/// input tile test (a [`Metric`] and a level in grey levels) and, for the delta presets, the
/// per-node change gates. Every preset runs through the same node loop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// A tile is reused only if it is bit-identical to its reference. Cached results equal
    /// full inference.
    Exact,
    /// A tile is reused while its difference to its reference, in grey levels (0–255), stays
    /// at or below `level`. Nodes with a single output position (global pools, dense layers,
    /// the squeeze-and-excitation vectors that scale whole maps) pass their output on only when
    /// some channel moved by more than `level / 255` times its scale, as in `Delta`: otherwise
    /// one changed tile anywhere would make every map they scale dirty.
    Threshold { metric: Metric, level: f32 },
    /// Input tiles as in `Threshold`, and per node (DeltaCNN-style; the convolutions that narrow
    /// the channels, see [`GATE_MACS_PER_VALUE`], and the single-position nodes): a
    /// recomputed output position is passed on to the node's consumers only when some channel
    /// moved by more than `level / 255` times the node's activation scale (the root mean square
    /// of its output at the last full computation). Otherwise the cached value is kept, so
    /// sub-threshold changes accumulate until they cross the threshold and the error stays
    /// bounded per node.
    /// (Scaling by max − min instead saved more but lost fidelity: coin clip, MobileNetV2,
    /// delta=4: 20% top-1 agreement vs 83% with RMS.)
    Delta { metric: Metric, level: f32 },
}

impl Mode {
    /// The refresh interval the app gives this mode unless told otherwise: [`DEFAULT_REFRESH`]
    /// for the approximate modes, none in exact mode.
    pub fn default_refresh(self) -> Option<u32> {
        (self != Mode::Exact).then_some(DEFAULT_REFRESH)
    }

    pub(crate) fn level(self) -> (Metric, f32) {
        match self {
            Mode::Exact => (Metric::MaxAbs, 0.0),
            Mode::Threshold { metric, level } | Mode::Delta { metric, level } => (metric, level),
        }
    }

    /// The per-node gate threshold as a fraction of each node's activation scale, and which
    /// nodes are gated: those costly enough (`true`, delta presets; see
    /// [`GATE_MACS_PER_VALUE`]) or only those with a single output position (`false`,
    /// threshold presets), among the nodes with consumers. `None` in exact mode.
    pub(crate) fn node_delta(self) -> Option<(f32, bool)> {
        match self {
            Mode::Exact => None,
            Mode::Threshold { level, .. } => Some((level / 255.0, false)),
            Mode::Delta { level, .. } => Some((level / 255.0, true)),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let metric = |m: &Metric| match m {
            Metric::MaxAbs => "",
            Metric::MeanAbs => "mean-",
            Metric::BlockMean => "block-",
        };
        match self {
            Mode::Exact => write!(f, "exact"),
            Mode::Threshold { metric: m, level } => write!(f, "{}threshold={level}", metric(m)),
            Mode::Delta { metric: m, level } => write!(f, "{}delta={level}", metric(m)),
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = Error;
    /// `exact`, `threshold=N` (max-abs), `mean-threshold=N`, `block-threshold=N`, `delta=N`
    /// or `block-delta=N`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidOption { name: "mode", value: s.to_owned(), reason: reason.to_owned() };
        if s == "exact" {
            return Ok(Mode::Exact);
        }
        let (kind, v) = s.split_once('=').ok_or_else(|| bad(EXPECTED))?;
        let level: f32 = v.parse().map_err(|_| bad("the threshold is not a number"))?;
        if !(0.0..=255.0).contains(&level) {
            return Err(bad("the threshold is in grey levels, 0 to 255"));
        }
        let mode = match kind {
            "threshold" => Mode::Threshold { metric: Metric::MaxAbs, level },
            "mean-threshold" => Mode::Threshold { metric: Metric::MeanAbs, level },
            "block-threshold" => Mode::Threshold { metric: Metric::BlockMean, level },
            "delta" => Mode::Delta { metric: Metric::MaxAbs, level },
            "block-delta" => Mode::Delta { metric: Metric::BlockMean, level },
            _ => return Err(bad(EXPECTED)),
        };
        Ok(if level == 0.0 { Mode::Exact } else { mode })
    }
}

/// Options of one [`super::Session`].
#[derive(Clone, Debug)]
pub struct SessionOptions {
    pub mode: Mode,
    /// Tile size in input pixels, 8 to 32.
    pub tile: usize,
    /// Recompute everything every N frames (`None`: never).
    pub refresh_interval: Option<u32>,
    /// Nodes whose dirty fraction exceeds this are computed densely.
    pub dense_crossover: f64,
    /// Worker threads (`None`: all cores), at most [`MAX_THREADS`].
    pub threads: Option<usize>,
    /// Adaptive bypass: when a cached frame costs more than a dense one (both measured in
    /// this session), compute the next frames densely, backing off exponentially; see
    /// [`super::Session`]. Off by default: decisions from wall time are not repeatable, and
    /// the library's default is the deterministic correctness reference; the app turns it on.
    pub bypass: bool,
    /// Instruction-set level of the kernels (`None`: the best this CPU runs). A level the
    /// CPU lacks is an error.
    pub simd: Option<SimdLevel>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            mode: Mode::Exact,
            tile: DEFAULT_TILE,
            refresh_interval: None,
            dense_crossover: DEFAULT_DENSE_CROSSOVER,
            threads: None,
            bypass: false,
            simd: None,
        }
    }
}

impl SessionOptions {
    /// Checks every option is in range; errors name the option and value.
    pub fn validate(&self) -> Result<()> {
        if !(8..=32).contains(&self.tile) {
            return Err(Error::InvalidOption {
                name: "tile",
                value: self.tile.to_string(),
                reason: "must be 8 to 32 input pixels".into(),
            });
        }
        if !(0.0..=1.0).contains(&self.dense_crossover) {
            return Err(Error::InvalidOption {
                name: "dense_crossover",
                value: self.dense_crossover.to_string(),
                reason: "must be a fraction in 0..=1".into(),
            });
        }
        if let Some(t) = self.threads.filter(|t| !(1..=MAX_THREADS).contains(t)) {
            return Err(Error::InvalidOption {
                name: "threads",
                value: t.to_string(),
                reason: format!("1 to {MAX_THREADS} threads"),
            });
        }
        let (_, level) = self.mode.level();
        // `contains` is false for NaN, which would make no tile ever dirty.
        if !(0.0..=255.0).contains(&level) {
            return Err(Error::InvalidOption {
                name: "mode",
                value: self.mode.to_string(),
                reason: "the threshold is in grey levels, 0 to 255".into(),
            });
        }
        if let Some(level) = self.simd.filter(|l| !l.is_available()) {
            return Err(Error::InvalidOption {
                name: "simd",
                value: format!("{level:?}"),
                reason: format!("this CPU runs {:?}", SimdLevel::available()),
            });
        }
        if self.refresh_interval == Some(0) {
            return Err(Error::InvalidOption {
                name: "refresh_interval",
                value: "0".into(),
                reason: "at least 1 frame".into(),
            });
        }
        Ok(())
    }
}
