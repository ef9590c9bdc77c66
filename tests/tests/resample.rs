//! The resamplers against the libraries they stand for, on real frames whose outputs are
//! committed in `tests/data/resample`:
//! - `resample = "pil"` against Pillow 13.0 (`Image.resize(size, Image.BILINEAR)`, and for the
//!   torchvision recipe `Resize(256)` then `CenterCrop(224)` with torchvision's size and offset
//!   rounding);
//! - `resample = "mediapipe"` against OpenCV 5.1's `warpPerspective` (`INTER_LINEAR`,
//!   `BORDER_REPLICATE`) with the matrix MediaPipe's CPU `ImageToTensorCalculator` builds for a
//!   whole-frame region (`getPerspectiveTransform` of the region's `boxPoints` onto the output's
//!   corners).
//!
//! At most 1 grey level is allowed; none is seen.

use framecache::graph::Shape;
use framecache::{Fit, Preprocess, Resample};
use framecache_tests::*;

fn pil(fit: Fit) -> Preprocess {
    Preprocess { fit, resample: Resample::Pil, ..Default::default() }
}

fn mediapipe() -> Preprocess {
    Preprocess { resample: Resample::MediaPipe, ..Default::default() }
}

/// Largest difference between the engine's resample of `source` and Pillow's `expected`.
fn worst(source: &Rgb, pre: &Preprocess, expected: &str) -> anyhow::Result<f32> {
    let want = load_png(&project_root().join("tests/data/resample").join(expected))?;
    let input = Shape::new(want.height, want.width, 3);
    let mut got = Vec::new();
    pre.resample(source.as_frame(), input, &mut got);
    assert_eq!(got.len(), want.data.len(), "{expected}");
    Ok(got.iter().zip(&want.data).map(|(a, &b)| (a - f32::from(b)).abs()).fold(0.0, f32::max))
}

#[test]
fn resampling_of_the_bundled_frame_equals_pillow_and_opencv() -> anyhow::Result<()> {
    let frame = load_png(&project_root().join("assets/clips/static_coin_motion/frame_0001.png"))?;
    for (pre, file) in [
        (pil(Fit::CenterCrop { shorter: Some(256) }), "coin_0001_resize256_crop224.png"),
        (pil(Fit::Stretch), "coin_0001_stretch_128x96.png"),
        (pil(Fit::Stretch), "coin_0001_stretch_80x60.png"),
        (mediapipe(), "coin_0001_mediapipe_256x256.png"),
        (mediapipe(), "coin_0001_mediapipe_128x96.png"),
    ] {
        let d = worst(&frame, &pre, file)?;
        eprintln!("{file}: max difference {d} grey levels");
        assert!(d <= 1.0, "{file}: differs from the library by {d} grey levels");
    }
    Ok(())
}

#[test]
fn resampling_of_shared_frames_equals_pillow_and_opencv() -> anyhow::Result<()> {
    let Some(data) = shared_data_or_skip("resampling_of_shared_frames_equals_pillow_and_opencv") else { return Ok(()) };
    for name in ["static_vtest_pedestrians", "handheld_cockatoo"] {
        let frame = clip(&data, name)?.swap_remove(0);
        for (pre, file) in [
            (pil(Fit::CenterCrop { shorter: Some(256) }), format!("{name}_0001_resize256_crop224.png")),
            (pil(Fit::Stretch), format!("{name}_0001_stretch_256x256.png")),
            (mediapipe(), format!("{name}_0001_mediapipe_256x256.png")),
            (mediapipe(), format!("{name}_0001_mediapipe_128x128.png")),
        ] {
            let d = worst(&frame, &pre, &file)?;
            eprintln!("{file}: max difference {d} grey levels");
            assert!(d <= 1.0, "{file}: differs from the library by {d} grey levels");
        }
    }
    Ok(())
}
