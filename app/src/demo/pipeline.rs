//! The demo's threads, without any GUI: capture → a one-slot mailbox that keeps only the
//! newest frame → the engine worker → a bounded channel of results → the window, which drains it
//! with `try_recv` and never waits for the engine.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use framecache::{Bundle, BundleSession, FrameStats, HeadStatus, Mode, Session, SessionOptions};

use super::source::{Captured, FrameSource, SourceError};
use crate::model::Model;
use framecache::heads::{self, Head};

/// How many results may wait for the window before the worker waits for it.
const RESULTS: usize = 2;
/// Settings and model changes waiting for the worker (it takes them between frames).
const COMMANDS: usize = 16;

/// A one-slot channel whose sender replaces a waiting value instead of blocking: the consumer
/// always gets the newest frame, and stale ones are counted and dropped.
pub struct Latest<T> {
    tx: Sender<T>,
    /// Held by the sender too, to take out the stale value.
    stale: Receiver<T>,
    dropped: Arc<AtomicU64>,
}

impl<T> Clone for Latest<T> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone(), stale: self.stale.clone(), dropped: Arc::clone(&self.dropped) }
    }
}

/// A [`Latest`] sender and its receiver.
pub fn latest<T>() -> (Latest<T>, Receiver<T>) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    (Latest { tx, stale: rx.clone(), dropped: Arc::default() }, rx)
}

impl<T> Latest<T> {
    /// Puts `value` in the slot, dropping the value that waits there, if any.
    pub fn offer(&self, value: T) {
        let mut value = value;
        loop {
            match self.tx.try_send(value) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(v)) => {
                    if self.stale.try_recv().is_ok() {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    value = v;
                }
            }
        }
    }
    /// Values replaced before anyone took them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// What the engine is asked to do with each frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EngineSettings {
    pub mode: Mode,
    pub tile: usize,
    /// Recompute every frame in full (the reference path), for comparison.
    pub full: bool,
    /// Recompute everything every N frames (drift control; `None`: the mode's default).
    pub refresh: Option<crate::args::Refresh>,
}

/// The model being run, as the window describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub path: PathBuf,
    /// The sidecar's task, or the heads of a bundle.
    pub kind: String,
    pub macs: u64,
    /// Model input `(height, width)` (of the first backbone of a bundle).
    pub input: (usize, usize),
}

/// What the worker runs: one model with its sidecar, or a multi-task bundle.
pub enum Loaded {
    Model(Box<Model>),
    Bundle(Arc<Bundle>),
}

impl From<Model> for Loaded {
    fn from(m: Model) -> Self {
        Loaded::Model(Box::new(m))
    }
}

impl Loaded {
    /// A bundle manifest (`.toml`) or bundle file (`.fcbundle`, `framecache compile --bundle`),
    /// or an ONNX model with its sidecar (`sidecar` overrides it; `input_size` fixes dynamic
    /// input dims, see [`Model::load`]).
    pub fn load(path: &Path, sidecar: Option<&Path>, input_size: Option<(usize, usize)>) -> anyhow::Result<Self> {
        if path.extension().is_some_and(|e| e == "toml" || e == "fcbundle") {
            Ok(Loaded::Bundle(Bundle::load(path, &crate::bundle::model_dirs(&[]))?))
        } else {
            Ok(Loaded::Model(Box::new(Model::load(path, sidecar, input_size, None)?)))
        }
    }

    fn info(&self) -> ModelInfo {
        match self {
            Loaded::Model(m) => {
                let s = m.plan.graph().input_shape();
                ModelInfo {
                    name: m.name.clone(),
                    path: m.path.clone(),
                    kind: format!("{:?}", m.task()),
                    macs: m.plan.total_macs(),
                    input: (s.h, s.w),
                }
            }
            Loaded::Bundle(b) => {
                let s = b.backbones[0].plan.graph().input_shape();
                let heads: Vec<&str> =
                    b.backbones.iter().flat_map(|bb| bb.heads.iter().map(|h| h.name.as_str())).collect();
                ModelInfo {
                    name: b.name.clone(),
                    path: b.path.clone(),
                    kind: format!("{} backbone(s), heads {}", b.backbones.len(), heads.join(", ")),
                    macs: b.backbones.iter().map(|bb| bb.plan.total_macs()).sum(),
                    input: (s.h, s.w),
                }
            }
        }
    }
}

