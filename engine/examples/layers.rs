//! Standalone layers, one thread, through `kernels::compute_full`: the inverted-residual
//! block, pointwise, depthwise, transposed, one-output-channel and resize shapes of
//! MobileNetV2, EfficientNet-Lite0, selfie segmentation and BlazePose.
//! `cargo run --release --example layers [--cold]`. Prints the 5th percentile and the median
//! of 300 calls per layer (the machines are shared: compare binaries by alternating their runs,
//! never across runs minutes apart). With `--cold`, 48 MB are written before each call, so the layer's
//! weights and input come from memory, as a large model's do from one frame to the next.

use std::time::Instant;

use framecache::graph::{Activation, CoordMode, Graph, GraphBuilder, ResizeMode, Window};
use framecache::kernels::{compute_full, prepare};

fn window(k: usize, s: usize, pad: usize) -> Window {
    Window { kh: k, kw: k, sh: s, sw: s, dh: 1, dw: 1, pad: [pad; 4] }
}

/// Times the graph's last node on a fixed input.
fn time(name: &str, mut graph: Graph, cold: bool) {
    framecache::graph::fuse::bottlenecks(&mut graph);
    prepare(&mut graph);
    let mut junk = vec![0u8; if cold { 48 << 20 } else { 0 }];
    let node = graph.nodes.last().expect("a layer");
    let input: Vec<f32> = (0..graph.nodes[0].shape.len()).map(|i| (i % 17) as f32 * 0.1).collect();
    let mut out = vec![0.0; node.shape.len()];
    // One scratch for every call, as a session keeps one (a fused block's bands live there).
    let mut scratch = Vec::new();
    let mut ms: Vec<f64> = (0..300)
        .map(|_| {
            junk.iter_mut().step_by(64).for_each(|b| *b = b.wrapping_add(1));
            let t = Instant::now();
            compute_full(node, &graph, &[&input], &mut out, &mut scratch);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    println!("{name:40} p5 {:.4} ms median {:.4}", ms[15], ms[150]);
}

fn main() {
    let cold = std::env::args().any(|a| a == "--cold");
    let mut v = 0.0f32;
    let mut wt = move || {
        v = (v + 0.37) % 1.0;
        v - 0.5
    };
    let relu6 = Activation::Clip { min: 0.0, max: 6.0 };
    // Inverted-residual blocks (fused into one node): MobileNetV2's first of stride 2 and the
    // one after it, EfficientNet-Lite0's 14x14 and 7x7 ones.
    for (size, c, e, k, s, co) in
        [(112, 16, 96, 3, 2, 24), (56, 24, 144, 3, 1, 24), (14, 112, 672, 5, 1, 112), (7, 192, 1152, 5, 1, 192)]
    {
        let mut b = GraphBuilder::new(size, size, c);
        let x = b.conv(0, e, window(1, 1, 0), 1, relu6, &mut wt).expect("expand");
        let y = b.conv(x, e, window(k, s, k / 2), e, relu6, &mut wt).expect("dw");
        let z = b.conv(y, co, window(1, 1, 0), 1, Activation::Identity, &mut wt).expect("project");
        b.output(z);
        time(&format!("bottleneck {size}x{size} {c}-{e}-{co} {k}x{k}/{s}"), b.build(), cold);
    }
    // MobileNetV2's pointwise shapes: expansions, projections (24 channels end half a tile
    // into 16-column tiles) and the last 1x1 convolution.
    for (size, cin, cout) in [
        (56, 24, 144),
        (56, 144, 24),
        (14, 96, 576),
        (14, 576, 96),
        (14, 112, 672),
        (14, 672, 112),
        (7, 192, 1152),
        (7, 1152, 192),
        (7, 320, 1280),
    ] {
        let mut b = GraphBuilder::new(size, size, cin);
        let y = b.conv(0, cout, window(1, 1, 0), 1, relu6, &mut wt).expect("pointwise");
        b.output(y);
        time(&format!("pointwise {size}x{size} {cin} -> {cout}"), b.build(), cold);
    }
    for (size, c, k, s) in [
        (14, 384, 3, 1),
        (56, 144, 3, 1),
        (112, 96, 3, 2),
        (28, 240, 5, 1),
        (14, 672, 5, 1),
        (14, 672, 5, 2),
        (7, 1152, 5, 1),
    ] {
        let mut b = GraphBuilder::new(size, size, c);
        let y = b.conv(0, c, window(k, s, k / 2), c, relu6, &mut wt).expect("depthwise");
        b.output(y);
        time(&format!("depthwise {size}x{size}x{c} {k}x{k}/{s}"), b.build(), cold);
    }
    let mut b = GraphBuilder::new(128, 128, 16);
    let y = b.conv_transpose(0, 1, window(2, 2, 0), Activation::Sigmoid, &mut wt).expect("transposed");
    b.output(y);
    time("transposed 128x128x16 -> 256x256x1 2x2/2", b.build(), cold);
    let mut b = GraphBuilder::new(256, 256, 8);
    let y = b.conv(0, 1, window(3, 1, 1), 1, Activation::Sigmoid, &mut wt).expect("mask conv");
    b.output(y);
    time("conv 256x256x8 -> 1 3x3", b.build(), cold);
    for (size, c) in [(64, 16), (32, 24), (16, 128)] {
        let mut b = GraphBuilder::new(size, size, c);
        let y = b.resize(0, 2 * size, 2 * size, ResizeMode::Linear, CoordMode::HalfPixel).expect("resize");
        b.output(y);
        time(&format!("bilinear 2x {size}x{size}x{c}"), b.build(), cold);
    }
}
