//! Motion-compensated reuse: a translated frame reuses the cache from the shifted place and
//! still equals full inference, on random graphs and on the bundled MobileNetV2.

mod common;

use framecache::reuse::motion::{propagate_labels, Label, Labels};
use framecache::{Frame, Mode, Plan, Preprocess, Session, SessionOptions};
use proptest::prelude::*;

use common::close;

/// `src` (`w x h` RGB) moved by `(dy, dx)`; the uncovered strip gets `fill(y, x)`.
fn translate(src: &[u8], h: usize, w: usize, dy: i64, dx: i64, fill: impl Fn(usize, usize) -> [u8; 3]) -> Vec<u8> {
    let mut out = vec![0; src.len()];
    for y in 0..h {
        for x in 0..w {
            let (sy, sx) = (y as i64 - dy, x as i64 - dx);
            let px = if sy >= 0 && sx >= 0 && (sy as usize) < h && (sx as usize) < w {
                let i = (sy as usize * w + sx as usize) * 3;
                [src[i], src[i + 1], src[i + 2]]
            } else {
                fill(y, x)
            };
            out[(y * w + x) * 3..][..3].copy_from_slice(&px);
        }
    }
    out
}

/// A smooth picture with a seed-dependent phase: block matching converges on it, and only
/// the true vector matches exactly.
fn smooth(h: usize, w: usize, seed: u64) -> Vec<u8> {
    let phase = (seed % 1000) as f32 / 100.0;
    let mut out = Vec::with_capacity(h * w * 3);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let (fy, fx) = (y as f32, x as f32);
                let v = 128.0 + 50.0 * (0.11 * fx + 0.07 * fy + phase + c as f32).sin() + 0.9 * fx + 0.6 * fy
                    - 30.0 * (0.05 * fx * fy / 9.0 + phase).cos();
                out.push(v.clamp(0.0, 255.0) as u8);
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// A random frame, then the same frame translated by a multiple of the vector grid with
    /// a new random strip: every node of the cached result equals full inference of the
    /// translated frame (so no shifted copy read outside its map or used an unaligned
    /// vector), and every shifted label names a source inside the node's map with a vector
    /// that is the input vector divided by the node's cumulative stride.
    #[test]
    fn translated_frames_reuse_shifted_cache_and_equal_full_inference(
        h in 16usize..48,
        w in 16usize..48,
        layers in prop::collection::vec(common::layer(), 1..6),
        seed in any::<u64>(),
        align in prop::sample::select(vec![1usize, 2, 4, 8]),
        k in (-2i64..3, -2i64..3),
        tile in prop::sample::select(vec![8usize, 16]),
    ) {
        let graph = common::build(h, w, &layers, seed);
        let plan = Plan::new(graph, Preprocess::default()).unwrap();
        let opts = SessionOptions {
            // Level 0: exact matches only, so that the result must equal full inference.
            mode: Mode::Motion { level: 0.0 },
            tile,
            threads: Some(1),
            search_range: 16,
            motion_align: align,
            ..Default::default()
        };
        let mut cached = Session::new(plan.clone(), opts.clone()).unwrap();
        let mut full = Session::new(plan.clone(), opts).unwrap();
        let first = smooth(h, w, seed);
        let (dy, dx) = (k.0 * align as i64, k.1 * align as i64);
        let second = translate(&first, h, w, dy, dx, |y, x| [(y * 7 + x) as u8, 9, (x * 13) as u8]);
        cached.process(&Frame::rgb(w, h, &first)).unwrap();
        cached.process(&Frame::rgb(w, h, &second)).unwrap();
        full.run_full(&Frame::rgb(w, h, &second)).unwrap();
        // Where a whole tile's source lies inside the frame and the grid is searched
        // exhaustively (16 / align <= 4 steps each way), that tile must be found.
        let tiles_inside = (0..h.div_ceil(tile)).any(|ty| (0..w.div_ceil(tile)).any(|tx| {
            let (y0, y1, x0, x1) = (ty * tile, ((ty + 1) * tile).min(h), tx * tile, ((tx + 1) * tile).min(w));
            y0 as i64 - dy >= 0 && x0 as i64 - dx >= 0 && y1 as i64 - dy <= h as i64 && x1 as i64 - dx <= w as i64
        }));
        let stats = cached.last_stats().unwrap();
        if tiles_inside && (dy, dx) != (0, 0) && align >= 4 {
            prop_assert!(stats.shifted_tiles > 0, "no tile found for a shift of ({}, {})", dy, dx);
        }
        for n in 0..plan.graph().nodes.len() {
            close(cached.activation(n), full.activation(n))
                .map_err(|e| TestCaseError::fail(format!("node {n} ({}): {e}", plan.graph().nodes[n].name)))?;
        }
        // The labels themselves, from an input moved wholesale by (dy, dx).
        let input = plan.graph().input_shape();
        let mut l = Labels::new(input.h, input.w, Label::Clean);
        for y in 0..input.h {
            for x in 0..input.w {
                let inside = y as i64 - dy >= 0 && x as i64 - dx >= 0 && ((y as i64 - dy) as usize) < input.h && ((x as i64 - dx) as usize) < input.w;
                l.set(y, x, if inside { Label::Shift(dy as i32, dx as i32) } else { Label::Dirty });
            }
        }
        let geometry = plan.geometry();
        for (n, labels) in propagate_labels(plan.graph(), l).iter().enumerate() {
            for y in 0..labels.h {
                for x in 0..labels.w {
                    if let Label::Shift(sy, sx) = labels.get(y, x) {
                        let (src_y, src_x) = (y as i64 - i64::from(sy), x as i64 - i64::from(sx));
                        prop_assert!(src_y >= 0 && src_x >= 0 && (src_y as usize) < labels.h && (src_x as usize) < labels.w,
                            "node {} ({}, {}): source ({}, {}) outside {}x{}", n, y, x, src_y, src_x, labels.h, labels.w);
                        let (s_h, s_w) = geometry[n].stride;
                        prop_assert_eq!(f64::from(sy) * s_h, dy as f64, "node {}: row vector not the input's over the stride", n);
                        prop_assert_eq!(f64::from(sx) * s_w, dx as f64, "node {}: column vector not the input's over the stride", n);
                    }
                }
            }
        }
    }
}

