//! The demo's threads without a window: the newest frame wins, shutdown is orderly while
//! results wait undelivered, source errors reach the window state, pause and step.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use framecache::Mode;
use framecache_app::clip::RgbFrame;
use framecache_app::demo::pipeline::{latest, EngineSettings, Event, Pipeline};
use framecache_app::demo::source::{self, FrameSource, SourceError, SourceSpec};
use framecache_app::demo::state::DemoState;
use framecache_app::model::Model;

const WAIT: Duration = Duration::from_secs(30);

/// Frames of a moving bar, as fast as asked; fails after `fail_after` frames when set.
struct Scripted {
    width: usize,
    height: usize,
    next: u64,
    interval: Option<Duration>,
    fail_after: Option<u64>,
    delivered: Arc<AtomicU64>,
    dropped: Arc<AtomicBool>,
}

impl Scripted {
    fn new(interval: Option<Duration>, fail_after: Option<u64>) -> Self {
        Self {
            width: 96,
            height: 64,
            next: 0,
            interval,
            fail_after,
            delivered: Arc::default(),
            dropped: Arc::default(),
        }
    }
}

impl FrameSource for Scripted {
    fn describe(&self) -> String {
        "scripted".into()
    }
    fn next_frame(&mut self) -> Result<Option<Arc<RgbFrame>>, SourceError> {
        if self.fail_after.is_some_and(|n| self.next >= n) {
            return Err(SourceError::Camera { index: 0, reason: "device unplugged".into() });
        }
        let mut data = vec![40u8; self.width * self.height * 3];
        let x0 = (self.next as usize * 8) % self.width;
        for y in 0..self.height {
            for x in x0..(x0 + 8).min(self.width) {
                data[(y * self.width + x) * 3..][..3].copy_from_slice(&[250, 200, 10]);
            }
        }
        self.next += 1;
        self.delivered.fetch_add(1, Ordering::Relaxed);
        Ok(Some(Arc::new(RgbFrame { width: self.width, height: self.height, data })))
    }
    fn interval(&self) -> Option<Duration> {
        self.interval
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::Release);
    }
}

fn model() -> Model {
    let path = framecache_app::args::default_model().expect("bundled assets");
    Model::load(&path, None, None, None).expect("bundled model loads")
}

fn settings() -> EngineSettings {
    EngineSettings { mode: Mode::Exact, tile: 16, full: false, refresh: None }
}

fn start() -> Pipeline {
    Pipeline::start(model(), settings(), Some(1), Arc::new(|| {}))
}

fn until<T>(p: &Pipeline, mut pick: impl FnMut(Event) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(t) = p.wait_event(Duration::from_millis(100)).and_then(&mut pick) {
            return t;
        }
    }
    panic!("no such event within {WAIT:?}");
}

#[test]
fn the_mailbox_keeps_only_the_newest_value() {
    let (tx, rx) = latest();
    for i in 0..5 {
        tx.offer(i);
    }
    assert_eq!(rx.try_recv(), Ok(4));
    assert!(rx.try_recv().is_err());
    assert_eq!(tx.dropped(), 4);
    tx.offer(9);
    assert_eq!(rx.try_recv(), Ok(9));
    assert_eq!(tx.dropped(), 4);
}

#[test]
fn a_slow_engine_gets_the_newest_frames_and_stale_ones_are_dropped() {
    let mut p = start();
    let source = Scripted::new(None, None);
    let delivered = Arc::clone(&source.delivered);
    p.set_source(Box::new(move || Ok(Box::new(source) as Box<dyn FrameSource>)));
    let mut indices = Vec::new();
    while indices.len() < 6 {
        if let Some(i) = until(&p, |e| match e {
            Event::Result(r) => Some(Some(r.captured.index)),
            Event::SourceFailed(e) => panic!("{e}"),
            _ => Some(None),
        }) {
            indices.push(i);
        }
    }
    // An unpaced source outruns a 300 MMAC model: the engine skips to the newest frame.
    assert!(indices.windows(2).all(|w| w[0] < w[1]), "{indices:?}");
    assert!(indices.windows(2).any(|w| w[1] > w[0] + 1), "no frame was skipped: {indices:?}");
    assert!(p.dropped() > 0);
    assert!(delivered.load(Ordering::Relaxed) > indices.len() as u64);
}

