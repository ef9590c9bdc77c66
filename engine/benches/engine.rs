//! Criterion benches: kernels on MobileNetV2-shaped layers, and full vs cached inference on the
//! real MobileNetV2 (when `../shared/data` is present). `cargo bench -p framecache`.
//! The one-run table with ratios is `cargo run --release -p framecache-tests --example measure`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use framecache::graph::{Activation, GraphBuilder, Window};
use framecache::{Fit, Frame, Plan, Preprocess, Session, SessionOptions};

fn w(k: usize, s: usize) -> Window {
    Window { kh: k, kw: k, sh: s, sw: s, dh: 1, dw: 1, pad: [k / 2; 4] }
}

fn kernels(c: &mut Criterion) {
    let mut g = c.benchmark_group("layer");
    // (name, size, cin, cout, kernel, groups)
    for (name, size, cin, cout, k, depthwise) in [
        ("pointwise_56x56_24to144", 56, 24, 144, 1, false),
        ("pointwise_14x14_384to64", 14, 384, 64, 1, false),
        ("depthwise_56x56x144_3x3", 56, 144, 144, 3, true),
        ("depthwise_14x14x576_3x3", 14, 576, 576, 3, true),
    ] {
        let mut b = GraphBuilder::new(size, size, 3);
        let mut v = 0.0f32;
        let mut wt = || {
            v = (v + 0.37) % 1.0;
            v - 0.5
        };
        let x = b.conv(0, cin, w(1, 1), 1, Activation::Relu, &mut wt).expect("stem");
        let y = b.conv(x, cout, w(k, 1), if depthwise { cin } else { 1 }, Activation::Relu, &mut wt).expect("layer");
        b.output(y);
        let plan = Plan::new(b.build(), Preprocess::default()).expect("plan");
        let mut s = Session::new(plan, SessionOptions { threads: Some(1), ..Default::default() }).expect("session");
        let px: Vec<u8> = (0..size * size * 3).map(|i| (i * 13 % 251) as u8).collect();
        g.bench_function(BenchmarkId::new("full", name), |bch| {
            bch.iter(|| s.run_full(Frame::rgb(size, size, &px)).expect("run"))
        });
    }
    g.finish();
}

fn mobilenet(c: &mut Criterion) {
    let model =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/models/imagenet/mobilenet_v2.onnx");
    let model = if model.exists() {
        model
    } else {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/models/mobilenet_v2.onnx")
    };
    let plan = match Plan::from_onnx(&model, Preprocess { fit: Fit::Stretch, ..Preprocess::imagenet() }) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping MobileNetV2 benches: {e}");
            return;
        }
    };
    let base: Vec<u8> = (0..224 * 224 * 3).map(|i| ((i / 3) * 7 % 256) as u8).collect();
    let mut g = c.benchmark_group("mobilenet_v2");
    for threads in [1usize, 2] {
        let opts = SessionOptions { threads: Some(threads), ..Default::default() };
        let mut full = Session::new(plan.clone(), opts.clone()).expect("session");
        g.bench_function(BenchmarkId::new("full", threads), |b| {
            b.iter(|| full.run_full(Frame::rgb(224, 224, &base)).expect("run"))
        });
        // A 64x64 patch (about 10% of the tiles) alternating between two contents.
        let mut cached = Session::new(plan.clone(), opts).expect("session");
        let mut alt = base.clone();
        for y in 80..144 {
            for x in 80..144 {
                alt[(y * 224 + x) * 3] ^= 0x55;
            }
        }
        let mut flip = false;
        g.bench_function(BenchmarkId::new("cached_10pct", threads), |b| {
            b.iter(|| {
                flip = !flip;
                cached.process(Frame::rgb(224, 224, if flip { &alt } else { &base })).expect("run")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, kernels, mobilenet);
criterion_main!(benches);