/// What one head of a bundle did on a frame.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadRun {
    pub name: String,
    pub status: HeadStatus,
    pub macs: u64,
}

/// A running stream through a [`Loaded`] model.
enum Running {
    Model(Box<Session>),
    Bundle(BundleSession),
}

/// One processed frame.
#[derive(Clone, Debug)]
pub struct FrameResult {
    pub captured: Captured,
    pub heads: Vec<Head>,
    /// Per head of a bundle: ran, unchanged or skipped, and its MACs (empty for one model).
    pub head_runs: Vec<HeadRun>,
    pub stats: FrameStats,
    pub settings: EngineSettings,
    /// The part of the frame the model (a bundle's first backbone) sees, `(x0, y0, width,
    /// height)` in frame pixels. Boxes and keypoints are in frame pixels already.
    pub region: (f32, f32, f32, f32),
    /// Model input `(height, width)`: the space the tiles of `stats` are in.
    pub input: (usize, usize),
    /// Time in the engine (preprocessing included).
    pub engine: Duration,
    pub done: Instant,
}

/// What the threads tell the window.
#[derive(Debug)]
pub enum Event {
    SourceStarted(String),
    SourceFailed(SourceError),
    /// A finite source ran out.
    SourceEnded,
    ModelLoaded(ModelInfo),
    /// A model switch failed; the previous model keeps running.
    ModelFailed(String),
    /// The engine rejected a frame (for example a frame size it cannot take).
    EngineFailed(String),
    Result(Box<FrameResult>),
}

enum Command {
    Settings(EngineSettings),
    Model(PathBuf),
}

/// Opens a source on the capture thread, so a slow camera never holds up the window.
pub type Opener = Box<dyn FnOnce() -> Result<Box<dyn FrameSource>, SourceError> + Send>;

/// Called after every event, so the window can ask for a repaint.
pub type Notify = Arc<dyn Fn() + Send + Sync>;

/// Pause and single-step, read by the capture thread.
#[derive(Default)]
struct Control {
    paused: AtomicBool,
    steps: AtomicU32,
}

impl Control {
    /// Whether the capture thread may take a frame now.
    fn permit(&self) -> bool {
        !self.paused.load(Ordering::Acquire)
            || self.steps.fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| s.checked_sub(1)).is_ok()
    }
}

struct Capture {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// The running threads. Dropping it shuts them down in order and joins them.
pub struct Pipeline {
    control: Arc<Control>,
    frames: Latest<Captured>,
    events_tx: Sender<Event>,
    events: Option<Receiver<Event>>,
    commands: Option<Sender<Command>>,
    capture: Option<Capture>,
    worker: Option<JoinHandle<()>>,
    notify: Notify,
}

impl Pipeline {
    /// Starts the engine worker with `model`. No frames flow until [`Pipeline::set_source`].
    pub fn start(model: impl Into<Loaded>, settings: EngineSettings, threads: Option<usize>, notify: Notify) -> Self {
        let model = model.into();
        let (frames, frames_rx) = latest();
        let (events_tx, events) = crossbeam_channel::bounded(RESULTS);
        let (commands, commands_rx) = crossbeam_channel::bounded(COMMANDS);
        let worker = {
            let (events_tx, notify) = (events_tx.clone(), Arc::clone(&notify));
            std::thread::Builder::new()
                .name("framecache-engine".into())
                .spawn(move || {
                    Worker { model, settings, threads, session: None, events: events_tx, notify }
                        .run(&frames_rx, &commands_rx)
                })
                .expect("spawning the engine thread")
        };
        Self {
            control: Arc::default(),
            frames,
            events_tx,
            events: Some(events),
            commands: Some(commands),
            capture: None,
            worker: Some(worker),
            notify,
        }
    }

    /// Stops the current source, if any, and starts capturing from what `open` opens.
    pub fn set_source(&mut self, open: Opener) {
        self.stop_capture();
        let stop = Arc::new(AtomicBool::new(false));
        let (frames, events, control, notify) =
            (self.frames.clone(), self.events_tx.clone(), Arc::clone(&self.control), Arc::clone(&self.notify));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("framecache-capture".into())
            .spawn(move || capture(open, &frames, &events, &control, &flag, &notify))
            .expect("spawning the capture thread");
        self.capture = Some(Capture { stop, thread });
    }