#[test]
fn shutdown_joins_both_threads_while_results_wait_undelivered() {
    let mut p = start();
    let source = Scripted::new(Some(Duration::from_millis(1)), None);
    let released = Arc::clone(&source.dropped);
    p.set_source(Box::new(move || Ok(Box::new(source) as Box<dyn FrameSource>)));
    until(&p, |e| matches!(e, Event::Result(_)).then_some(()));
    // Nobody drains now: the results channel fills and the worker blocks on it.
    std::thread::sleep(Duration::from_millis(500));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        p.shutdown();
        done_tx.send(()).unwrap();
    });
    done_rx.recv_timeout(WAIT).expect("shutdown finished");
    assert!(released.load(Ordering::Acquire), "the capture thread released its source");
}

#[test]
fn a_source_error_reaches_the_window_state_and_the_demo_goes_on() {
    let mut p = start();
    p.set_source(Box::new(|| {
        Ok(Box::new(Scripted::new(Some(Duration::from_millis(30)), Some(3))) as Box<dyn FrameSource>)
    }));
    let mut state = DemoState::default();
    while !state.source_failed {
        let e = p.wait_event(WAIT).expect("an event");
        state.apply(e);
    }
    let error = state.error.clone().unwrap();
    assert!(error.contains("camera 0: device unplugged") && error.contains("keeps running"), "{error}");
    // Opening a camera that does not exist is an error event too, not a panic.
    p.set_source(source::opener(SourceSpec::Camera(97), None));
    let failed = until(&p, |e| match e {
        Event::SourceFailed(e) => Some(e),
        _ => None,
    });
    assert!(matches!(failed, SourceError::Camera { index: 97, .. } | SourceError::CameraDisabled), "{failed:?}");
    // The pipeline still runs: a new source clears the error and frames flow again.
    p.set_source(Box::new(|| {
        Ok(Box::new(Scripted::new(Some(Duration::from_millis(30)), None)) as Box<dyn FrameSource>)
    }));
    let before = state.processed;
    while state.processed < before + 2 {
        state.apply(p.wait_event(WAIT).expect("an event"));
    }
    assert_eq!(state.error, None);
    assert!(!state.source_failed);
}

/// A source that panics: the capture thread's panic reaches the window as a source error
/// (the window used to wait for frames for ever), and a new source runs.
#[test]
fn a_panicking_source_or_opener_is_an_error_event_and_the_demo_goes_on() {
    struct Panics(u32);
    impl FrameSource for Panics {
        fn describe(&self) -> String {
            "panics".into()
        }
        fn next_frame(&mut self) -> Result<Option<Arc<RgbFrame>>, SourceError> {
            self.0 += 1;
            assert!(self.0 < 3, "decoder bug");
            Ok(Some(Arc::new(RgbFrame { width: 32, height: 24, data: vec![9; 32 * 24 * 3] })))
        }
        fn interval(&self) -> Option<Duration> {
            None
        }
    }
    let mut p = start();
    p.set_source(Box::new(|| Ok(Box::new(Panics(0)) as Box<dyn FrameSource>)));
    let failed = until(&p, |e| match e {
        Event::SourceFailed(e) => Some(e.to_string()),
        _ => None,
    });
    assert!(failed.contains("internal error (panic): decoder bug"), "{failed}");
    p.set_source(Box::new(|| panic!("opener bug")));
    let failed = until(&p, |e| match e {
        Event::SourceFailed(e) => Some(e.to_string()),
        _ => None,
    });
    assert!(failed.contains("opener bug"), "{failed}");
    p.set_source(Box::new(|| Ok(Box::new(Scripted::new(None, None)) as Box<dyn FrameSource>)));
    until(&p, |e| matches!(e, Event::Result(_)).then_some(()));
}

#[test]
fn paused_capture_lets_exactly_one_frame_through_per_step() {
    let mut p = start();
    p.set_paused(true);
    p.set_source(Box::new(|| Ok(Box::new(Scripted::new(None, None)) as Box<dyn FrameSource>)));
    until(&p, |e| matches!(e, Event::SourceStarted(_)).then_some(()));
    // (The worker's ModelLoaded may arrive in any order with SourceStarted.)
    while let Some(e) = p.wait_event(Duration::from_millis(500)) {
        assert!(!matches!(e, Event::Result(_)), "nothing flows while paused");
    }
    for expected in 0..3u64 {
        p.step();
        let index = until(&p, |e| match e {
            Event::Result(r) => Some(r.captured.index),
            _ => None,
        });
        assert_eq!(index, expected);
        assert!(p.wait_event(Duration::from_millis(300)).is_none(), "one frame per step");
    }
}

