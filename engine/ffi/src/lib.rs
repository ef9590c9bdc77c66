//! # framecache-ffi
//!
//! A thin C ABI over the framecache engine, for the Android (JNI) and iOS (Swift) apps, which
//! capture frames natively and hand them over. The header `include/framecache.h` is generated
//! from this file by cbindgen and committed; a test fails when it is stale.
//!
//! Rules every function keeps:
//! - It returns an [`FcStatus`]; on failure [`fc_last_error`] gives a message for this thread.
//! - It never unwinds into C: a panic becomes [`FcStatus::Panic`].
//! - Engines are numbered handles, never pointers, and numbers are never reused: a destroyed or
//!   made-up handle is reported as [`FcStatus::InvalidHandle`], so use after free and double
//!   free are detected instead of being undefined behaviour.
//! - Null pointers, sizes, strides and option values are checked before use.
//!
//! An engine is used by one thread at a time (calls on the same handle from several threads are
//! serialised by a lock).

mod frames;
#[cfg(feature = "jni")]
mod java;

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use framecache::heads::{self, Head};
use framecache::{FrameStats, HeadStatus, Image, Mode, Session, SessionOptions, SidecarModel};

/// Status of every call.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FcStatus {
    Ok = 0,
    /// A required pointer was null.
    NullPointer = 1,
    /// An option, size, stride or index is out of range.
    InvalidArgument = 2,
    /// The handle was never created or was already destroyed.
    InvalidHandle = 3,
    /// The model or its sidecar could not be read or imported.
    Model = 4,
    /// The frame was rejected (geometry, layout).
    Frame = 5,
    /// No frame has been processed yet.
    NoResult = 6,
    /// The output buffer is too small; the needed size was written.
    BufferTooSmall = 7,
    /// A bug: the engine panicked. The handle should be destroyed.
    Panic = 8,
}

/// An engine handle. 0 is never a valid handle.
pub type FcEngine = u64;

/// Change detection: a tile is reused only when bit-identical (results equal full inference).
pub const FC_MODE_EXACT: u32 = 0;
/// A tile is reused while its largest difference stays at or below `threshold` grey levels.
pub const FC_MODE_THRESHOLD: u32 = 1;
/// Threshold on input tiles plus per-node delta thresholds (DeltaCNN-style).
pub const FC_MODE_DELTA: u32 = 2;
/// As `FC_MODE_THRESHOLD`, with each tile's difference low-passed first (the largest mean over
/// 2x2 blocks), so that sensor noise alone rarely crosses the threshold: the mode the desktop
/// app starts in (threshold 8, with the bypass), and the one for a phone camera.
pub const FC_MODE_BLOCK_THRESHOLD: u32 = 3;
/// As `FC_MODE_DELTA`, with the input tiles tested as in `FC_MODE_BLOCK_THRESHOLD`.
pub const FC_MODE_BLOCK_DELTA: u32 = 4;

/// Interleaved 8-bit pixels, 4 bytes each.
pub const FC_PIXEL_RGBA: u32 = 0;
pub const FC_PIXEL_BGRA: u32 = 1;

/// Head kinds of [`FcHeadInfo`].
pub const FC_HEAD_CLASSES: u32 = 0;
pub const FC_HEAD_MASK: u32 = 1;
/// An output without a decoder; only its size is reported.
pub const FC_HEAD_VALUES: u32 = 2;
/// A list of boxes (`count` detections, [`fc_engine_boxes`]): a bundle's `detect_ssd` and
/// `detect_grid` heads.
pub const FC_HEAD_DETECTIONS: u32 = 3;
/// A list of landmarks (`count` points, [`fc_engine_keypoints`]): a bundle's `keypoints` heads.
pub const FC_HEAD_KEYPOINTS: u32 = 4;

/// A head ran on the last frame and recomputed what changed.
pub const FC_HEAD_COMPUTED: u32 = 0;
/// A head was due, but nothing it reads changed: its last result stands.
pub const FC_HEAD_UNCHANGED: u32 = 1;
/// A head was not due (its rate): its last result stands.
pub const FC_HEAD_SKIPPED: u32 = 2;

/// Engine options. Start from [`fc_options_default`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FcOptions {
    /// `FC_MODE_*`. The approximate modes compute every 16th frame densely whatever the cache
    /// holds, so that no approximation is held for more than about half a second.
    pub mode: u32,
    /// Grey levels (0-255) for threshold and delta modes.
    pub threshold: f32,
    /// Tile size in model-input pixels (8-32).
    pub tile: u32,
    /// Worker threads; 0 = all cores.
    pub threads: u32,
    /// Nonzero: the adaptive bypass. When a cached frame costs more than a dense one (both
    /// timed in this engine), the next frames run densely, for longer each time it happens
    /// again, so that a moving camera costs no more than full inference. Its decisions come from
    /// wall time, so they are not repeatable; exact mode's results do not depend on them.
    pub bypass: u32,
}

/// One plane of a YUV 4:2:0 image.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FcPlane {
    pub data: *const u8,
    /// Bytes from one row to the next.
    pub row_stride: u32,
    /// Bytes from one sample to the next: 1 (planar, I420) or 2 (interleaved chroma, NV12/NV21).
    pub pixel_stride: u32,
}

