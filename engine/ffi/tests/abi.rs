//! The C ABI called from Rust: YUV 4:2:0 in its three layouts gives what the engine gives on
//! the same samples, rotation equals pre-rotated pixels, and engines from bytes equal engines
//! from files; every mode and the bypass reach the session.

use std::path::{Path, PathBuf};

use framecache::diff::Metric;
use framecache::heads::{self, Head};
use framecache::{Mode, Session, SessionOptions, SidecarModel, YuvImage, YuvRange};
use framecache_ffi::*;

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets")
}

/// `img` as RGBA, opaque.
fn to_rgba(img: &image::RgbImage) -> Vec<u8> {
    img.pixels().flat_map(|p| [p[0], p[1], p[2], 255]).collect()
}

fn rgb_frame() -> image::RgbImage {
    image::open(assets().join("clips/static_coin_motion/frame_0001.png")).unwrap().to_rgb8()
}

fn options() -> FcOptions {
    let mut o = FcOptions { mode: 0, threshold: 0.0, tile: 0, threads: 0, bypass: 0 };
    assert_eq!(unsafe { fc_options_default(&mut o) }, FcStatus::Ok);
    o.threads = 1;
    o
}

fn engine_from_bytes() -> FcEngine {
    engine_from_bytes_with(&options())
}

fn engine_from_bytes_with(options: &FcOptions) -> FcEngine {
    let onnx = std::fs::read(assets().join("models/mobilenet_v2.onnx")).unwrap();
    let sidecar =
        std::ffi::CString::new(std::fs::read_to_string(assets().join("models/mobilenet_v2.onnx.toml")).unwrap())
            .unwrap();
    let labels =
        std::ffi::CString::new(std::fs::read_to_string(assets().join("models/imagenet_classes.txt")).unwrap()).unwrap();
    let mut e = 0;
    let status = unsafe {
        fc_engine_create_from_bytes(onnx.as_ptr(), onnx.len(), sidecar.as_ptr(), labels.as_ptr(), options, &mut e)
    };
    assert_eq!(status, FcStatus::Ok, "{:?}", unsafe { std::ffi::CStr::from_ptr(fc_last_error()) });
    e
}

/// Top classes of head 0 as (index, probability, label).
fn top(e: FcEngine) -> Vec<(u32, f32, String)> {
    let mut out = [FcClass { index: 0, prob: 0.0, label: std::ptr::null() }; 5];
    let mut n = 0;
    assert_eq!(unsafe { fc_engine_classes(e, 0, out.as_mut_ptr(), out.len(), &mut n) }, FcStatus::Ok);
    out[..n]
        .iter()
        .map(|c| (c.index, c.prob, unsafe { std::ffi::CStr::from_ptr(c.label) }.to_string_lossy().into_owned()))
        .collect()
}

/// BT.601 limited-range I420 of an RGB image with even sides (chroma averaged over 2x2).
fn to_i420(img: &image::RgbImage) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let px = |x: usize, y: usize| img.get_pixel(x as u32, y as u32).0.map(f32::from);
    let y_plane = (0..h)
        .flat_map(|y| (0..w).map(move |x| (y, x)))
        .map(|(y, x)| {
            let [r, g, b] = px(x, y);
            (16.0 + 0.257 * r + 0.504 * g + 0.098 * b).round() as u8
        })
        .collect();
    let (mut u, mut v) = (Vec::new(), Vec::new());
    for cy in 0..h / 2 {
        for cx in 0..w / 2 {
            let mut acc = [0.0f32; 3];
            for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let p = px(2 * cx + dx, 2 * cy + dy);
                for c in 0..3 {
                    acc[c] += p[c] / 4.0;
                }
            }
            let [r, g, b] = acc;
            u.push((128.0 - 0.148 * r - 0.291 * g + 0.439 * b).round() as u8);
            v.push((128.0 + 0.439 * r - 0.368 * g - 0.071 * b).round() as u8);
        }
    }
    (y_plane, u, v)
}