    pub fn set_settings(&self, settings: EngineSettings) {
        self.command(Command::Settings(settings));
    }

    /// Loads another model on the worker; the current one runs until it is ready.
    pub fn set_model(&self, path: PathBuf) {
        self.command(Command::Model(path));
    }

    /// Queues a command for the worker without blocking the window. A full queue means the
    /// worker has not taken the last [`COMMANDS`]: the command is dropped, and said so.
    fn command(&self, c: Command) {
        if let Some(tx) = &self.commands {
            if let Err(crossbeam_channel::TrySendError::Full(_)) = tx.try_send(c) {
                tracing::warn!("the engine worker is behind by {COMMANDS} commands; one was dropped");
            }
        }
    }

    pub fn set_paused(&self, paused: bool) {
        self.control.steps.store(0, Ordering::Release);
        self.control.paused.store(paused, Ordering::Release);
    }

    /// While paused: let one more frame through.
    pub fn step(&self) {
        self.control.steps.fetch_add(1, Ordering::AcqRel);
    }

    /// The next event, if one is waiting. Never blocks.
    pub fn try_event(&self) -> Option<Event> {
        self.events.as_ref()?.try_recv().ok()
    }

    /// Waits up to `timeout` for an event (for tests and headless use; the window uses
    /// [`Pipeline::try_event`]).
    pub fn wait_event(&self, timeout: Duration) -> Option<Event> {
        self.events.as_ref()?.recv_timeout(timeout).ok()
    }

    /// Captured frames that were replaced by newer ones before the engine took them.
    pub fn dropped(&self) -> u64 {
        self.frames.dropped()
    }

    fn stop_capture(&mut self) {
        if let Some(c) = self.capture.take() {
            c.stop.store(true, Ordering::Release);
            let _ = c.thread.join();
        }
    }

    /// Stops capture, then the worker: the command channel closes, the result channel is
    /// dropped so a worker waiting to deliver wakes up, and both threads are joined.
    pub fn shutdown(&mut self) {
        self.stop_capture();
        self.commands = None;
        self.events = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The capture thread: open the source, then deliver frames at its pace until stopped.
fn capture(
    open: Opener,
    frames: &Latest<Captured>,
    events: &Sender<Event>,
    control: &Control,
    stop: &AtomicBool,
    notify: &Notify,
) {
    let say = |e: Event| {
        let sent = events.send(e).is_ok();
        notify();
        sent
    };
    let mut source = match caught(open).unwrap_or_else(|p| Err(SourceError::Clip(p))) {
        Ok(s) => s,
        Err(e) => {
            say(Event::SourceFailed(e));
            return;
        }
    };
    if !say(Event::SourceStarted(source.describe())) {
        return;
    }
    let mut index = 0;
    let mut due = Instant::now();
    while !stop.load(Ordering::Acquire) {
        if !control.permit() {
            std::thread::sleep(Duration::from_millis(5));
            due = Instant::now();
            continue;
        }
        if let Some(interval) = source.interval() {
            // Sleep in short slices so a stop request is seen quickly.
            while let Some(left) = due.checked_duration_since(Instant::now()) {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(left.min(Duration::from_millis(20)));
            }
            // Keep the rate, but never burst to catch up after a stall.
            due = (due + interval).max(Instant::now());
        }
        match caught(|| source.next_frame()).unwrap_or_else(|p| Err(SourceError::Clip(p))) {
            Ok(Some(frame)) => {
                frames.offer(Captured { index, frame, at: Instant::now() });
                index += 1;
            }
            Ok(None) => {
                say(Event::SourceEnded);
                return;
            }
            Err(e) => {
                say(Event::SourceFailed(e));
                return;
            }
        }
    }
}

/// Runs `f`, turning a panic into its message: a worker's panic must reach the window as an
/// error (the demo goes on), not end the thread and leave the window waiting.
fn caught<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        let what = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
        format!("internal error (panic): {}", what.unwrap_or_else(|| "unknown".into()))
    })
}

struct Worker {
    model: Loaded,
    settings: EngineSettings,
    threads: Option<usize>,
    /// Built on first use and after a change of mode, tile or model.
    session: Option<Running>,
    events: Sender<Event>,
    notify: Notify,
}

