//! `resample = "pil"` against Pillow 13.0 itself: Pillow's outputs of real frames are committed
//! in `tests/data/pil` (made with `Image.resize(size, Image.BILINEAR)`, and for the torchvision
//! recipe `Resize(256)` then `CenterCrop(224)` with torchvision's size and offset rounding).
//! The engine must give the same bytes (the issue allows 1 grey level; none is seen).

use framecache::graph::Shape;
use framecache::{Fit, Preprocess, Resample};
use framecache_tests::*;

fn pil(fit: Fit) -> Preprocess {
    Preprocess { fit, resample: Resample::Pil, ..Default::default() }
}

/// Largest difference between the engine's resample of `source` and Pillow's `expected`.
fn worst(source: &Rgb, pre: &Preprocess, expected: &str) -> anyhow::Result<f32> {
    let want = load_png(&project_root().join("tests/data/pil").join(expected))?;
    let input = Shape::new(want.height, want.width, 3);
    let mut got = Vec::new();
    pre.resample(&source.as_frame(), input, &mut got);
    assert_eq!(got.len(), want.data.len(), "{expected}");
    Ok(got.iter().zip(&want.data).map(|(a, &b)| (a - f32::from(b)).abs()).fold(0.0, f32::max))
}

#[test]
fn pil_resampling_of_the_bundled_frame_equals_pillow() -> anyhow::Result<()> {
    let frame = load_png(&project_root().join("assets/clips/static_coin_motion/frame_0001.png"))?;
    for (pre, file) in [
        (pil(Fit::CenterCrop { shorter: Some(256) }), "coin_0001_resize256_crop224.png"),
        (pil(Fit::Stretch), "coin_0001_stretch_128x96.png"),
        (pil(Fit::Stretch), "coin_0001_stretch_80x60.png"),
    ] {
        let d = worst(&frame, &pre, file)?;
        eprintln!("{file}: max difference {d} grey levels");
        assert!(d <= 1.0, "{file}: differs from Pillow by {d} grey levels");
    }
    Ok(())
}

#[test]
fn pil_resampling_of_shared_frames_equals_pillow() -> anyhow::Result<()> {
    let Some(data) = shared_data_or_skip("pil_resampling_of_shared_frames_equals_pillow") else { return Ok(()) };
    for name in ["static_vtest_pedestrians", "handheld_cockatoo"] {
        let frame = clip(&data, name)?.swap_remove(0);
        for (pre, file) in [
            (pil(Fit::CenterCrop { shorter: Some(256) }), format!("{name}_0001_resize256_crop224.png")),
            (pil(Fit::Stretch), format!("{name}_0001_stretch_256x256.png")),
        ] {
            let d = worst(&frame, &pre, &file)?;
            eprintln!("{file}: max difference {d} grey levels");
            assert!(d <= 1.0, "{file}: differs from Pillow by {d} grey levels");
        }
    }
    Ok(())
}
