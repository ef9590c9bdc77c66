//! The fuzz targets' bodies: each takes arbitrary bytes and must return without a panic, an
//! abort or a crash, whatever they hold. `fuzz/` runs them under libFuzzer (cargo fuzz, with
//! AddressSanitizer); `tests/tests/fuzz_corpus.rs` replays the committed corpora and byte
//! mutations of them on the stable toolchain, in CI.

use std::path::PathBuf;
use std::sync::OnceLock;

use framecache::{Frame, Plan, Preprocess, Session, SessionOptions};

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// The targets by name (the folder names under `fuzz/corpus/`).
pub const TARGETS: [(&str, Target); 9] = [
    ("onnx", onnx),
    ("tflite", tflite),
    ("graph_file", graph_file),
    ("plan_file", plan_file),
    ("bundle_file", bundle_file),
    ("y4m", y4m),
    ("png_clip", png_clip),
    ("toml", toml),
    ("abi_push", abi_push),
];

/// Work bounds that keep one execution fast: the limits themselves are the engine's, checked
/// before allocation; a model within them may still be slow to run, so run only small ones.
const RUN_MACS: u64 = 20_000_000;
const RUN_VALUES: u64 = 4_000_000;

/// ONNX import and plan compile, then two frames through a session when the plan is small.
pub fn onnx(data: &[u8]) {
    let Ok(graph) = framecache::import::load_onnx_bytes(data) else { return };
    run_small(graph);
}

/// TFLite import (the flatbuffer reader), then as [`onnx`].
pub fn tflite(data: &[u8]) {
    let path = std::path::Path::new("fuzz.tflite");
    let options = framecache::import::ImportOptions::default();
    // Only TFLite-identified inputs: the rest would go to the ONNX reader, fuzzed on its own.
    if !framecache::import::is_tflite(data) {
        return;
    }
    let Ok(graph) = framecache::import::load_model_bytes(data, path, options) else { return };
    run_small(graph);
}

/// The graph file reader (a distilled head's file), then as [`onnx`] (a graph whose input is an
/// image runs; a head's graph is refused by the plan).
pub fn graph_file(data: &[u8]) {
    if !framecache::import::graph_file::is_graph_file(data) {
        return;
    }
    let path = std::path::Path::new("fuzz.safetensors");
    let Ok(graph) = framecache::import::load_model_bytes(data, path, Default::default()) else { return };
    run_small(graph);
}

/// The plan file reader (what the phone library loads: graph, sidecar and labels), then as
/// [`onnx`] with the plan's own preprocessing.
pub fn plan_file(data: &[u8]) {
    if !framecache::import::plan_file::is_plan_file(data) {
        return;
    }
    let Ok(model) = framecache::SidecarModel::from_plan(data, std::path::Path::new("fuzz.fcplan")) else { return };
    run_small(model.plan.graph().clone());
}

/// The bundle file reader (what the phone library loads: a manifest and the files it names),
/// then two frames through the bundle when its backbones are small.
pub fn bundle_file(data: &[u8]) {
    if !framecache::model::file::is_bundle_file(data) {
        return;
    }
    let path = scratch("fuzz.fcbundle");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(bundle) = framecache::Bundle::load(&path, &[]) else { return };
    let small =
        |b: &framecache::model::Backbone| b.plan.total_macs() <= RUN_MACS && b.plan.activation_values() <= RUN_VALUES;
    if !bundle.backbones.iter().all(small) {
        return;
    }
    let options = SessionOptions { threads: Some(1), ..Default::default() };
    let Ok(mut s) = framecache::BundleSession::new(bundle, options) else { return };
    let mut pixels: Vec<u8> = (0..12 * 10 * 3).map(|i| (i * 13 % 251) as u8).collect();
    let _ = s.process(Frame::rgb(12, 10, &pixels));
    pixels[5] ^= 0x40;
    let _ = s.process(Frame::rgb(12, 10, &pixels));
}

/// Plan compile, then two frames through a session when the plan is small.
fn run_small(graph: framecache::graph::Graph) {
    let Ok(plan) = Plan::new(graph, Preprocess::default()) else { return };
    if plan.total_macs() > RUN_MACS || plan.activation_values() > RUN_VALUES {
        return;
    }
    let Ok(mut s) = Session::new(plan, SessionOptions { threads: Some(1), ..Default::default() }) else { return };
    let mut pixels: Vec<u8> = (0..12 * 10 * 3).map(|i| (i * 13 % 251) as u8).collect();
    let _ = s.process(Frame::rgb(12, 10, &pixels));
    pixels[5] ^= 0x40;
    let _ = s.process(Frame::rgb(12, 10, &pixels));
}

/// A scratch file of this thread, rewritten by each execution.
fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("framecache-fuzz-{}-{:?}", std::process::id(), std::thread::current().id()));
    let _ = std::fs::create_dir_all(&dir);
    dir.join(name)
}

/// The Y4M reader: header, frame index, and the first frames decoded to RGB.
pub fn y4m(data: &[u8]) {
    let path = scratch("clip.y4m");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(clip) = framecache_app::clip::Clip::open(&path) else { return };
    for i in 0..clip.len().min(3) {
        let _ = clip.decode(i);
    }
}

