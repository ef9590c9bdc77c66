//! From a camera buffer to the model's input tensor: a 1920x1080 NV21 frame (Android's camera
//! format), a quarter turn to portrait, then MobileNetV2's preprocessing (Pillow resize of the
//! shorter side to 256, 224 centre crop, ImageNet normalisation). `planes` is the C ABI's path
//! (`framecache::Image::yuv`: the resampler reads the planes, converting only the bands and
//! columns it reads, rotated as they are converted, with no full-resolution RGB frame);
//! `convert_rotate_resample` converts the whole frame to packed RGB, rotates it in a second
//! pass and resamples that, kept here as the same-run baseline (`convert_only` and
//! `resample_only` split it). `mediapipe_warp_256_*` are selfie segmentation's resampling of
//! the same frame, from the planes and from the converted frame.
//!
//! `cargo bench -p framecache --bench camera`

use criterion::{criterion_group, criterion_main, Criterion};
use framecache::frame::Plane;
use framecache::graph::Shape;
use framecache::{Frame, Image, Preprocess, Resample, YuvImage, YuvRange};

const W: usize = 1920;
const H: usize = 1080;

/// The rotation of the baseline: the source pixel that lands at each output pixel.
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
    let planes = Image::yuv(image, 90).unwrap();
    let (mut rgb, mut rotated, mut resampled, mut tensor) =
        (Vec::new(), Vec::new(), Vec::new(), vec![0.0; 224 * 224 * 3]);
    // The converted frame `resample_only` reads, so that it runs on its own too (with a filter).
    image.to_rgb(&mut rgb).unwrap();
    rotate_90(&rgb, W, H, &mut rotated);
    let mut g = c.benchmark_group("nv21_1920x1080_rot90_to_mobilenet_v2_input");
    g.sample_size(20);
    g.bench_function("planes", |b| {
        b.iter(|| {
            pre.resample(planes, input, &mut resampled);
            pre.normalize(&resampled, &mut tensor);
        })
    });
    g.bench_function("convert_rotate_resample", |b| {
        b.iter(|| {
            image.to_rgb(&mut rgb).unwrap();
            rotate_90(&rgb, W, H, &mut rotated);
            pre.resample(Frame::rgb(H, W, &rotated), input, &mut resampled);
            pre.normalize(&resampled, &mut tensor);
        })
    });
    // Where the baseline's time goes: the conversion, then the preprocessing.
    g.bench_function("convert_only", |b| b.iter(|| image.to_rgb(&mut rgb).unwrap()));
    g.bench_function("resample_only", |b| {
        b.iter(|| {
            pre.resample(Frame::rgb(H, W, &rotated), input, &mut resampled);
            pre.normalize(&resampled, &mut tensor);
        })
    });
    // Selfie segmentation's preprocessing of the same frame: MediaPipe's warp to 256x256.
    let selfie = Preprocess { resample: Resample::MediaPipe, ..Preprocess::default() };
    let size = Shape::new(256, 256, 3);
    g.bench_function("mediapipe_warp_256_planes", |b| b.iter(|| selfie.resample(planes, size, &mut resampled)));
    g.bench_function("mediapipe_warp_256_converted", |b| {
        b.iter(|| selfie.resample(Frame::rgb(H, W, &rotated), size, &mut resampled))
    });
    g.finish();
}

criterion_group!(benches, camera);
criterion_main!(benches);
