//! Random graphs for the property tests: small convolutional stacks with every op the engine
//! executes, generated from a list of layer specs.
#![allow(dead_code)] // Each test binary uses a different part of these helpers.

use framecache::graph::{Activation, BinaryKind, CoordMode, Graph, GraphBuilder, PoolKind, ResizeMode, Window};
use proptest::prelude::*;

/// Cached against full: 1e-5 relative to the tensor's magnitude.
pub fn close(a: &[f32], b: &[f32]) -> Result<(), String> {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-3);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if (x - y).abs() > 1e-5 * scale {
            return Err(format!("index {i}: cached {x} vs full {y} (scale {scale})"));
        }
    }
    Ok(())
}

/// A fast kernel against the naive reference, whose sums run in another order: the kernels'
/// tolerance (tests/kernels.rs), 1e-5 relative to the tensor's magnitude plus 1e-6 absolute for
/// sums of large terms that cancel to nearly zero.
pub fn close_to_reference(a: &[f32], b: &[f32]) -> Result<(), String> {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if (x - y).abs() > 1e-5 * scale + 1e-6 {
            return Err(format!("index {i}: fast {x} vs reference {y} (scale {scale})"));
        }
    }
    Ok(())
}

/// Bit-for-bit equality (int8 execution, whose cached and full results must be the same bits).
pub fn same_bits(a: &[f32], b: &[f32]) -> Result<(), String> {
    match a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits()) {
        Some(i) => Err(format!("index {i}: {} vs {} (not the same bits)", a[i], b[i])),
        None if a.len() != b.len() => Err(format!("{} values vs {}", a.len(), b.len())),
        None => Ok(()),
    }
}

/// Quantizes every convolution of the unfused `graph` that can run in int8 (thin ones too,
/// which calibration leaves float), each input to a random range within ±3 (the tests' values
/// reach past it, so clamping is exercised).
pub fn quantize(graph: &mut Graph, seed: u64) {
    let mut rng = Weights(seed ^ 0x9e37_79b9);
    for node in &mut graph.nodes {
        if let framecache::graph::Op::Conv(c) = &mut node.op {
            if framecache::quant::takes_int8(c) {
                let range = framecache::quant::Range { lo: (rng.next() - 0.5) * 3.0, hi: (rng.next() + 0.5) * 3.0 };
                c.quant = Some(Box::new(framecache::quant::quantize_conv(c, range)));
            }
        }
    }
}

/// Deterministic weight source in [-0.5, 0.5).
pub struct Weights(pub u64);
impl Weights {
    pub fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }
}

#[derive(Clone, Debug)]
pub enum Layer {
    /// kind 0 dense, 1 depthwise, 2 grouped (2 groups).
    Conv {
        kind: u8,
        cout: usize,
        k: usize,
        s: usize,
        d: usize,
        pad: [usize; 4],
        act: u8,
    },
    ConvTranspose {
        k: usize,
        s: usize,
        pad: usize,
        cout: usize,
    },
    Pool {
        max: bool,
        k: usize,
        s: usize,
        pad: usize,
    },
    Resize {
        up: bool,
        linear: bool,
        coord: u8,
    },
    Residual,
    /// BlazeFace's channel-growing residual: zero channels appended to the skip path.
    PaddedResidual {
        before: usize,
        after: usize,
    },
    Concat,
    SqueezeExcite,
    ScaledResidual,
    /// A decoder step: the map upsampled by two, then a linear 1x1 convolution to `cout`
    /// channels (at most the map's; what [`framecache::graph::fuse::pointwise_before_resize`]
    /// moves before the resize).
    UpProject {
        linear: bool,
        coord: u8,
        cout: usize,
    },
    /// `x * sigmoid(pool(x + conv(x)))`, the sum read only by the pool (a global average or a
    /// whole-map average pool: what [`framecache::graph::fuse::pools_of_sums`] rewrites).
    PooledSum {
        global: bool,
    },
    Act(u8),
    /// MobileNetV2's block: a pointwise expansion by `expand` (none when 0), a `k x k`
    /// depthwise conv of stride `s`, a pointwise projection to `cout` channels, and the
    /// residual Add where the shapes allow it.
    InvertedResidual {
        expand: usize,
        k: usize,
        s: usize,
        cout: usize,
    },
}