/// A YUV 4:2:0 frame as CameraX's `YUV_420_888` or a CVPixelBuffer delivers it: I420 (three
/// planes, pixel stride 1), NV12 (`v.data == u.data + 1`) or NV21 (`u.data == v.data + 1`), all
/// with pixel stride 2 for chroma. Chroma planes are `ceil(width/2) x ceil(height/2)`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FcYuv420 {
    pub width: u32,
    pub height: u32,
    pub y: FcPlane,
    pub u: FcPlane,
    pub v: FcPlane,
    /// 0: limited range (16-235, most cameras); 1: full range (0-255).
    pub full_range: u32,
}

/// Statistics of the last frame.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FcStats {
    /// Frames processed by this engine, the last one included.
    pub frame_index: u64,
    /// 1 when the cache was not used for this frame (first frame, new size, refresh).
    pub cache_reset: u32,
    pub input_hit_rate: f64,
    pub mac_saving: f64,
    pub macs_executed: u64,
    pub macs_full: u64,
    /// Time in the engine for this frame (conversion and preprocessing included).
    pub engine_ms: f64,
    /// The tile grid over the model input; [`fc_engine_tile_map`] gives each tile's state.
    pub tile_rows: u32,
    pub tile_cols: u32,
    /// Tile side in model-input pixels (the last row and column may be smaller).
    pub tile_size: u32,
    pub dirty_tiles: u32,
    /// Model input size in pixels: the space tiles are measured in.
    pub input_width: u32,
    pub input_height: u32,
    /// The part of the (rotated) frame the model sees, in frame pixels: map tile bounds
    /// `x * region_width / input_width + region_x` to draw the overlay.
    pub region_x: f32,
    pub region_y: f32,
    pub region_width: f32,
    pub region_height: f32,
    /// Size of the processed frame after rotation.
    pub frame_width: u32,
    pub frame_height: u32,
}

/// What a head holds, from [`fc_engine_head_info`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FcHeadInfo {
    /// `FC_HEAD_*`.
    pub kind: u32,
    /// Classes: how many [`fc_engine_classes`] returns. Mask: `width * height`. Values: the
    /// number of values.
    pub count: u32,
    /// Mask size (0 for other kinds).
    pub width: u32,
    pub height: u32,
}

/// One head's name, status and cost on the last frame.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FcHeadStatus {
    /// The head's name (a bundle's `name`, or a model's output name), NUL-terminated, valid
    /// until the engine is destroyed.
    pub name: *const c_char,
    /// `FC_HEAD_COMPUTED`, `FC_HEAD_UNCHANGED` or `FC_HEAD_SKIPPED`.
    pub status: u32,
    /// Multiply-adds run in the head's own nodes (a single model: the whole model's).
    pub macs: u64,
    /// Wall time of the head's own kernels in ms; NaN for a single model (see `engine_ms`).
    pub ms: f64,
}

/// One detected box, in frame pixels (after rotation), best first.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FcBox {
    pub score: f32,
    pub xmin: f32,
    pub ymin: f32,
    pub xmax: f32,
    pub ymax: f32,
    /// How many keypoints [`fc_engine_box_keypoints`] gives for this box.
    pub keypoints: u32,
}

/// One landmark: `x`, `y` in frame pixels, `z` in model-input pixels (relative depth),
/// `visibility` a probability, or −1 when the model gives none.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FcKeypoint {
    pub x: f32,
    pub y: f32,
    pub z: f32,
    pub visibility: f32,
}

/// One class of a classification head.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FcClass {
    /// Index in the model's output.
    pub index: u32,
    /// Probability (softmax of the scores).
    pub prob: f32,
    /// The class name, NUL-terminated, valid until the engine is destroyed.
    pub label: *const c_char,
}

struct Engine {
    runner: Runner,
    /// Each head's name, as a C string (valid until the engine is destroyed).
    names: Vec<CString>,
    /// Class names as C strings, by head and class index, built on first use.
    labels_c: HashMap<(u32, usize), CString>,
    last: Option<Last>,
}

/// What an engine runs: one model with its sidecar's decoders (a head per output), or a
/// bundle's backbones, each with its heads.
enum Runner {
    Model { session: Box<Session>, decoders: Vec<framecache::heads::Decoder> },
    Bundle(framecache::BundleSession),
}

impl Runner {
    /// The session whose statistics and tile map the engine reports (a bundle's first backbone).
    fn session(&self) -> &Session {
        match self {
            Runner::Model { session, .. } => session,
            Runner::Bundle(b) => b.session(0),
        }
    }

    fn reset(&mut self) {
        match self {
            Runner::Model { session, .. } => session.reset(),
            Runner::Bundle(b) => b.reset(),
        }
    }

    /// One frame: each head's decoded result (`None` until it first ran) and cost.
    fn process(&mut self, frame: Image<'_>) -> framecache::Result<(Vec<Option<Head>>, Vec<Cost>)> {
        match self {
            Runner::Model { session, decoders } => {
                let outputs = session.process(frame)?;
                let (w, h) = frame.size();
                let heads = heads::decode(decoders, &outputs, &session.plan().frame_map(w, h));
                // A model's outputs share one computation: each reports the model's.
                let macs = session.last_stats().map_or(0, |s| s.macs_executed);
                let cost = Cost { status: FC_HEAD_COMPUTED, macs, ms: f64::NAN };
                Ok((heads.into_iter().map(Some).collect(), vec![cost; outputs.len()]))
            }
            Runner::Bundle(b) => {
                let results = b.process(frame)?;
                let costs = results
                    .iter()
                    .map(|r| Cost {
                        status: match r.status {
                            HeadStatus::Computed => FC_HEAD_COMPUTED,
                            HeadStatus::Unchanged => FC_HEAD_UNCHANGED,
                            HeadStatus::Skipped => FC_HEAD_SKIPPED,
                        },
                        macs: r.macs,
                        ms: r.time.as_secs_f64() * 1e3,
                    })
                    .collect();
                Ok((results.into_iter().map(|r| r.output).collect(), costs))
            }
        }
    }
}