#[test]
fn yuv_layouts_match_the_engine_on_the_same_samples() {
    let img = rgb_frame();
    let (w, h) = (img.width(), img.height());
    let (y, u, v) = to_i420(&img);
    let plane =
        |data: &[u8], row_stride: u32, pixel_stride: u32| FcPlane { data: data.as_ptr(), row_stride, pixel_stride };

    // I420, tightly packed.
    let e1 = engine_from_bytes();
    let i420 = FcYuv420 {
        width: w,
        height: h,
        y: plane(&y, w, 1),
        u: plane(&u, w / 2, 1),
        v: plane(&v, w / 2, 1),
        full_range: 0,
    };
    assert_eq!(unsafe { fc_engine_push_yuv420(e1, &i420, 0) }, FcStatus::Ok);

    // NV21 (V first, interleaved) with padded rows, as Android cameras deliver it.
    let pad = 16;
    let y_padded: Vec<u8> =
        y.chunks(w as usize).flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(0, pad))).collect();
    let vu: Vec<u8> = v
        .chunks(w as usize / 2)
        .zip(u.chunks(w as usize / 2))
        .flat_map(|(vr, ur)| {
            vr.iter().zip(ur).flat_map(|(&a, &b)| [a, b]).chain(std::iter::repeat_n(0, pad)).collect::<Vec<_>>()
        })
        .collect();
    let row = w + pad as u32;
    let nv21 = FcYuv420 {
        width: w,
        height: h,
        y: plane(&y_padded, row, 1),
        u: FcPlane { data: vu[1..].as_ptr(), row_stride: row, pixel_stride: 2 },
        v: plane(&vu, row, 2),
        full_range: 0,
    };
    let e2 = engine_from_bytes();
    assert_eq!(unsafe { fc_engine_push_yuv420(e2, &nv21, 0) }, FcStatus::Ok);
    assert_eq!(top(e1), top(e2));

    // The engine on the same samples.
    let packed: Vec<u8> = [y.as_slice(), &u, &v].concat();
    let mut rgb = Vec::new();
    YuvImage::i420(w as usize, h as usize, &packed, YuvRange::Limited).unwrap().to_rgb(&mut rgb).unwrap();
    let model = assets().join("models/mobilenet_v2.onnx");
    let m = SidecarModel::load(&model, None, &[], None, None).unwrap();
    let mut session =
        Session::new(std::sync::Arc::clone(&m.plan), SessionOptions { threads: Some(1), ..Default::default() })
            .unwrap();
    let outputs = session.process(framecache::Frame::rgb(w as usize, h as usize, &rgb)).unwrap();
    let Head::Classes { top: expected, .. } = &heads::decode(&m.decoders, &outputs, &m.plan.frame_map(1, 1))[0] else {
        panic!()
    };
    let expected: Vec<_> = expected.iter().map(|c| (c.index as u32, c.prob, c.label.clone())).collect();
    assert_eq!(top(e1), expected);
    for e in [e1, e2] {
        assert_eq!(fc_engine_destroy(e), FcStatus::Ok);
    }
}

#[test]
fn rotation_equals_rotated_pixels_and_stats_describe_the_rotated_frame() {
    let img = rgb_frame();
    let (w, h) = (img.width(), img.height());
    let rgba = to_rgba(&img);
    let rotated = image::imageops::rotate90(&img);
    let rgba_rotated = to_rgba(&rotated);
    let (a, b) = (engine_from_bytes(), engine_from_bytes());
    assert_eq!(unsafe { fc_engine_push_rgba(a, rgba.as_ptr(), w, h, w * 4, FC_PIXEL_RGBA, 90) }, FcStatus::Ok);
    assert_eq!(unsafe { fc_engine_push_rgba(b, rgba_rotated.as_ptr(), h, w, h * 4, FC_PIXEL_RGBA, 0) }, FcStatus::Ok);
    assert_eq!(top(a), top(b));
    let mut s = FcStats::default();
    assert_eq!(unsafe { fc_engine_stats(a, &mut s) }, FcStatus::Ok);
    assert_eq!((s.frame_width, s.frame_height), (h, w));
    assert_eq!((s.input_width, s.input_height), (224, 224));
    assert_eq!(s.cache_reset, 1);
    // The same frame again: every tile reused.
    assert_eq!(unsafe { fc_engine_push_rgba(a, rgba.as_ptr(), w, h, w * 4, FC_PIXEL_RGBA, 90) }, FcStatus::Ok);
    assert_eq!(unsafe { fc_engine_stats(a, &mut s) }, FcStatus::Ok);
    assert_eq!((s.cache_reset, s.dirty_tiles, s.input_hit_rate, s.mac_saving), (0, 0, 1.0, 1.0));
    for e in [a, b] {
        assert_eq!(fc_engine_destroy(e), FcStatus::Ok);
    }
}

