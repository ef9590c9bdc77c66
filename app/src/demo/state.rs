//! What the window shows, updated from pipeline events by plain functions (tested without a
//! window).

use std::collections::VecDeque;
use std::time::Instant;

use super::pipeline::{Event, FrameResult, ModelInfo};
use super::source::SourceError;

/// Results the rates and latency are averaged over.
const WINDOW: usize = 30;

#[derive(Default)]
pub struct DemoState {
    /// What is playing, as the source describes itself.
    pub source: Option<String>,
    pub model: Option<ModelInfo>,
    pub latest: Option<Box<FrameResult>>,
    /// Frames processed since the demo started.
    pub processed: u64,
    /// The last error from the source, the engine or a model switch, shown until the next
    /// source starts or the user dismisses it.
    pub error: Option<String>,
    /// Set when the source failed, so the window offers the bundled clip.
    pub source_failed: bool,
    pub source_ended: bool,
    /// Where to go if the source fails: the bundled clip, while the source is the camera the
    /// demo picked by default (the user named none). Cleared once used.
    pub fallback: Option<std::path::PathBuf>,
    /// A source the window should switch to now (the fallback, after a failure).
    pub switch_to: Option<std::path::PathBuf>,
    /// Why the demo is not showing what the user would expect (no camera: the clip plays).
    pub notice: Option<String>,
    /// Of the frames after each session's first: sums for the mean input hit rate and MAC saving.
    sum_hit: f64,
    sum_saving: f64,
    cached: u64,
    /// (capture index, captured at, done at) of recent results.
    recent: VecDeque<(u64, Instant, Instant)>,
}

impl DemoState {
    /// The state before any event, with the clip to fall back on that [`super::Start`] chose.
    pub fn new(fallback: Option<std::path::PathBuf>) -> Self {
        Self { fallback, ..Default::default() }
    }

    pub fn apply(&mut self, event: Event) {
        match event {
            Event::SourceStarted(description) => {
                self.source = Some(description);
                self.error = None;
                self.source_failed = false;
                self.source_ended = false;
                self.recent.clear();
            }
            Event::SourceFailed(e) if self.fallback.is_some() => {
                self.switch_to = self.fallback.take();
                self.notice = Some(format!("{e}: playing the bundled clip instead"));
            }
            Event::SourceFailed(e) => {
                self.error = Some(match &e {
                    SourceError::NoCamera | SourceError::Camera { .. } | SourceError::CameraDisabled => {
                        format!("{e}. The demo keeps running: open a clip or try another camera.")
                    }
                    SourceError::Clip(_) => e.to_string(),
                });
                self.source_failed = true;
            }
            Event::SourceEnded => self.source_ended = true,
            Event::ModelLoaded(info) => {
                self.model = Some(info);
                self.recent.clear();
            }
            Event::ModelFailed(e) => self.error = Some(format!("model not switched: {e}")),
            Event::EngineFailed(e) => self.error = Some(format!("engine: {e}")),
            Event::Result(r) => self.record(r),
        }
    }

    fn record(&mut self, r: Box<FrameResult>) {
        self.processed += 1;
        if r.stats.reset.is_none() {
            self.sum_hit += r.stats.input_hit_rate();
            self.sum_saving += r.stats.mac_saving();
            self.cached += 1;
        }
        if self.recent.back().is_some_and(|&(i, _, _)| r.captured.index < i) {
            self.recent.clear();
        }
        self.recent.push_back((r.captured.index, r.captured.at, r.done));
        if self.recent.len() > WINDOW {
            self.recent.pop_front();
        }
        self.latest = Some(r);
    }

    /// Frames per second the source delivered (dropped ones included), over recent results.
    pub fn capture_fps(&self) -> Option<f64> {
        let (&(i0, t0, _), &(i1, t1, _)) = (self.recent.front()?, self.recent.back()?);
        let dt = t1.duration_since(t0).as_secs_f64();
        (dt > 0.0).then(|| (i1 - i0) as f64 / dt)
    }

    /// Frames per second the engine finished, over recent results.
    pub fn inference_fps(&self) -> Option<f64> {
        let (&(_, _, t0), &(_, _, t1)) = (self.recent.front()?, self.recent.back()?);
        let dt = t1.duration_since(t0).as_secs_f64();
        (dt > 0.0).then(|| (self.recent.len() - 1) as f64 / dt)
    }

    /// Mean time from capture to result, in milliseconds, over recent results.
    pub fn latency_ms(&self) -> Option<f64> {
        let n = self.recent.len();
        (n > 0).then(|| {
            self.recent.iter().map(|(_, a, d)| d.duration_since(*a).as_secs_f64()).sum::<f64>() * 1e3 / n as f64
        })
    }

    /// Mean input hit rate and MAC saving over every cached frame so far.
    pub fn mean_reuse(&self) -> Option<(f64, f64)> {
        (self.cached > 0).then(|| (self.sum_hit / self.cached as f64, self.sum_saving / self.cached as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_default_camera_falls_back_to_the_clip_once() {
        let mut state = DemoState::new(Some("clip".into()));
        let busy = || SourceError::Camera { index: 0, reason: "Device or resource busy (the camera is busy)".into() };
        state.apply(Event::SourceFailed(busy()));
        assert_eq!(state.switch_to.take(), Some("clip".into()));
        let notice = state.notice.clone().unwrap();
        assert!(notice.contains("busy") && notice.contains("bundled clip"), "{notice}");
        assert_eq!(state.error, None);
        // A second failure (the user's own choice now) is shown, with the clip on offer.
        state.apply(Event::SourceFailed(busy()));
        assert_eq!(state.switch_to, None);
        assert!(state.source_failed && state.error.as_deref().unwrap().contains("keeps running"));
        state.apply(Event::SourceStarted("clip".into()));
        assert!(!state.source_failed && state.error.is_none());
    }
}
