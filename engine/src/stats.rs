//! Per-frame statistics. Definitions follow DESIGN.md "Metrics".

use std::time::Duration;

use crate::diff::Tiling;

/// Why the cache was thrown away before this frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reset {
    /// The first frame of the session (or after `reset()`).
    Cold,
    /// The frame size differs from the previous frame's.
    FrameSize { from: (usize, usize), to: (usize, usize) },
    /// The periodic refresh interval elapsed.
    Refresh,
    /// `run_full` was called: the reference path always recomputes everything.
    Full,
    /// The adaptive bypass computed this frame densely: the last cached frame cost more than a
    /// dense one, or the dense cost was due to be measured again.
    Bypass,
    /// The scene moved as a whole (an approximate preset; see [`crate::diff::scene_moved`]):
    /// the frame was computed densely and became every tile's reference.
    Motion,
}

/// Wall time per stage of one frame.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StageTimes {
    /// Frame → input size on the 0–255 scale.
    pub preprocess: Duration,
    /// Tile comparison against the references.
    pub diff: Duration,
    /// Mask propagation and rectangle cover.
    pub propagate: Duration,
    /// Kernels.
    pub compute: Duration,
    /// Writing dirty tiles into the reference and the input tensor, and reading outputs.
    pub copy: Duration,
}

impl StageTimes {
    pub fn total(&self) -> Duration {
        self.preprocess + self.diff + self.propagate + self.compute + self.copy
    }
}

/// Reuse of one node in one frame.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeStats {
    /// Output pixels not recomputed ÷ all output pixels.
    pub hit_rate: f64,
    /// MACs executed for this node (recomputed pixels × MACs per pixel).
    pub macs: u64,
    /// Whether the node was computed densely (dirty fraction above the crossover).
    pub dense: bool,
    /// Output pixels passed on to consumers as changed ÷ all. Equals `1 − hit_rate` except in
    /// delta mode, where recomputed pixels that moved less than the node's threshold keep
    /// their cached value and are not passed on.
    pub changed: f64,
    /// Wall time of this node's kernels.
    pub time: Duration,
}

/// What a head of a multi-task plan did on one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadStatus {
    /// It ran and recomputed what changed.
    Computed,
    /// It was due, but nothing it reads changed: its last result stands.
    Unchanged,
    /// Not due (its rate) or turned off: its last result stands.
    Skipped,
}

/// Cost of one head on one frame (the backbone's is the rest of [`FrameStats`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadStats {
    pub status: HeadStatus,
    /// MACs executed in the head's own nodes.
    pub macs: u64,
    /// Wall time of the head's own kernels.
    pub time: Duration,
}

/// Statistics of one processed frame.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameStats {
    /// Frames processed by this session, this one included.
    pub frame_index: u64,
    /// Set when the cache was not used for this frame.
    pub reset: Option<Reset>,
    pub tiles: usize,
    /// Tiles recomputed.
    pub dirty_tiles: usize,
    /// The input tiling of this frame, and which tiles were recomputed (row-major, `true` =
    /// dirty): what a viewer draws as the reuse overlay. Tile bounds are in model-input pixels;
    /// [`crate::Preprocess::source_region`] maps them back onto the frame.
    pub tiling: Tiling,
    pub dirty: Vec<bool>,
    pub nodes: Vec<NodeStats>,
    pub macs_executed: u64,
    pub macs_full: u64,
    pub times: StageTimes,
    /// One entry per head of a multi-task plan, in the plan's order (empty otherwise).
    pub heads: Vec<HeadStats>,
}

impl FrameStats {
    /// Reused input tiles ÷ all input tiles.
    pub fn input_hit_rate(&self) -> f64 {
        if self.tiles == 0 {
            0.0
        } else {
            1.0 - self.dirty_tiles as f64 / self.tiles as f64
        }
    }
    /// MACs executed in the shared backbone (everything no head owns).
    pub fn backbone_macs(&self) -> u64 {
        self.macs_executed - self.heads.iter().map(|h| h.macs).sum::<u64>()
    }
    /// 1 − MACs executed ÷ MACs of full inference.
    pub fn mac_saving(&self) -> f64 {
        1.0 - self.macs_executed as f64 / self.macs_full.max(1) as f64
    }
}