/// One head's status and cost on the last frame.
#[derive(Clone, Copy)]
struct Cost {
    status: u32,
    macs: u64,
    /// Wall time of its own kernels; NaN for a single model (the frame's `engine_ms`).
    ms: f64,
}

struct Last {
    stats: FrameStats,
    heads: Vec<Option<Head>>,
    costs: Vec<Cost>,
    engine_ms: f64,
    frame: (usize, usize),
}

/// A failure: status and message.
struct Fail(FcStatus, String);

type Result<T> = std::result::Result<T, Fail>;

fn fail<T>(status: FcStatus, message: impl Into<String>) -> Result<T> {
    Err(Fail(status, message.into()))
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(message: &str) {
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs `f`, turning failures and panics into a status and this thread's last error.
fn guard(name: &str, f: impl FnOnce() -> Result<()>) -> FcStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => FcStatus::Ok,
        Ok(Err(Fail(status, message))) => {
            set_error(&format!("{name}: {message}"));
            status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_error(&format!("{name}: internal error (panic): {what}"));
            FcStatus::Panic
        }
    }
}

fn registry() -> &'static Mutex<HashMap<u64, Arc<Mutex<Engine>>>> {
    static ENGINES: OnceLock<Mutex<HashMap<u64, Arc<Mutex<Engine>>>>> = OnceLock::new();
    ENGINES.get_or_init(Default::default)
}

static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);

fn lookup(handle: FcEngine) -> Result<Arc<Mutex<Engine>>> {
    let map = registry().lock().unwrap_or_else(|p| p.into_inner());
    match map.get(&handle) {
        Some(e) => Ok(Arc::clone(e)),
        None => {
            fail(FcStatus::InvalidHandle, format!("handle {handle} is not a live engine (never created, or destroyed)"))
        }
    }
}

/// Runs `f` on the engine behind `handle`. An engine whose last call panicked (status
/// `FC_STATUS_PANIC`) may hold a half-computed cache: its cache and last result are dropped
/// first, so the call after a panic starts from a full inference.
fn with_engine<T>(handle: FcEngine, f: impl FnOnce(&mut Engine) -> Result<T>) -> Result<T> {
    let engine = lookup(handle)?;
    let mut guard = match engine.lock() {
        Ok(g) => g,
        Err(poisoned) => {
            let mut g = poisoned.into_inner();
            g.runner.reset();
            g.last = None;
            engine.clear_poison();
            g
        }
    };
    f(&mut guard)
}

fn non_null<T>(p: *const T, what: &str) -> Result<()> {
    if p.is_null() {
        fail(FcStatus::NullPointer, format!("`{what}` is null"))
    } else {
        Ok(())
    }
}

/// # Safety
/// `p` is null (an error) or a NUL-terminated string.
unsafe fn c_str<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    non_null(p, what)?;
    // SAFETY: the caller promises a NUL-terminated string.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| Fail(FcStatus::InvalidArgument, format!("`{what}` is not UTF-8")))
}

fn session_options(o: &FcOptions) -> Result<SessionOptions> {
    use framecache::diff::Metric;
    let level = o.threshold;
    let mode = match o.mode {
        FC_MODE_EXACT => Mode::Exact,
        FC_MODE_THRESHOLD..=FC_MODE_BLOCK_DELTA if !(level > 0.0 && level <= 255.0) => {
            return fail(FcStatus::InvalidArgument, format!("threshold {level} must lie in (0, 255] grey levels"))
        }
        FC_MODE_THRESHOLD => Mode::Threshold { metric: Metric::MaxAbs, level },
        FC_MODE_DELTA => Mode::Delta { metric: Metric::MaxAbs, level },
        FC_MODE_BLOCK_THRESHOLD => Mode::Threshold { metric: Metric::BlockMean, level },
        FC_MODE_BLOCK_DELTA => Mode::Delta { metric: Metric::BlockMean, level },
        m => {
            return fail(
                FcStatus::InvalidArgument,
                format!("mode {m} is not FC_MODE_EXACT, _THRESHOLD, _DELTA, _BLOCK_THRESHOLD or _BLOCK_DELTA"),
            )
        }
    };
    let options = SessionOptions {
        mode,
        tile: o.tile as usize,
        threads: (o.threads > 0).then_some(o.threads as usize),
        bypass: o.bypass != 0,
        refresh_interval: mode.default_refresh(),
        ..Default::default()
    };
    options.validate().map_err(|e| Fail(FcStatus::InvalidArgument, e.report()))?;
    Ok(options)
}