pub fn activation(i: u8) -> Activation {
    match i % 6 {
        0 => Activation::Identity,
        1 => Activation::Relu,
        2 => Activation::Clip { min: 0.0, max: 6.0 },
        3 => Activation::HardSigmoid { alpha: 1.0 / 6.0, beta: 0.5 },
        4 => Activation::HardSwish { alpha: 1.0 / 6.0, beta: 0.5 },
        _ => Activation::Sigmoid,
    }
}

/// The upper bound of a random size: `n`, or the smaller `miri` under Miri, whose interpreter
/// runs the kernels about a million times slower than native code (the point of the Miri run
/// is undefined behaviour in the unsafe kernels, not coverage of geometries).
pub fn size(n: usize, miri: usize) -> usize {
    if cfg!(miri) {
        miri
    } else {
        n
    }
}

/// Proptest cases: `n`, or at most `FRAMECACHE_PROPTEST_CASES` where that is set (the
/// emulated aarch64 run in CI, `.ci/aarch64.sh`, runs fewer).
pub fn cases(n: u32) -> u32 {
    std::env::var("FRAMECACHE_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).map_or(n, |m: u32| m.min(n))
}

pub fn layer() -> impl Strategy<Value = Layer> {
    prop_oneof![
        // Channel counts both below and across the micro-kernels' 16- and 32-wide panels.
        4 => (0u8..3, prop_oneof![1usize..7, 14usize..size(40, 24)], prop::sample::select(vec![1usize, 3, 5]), 1usize..3, 1usize..3, prop::array::uniform4(0usize..3), 0u8..6)
            .prop_map(|(kind, cout, k, s, d, pad, act)| Layer::Conv { kind, cout, k, s, d, pad, act }),
        1 => (1usize..4, 1usize..3, 0usize..2, 1usize..5).prop_map(|(k, s, pad, cout)| Layer::ConvTranspose { k, s, pad, cout }),
        1 => (any::<bool>(), 2usize..4, 1usize..3, 0usize..2).prop_map(|(max, k, s, pad)| Layer::Pool { max, k, s, pad }),
        1 => (any::<bool>(), any::<bool>(), 0u8..4).prop_map(|(up, linear, coord)| Layer::Resize { up, linear, coord }),
        1 => Just(Layer::Residual),
        1 => (0usize..3, 0usize..5).prop_map(|(before, after)| Layer::PaddedResidual { before, after }),
        1 => Just(Layer::Concat),
        1 => Just(Layer::SqueezeExcite),
        1 => Just(Layer::ScaledResidual),
        1 => (any::<bool>(), 0u8..4, 1usize..6).prop_map(|(linear, coord, cout)| Layer::UpProject { linear, coord, cout }),
        1 => any::<bool>().prop_map(|global| Layer::PooledSum { global }),
        1 => (0u8..6).prop_map(Layer::Act),
        // Some blocks 40 channels wide, so that the next block's input is wider than
        // `HALO_MAX_CHANNELS` (32) and a cached frame takes its stored expanded map.
        2 => (prop::sample::select(vec![0usize, 2, 6]), prop::sample::select(vec![3usize, 5]), 1usize..3, prop_oneof![3 => 1usize..24, 1 => Just(40usize)])
            .prop_map(|(expand, k, s, cout)| Layer::InvertedResidual { expand, k, s, cout }),
    ]
}

fn window(k: usize, s: usize, d: usize, pad: [usize; 4]) -> Window {
    Window { kh: k, kw: k, sh: s, sw: s, dh: d, dw: d, pad: pad.map(|p| p.min(d * (k - 1))) }
}

/// Builds a graph from specs; layers that do not fit the current shape are skipped. Every
/// node that ends a branch is an output, so the test sees all of them.
pub fn build(h: usize, w: usize, layers: &[Layer], seed: u64) -> Graph {
    let mut rng = Weights(seed);
    let mut wgt = || rng.next();
    let mut b = GraphBuilder::new(h, w, 3);
    // A first dense conv so that later layers see a few channels.
    let mut x = b.conv(0, 4, window(3, 1, 1, [1; 4]), 1, Activation::Relu, &mut wgt).expect("stem fits");
    for l in layers {
        let s = b.shape(x);
        let next = match *l {
            Layer::Conv { kind, cout, k, s: st, d, pad, act } => {
                let (groups, cout) = match kind {
                    0 => (1, cout),
                    1 => (s.c, s.c),
                    _ if s.c.is_multiple_of(2) => (2, 2 * cout.div_ceil(2)),
                    _ => (1, cout),
                };
                b.conv(x, cout, window(k, st, d, pad), groups, activation(act), &mut wgt)
            }
            Layer::ConvTranspose { k, s: st, pad, cout } => {
                let p = pad.min(k - 1);
                b.conv_transpose(x, cout, window(k, st, 1, [p, p, 0, 0]), Activation::Identity, &mut wgt)
            }
            Layer::Pool { max, k, s: st, pad } => {
                let kind = if max { PoolKind::Max } else { PoolKind::Avg { count_include_pad: pad == 1 } };
                b.pool(x, kind, window(k, st, 1, [pad.min(k - 1); 4]))
            }
            Layer::Resize { up, linear, coord } => {
                let (oh, ow) = if up { (s.h * 2, s.w * 2) } else { (s.h.div_ceil(2), s.w.div_ceil(2)) };
                let coord =
                    [CoordMode::HalfPixel, CoordMode::AlignCorners, CoordMode::Asymmetric, CoordMode::PytorchHalfPixel]
                        [coord as usize];
                let mode = if linear { ResizeMode::Linear } else { ResizeMode::Nearest { floor: false } };
                if oh > 96 || ow > 96 {
                    continue;
                }
                b.resize(x, oh, ow, mode, coord)
            }
            Layer::Residual => b
                .conv(x, s.c, window(3, 1, 1, [1; 4]), 1, Activation::Identity, &mut wgt)
                .and_then(|y| b.binary(x, y, BinaryKind::Add, Activation::Relu)),
            Layer::PaddedResidual { before, after } => b
                .conv(x, s.c + before + after, window(3, 1, 1, [1; 4]), 1, Activation::Identity, &mut wgt)
                .and_then(|y| b.pad_channels(x, before, after).map(|p| (p, y)))
                .and_then(|(p, y)| b.binary(p, y, BinaryKind::Add, Activation::Relu)),
            Layer::Concat => {
                b.conv(x, 2, window(1, 1, 1, [0; 4]), 1, Activation::Relu, &mut wgt).and_then(|y| b.concat(&[x, y]))
            }
            Layer::SqueezeExcite => b
                .global_avg_pool(x)
                .and_then(|g| b.unary(g, Activation::Sigmoid))
                .and_then(|g| b.binary(x, g, BinaryKind::Mul, Activation::Identity)),
            // `x + x * sigmoid(gap(x))`: the product is read only by the sum (selfie
            // segmentation's decoder blocks).
            Layer::ScaledResidual => b
                .global_avg_pool(x)
                .and_then(|g| b.unary(g, Activation::Sigmoid))
                .and_then(|g| b.binary(x, g, BinaryKind::Mul, Activation::Identity))
                .and_then(|m| b.binary(x, m, BinaryKind::Add, Activation::Identity)),
            Layer::UpProject { linear, coord, cout } => {
                let coord =
                    [CoordMode::HalfPixel, CoordMode::AlignCorners, CoordMode::Asymmetric, CoordMode::PytorchHalfPixel]
                        [coord as usize];
                let mode = if linear { ResizeMode::Linear } else { ResizeMode::Nearest { floor: false } };
                if s.h * 2 > 96 || s.w * 2 > 96 {
                    continue;
                }
                b.resize(x, s.h * 2, s.w * 2, mode, coord)
                    .and_then(|u| b.conv(u, cout.min(s.c), window(1, 1, 1, [0; 4]), 1, Activation::Identity, &mut wgt))
            }
            Layer::PooledSum { global } => b
                .conv(x, s.c, window(1, 1, 1, [0; 4]), 1, Activation::Identity, &mut wgt)
                .and_then(|y| b.binary(x, y, BinaryKind::Add, Activation::Identity))
                .and_then(|sum| {
                    if global {
                        b.global_avg_pool(sum)
                    } else {
                        let whole = Window { kh: s.h, kw: s.w, sh: 1, sw: 1, dh: 1, dw: 1, pad: [0; 4] };
                        b.pool(sum, PoolKind::Avg { count_include_pad: false }, whole)
                    }
                })
                .and_then(|g| b.unary(g, Activation::Sigmoid))
                .and_then(|g| b.binary(x, g, BinaryKind::Mul, Activation::Identity)),
            Layer::Act(a) => b.unary(x, activation(a)),
            Layer::InvertedResidual { expand, k, s: st, cout } => {
                let relu6 = Activation::Clip { min: 0.0, max: 6.0 };
                let one = window(1, 1, 1, [0; 4]);
                let e = if expand == 0 { Ok(x) } else { b.conv(x, s.c * expand, one, 1, relu6, &mut wgt) };
                e.and_then(|e| {
                    let c = b.shape(e).c;
                    b.conv(e, c, window(k, st, 1, [k / 2; 4]), c, relu6, &mut wgt)
                })
                .and_then(|d| b.conv(d, cout, one, 1, Activation::Identity, &mut wgt))
                .and_then(|y| {
                    if b.shape(y) == s {
                        b.binary(x, y, BinaryKind::Add, Activation::Identity)
                    } else {
                        Ok(y)
                    }
                })
            }
        };
        if let Ok(n) = next {
            x = n;
        }
    }
    b.output(x);
    // A classifier tail as a second output: global pool and dense.
    let g = b.global_avg_pool(x).expect("gap");
    let d = b.dense(g, 3, Activation::Identity, &mut wgt).expect("dense");
    b.output(d);
    // An SSD-style tail as a third: an inverted-residual block to 2 channels (when `x` has
    // two or more, else a 1x1 conv), flattened and concatenated with the vector. As a head of
    // its own, it is skipped and caught up (a bottleneck's expanded map included).
    let one = window(1, 1, 1, [0; 4]);
    let c = b.shape(x).c;
    let box_map = if c >= 2 {
        let relu6 = Activation::Clip { min: 0.0, max: 6.0 };
        let e = b.conv(x, 2 * c, one, 1, relu6, &mut wgt).expect("1x1 fits");
        let d = b.conv(e, 2 * c, window(3, 1, 1, [1; 4]), 2 * c, relu6, &mut wgt).expect("3x3 fits");
        b.conv(d, 2, one, 1, Activation::Identity, &mut wgt)
    } else {
        b.conv(x, 2, one, 1, Activation::Identity, &mut wgt)
    }
    .expect("the box map fits");
    let flat = b.flat_concat(&[box_map, d]).expect("flat concat");
    b.output(flat);
    b.build()
}

/// A rectangle pasted into a frame with one value in one channel.
#[derive(Clone, Debug)]
pub struct Patch {
    pub y: usize,
    pub x: usize,
    pub h: usize,
    pub w: usize,
    pub value: u8,
}

pub fn patch() -> impl Strategy<Value = Patch> {
    (0usize..64, 0usize..64, 1usize..20, 1usize..20, any::<u8>()).prop_map(|(y, x, h, w, value)| Patch {
        y,
        x,
        h,
        w,
        value,
    })
}

/// A random first frame, then one frame per entry of `frames` with its patches pasted on the
/// previous frame (clamped into the frame so that they touch the borders often). An empty
/// entry repeats the previous frame.
pub fn sequence(h: usize, w: usize, seed: u64, frames: &[Vec<Patch>]) -> Vec<Vec<u8>> {
    let mut rng = Weights(seed ^ 0x9e37);
    let mut pixels: Vec<u8> = (0..h * w * 3).map(|_| (rng.next() * 255.0 + 128.0) as u8).collect();
    let mut sequence = vec![pixels.clone()];
    for patches in frames {
        for p in patches {
            let (y0, x0) = (p.y.min(h - 1), p.x.min(w - 1));
            for y in y0..(y0 + p.h).min(h) {
                for x in x0..(x0 + p.w).min(w) {
                    pixels[(y * w + x) * 3 + (y + x) % 3] = p.value;
                }
            }
        }
        sequence.push(pixels.clone());
    }
    sequence
}