/// The bundled MobileNetV2 on a real picture panned by (8, 16) pixels, a multiple of the
/// stride-8 grid, with a new strip entering at the top and left. Motion mode finds the
/// vector, copies the cached activations of the layers down to stride 8 from the shifted
/// place, recomputes the rest (the strip, the border halo, the deeper layers) and gives
/// exactly the activations of full inference of the panned frame (1e-5 relative).
#[test]
fn a_panned_real_frame_equals_full_inference_with_shifted_reuse() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let img = image::open(root.join("assets/clips/static_coin_motion/frame_0001.png")).unwrap().to_rgb8();
    // 2x nearest upscale so that a 224x224 window can move inside the picture.
    let big = image::imageops::resize(&img, img.width() * 2, img.height() * 2, image::imageops::FilterType::Nearest);
    let window = |y0: u32, x0: u32| image::imageops::crop_imm(&big, x0, y0, 224, 224).to_image().into_raw();
    let (y0, x0) = (40, 200);
    let (a, b) = (window(y0, x0), window(y0 - 8, x0 - 16)); // the camera moves up-left: content moves (8, 16)
    let imagenet = Preprocess { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], ..Default::default() };
    let plan = Plan::from_onnx(root.join("assets/models/mobilenet_v2.onnx"), imagenet).unwrap();
    // Level 0: only exact matches are accepted (a flat patch may match a wrong place within a
    // grey level, which is what the approximate levels allow).
    let opts =
        SessionOptions { mode: Mode::Motion { level: 0.0 }, threads: Some(2), motion_align: 8, ..Default::default() };
    let mut cached = Session::new(plan.clone(), opts.clone()).unwrap();
    let mut full = Session::new(plan.clone(), opts).unwrap();
    cached.process(&Frame::rgb(224, 224, &a)).unwrap();
    let out = cached.process(&Frame::rgb(224, 224, &b)).unwrap();
    let want = full.run_full(&Frame::rgb(224, 224, &b)).unwrap();
    for n in 0..plan.graph().nodes.len() {
        close(cached.activation(n), full.activation(n)).unwrap_or_else(|e| panic!("node {n}: {e}"));
    }
    close(&out[0].data, &want[0].data).unwrap();
    let stats = cached.last_stats().unwrap();
    eprintln!(
        "shifted tiles {}/{}, dirty {}, MAC saving {:.1}%",
        stats.shifted_tiles,
        stats.tiles,
        stats.dirty_tiles,
        100.0 * stats.mac_saving()
    );
    // 14x14 tiles of 16 px: only the top row and the left column (27 tiles) hold the new
    // strip; every other tile is reused, shifted (or unchanged where the picture is flat).
    assert!(stats.dirty_tiles <= 27, "{} dirty", stats.dirty_tiles);
    assert!(stats.shifted_tiles >= 140, "{} shifted", stats.shifted_tiles);
    assert!(stats.mac_saving() > 0.1, "MAC saving {}", stats.mac_saving());
}