fn register(model: SidecarModel, options: SessionOptions) -> Result<FcEngine> {
    let SidecarModel { plan, decoders, .. } = model;
    let names = plan.graph().outputs.iter().map(|o| o.name.clone()).collect();
    let session = Session::new(plan, options).map_err(|e| Fail(FcStatus::InvalidArgument, e.report()))?;
    insert(Runner::Model { session: Box::new(session), decoders }, names)
}

fn insert(runner: Runner, names: Vec<String>) -> Result<FcEngine> {
    let names = names.into_iter().map(|n| CString::new(n.replace('\0', " ")).unwrap_or_default()).collect();
    let engine = Engine { runner, names, labels_c: HashMap::new(), last: None };
    let handle = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
    registry().lock().unwrap_or_else(|p| p.into_inner()).insert(handle, Arc::new(Mutex::new(engine)));
    Ok(handle)
}

/// A frame the engine refused: a bad argument (a rotation that is not a quarter turn), or
/// geometry that does not match its buffers.
fn frame_error(e: framecache::Error) -> Fail {
    let status = match e {
        framecache::Error::InvalidOption { .. } => FcStatus::InvalidArgument,
        _ => FcStatus::Frame,
    };
    Fail(status, e.report())
}

fn model_error(e: framecache::Error) -> Fail {
    Fail(FcStatus::Model, e.report())
}

/// Writes the defaults: exact mode (the correctness reference, as in the Rust library), threshold
/// 8 (used when a threshold mode is chosen), tile 16, all cores, no bypass. A camera app wants
/// `FC_MODE_BLOCK_THRESHOLD` with the bypass on, as the desktop app runs.
///
/// # Safety
/// `out` is null (an error) or points to writable memory for one `FcOptions`.
#[no_mangle]
pub unsafe extern "C" fn fc_options_default(out: *mut FcOptions) -> FcStatus {
    guard("fc_options_default", || {
        non_null(out, "out")?;
        let options = FcOptions {
            mode: FC_MODE_EXACT,
            threshold: 8.0,
            tile: framecache::exec::DEFAULT_TILE as u32,
            threads: 0,
            bypass: 0,
        };
        // SAFETY: checked non-null; the caller promises it is writable.
        unsafe { out.write(options) };
        Ok(())
    })
}

