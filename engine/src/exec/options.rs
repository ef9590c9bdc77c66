use crate::diff::Metric;
use crate::error::{Error, Result};

/// Default tile size in input pixels (chosen by measurement; see README "Tile size").
pub const DEFAULT_TILE: usize = 16;

/// Dirty fraction above which a node is computed densely rather than rectangle by rectangle
/// (measured; see README "Dense crossover").
pub const DEFAULT_DENSE_CROSSOVER: f64 = 0.9;

const EXPECTED: &str = "expected exact, threshold=N, mean-threshold=N, delta=N or motion=N";

/// Default block-matching range in input pixels (`--search-range`).
pub const DEFAULT_SEARCH_RANGE: usize = 16;

/// Default grid of motion vectors in input pixels (`--motion-align`): vectors that are
/// multiples of 8 stay usable down to the stride-8 layers.
pub const DEFAULT_MOTION_ALIGN: usize = 8;

/// Change detection mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// A tile is reused only if it is bit-identical to its reference. Cached results equal
    /// full inference.
    Exact,
    /// A tile is reused while its difference to its reference, in grey levels (0–255), stays
    /// at or below `level`.
    Threshold { metric: Metric, level: f32 },
    /// Input tiles as in `Threshold` (max-abs, `level` grey levels), and per node
    /// (DeltaCNN-style): a recomputed output position is passed on to the node's consumers only
    /// when some channel moved by more than `level / 255` times the node's activation scale
    /// (the root mean square of its output at the last full computation). Otherwise the cached
    /// value is kept, so sub-threshold changes accumulate until they cross the threshold and
    /// the error stays bounded per node. (Scaling by max − min instead saved more but lost
    /// fidelity: coin clip, MobileNetV2, delta=4: 20% top-1 agreement vs 83% with RMS.)
    Delta { level: f32 },
    /// Input tiles as in `Threshold` (max-abs, `level` grey levels); a changed tile is then
    /// searched for in its reference (block matching within `SessionOptions::search_range`,
    /// vectors on a grid of `SessionOptions::motion_align` pixels, accepted when no value of
    /// the moved reference differs by more than `level`, as a clean tile). Matched tiles and every node position whose
    /// inputs moved by one stride-aligned vector copy the cached activations from the shifted
    /// place instead of recomputing; see [`crate::reuse::motion`]. Nodes then apply the
    /// per-node thresholds of `Delta { level }` to what they recompute.
    Motion { level: f32 },
}

impl Mode {
    pub(crate) fn level(self) -> (Metric, f32) {
        match self {
            Mode::Exact => (Metric::MaxAbs, 0.0),
            Mode::Threshold { metric, level } => (metric, level),
            Mode::Delta { level } | Mode::Motion { level } => (Metric::MaxAbs, level),
        }
    }

    /// The per-node threshold as a fraction of each node's activation scale (delta and motion
    /// modes).
    pub(crate) fn node_delta(self) -> Option<f32> {
        match self {
            Mode::Delta { level } | Mode::Motion { level } => Some(level / 255.0),
            _ => None,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Exact => write!(f, "exact"),
            Mode::Threshold { metric: Metric::MaxAbs, level } => write!(f, "threshold={level}"),
            Mode::Threshold { metric: Metric::MeanAbs, level } => write!(f, "mean-threshold={level}"),
            Mode::Delta { level } => write!(f, "delta={level}"),
            Mode::Motion { level } => write!(f, "motion={level}"),
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = Error;
    /// `exact`, `threshold=N` (max-abs), `mean-threshold=N`, `delta=N` or `motion=N`.
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
        if level == 0.0 {
            return Ok(Mode::Exact);
        }
        match kind {
            "threshold" => Ok(Mode::Threshold { metric: Metric::MaxAbs, level }),
            "mean-threshold" => Ok(Mode::Threshold { metric: Metric::MeanAbs, level }),
            "delta" => Ok(Mode::Delta { level }),
            "motion" => Ok(Mode::Motion { level }),
            _ => Err(bad(EXPECTED)),
        }
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
    /// Worker threads (`None`: all cores).
    pub threads: Option<usize>,
    /// Motion mode: largest vector component searched, in input pixels.
    pub search_range: usize,
    /// Motion mode: vectors are multiples of this many input pixels.
    pub motion_align: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            mode: Mode::Exact,
            tile: DEFAULT_TILE,
            refresh_interval: None,
            dense_crossover: DEFAULT_DENSE_CROSSOVER,
            threads: None,
            search_range: DEFAULT_SEARCH_RANGE,
            motion_align: DEFAULT_MOTION_ALIGN,
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
        if self.threads == Some(0) {
            return Err(Error::InvalidOption {
                name: "threads",
                value: "0".into(),
                reason: "at least one thread".into(),
            });
        }
        if !(1..=64).contains(&self.motion_align) {
            return Err(Error::InvalidOption {
                name: "motion_align",
                value: self.motion_align.to_string(),
                reason: "must be 1 to 64 input pixels".into(),
            });
        }
        if self.search_range > 256 {
            return Err(Error::InvalidOption {
                name: "search_range",
                value: self.search_range.to_string(),
                reason: "at most 256 input pixels".into(),
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