/// Each approximate mode of the C ABI runs the engine's mode of that name: the same classes and
/// the same dirty tiles as a Rust session on a real clip, frame by frame; an unknown mode is an
/// error; the bypass turns on (its first warm frame measures a dense frame, even a repeated one);
/// the approximate modes refresh every 16th frame and exact mode never.
#[test]
fn every_mode_and_the_bypass_reach_the_session() {
    let frames: Vec<image::RgbImage> = (1..=6)
        .map(|i| image::open(assets().join(format!("clips/static_coin_motion/frame_{i:04}.png"))).unwrap().to_rgb8())
        .collect();
    let m = SidecarModel::load(&assets().join("models/mobilenet_v2.onnx"), None, &[], None, None).unwrap();
    let modes = [
        (FC_MODE_THRESHOLD, Mode::Threshold { metric: Metric::MaxAbs, level: 8.0 }),
        (FC_MODE_DELTA, Mode::Delta { metric: Metric::MaxAbs, level: 8.0 }),
        (FC_MODE_BLOCK_THRESHOLD, Mode::Threshold { metric: Metric::BlockMean, level: 8.0 }),
        (FC_MODE_BLOCK_DELTA, Mode::Delta { metric: Metric::BlockMean, level: 8.0 }),
    ];
    for (fc_mode, mode) in modes {
        let e = engine_from_bytes_with(&FcOptions { mode: fc_mode, ..options() });
        let opts =
            SessionOptions { mode, threads: Some(1), refresh_interval: mode.default_refresh(), ..Default::default() };
        let mut session = Session::new(std::sync::Arc::clone(&m.plan), opts).unwrap();
        let mut reused = 0;
        for (i, img) in frames.iter().enumerate() {
            let (w, h) = (img.width(), img.height());
            let rgba = to_rgba(img);
            assert_eq!(unsafe { fc_engine_push_rgba(e, rgba.as_ptr(), w, h, w * 4, FC_PIXEL_RGBA, 0) }, FcStatus::Ok);
            let outputs = session.process(framecache::Frame::rgb(w as usize, h as usize, img.as_raw())).unwrap();
            let Head::Classes { top: expected, .. } = &heads::decode(&m.decoders, &outputs, &m.plan.frame_map(1, 1))[0]
            else {
                panic!("not a classifier")
            };
            let expected: Vec<_> = expected.iter().map(|c| (c.index as u32, c.prob, c.label.clone())).collect();
            assert_eq!(top(e), expected, "mode {mode}, frame {i}");
            let mut s = FcStats::default();
            assert_eq!(unsafe { fc_engine_stats(e, &mut s) }, FcStatus::Ok);
            assert_eq!(s.dirty_tiles as usize, session.last_stats().unwrap().dirty_tiles, "mode {mode}, frame {i}");
            reused += usize::from(i > 0 && s.input_hit_rate > 0.0);
        }
        assert!(reused > 0, "mode {mode} reused no tile on a static clip");
        assert_eq!(fc_engine_destroy(e), FcStatus::Ok);
    }

    let mut e = 0;
    let bad = FcOptions { mode: FC_MODE_BLOCK_DELTA + 1, ..options() };
    let model = std::ffi::CString::new(assets().join("models/mobilenet_v2.onnx").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { fc_engine_create(model.as_ptr(), std::ptr::null(), &bad, &mut e) }, FcStatus::InvalidArgument);

    let img = &frames[0];
    let rgba = to_rgba(img);
    for bypass in [0, 1] {
        let e = engine_from_bytes_with(&FcOptions { mode: FC_MODE_BLOCK_THRESHOLD, bypass, ..options() });
        let mut s = FcStats::default();
        for _ in 0..2 {
            let (w, h) = (img.width(), img.height());
            assert_eq!(unsafe { fc_engine_push_rgba(e, rgba.as_ptr(), w, h, w * 4, FC_PIXEL_RGBA, 0) }, FcStatus::Ok);
            assert_eq!(unsafe { fc_engine_stats(e, &mut s) }, FcStatus::Ok);
        }
        assert_eq!(s.cache_reset, bypass, "bypass {bypass}: the repeated frame");
        assert_eq!(fc_engine_destroy(e), FcStatus::Ok);
    }

    // The approximate modes refresh every `DEFAULT_REFRESH`th frame (the first is cold), exact
    // mode never: the same frame again and again, without the bypass.
    for (mode, refreshes) in [(FC_MODE_BLOCK_THRESHOLD, true), (FC_MODE_EXACT, false)] {
        let e = engine_from_bytes_with(&FcOptions { mode, bypass: 0, ..options() });
        let every = framecache::exec::DEFAULT_REFRESH as usize;
        let resets: Vec<usize> = (1..=2 * every + 1)
            .filter(|_| {
                let (w, h) = (img.width(), img.height());
                assert_eq!(
                    unsafe { fc_engine_push_rgba(e, rgba.as_ptr(), w, h, w * 4, FC_PIXEL_RGBA, 0) },
                    FcStatus::Ok
                );
                let mut s = FcStats::default();
                assert_eq!(unsafe { fc_engine_stats(e, &mut s) }, FcStatus::Ok);
                s.cache_reset != 0
            })
            .collect();
        let expected = if refreshes { vec![1, every + 1, 2 * every + 1] } else { vec![1] };
        assert_eq!(resets, expected, "mode {mode}: the frames computed densely");
        assert_eq!(fc_engine_destroy(e), FcStatus::Ok);
    }
}