/// Creates an engine from a model file: a plan file (`framecache compile`), which carries its
/// own sidecar and labels, or, where the library is built with its importers (not on the
/// phones), an ONNX or TFLite model. The sidecar `<model file>.toml` (preprocessing, task,
/// labels) is read from `sidecar_path` when that is not null, else (but for a plan file) from
/// beside the model.
///
/// # Safety
/// Strings are null or NUL-terminated; `options` is null (defaults) or points to an
/// `FcOptions`; `out` points to writable memory for one handle.
#[no_mangle]
pub unsafe extern "C" fn fc_engine_create(
    model_path: *const c_char,
    sidecar_path: *const c_char,
    options: *const FcOptions,
    out: *mut FcEngine,
) -> FcStatus {
    guard("fc_engine_create", || {
        non_null(out, "out")?;
        // SAFETY: the caller's promises, above.
        let model = Path::new(unsafe { c_str(model_path, "model_path") }?);
        let sidecar = match sidecar_path.is_null() {
            true => None,
            // SAFETY: as above.
            false => Some(Path::new(unsafe { c_str(sidecar_path, "sidecar_path") }?)),
        };
        // SAFETY: as above.
        let options = session_options(&unsafe { read_options(options) }?)?;
        let model = SidecarModel::load(model, sidecar, &[], None, None).map_err(model_error)?;
        let handle = register(model, options)?;
        // SAFETY: checked non-null.
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Creates an engine from a model in memory: a plan file (`framecache compile`), which carries
/// its own sidecar and labels (pass null for both), or, where the library is built with its
/// importers (not on the phones), an ONNX or TFLite model with its sidecar as TOML text and
/// optionally class names (one per line; `labels` may be null).
///
/// # Safety
/// `onnx` points to `onnx_len` readable bytes; strings are null or NUL-terminated; `options`
/// is null (defaults) or points to an `FcOptions`; `out` points to writable memory.
#[no_mangle]
pub unsafe extern "C" fn fc_engine_create_from_bytes(
    onnx: *const u8,
    onnx_len: usize,
    sidecar_toml: *const c_char,
    labels: *const c_char,
    options: *const FcOptions,
    out: *mut FcEngine,
) -> FcStatus {
    guard("fc_engine_create_from_bytes", || {
        non_null(out, "out")?;
        non_null(onnx, "onnx")?;
        if onnx_len == 0 {
            return fail(FcStatus::InvalidArgument, "onnx_len is 0");
        }
        // SAFETY: the caller promises `onnx_len` readable bytes.
        let bytes = unsafe { std::slice::from_raw_parts(onnx, onnx_len) };
        let text = match sidecar_toml.is_null() {
            true if framecache::import::plan_file::is_plan_file(bytes) => "",
            true => {
                return fail(FcStatus::InvalidArgument, "sidecar_toml is null, and only a plan file carries its own")
            }
            // SAFETY: as above.
            false => unsafe { c_str(sidecar_toml, "sidecar_toml") }?,
        };
        let labels = match labels.is_null() {
            true => None,
            // SAFETY: as above.
            false => Some(unsafe { c_str(labels, "labels") }?.lines().map(str::to_owned).collect()),
        };
        // SAFETY: as above.
        let options = session_options(&unsafe { read_options(options) }?)?;
        let model = SidecarModel::from_bytes(bytes, text, labels).map_err(model_error)?;
        let handle = register(model, options)?;
        // SAFETY: checked non-null.
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Creates an engine from a bundle (several heads on shared backbones): a bundle file
/// (`framecache compile --bundle`: the manifest and every file it names in one file, what the
/// phones load), or a manifest whose model files (plan files on the phones; `framecache
/// compile`) and labels files are read from beside it. Every head of every backbone is a head
/// of the engine, in manifest order.
///
/// # Safety
/// `manifest_path` is a NUL-terminated string; `options` is null (defaults) or points to an
/// `FcOptions`; `out` points to writable memory for one handle.
#[no_mangle]
pub unsafe extern "C" fn fc_engine_create_bundle(
    manifest_path: *const c_char,
    options: *const FcOptions,
    out: *mut FcEngine,
) -> FcStatus {
    guard("fc_engine_create_bundle", || {
        non_null(out, "out")?;
        // SAFETY: the caller's promises, above.
        let path = Path::new(unsafe { c_str(manifest_path, "manifest_path") }?);
        // SAFETY: as above.
        let options = session_options(&unsafe { read_options(options) }?)?;
        let bundle = framecache::Bundle::load(path, &[]).map_err(model_error)?;
        let names = bundle.backbones.iter().flat_map(|b| b.heads.iter().map(|h| h.name.clone())).collect();
        let session =
            framecache::BundleSession::new(bundle, options).map_err(|e| Fail(FcStatus::InvalidArgument, e.report()))?;
        let handle = insert(Runner::Bundle(session), names)?;
        // SAFETY: checked non-null.
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// # Safety
/// `p` is null or points to an `FcOptions`.
unsafe fn read_options(p: *const FcOptions) -> Result<FcOptions> {
    if p.is_null() {
        let mut o = FcOptions { mode: 0, threshold: 0.0, tile: 0, threads: 0, bypass: 0 };
        // SAFETY: a valid local.
        unsafe { fc_options_default(&mut o) };
        Ok(o)
    } else {
        // SAFETY: the caller promises a readable `FcOptions`.
        Ok(unsafe { p.read() })
    }
}

/// Destroys an engine. Destroying it again, or using it afterwards, returns
/// `FC_STATUS_INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn fc_engine_destroy(engine: FcEngine) -> FcStatus {
    guard("fc_engine_destroy", || {
        let removed = registry().lock().unwrap_or_else(|p| p.into_inner()).remove(&engine);
        match removed {
            Some(_) => Ok(()),
            None => fail(
                FcStatus::InvalidHandle,
                format!("handle {engine} is not a live engine (never created, or destroyed)"),
            ),
        }
    })
}

/// Processes an RGBA or BGRA frame (`FC_PIXEL_*`, 4 bytes per pixel, rows `row_stride` bytes
/// apart), rotated clockwise by `rotation` degrees (0, 90, 180 or 270) before inference.
///
/// # Safety
/// `pixels` points to `row_stride * (height - 1) + width * 4` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn fc_engine_push_rgba(
    engine: FcEngine,
    pixels: *const u8,
    width: u32,
    height: u32,
    row_stride: u32,
    pixel_format: u32,
    rotation: u32,
) -> FcStatus {
    guard("fc_engine_push_rgba", || {
        non_null(pixels, "pixels")?;
        let (w, h, stride) = (width as usize, height as usize, row_stride as usize);
        frames::check_size(w, h)?;
        let bgra = match pixel_format {
            FC_PIXEL_RGBA => false,
            FC_PIXEL_BGRA => true,
            f => {
                return fail(
                    FcStatus::InvalidArgument,
                    format!("pixel_format {f} is not FC_PIXEL_RGBA or FC_PIXEL_BGRA"),
                )
            }
        };
        if stride < w * 4 {
            return fail(FcStatus::InvalidArgument, format!("row_stride {stride} < width {w} x 4 bytes"));
        }
        let len = stride * (h - 1) + w * 4;
        // SAFETY: the caller promises `len` readable bytes.
        let data = unsafe { std::slice::from_raw_parts(pixels, len) };
        with_engine(engine, |e| {
            let started = Instant::now();
            let image = Image::rgba(data, (w, h), stride, bgra, rotation).map_err(frame_error)?;
            e.process(image, started)
        })
    })
}

/// Processes a YUV 4:2:0 frame (I420, NV12 or NV21 with strides), rotated clockwise by
/// `rotation` degrees before inference.
///
/// # Safety
/// `frame` points to an `FcYuv420` whose planes hold the bytes their strides imply.
#[no_mangle]
pub unsafe extern "C" fn fc_engine_push_yuv420(engine: FcEngine, frame: *const FcYuv420, rotation: u32) -> FcStatus {
    guard("fc_engine_push_yuv420", || {
        non_null(frame, "frame")?;
        // SAFETY: the caller promises a readable `FcYuv420`.
        let f = unsafe { frame.read() };
        let (w, h) = (f.width as usize, f.height as usize);
        frames::check_size(w, h)?;
        with_engine(engine, |e| {
            let started = Instant::now();
            // SAFETY: the caller promises the planes' bytes.
            let image = unsafe { frames::yuv_image(&f) }?;
            let image = Image::yuv(image, rotation).map_err(frame_error)?;
            e.process(image, started)
        })
    })
}

impl Engine {
    /// Runs the cached path on `image`, sampled from the caller's buffer.
    fn process(&mut self, image: Image<'_>, started: Instant) -> Result<()> {
        let (heads, costs) = self.runner.process(image).map_err(frame_error)?;
        let stats = self
            .runner
            .session()
            .last_stats()
            .cloned()
            .ok_or_else(|| Fail(FcStatus::NoResult, "no statistics".into()))?;
        let engine_ms = started.elapsed().as_secs_f64() * 1e3;
        self.last = Some(Last { stats, heads, costs, engine_ms, frame: image.size() });
        Ok(())
    }

    fn last(&self) -> Result<&Last> {
        self.last.as_ref().ok_or_else(|| Fail(FcStatus::NoResult, "no frame has been processed yet".into()))
    }

    fn check_head(&self, index: u32) -> Result<usize> {
        let n = self.names.len();
        match index as usize {
            i if i < n => Ok(i),
            _ => fail(FcStatus::InvalidArgument, format!("head {index} does not exist (the engine has {n})")),
        }
    }

    fn head(&self, index: u32) -> Result<&Head> {
        let i = self.check_head(index)?;
        self.last()?.heads[i]
            .as_ref()
            .ok_or_else(|| Fail(FcStatus::NoResult, format!("head {index} has not run yet (its rate skips it)")))
    }

    /// The C string of a class label of head `head` (the engine keeps it).
    fn label_ptr(&mut self, head: u32, index: usize, label: &str) -> *const c_char {
        let c = self
            .labels_c
            .entry((head, index))
            .or_insert_with(|| CString::new(label.replace('\0', " ")).unwrap_or_default());
        c.as_ptr()
    }
}

/// The statistics of the last frame.
///
/// # Safety
/// `out` points to writable memory for one `FcStats`.
#[no_mangle]
pub unsafe extern "C" fn fc_engine_stats(engine: FcEngine, out: *mut FcStats) -> FcStatus {
    guard("fc_engine_stats", || {
        non_null(out, "out")?;
        let stats = with_engine(engine, |e| {
            let last = e.last()?;
            let s = &last.stats;
            let plan = e.runner.session().plan();
            let input = plan.graph().input_shape();
            let (rx, ry, rw, rh) = plan.preprocess().source_region(last.frame.0, last.frame.1, input);
            Ok(FcStats {
                frame_index: s.frame_index,
                cache_reset: s.reset.is_some() as u32,
                input_hit_rate: s.input_hit_rate(),
                mac_saving: s.mac_saving(),
                macs_executed: s.macs_executed,
                macs_full: s.macs_full,
                engine_ms: last.engine_ms,
                tile_rows: s.tiling.rows as u32,
                tile_cols: s.tiling.cols as u32,
                tile_size: s.tiling.tile as u32,
                dirty_tiles: s.dirty_tiles as u32,
                input_width: input.w as u32,
                input_height: input.h as u32,
                region_x: rx,
                region_y: ry,
                region_width: rw,
                region_height: rh,
                frame_width: last.frame.0 as u32,
                frame_height: last.frame.1 as u32,
            })
        })?;
        // SAFETY: checked non-null.
        unsafe { out.write(stats) };
        Ok(())
    })
}

/// Which tiles of the last frame were recomputed (1) or reused (0), row-major,
/// `tile_rows * tile_cols` bytes. `written` gets the count; with a short buffer it gets the
/// needed size and the call returns `FC_STATUS_BUFFER_TOO_SMALL`.
///
/// # Safety
/// `out` is null or points to `capacity` writable bytes; `written` points to a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn fc_engine_tile_map(
    engine: FcEngine,
    out: *mut u8,
    capacity: usize,
    written: *mut usize,
) -> FcStatus {
    guard("fc_engine_tile_map", || {
        let make = |e: &mut Engine| Ok(e.last()?.stats.dirty.iter().map(|&d| d as u8).collect());
        // SAFETY: the caller's promises, above.
        unsafe { list_out(engine, out, capacity, written, make) }
    })
}

/// A list made on the engine behind `handle`, copied out: `written` gets its length; with a
/// short buffer the call fails with `FC_STATUS_BUFFER_TOO_SMALL` (and `written` says the size).
///
/// # Safety
/// `out` is null or points to `capacity` writable `T`s; `written` is null (an error) or points
/// to a writable `size_t`.
unsafe fn list_out<T: Copy>(
    handle: FcEngine,
    out: *mut T,
    capacity: usize,
    written: *mut usize,
    make: impl FnOnce(&mut Engine) -> Result<Vec<T>>,
) -> Result<()> {
    non_null(written, "written")?;
    let values = with_engine(handle, make)?;
    // SAFETY: checked non-null.
    unsafe { written.write(values.len()) };
    // SAFETY: the caller's promise.
    unsafe { copy_out(&values, out, capacity) }
}

/// # Safety
/// `out` is null or points to `capacity` writable `T`s.
unsafe fn copy_out<T: Copy>(values: &[T], out: *mut T, capacity: usize) -> Result<()> {
    if capacity < values.len() || (out.is_null() && !values.is_empty()) {
        return fail(FcStatus::BufferTooSmall, format!("needs room for {} values, got {capacity}", values.len()));
    }
    // SAFETY: non-null (or nothing to copy) and large enough, per the caller.
    unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), out, values.len()) };
    Ok(())
}

/// The number of heads: a model's outputs, or every head of a bundle (in manifest order).
///
/// # Safety
/// `out` points to a writable `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn fc_engine_head_count(engine: FcEngine, out: *mut u32) -> FcStatus {
    guard("fc_engine_head_count", || {
        non_null(out, "out")?;
        let n = with_engine(engine, |e| Ok(e.names.len() as u32))?;
        // SAFETY: checked non-null.
        unsafe { out.write(n) };
        Ok(())
    })
}

/// What head `head` of the last frame holds.
///
/// # Safety
/// `out` points to writable memory for one `FcHeadInfo`.
#[no_mangle]
pub unsafe extern "C" fn fc_engine_head_info(engine: FcEngine, head: u32, out: *mut FcHeadInfo) -> FcStatus {
    guard("fc_engine_head_info", || {
        non_null(out, "out")?;
        let info = with_engine(engine, |e| {
            Ok(match e.head(head)? {
                Head::Classes { top, .. } => {
                    FcHeadInfo { kind: FC_HEAD_CLASSES, count: top.len() as u32, width: 0, height: 0 }
                }
                Head::Mask { width, height, .. } => FcHeadInfo {
                    kind: FC_HEAD_MASK,
                    count: (width * height) as u32,
                    width: *width as u32,
                    height: *height as u32,
                },
                Head::Values { shape, .. } => FcHeadInfo {
                    kind: FC_HEAD_VALUES,
                    count: shape.iter().product::<usize>() as u32,
                    width: 0,
                    height: 0,
                },
                Head::Detections { detections, .. } => {
                    FcHeadInfo { kind: FC_HEAD_DETECTIONS, count: detections.len() as u32, width: 0, height: 0 }
                }
                Head::Keypoints { points, .. } => {
                    FcHeadInfo { kind: FC_HEAD_KEYPOINTS, count: points.len() as u32, width: 0, height: 0 }
                }
            })
        })?;
        // SAFETY: checked non-null.
        unsafe { out.write(info) };
        Ok(())
    })
}

/// The top classes of classification head `head`, best first.
///
/// # Safety
/// `out` is null or points to `capacity` writable `FcClass`es; `written` points to a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn fc_engine_classes(
    engine: FcEngine,
    head: u32,
    out: *mut FcClass,
    capacity: usize,
    written: *mut usize,
) -> FcStatus {
    guard("fc_engine_classes", || {
        let make = |e: &mut Engine| {
            let Head::Classes { top, .. } = e.head(head)? else {
                return fail(FcStatus::InvalidArgument, format!("head {head} is not a classification head"));
            };
            let ranked: Vec<(usize, f32, String)> = top.iter().map(|c| (c.index, c.prob, c.label.clone())).collect();
            Ok(ranked
                .into_iter()
                .map(|(index, prob, label)| FcClass {
                    index: index as u32,
                    prob,
                    label: e.label_ptr(head, index, &label),
                })
                .collect::<Vec<_>>())
        };
        // SAFETY: the caller's promises, above.
        unsafe { list_out(engine, out, capacity, written, make) }
    })
}

/// The probability mask of segmentation head `head` (row-major, `width * height` floats over
/// the region of [`FcStats`]).
///
/// # Safety
/// `out` is null or points to `capacity` writable floats; `width` and `height` point to
/// writable `uint32_t`s.
#[no_mangle]
pub unsafe extern "C" fn fc_engine_mask(
    engine: FcEngine,
    head: u32,
    out: *mut f32,
    capacity: usize,
    width: *mut u32,
    height: *mut u32,
) -> FcStatus {
    guard("fc_engine_mask", || {
        non_null(width, "width")?;
        non_null(height, "height")?;
        with_engine(engine, |e| {
            let Head::Mask { width: w, height: h, probs, .. } = e.head(head)? else {
                return fail(FcStatus::InvalidArgument, format!("head {head} is not a segmentation head"));
            };
            // SAFETY: checked non-null.
            unsafe {
                width.write(*w as u32);
                height.write(*h as u32);
            }
            // SAFETY: the caller promises `capacity` writable floats at `out`.
            unsafe { copy_out(probs, out, capacity) }
        })
    })
}

/// The name, status and cost of head `head` on the last frame.
///
/// # Safety
/// `out` points to writable memory for one `FcHeadStatus`.
#[no_mangle]
pub unsafe extern "C" fn fc_engine_head_status(engine: FcEngine, head: u32, out: *mut FcHeadStatus) -> FcStatus {
    guard("fc_engine_head_status", || {
        non_null(out, "out")?;
        let status = with_engine(engine, |e| {
            let i = e.check_head(head)?;
            let c = e.last()?.costs[i];
            Ok(FcHeadStatus { name: e.names[i].as_ptr(), status: c.status, macs: c.macs, ms: c.ms })
        })?;
        // SAFETY: checked non-null.
        unsafe { out.write(status) };
        Ok(())
    })
}

/// The boxes of detection head `head`, best first. `written` gets the count; with a short
/// buffer it gets the needed size and the call returns `FC_STATUS_BUFFER_TOO_SMALL`.
///
/// # Safety
/// `out` is null or points to `capacity` writable `FcBox`es; `written` points to a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn fc_engine_boxes(
    engine: FcEngine,
    head: u32,
    out: *mut FcBox,
    capacity: usize,
    written: *mut usize,
) -> FcStatus {
    guard("fc_engine_boxes", || {
        let make = |e: &mut Engine| {
            let Head::Detections { detections, .. } = e.head(head)? else {
                return fail(FcStatus::InvalidArgument, format!("head {head} is not a detection head"));
            };
            Ok(detections
                .iter()
                .map(|d| {
                    let [xmin, ymin, xmax, ymax] = d.bbox;
                    FcBox { score: d.score, xmin, ymin, xmax, ymax, keypoints: d.keypoints.len() as u32 }
                })
                .collect::<Vec<_>>())
        };
        // SAFETY: the caller's promises, above.
        unsafe { list_out(engine, out, capacity, written, make) }
    })
}

