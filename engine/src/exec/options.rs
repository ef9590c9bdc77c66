use crate::diff::Metric;
use crate::error::{Error, Result};

/// Default tile size in input pixels (chosen by measurement; see README "Tile size").
pub const DEFAULT_TILE: usize = 16;

/// Dirty fraction above which a node is computed densely rather than rectangle by rectangle
/// (measured; see README "Dense crossover").
pub const DEFAULT_DENSE_CROSSOVER: f64 = 0.9;

/// Change detection mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// A tile is reused only if it is bit-identical to its reference. Cached results equal
    /// full inference.
    Exact,
    /// A tile is reused while its difference to its reference, in grey levels (0–255), stays
    /// at or below `level`.
    Threshold { metric: Metric, level: f32 },
}

impl Mode {
    pub(crate) fn level(self) -> (Metric, f32) {
        match self {
            Mode::Exact => (Metric::MaxAbs, 0.0),
            Mode::Threshold { metric, level } => (metric, level),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Exact => write!(f, "exact"),
            Mode::Threshold { metric: Metric::MaxAbs, level } => write!(f, "threshold={level}"),
            Mode::Threshold { metric: Metric::MeanAbs, level } => write!(f, "mean-threshold={level}"),
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = Error;
    /// `exact`, `threshold=N` (max-abs) or `mean-threshold=N`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidOption { name: "mode", value: s.to_owned(), reason: reason.to_owned() };
        if s == "exact" {
            return Ok(Mode::Exact);
        }
        let (metric, v) = if let Some(v) = s.strip_prefix("threshold=") {
            (Metric::MaxAbs, v)
        } else if let Some(v) = s.strip_prefix("mean-threshold=") {
            (Metric::MeanAbs, v)
        } else {
            return Err(bad("expected exact, threshold=N or mean-threshold=N"));
        };
        let level: f32 = v.parse().map_err(|_| bad("the threshold is not a number"))?;
        if !(0.0..=255.0).contains(&level) {
            return Err(bad("the threshold is in grey levels, 0 to 255"));
        }
        Ok(if level == 0.0 { Mode::Exact } else { Mode::Threshold { metric, level } })
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
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            mode: Mode::Exact,
            tile: DEFAULT_TILE,
            refresh_interval: None,
            dense_crossover: DEFAULT_DENSE_CROSSOVER,
            threads: None,
        }
    }
}

impl SessionOptions {
    pub(crate) fn validate(&self) -> Result<()> {
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