#[test]
fn settings_and_model_switches_apply_on_the_worker() {
    let mut p = start();
    p.set_source(Box::new(|| {
        Ok(Box::new(Scripted::new(Some(Duration::from_millis(20)), None)) as Box<dyn FrameSource>)
    }));
    until(&p, |e| matches!(e, Event::Result(_)).then_some(()));
    p.set_settings(EngineSettings { mode: Mode::Exact, tile: 8, full: true, refresh: None });
    let r = until(&p, |e| match e {
        Event::Result(r) if r.settings.tile == 8 => Some(r),
        _ => None,
    });
    assert!(r.settings.full);
    assert_eq!(r.stats.reset, Some(framecache::Reset::Full));
    assert_eq!(r.stats.tiling.tile, 8);
    assert_eq!(r.stats.dirty.len(), r.stats.tiles);
    p.set_model("/no/such/model.onnx".into());
    let message = until(&p, |e| match e {
        Event::ModelFailed(m) => Some(m),
        _ => None,
    });
    assert!(message.contains("/no/such/model.onnx"), "{message}");
    // The old model keeps running.
    until(&p, |e| matches!(e, Event::Result(_)).then_some(()));
}

#[test]
fn source_specs_parse() {
    assert_eq!("camera".parse(), Ok(SourceSpec::Camera(0)));
    assert_eq!("camera:2".parse(), Ok(SourceSpec::Camera(2)));
    assert!("camera:x".parse::<SourceSpec>().unwrap_err().contains("camera:INDEX"));
    assert_eq!("clips/a".parse(), Ok(SourceSpec::Clip("clips/a".into())));
}

/// A bundle manifest runs in the demo worker: every result carries each head's status and
/// decoded output, and a switch back to a plain model works.
#[test]
fn a_bundle_runs_in_the_worker_and_reports_its_heads() {
    use framecache_app::demo::pipeline::Loaded;
    let manifest = framecache_app::args::assets_dir().expect("bundled assets").join("bundles/mobilenet_v2_s16.toml");
    let loaded = Loaded::load(&manifest, None, None).expect("bundled manifest loads");
    let mut p = Pipeline::start(loaded, settings(), Some(1), Arc::new(|| {}));
    let info = until(&p, |e| match e {
        Event::ModelLoaded(m) => Some(m),
        _ => None,
    });
    assert!(info.kind.contains("imagenet"), "{info:?}");
    let source = Scripted::new(Some(Duration::from_millis(5)), None);
    p.set_source(Box::new(move || Ok(Box::new(source) as Box<dyn FrameSource>)));
    let r = until(&p, |e| match e {
        Event::Result(r) => Some(r),
        Event::SourceFailed(e) => panic!("{e}"),
        _ => None,
    });
    assert_eq!(r.head_runs.len(), 1);
    assert_eq!(r.head_runs[0].name, "imagenet");
    assert!(
        matches!(r.heads.as_slice(), [framecache::heads::Head::Classes { top, .. }] if top.len() == 5),
        "{:?}",
        r.heads
    );
    p.set_model(framecache_app::args::default_model().unwrap());
    let info = until(&p, |e| match e {
        Event::ModelLoaded(m) => Some(m),
        Event::ModelFailed(e) => panic!("{e}"),
        _ => None,
    });
    assert_eq!(info.kind, "Classify");
    p.shutdown();
}

/// With no `--source`, the demo starts on the first camera, listed on the capture thread (so
/// a camera-access prompt cannot hold up the window); where no camera opens, as here, the
/// window state switches to the bundled clip and says why, and the clip plays.
#[test]
fn the_default_source_lists_cameras_on_the_capture_thread_and_falls_back_to_the_clip() {
    let chosen = framecache_app::demo::choose_source(None, Some(60.0)).unwrap();
    let clip = chosen.fallback.clone().expect("the bundled clip as the fallback");
    let mut p = start();
    p.set_source(chosen.open);
    let mut state = DemoState::new(chosen.fallback);
    loop {
        match p.wait_event(WAIT).expect("an event") {
            Event::SourceStarted(what) if what.starts_with("camera") => {
                eprintln!("this machine has a camera ({what}); the fallback is not exercised");
                return;
            }
            e @ Event::SourceFailed(_) => {
                state.apply(e);
                break;
            }
            e => state.apply(e),
        }
    }
    assert_eq!(state.switch_to.take(), Some(clip.clone()));
    let notice = state.notice.clone().unwrap();
    assert!(notice.contains("bundled clip"), "{notice}");
    p.set_source(source::opener(SourceSpec::Clip(clip), Some(60.0)));
    while state.processed < 2 {
        state.apply(p.wait_event(WAIT).expect("an event"));
    }
    assert!(state.source.as_deref().unwrap().starts_with("clip"), "{:?}", state.source);
}