/// The keypoints of box `index` of detection head `head`, as `x, y` pairs in frame pixels
/// (`2 * keypoints` floats). `written` gets the number of floats.
///
/// # Safety
/// `out` is null or points to `capacity` writable floats; `written` points to a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn fc_engine_box_keypoints(
    engine: FcEngine,
    head: u32,
    index: u32,
    out: *mut f32,
    capacity: usize,
    written: *mut usize,
) -> FcStatus {
    guard("fc_engine_box_keypoints", || {
        let make = |e: &mut Engine| {
            let Head::Detections { detections, .. } = e.head(head)? else {
                return fail(FcStatus::InvalidArgument, format!("head {head} is not a detection head"));
            };
            let d = detections.get(index as usize).ok_or_else(|| {
                Fail(
                    FcStatus::InvalidArgument,
                    format!("box {index} does not exist (head {head} has {})", detections.len()),
                )
            })?;
            Ok(d.keypoints.iter().flatten().copied().collect::<Vec<f32>>())
        };
        // SAFETY: the caller's promises, above.
        unsafe { list_out(engine, out, capacity, written, make) }
    })
}

/// The landmarks of keypoint head `head`. `written` gets the count.
///
/// # Safety
/// `out` is null or points to `capacity` writable `FcKeypoint`s; `written` points to a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn fc_engine_keypoints(
    engine: FcEngine,
    head: u32,
    out: *mut FcKeypoint,
    capacity: usize,
    written: *mut usize,
) -> FcStatus {
    guard("fc_engine_keypoints", || {
        let make = |e: &mut Engine| {
            let Head::Keypoints { points, .. } = e.head(head)? else {
                return fail(FcStatus::InvalidArgument, format!("head {head} is not a keypoint head"));
            };
            Ok(points
                .iter()
                .map(|p| FcKeypoint { x: p.x, y: p.y, z: p.z, visibility: p.visibility.unwrap_or(-1.0) })
                .collect::<Vec<_>>())
        };
        // SAFETY: the caller's promises, above.
        unsafe { list_out(engine, out, capacity, written, make) }
    })
}

