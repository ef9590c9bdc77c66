//! From a camera buffer to the model's input tensor: a 1920x1080 NV21 frame (Android's camera
//! format), a quarter turn to portrait, then MobileNetV2's preprocessing (Pillow resize of the
//! shorter side to 256, 224 centre crop, ImageNet normalisation). `fused` is the C ABI's path
//! (`framecache::frame::yuv_to_rgb`: each pixel converted and written to its rotated place in
//! one pass); `convert_then_rotate`
//! is the path before it (conversion, then a second full-resolution pass to rotate), kept here
//! as the same-run baseline; `convert_only` and `preprocess_only` split the fused path;
//! `mediapipe_warp_256` is selfie segmentation's resampling of the same frame.
//!
//! `cargo bench -p framecache --bench camera`

use criterion::{criterion_group, criterion_main, Criterion};
use framecache::frame::Plane;
use framecache::frame::{yuv_to_rgb, Rotation};
use framecache::graph::Shape;
use framecache::{Frame, Preprocess, Resample, YuvImage, YuvRange};

const W: usize = 1920;
const H: usize = 1080;

/// The rotation before the fused path: the source pixel that lands at each output pixel.
fn rotate_90(src: &[u8], w: usize, h: usize, out: &mut Vec<u8>) {
    out.clear();
    out.resize(w * h * 3, 0);
    for y in 0..w {
        for x in 0..h {
            let (sx, sy) = (y, h - 1 - x);
            out[(y * h + x) * 3..][..3].copy_from_slice(&src[(sy * w + sx) * 3..][..3]);
        }
    }
}

fn camera(c: &mut Criterion) {
    // A smooth picture with detail, as NV21: full-resolution luma, interleaved V and U.
    let y: Vec<u8> = (0..W * H).map(|i| ((i % W) / 8 + (i / W) / 5 + (i * 7 % 13)) as u8).collect();
    let vu: Vec<u8> = (0..W * H / 2).map(|i| (128 + (i % W) as i32 / 64 - (i / W) as i32 / 32) as u8).collect();
    let image = YuvImage {
        width: W,
        height: H,
        y: Plane { data: &y, stride: W, step: 1 },
        u: Plane { data: &vu[1..], stride: W, step: 2 },
        v: Plane { data: &vu, stride: W, step: 2 },
        subsample: 2,
        range: YuvRange::Limited,
    };
    // MobileNetV2's sidecar: torchvision's ImageNet preprocessing with Pillow's resize.
    let pre = Preprocess { resample: Resample::Pil, ..Preprocess::imagenet() };
    let input = Shape::new(224, 224, 3);
    let rot = Rotation::new(W, H, 90).unwrap();
    let (mut rgb, mut rotated, mut resampled, mut tensor) =
        (Vec::new(), Vec::new(), Vec::new(), vec![0.0; 224 * 224 * 3]);
    // The converted frame `preprocess_only` reads, so that it runs on its own too (with a filter).
    yuv_to_rgb(&image, rot, &mut rgb).unwrap();
    let mut g = c.benchmark_group("nv21_1920x1080_rot90_to_mobilenet_v2_input");
    g.sample_size(20);
    g.bench_function("fused", |b| {
        b.iter(|| {
            yuv_to_rgb(&image, rot, &mut rgb).unwrap();
            pre.resample(&Frame::rgb(H, W, &rgb), input, &mut resampled);
            pre.normalize(&resampled, &mut tensor);
        })
    });
    g.bench_function("convert_then_rotate", |b| {
        b.iter(|| {
            image.to_rgb(&mut rgb).unwrap();
            rotate_90(&rgb, W, H, &mut rotated);
            pre.resample(&Frame::rgb(H, W, &rotated), input, &mut resampled);
            pre.normalize(&resampled, &mut tensor);
        })
    });
    // Where the time goes: the conversion (with the quarter turn), then the preprocessing.
    g.bench_function("convert_only", |b| b.iter(|| yuv_to_rgb(&image, rot, &mut rgb).unwrap()));
    g.bench_function("preprocess_only", |b| {
        b.iter(|| {
            pre.resample(&Frame::rgb(H, W, &rgb), input, &mut resampled);
            pre.normalize(&resampled, &mut tensor);
        })
    });
    // Selfie segmentation's preprocessing of the same frame: MediaPipe's warp to 256x256.
    let selfie = Preprocess { resample: Resample::MediaPipe, ..Preprocess::default() };
    g.bench_function("mediapipe_warp_256", |b| {
        b.iter(|| selfie.resample(&Frame::rgb(H, W, &rgb), Shape::new(256, 256, 3), &mut resampled))
    });
    g.finish();
}

criterion_group!(benches, camera);
criterion_main!(benches);