/// One PNG (or JPEG) frame of a clip folder: decoded by the image crate, then sized by us into
/// a model input.
pub fn png_clip(data: &[u8]) {
    let path = scratch("frame_0001.png");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(frame) = framecache_app::clip::decode_image(&path) else { return };
    let mut input = Vec::new();
    let shape = framecache::graph::Shape::new(16, 16, 3);
    if frame.as_frame().validate().is_ok() {
        Preprocess::imagenet().resample(frame.as_frame(), shape, &mut input);
    }
}

/// Sidecar and bundle-manifest TOML: parsed and validated (a manifest as far as it goes
/// without its models).
pub fn toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = std::path::Path::new("<fuzz>.toml");
    let _ = framecache::ModelConfig::parse(text, path);
    let _ = framecache::model::Manifest::parse(text, path);
}

/// One small engine behind the C ABI, created once.
fn abi_engine() -> framecache_ffi::FcEngine {
    static ENGINE: OnceLock<framecache_ffi::FcEngine> = OnceLock::new();
    *ENGINE.get_or_init(|| {
        let mut m = crate::onnx::Onnx::new(3, 8, 8);
        m.conv("x", "y", 3, 2, 3, vec![crate::onnx::ints("pads", &[1, 1, 1, 1])]).output("y");
        let bytes = m.bytes();
        let sidecar = c"[preprocess]\nfit = \"stretch\"\n";
        let options = framecache_ffi::FcOptions { mode: 0, threshold: 8.0, tile: 16, threads: 1, bypass: 0 };
        let mut e = 0;
        // SAFETY: valid buffers and strings for the call.
        let status = unsafe {
            framecache_ffi::fc_engine_create_from_bytes(
                bytes.as_ptr(),
                bytes.len(),
                sidecar.as_ptr(),
                std::ptr::null(),
                &options,
                &mut e,
            )
        };
        assert_eq!(status, framecache_ffi::FcStatus::Ok, "the fuzz engine is valid");
        e
    })
}

/// Most bytes a frame of the ABI target may need: bigger requests are ones the caller could
/// not honour here, so they are skipped (the size checks themselves run on every input).
const ABI_BYTES: usize = 4 << 20;

/// A frame push through the C ABI: sizes, strides, formats and rotation from the first bytes,
/// pixels from the rest, in buffers exactly as long as the ABI's contract requires.
pub fn abi_push(data: &[u8]) {
    use framecache_ffi::{fc_engine_push_rgba, fc_engine_push_yuv420, FcPlane, FcYuv420};
    if data.len() < 24 {
        return;
    }
    let word = |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    // Small sizes most of the time, any size now and then.
    let size = |v: u32| if v & 0x8000_0000 != 0 { v & 0x7fff_ffff } else { v % 97 };
    let (w, h) = (size(word(0)), size(word(4)));
    let (stride, stride2) = (word(8) % 1024, word(12) % 1024);
    let (format, rotation) = (word(16) % 4, [0, 90, 180, 270, 45][(word(20) % 5) as usize]);
    let pixels = &data[24..];
    let engine = abi_engine();
    let fill = |n: usize| -> Option<Vec<u8>> {
        (n <= ABI_BYTES).then(|| (0..n).map(|i| pixels.get(i % pixels.len().max(1)).copied().unwrap_or(7)).collect())
    };
    if format < 2 {
        // RGBA/BGRA: the caller provides row_stride * (height - 1) + width * 4 bytes.
        let stride = (w as usize * 4).max(stride as usize) as u32 + stride2 % 4;
        let need = (h as usize).saturating_sub(1) * stride as usize + w as usize * 4;
        let Some(buf) = fill(need.max(1)) else { return };
        // SAFETY: `buf` holds what the contract asks for this geometry.
        let _ = unsafe { fc_engine_push_rgba(engine, buf.as_ptr(), w, h, stride, format, rotation) };
    } else {
        // YUV 4:2:0 with planes of the strides the input picks (checked by the ABI).
        let (cw, ch) = ((w as usize).div_ceil(2), (h as usize).div_ceil(2));
        let step = if format == 2 { 1 } else { 2 };
        let span =
            |w: usize, h: usize, row: usize, step: usize| h.saturating_sub(1) * row + w.saturating_sub(1) * step + 1;
        let y_row = (w as usize).max(stride as usize);
        let c_row = (cw * step).max(stride2 as usize);
        let (Some(y), Some(u), Some(v)) = (
            fill(span(w as usize, h as usize, y_row, 1)),
            fill(span(cw, ch, c_row, step)),
            fill(span(cw, ch, c_row, step)),
        ) else {
            return;
        };
        let plane = |p: &Vec<u8>, row: usize, step: usize| FcPlane {
            data: p.as_ptr(),
            row_stride: row as u32,
            pixel_stride: step as u32,
        };
        let frame = FcYuv420 {
            width: w,
            height: h,
            y: plane(&y, y_row, 1),
            u: plane(&u, c_row, step),
            v: plane(&v, c_row, step),
            full_range: word(20) % 3,
        };
        // SAFETY: each plane holds the bytes its strides imply.
        let _ = unsafe { fc_engine_push_yuv420(engine, &frame, rotation) };
    }
}