/// The last error on this thread, NUL-terminated; empty when none. Valid until the next failing
/// call on this thread.
#[no_mangle]
pub extern "C" fn fc_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The library version, NUL-terminated, static.
#[no_mangle]
pub extern "C" fn fc_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use framecache::{ModelConfig, Plan};

    #[test]
    fn a_panic_resets_the_engine_before_its_next_call() {
        use framecache::graph::{GraphBuilder, Window};
        let mut b = GraphBuilder::new(8, 8, 3);
        let one = Window { kh: 1, kw: 1, sh: 1, sw: 1, dh: 1, dw: 1, pad: [0; 4] };
        let x = b.conv(0, 4, one, 1, Default::default(), &mut || 0.5).unwrap();
        b.output(x);
        let plan = Plan::new(b.build(), framecache::Preprocess::default()).unwrap();
        let config = ModelConfig::parse(
            "task = \"classify\"\n[preprocess]\nfit = \"stretch\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let options = SessionOptions { threads: Some(1), ..Default::default() };
        let handle = register(SidecarModel::new(plan, config, None), options).map_err(|f| f.1).unwrap();
        let frame = vec![9u8; 8 * 8 * 3];
        let push = |e: &mut Engine| {
            let (heads, costs) = e.runner.process(framecache::Frame::rgb(8, 8, &frame).into()).map_err(model_error)?;
            assert_eq!(heads.len(), 1);
            let stats = e.runner.session().last_stats().unwrap().clone();
            e.last = Some(Last { stats, heads, costs, engine_ms: 0.0, frame: (8, 8) });
            Ok(())
        };
        with_engine(handle, push).map_err(|f| f.1).unwrap();
        // A panic in the middle of a call (after the cache was touched).
        let status = guard("test", || with_engine(handle, |_| -> Result<()> { panic!("inside the engine") }));
        assert_eq!(status, FcStatus::Panic);
        // The next call sees no result and a cache that starts over.
        let no_result = with_engine(handle, |e| Ok(e.last.is_none())).map_err(|f| f.1).unwrap();
        assert!(no_result, "the half-computed result of the panicked call is dropped");
        with_engine(handle, push).map_err(|f| f.1).unwrap();
        let reset =
            with_engine(handle, |e| Ok(e.runner.session().last_stats().unwrap().reset)).map_err(|f| f.1).unwrap();
        assert!(reset.is_some(), "the frame after a panic is a full inference, got {reset:?}");
        registry().lock().unwrap().remove(&handle);
    }
}