impl Worker {
    fn run(mut self, frames: &Receiver<Captured>, commands: &Receiver<Command>) {
        if !self.say(Event::ModelLoaded(self.info())) {
            return;
        }
        loop {
            // When both are ready, `select!` picks at random, so commands are never starved.
            crossbeam_channel::select! {
                recv(commands) -> c => {
                    let Ok(c) = c else { return };
                    if !self.apply(c) {
                        return;
                    }
                }
                recv(frames) -> f => {
                    let Ok(captured) = f else { return };
                    let event = match caught(|| self.process(captured)) {
                        Ok(Ok(r)) => Event::Result(Box::new(r)),
                        Ok(Err(e)) => Event::EngineFailed(e),
                        // The session may hold a half-computed cache: the next frame starts a
                        // fresh one, with the same model.
                        Err(panic) => {
                            self.session = None;
                            Event::EngineFailed(panic)
                        }
                    };
                    if !self.say(event) {
                        return;
                    }
                }
            }
        }
    }

    /// Applies a command; `false` when the window is gone.
    fn apply(&mut self, c: Command) -> bool {
        match c {
            Command::Settings(s) => {
                if (s.mode, s.tile, s.refresh) != (self.settings.mode, self.settings.tile, self.settings.refresh) {
                    self.session = None;
                }
                self.settings = s;
                true
            }
            Command::Model(path) => {
                let event = match caught(|| Loaded::load(&path, None, None)).map_err(anyhow::Error::msg).and_then(|r| r)
                {
                    Ok(m) => {
                        self.model = m;
                        self.session = None;
                        Event::ModelLoaded(self.info())
                    }
                    Err(e) => Event::ModelFailed(format!("{e:#}")),
                };
                self.say(event)
            }
        }
    }

    fn say(&self, e: Event) -> bool {
        let sent = self.events.send(e).is_ok();
        (self.notify)();
        sent
    }

    fn info(&self) -> ModelInfo {
        self.model.info()
    }

    fn process(&mut self, captured: Captured) -> Result<FrameResult, String> {
        let session = match &mut self.session {
            Some(s) => s,
            None => {
                let options = SessionOptions {
                    mode: self.settings.mode,
                    tile: self.settings.tile,
                    threads: self.threads,
                    refresh_interval: crate::args::refresh_interval(self.settings.refresh, self.settings.mode),
                    // The live view gets out of the way when reuse does not pay.
                    bypass: true,
                    ..Default::default()
                };
                let running = match &self.model {
                    Loaded::Model(m) => Session::new(Arc::clone(&m.plan), options).map(|s| Running::Model(Box::new(s))),
                    Loaded::Bundle(b) => BundleSession::new(Arc::clone(b), options).map(Running::Bundle),
                };
                self.session.insert(running.map_err(|e| e.to_string())?)
            }
        };
        let frame = captured.frame.as_frame();
        let full = self.settings.full;
        let failed = |e: framecache::Error| format!("frame {}: {e}", captured.index);
        let started = Instant::now();
        let (heads, head_runs, stats, plan) = match (session, &self.model) {
            (Running::Model(s), Loaded::Model(m)) => {
                let outputs = if full { s.run_full(frame) } else { s.process(frame) }.map_err(failed)?;
                // The session's plan: unless `aspect = "fixed"`, one of the frame's shape.
                let plan = Arc::clone(s.plan());
                let heads = heads::decode(&m.decoders, &outputs, &plan.frame_map(frame.width, frame.height));
                (heads, Vec::new(), s.last_stats().cloned(), plan)
            }
            (Running::Bundle(s), Loaded::Bundle(_)) => {
                let results = if full { s.run_full(frame) } else { s.process(frame) }.map_err(failed)?;
                let runs =
                    results.iter().map(|r| HeadRun { name: r.name.clone(), status: r.status, macs: r.macs }).collect();
                let heads = results.into_iter().filter_map(|r| r.output).collect();
                (heads, runs, s.session(0).last_stats().cloned(), Arc::clone(s.session(0).plan()))
            }
            _ => return Err("internal: the session does not match the model".into()),
        };
        let engine = started.elapsed();
        let stats = stats.ok_or("the engine gave no statistics")?;
        let input = plan.graph().input_shape();
        Ok(FrameResult {
            heads,
            head_runs,
            stats,
            settings: self.settings,
            region: plan.preprocess().source_region(frame.width, frame.height, input),
            input: (input.h, input.w),
            engine,
            done: Instant::now(),
            captured,
        })
    }
}
