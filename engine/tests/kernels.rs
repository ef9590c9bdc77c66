//! Every fast kernel against its naive reference, on random geometries and random output
//! rectangles. Positions outside the rectangle must be left untouched.

mod common;

use framecache::graph::{Graph, Op};
use framecache::kernels::{compute_full, reference, SimdLevel};
use framecache::reuse::{Mask, Rect};
use proptest::prelude::*;

fn check_node(level: SimdLevel, graph: &Graph, rect_seed: (usize, usize, usize, usize)) -> Result<(), TestCaseError> {
    // Random buffers for every node, then each node's kernel on a random rectangle.
    let mut rng = common::Weights(rect_seed.0 as u64 * 31 + rect_seed.1 as u64);
    let bufs: Vec<Vec<f32>> =
        graph.nodes.iter().map(|n| (0..n.shape.len()).map(|_| rng.next() * 4.0).collect()).collect();
    for (i, node) in graph.nodes.iter().enumerate().skip(1) {
        let ins: Vec<&[f32]> = node.inputs.iter().map(|&j| bufs[j].as_slice()).collect();
        let want = reference::eval(node, graph, &ins);
        let s = node.shape;
        let (a, b, c, d) = rect_seed;
        let (y0, x0) = (a % s.h, c % s.w);
        let rect = Rect { y0, y1: y0 + 1 + b % (s.h - y0), x0, x1: x0 + 1 + d % (s.w - x0) };
        let rect = if node.op.is_global() { Rect::full(s) } else { rect };
        let mut mask = Mask::new(s.h, s.w);
        mask.set_rect(rect.y0, rect.y1, rect.x0, rect.x1);
        let mut got = vec![f32::NAN; s.len()];
        {
            let ins: Vec<framecache::kernels::In<'_>> = node
                .inputs
                .iter()
                .map(|&j| framecache::kernels::In { data: &bufs[j], shape: graph.nodes[j].shape })
                .collect();
            let out = framecache::kernels::OutBuf::new(&mut got, s);
            // SAFETY: a single rectangle inside the output.
            unsafe { framecache::kernels::compute_rect(level, node, &ins, &out, rect, &mut Vec::new()) };
        }
        // Named tolerance: 1e-5 relative to the tensor's magnitude, plus 1e-6 absolute for values
        // that cancel to nearly zero (summation order differs between kernels).
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let tol = 1e-5 * scale + 1e-6;
        for y in 0..s.h {
            for x in 0..s.w {
                for ch in 0..s.c {
                    let k = (y * s.w + x) * s.c + ch;
                    if mask.get(y, x) {
                        prop_assert!(
                            (got[k] - want[k]).abs() <= tol,
                            "node {} ({}), {:?}: at ({y},{x},{ch}) fast {} vs reference {}",
                            i,
                            node.op.name(),
                            rect,
                            got[k],
                            want[k]
                        );
                    } else {
                        prop_assert!(got[k].is_nan(), "node {} wrote outside {:?} at ({y},{x})", i, rect);
                    }
                }
            }
        }
        // An int8 convolution sums integers, and scales, biases and activates as the reference
        // does (activations never fuse a multiply-add): the same bits at every level.
        if matches!(&node.op, Op::Conv(c) if c.quant.is_some()) && node.op.residual().is_none() {
            for y in rect.y0..rect.y1 {
                for x in rect.x0..rect.x1 {
                    let k = (y * s.w + x) * s.c;
                    common::same_bits(&got[k..k + s.c], &want[k..k + s.c])
                        .map_err(|e| TestCaseError::fail(format!("int8 node {i} at ({y},{x}): {e}")))?;
                }
            }
        }
        // compute_full agrees with the reference too.
        let mut full = vec![0.0; s.len()];
        compute_full(node, graph, &ins, &mut full, &mut Vec::new());
        for (k, (f, w)) in full.iter().zip(&want).enumerate() {
            prop_assert!((f - w).abs() <= tol, "node {} full at {k}: {f} vs {w}", i);
        }
    }
    Ok(())
}

/// Checks every node at every instruction-set level this CPU runs, each passed explicitly
/// (once per set of float kernels where the graph has no int8 convolution).
fn check_every_level(graph: &Graph, rect: (usize, usize, usize, usize)) -> Result<(), TestCaseError> {
    let int8 = graph.nodes.iter().any(|n| matches!(&n.op, Op::Conv(c) if c.quant.is_some()));
    let mut levels = SimdLevel::available();
    if !int8 {
        levels.dedup_by_key(|l| l.float());
    }
    for level in levels {
        check_node(level, graph, rect).map_err(|e| TestCaseError::fail(format!("{level:?}: {e}")))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(128), ..ProptestConfig::default() })]

    /// Int8 convolutions (pointwise, dense, strided, dilated, grouped; kernel rows read in place
    /// and im2col borders) against the naive integer reference, on random inputs, bit for bit.
    /// Unfused: inside a fused block the int8 projection quantizes the block's own depthwise
    /// output, whose float bits differ by level (multiply-adds), so a value near a rounding
    /// boundary may take the next integer; `bottleneck_is_bit_identical_to_its_convolutions`
    /// checks fused int8 blocks against their unfused convolutions at each level instead.
    #[test]
    fn int8_kernels_match_reference(
        h in 5usize..common::size(30, 10),
        w in 5usize..common::size(30, 10),
        layers in prop::collection::vec(common::layer(), 1..common::size(5, 3)),
        seed in any::<u64>(),
        rect in (0usize..64, 0usize..64, 0usize..64, 0usize..64),
    ) {
        let mut graph = common::build(h, w, &layers, seed);
        common::quantize(&mut graph, seed);
        framecache::kernels::prepare(&mut graph);
        check_every_level(&graph, rect)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(256), ..ProptestConfig::default() })]

    #[test]
    fn fast_kernels_match_reference(
        h in 5usize..common::size(30, 10),
        w in 5usize..common::size(30, 10),
        layers in prop::collection::vec(common::layer(), 1..common::size(5, 3)),
        seed in any::<u64>(),
        rect in (0usize..64, 0usize..64, 0usize..64, 0usize..64),
        fuse in any::<bool>(),
    ) {
        let mut graph = common::build(h, w, &layers, seed);
        if fuse {
            graph = framecache::import::fused(graph);
        }
        framecache::kernels::prepare(&mut graph);
        check_every_level(&graph, rect)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(96), ..ProptestConfig::default() })]

    /// Wide depthwise and pointwise layers: every channel-block size of the fast kernels
    /// (64-wide, 16-wide and the scalar tail), with padding, stride and dilation. Rows up to
    /// 24 wide: at stride 2, a group of eight interior outputs reads 17 input columns.
    #[test]
    fn wide_channel_kernels_match_reference(
        h in 3usize..common::size(12, 6),
        w in 3usize..common::size(24, 6),
        c in 1usize..common::size(150, 70),
        k in 1usize..6,
        s in 1usize..3,
        d in 1usize..3,
        pad in prop::array::uniform4(0usize..3),
        rect in (0usize..64, 0usize..64, 0usize..64, 0usize..64),
    ) {
        use framecache::graph::{Activation, GraphBuilder, Window};
        let mut b = GraphBuilder::new(h, w, 3);
        let mut rng = common::Weights(c as u64 * 977 + k as u64);
        let mut wgt = || rng.next();
        let one = Window { kh: 1, kw: 1, sh: 1, sw: 1, dh: 1, dw: 1, pad: [0; 4] };
        let x = b.conv(0, c, one, 1, Activation::Relu, &mut wgt).unwrap();
        let win = Window { kh: k, kw: k, sh: s, sw: s, dh: d, dw: d, pad: pad.map(|p| p.min(d * (k - 1))) };
        prop_assume!(win.output_hw(h, w, false).is_some());
        let y = b.conv(x, c, win, c, Activation::Clip { min: 0.0, max: 6.0 }, &mut wgt).unwrap();
        let z = b.conv(y, c + 3, one, 1, Activation::Identity, &mut wgt).unwrap();
        b.output(z);
        let mut graph = b.build();
        framecache::kernels::prepare(&mut graph);
        check_every_level(&graph, rect)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(64), ..ProptestConfig::default() })]

    /// A bottleneck node gives the same bits as its three convolutions computed one after the
    /// other, on any rectangle and at every level: maps tall and wide enough that the kernel
    /// runs several bands (and keeps their shared expanded rows), with and without the
    /// expansion, 3x3 and 5x5 windows, stride 1 and 2, and channel counts off the vector widths.
    #[test]
    fn bottleneck_is_bit_identical_to_its_convolutions(
        h in 4usize..common::size(64, 12),
        w in 4usize..common::size(64, 12),
        // A depthwise conv needs 2 or more channels (on one it is a plain conv).
        cin in 2usize..common::size(40, 20),
        expand in prop::sample::select(vec![0usize, 1, 6]),
        k in prop::sample::select(vec![3usize, 5]),
        s in 1usize..3,
        cout in 1usize..common::size(40, 20),
        rect in (0usize..64, 0usize..64, 0usize..64, 0usize..64),
        // Int8 expansion and projection: the same bits as the int8 convolutions unfused.
        int8 in any::<bool>(),
    ) {
        use framecache::graph::{fuse, Activation, GraphBuilder, Op, Window};
        let mut b = GraphBuilder::new(h, w, 3);
        let mut rng = common::Weights((h * 131 + w * 17 + cin) as u64);
        let mut wgt = || rng.next();
        let one = Window { kh: 1, kw: 1, sh: 1, sw: 1, dh: 1, dw: 1, pad: [0; 4] };
        let relu6 = Activation::Clip { min: 0.0, max: 6.0 };
        // A 3x3 stem, so that the block's input is not the graph input.
        let stem = Window { kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, pad: [1; 4] };
        let x = b.conv(0, cin, stem, 1, Activation::Relu, &mut wgt).unwrap();
        let e = if expand == 0 { x } else { b.conv(x, cin * expand, one, 1, relu6, &mut wgt).unwrap() };
        let c = b.shape(e).c;
        let dw = Window { kh: k, kw: k, sh: s, sw: s, dh: 1, dw: 1, pad: [k / 2; 4] };
        let d = b.conv(e, c, dw, c, relu6, &mut wgt).unwrap();
        let y = b.conv(d, cout, one, 1, Activation::Identity, &mut wgt).unwrap();
        b.output(y);
        let mut plain = b.build();
        if int8 {
            common::quantize(&mut plain, (h * w + cout) as u64);
        }
        let mut fused = plain.clone();
        prop_assert_eq!(fuse::bottlenecks(&mut fused), 1);
        let last = fused.nodes.len() - 1;
        prop_assert!(matches!(fused.nodes[last].op, Op::Bottleneck(_)));
        framecache::kernels::prepare(&mut plain);
        framecache::kernels::prepare(&mut fused);
        let s_out = plain.nodes[plain.nodes.len() - 1].shape;
        let input: Vec<f32> = (0..h * w * 3).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
        for level in SimdLevel::available() {
            // The three convolutions one after the other, each in full.
            let bufs = every_node_in_full(level, &plain, &input);
            let want = &bufs[bufs.len() - 1];
            // The bottleneck on a random rectangle, from the stem's output.
            let (a, bb, cc, dd) = rect;
            let (y0, x0) = (a % s_out.h, cc % s_out.w);
            let r = Rect { y0, y1: y0 + 1 + bb % (s_out.h - y0), x0, x1: x0 + 1 + dd % (s_out.w - x0) };
            let mut got = vec![f32::NAN; s_out.len()];
            {
                let ins = [framecache::kernels::In { data: &bufs[1], shape: plain.nodes[1].shape }];
                let ob = framecache::kernels::OutBuf::new(&mut got, s_out);
                // SAFETY: as above, one rectangle inside the output.
                unsafe { framecache::kernels::compute_rect(level, &fused.nodes[last], &ins, &ob, r, &mut Vec::new()) };
            }
            for yy in 0..s_out.h {
                for xx in 0..s_out.w {
                    for ch in 0..s_out.c {
                        let i = (yy * s_out.w + xx) * s_out.c + ch;
                        let inside = (r.y0..r.y1).contains(&yy) && (r.x0..r.x1).contains(&xx);
                        if inside {
                            prop_assert_eq!(got[i].to_bits(), want[i].to_bits(), "{:?} {:?} at ({},{},{})", level, r, yy, xx, ch);
                        } else {
                            prop_assert!(got[i].is_nan(), "{:?}: wrote outside {:?} at ({},{})", level, r, yy, xx);
                        }
                    }
                }
            }
        }
    }
}

/// Geometries whose im2col rows or transposed-conv column taps exceed the kernels' scratch
/// bounds, so that they run in segments: a 3x3 convolution on 64 channels whose output rows
/// are 576 x 150 im2col floats (over the 64K of one band), and a transposed convolution with a
/// 300-wide kernel (its taps go in chunks of 218 columns).
#[test]
#[cfg_attr(miri, ignore = "its fixed geometry (the segment bounds) takes Miri over ten minutes")]
fn segmented_im2col_and_transposed_taps_match_reference() {
    use framecache::graph::{Activation, GraphBuilder, Window};
    let mut rng = common::Weights(7);
    let mut wgt = || rng.next();
    let one = Window { kh: 1, kw: 1, sh: 1, sw: 1, dh: 1, dw: 1, pad: [0; 4] };
    let mut b = GraphBuilder::new(3, 150, 3);
    let x = b.conv(0, 64, one, 1, Activation::Identity, &mut wgt).unwrap();
    let k3 = Window { kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, pad: [1; 4] };
    let y = b.conv(x, 5, k3, 1, Activation::Relu, &mut wgt).unwrap();
    b.output(y);
    let mut b2 = GraphBuilder::new(2, 300, 3);
    let wide = Window { kh: 1, kw: 300, sh: 1, sw: 1, dh: 1, dw: 1, pad: [0; 4] };
    let t = b2.conv_transpose(0, 2, wide, Activation::Identity, &mut wgt).unwrap();
    b2.output(t);
    for mut graph in [b.build(), b2.build()] {
        framecache::kernels::prepare(&mut graph);
        for rect in [(0, 63, 0, 63), (1, 0, 17, 40), (0, 63, 250, 63)] {
            check_every_level(&graph, rect).unwrap();
        }
    }
}

/// Transposed convolutions whose kernel equals their stride run as one pointwise product per
/// input row (each input pixel's block of outputs): selfie segmentation's 16 → 1 mask layer and
/// wider ones, against the reference at every level, on the whole map and on rectangles that
/// start and end inside a block.
#[test]
fn kernel_equals_stride_transposed_convs_match_reference() {
    use framecache::graph::{Activation, GraphBuilder, Op, Window};
    let mut rng = common::Weights(11);
    let mut wgt = || rng.next();
    for (cin, cout, k) in [(16, 1, 2), (5, 3, 2), (8, 17, 3)] {
        let mut b = GraphBuilder::new(common::size(7, 3), common::size(9, 4), cin);
        let window = Window { kh: k, kw: k, sh: k, sw: k, dh: 1, dw: 1, pad: [0; 4] };
        let t = b.conv_transpose(0, cout, window, Activation::Relu, &mut wgt).unwrap();
        b.output(t);
        let mut graph = b.build();
        framecache::kernels::prepare(&mut graph);
        assert!(matches!(&graph.nodes[t].op, Op::ConvTranspose(ct) if ct.packed.is_some()));
        for rect in [(0, 63, 0, 63), (1, 4, 3, 10), (5, 1, 2, 7)] {
            check_every_level(&graph, rect).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(64), ..ProptestConfig::default() })]

    /// Residual adds fused into the convolution, bottleneck or elementwise product producing one
    /// side give the same bits as the two nodes one after the other, at every level, on random
    /// graphs: every output of the fused graph equals the unfused one's.
    #[test]
    fn residual_adds_fused_are_bit_identical(
        h in 5usize..common::size(24, 9),
        w in 5usize..common::size(24, 9),
        layers in prop::collection::vec(common::layer(), 1..common::size(6, 3)),
        seed in any::<u64>(),
    ) {
        // One thread: the bits do not depend on the bands (the exactness tests run two), and
        // a pool under Miri trips a stacked-borrows report inside crossbeam-epoch.
        let threads = 1;
        use framecache::graph::fuse;
        use framecache::{Plan, Preprocess, Session, SessionOptions};
        // At least a residual block (a 3x3 conv and an Add with a ReLU) and a scaled residual
        // (a squeeze-excite product and an Add) to fuse.
        let layers: Vec<common::Layer> =
            [common::Layer::Residual, common::Layer::ScaledResidual].into_iter().chain(layers).collect();
        let mut plain = common::build(h, w, &layers, seed);
        fuse::bottlenecks(&mut plain);
        let mut fused = plain.clone();
        let n = fuse::residual_adds(&mut fused);
        prop_assert!(n >= 2);
        prop_assert_eq!(fused.nodes.len() + n, plain.nodes.len());
        prop_assert!(fused.nodes.iter().filter(|n| n.op.residual().is_some()).count() == n);
        let (plain, fused) =
            (Plan::new(plain, Preprocess::default()).unwrap(), Plan::new(fused, Preprocess::default()).unwrap());
        let frame = common::sequence(h, w, seed, &[vec![]]).remove(0);
        let frame = framecache::Frame { width: w, height: h, channels: 3, data: &frame };
        for level in SimdLevel::available() {
            let opts = SessionOptions { threads: Some(threads), simd: Some(level), ..Default::default() };
            let want = Session::new(plain.clone(), opts.clone()).unwrap().run_full(frame).unwrap();
            let got = Session::new(fused.clone(), opts).unwrap().run_full(frame).unwrap();
            for (g, w) in got.iter().zip(&want) {
                prop_assert!(
                    g.data.iter().zip(&w.data).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{level:?}: output {} differs after fusing {n} residual adds", g.name
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(96), ..ProptestConfig::default() })]

    /// Convolutions to few output channels with the two axes' strides, dilations and padding
    /// drawn apart: the mask-head row kernel (one channel, horizontal stride 1), the one-channel
    /// kernel (other strides), and the in-place kernel rows of the GEMM (2-5 channels).
    #[test]
    fn narrow_convs_with_uneven_windows_match_reference(
        h in 3usize..common::size(20, 8),
        w in 3usize..common::size(40, 10),
        cin in 1usize..common::size(20, 9),
        cout in prop::sample::select(vec![1usize, 2, 5]),
        (kh, kw) in (1usize..5, 1usize..5),
        (sh, sw) in (1usize..3, 1usize..3),
        (dh, dw) in (1usize..3, 1usize..3),
        pad in prop::array::uniform4(0usize..3),
        rect in (0usize..64, 0usize..64, 0usize..64, 0usize..64),
    ) {
        use framecache::graph::{Activation, GraphBuilder, Window};
        let mut b = GraphBuilder::new(h, w, 3);
        let mut rng = common::Weights((h * 31 + w * 7 + cin) as u64);
        let mut wgt = || rng.next();
        let one = Window { kh: 1, kw: 1, sh: 1, sw: 1, dh: 1, dw: 1, pad: [0; 4] };
        let x = b.conv(0, cin, one, 1, Activation::Relu, &mut wgt).unwrap();
        let win = Window { kh, kw, sh, sw, dh, dw, pad };
        prop_assume!(win.output_hw(h, w, false).is_some());
        let y = b.conv(x, cout, win, 1, Activation::Sigmoid, &mut wgt).unwrap();
        b.output(y);
        let mut graph = b.build();
        framecache::kernels::prepare(&mut graph);
        check_every_level(&graph, rect)?;
    }
}

/// Every node's output of `graph` from `input`, each node computed in full (one rectangle) at
/// `level`.
fn every_node_in_full(level: SimdLevel, graph: &Graph, input: &[f32]) -> Vec<Vec<f32>> {
    use framecache::kernels::{compute_rect, In, OutBuf};
    let mut bufs = vec![input.to_vec()];
    for node in graph.nodes.iter().skip(1) {
        let ins: Vec<In<'_>> =
            node.inputs.iter().map(|&j| In { data: &bufs[j], shape: graph.nodes[j].shape }).collect();
        let mut out = vec![0.0; node.shape.len()];
        // SAFETY: one rectangle covering the output, one writer, a level this CPU runs.
        unsafe {
            compute_rect(level, node, &ins, &OutBuf::new(&mut out, node.shape), Rect::full(node.shape), &mut Vec::new())
        };
        bufs.push(out);
    }
    bufs
}

/// A random mask of a `h x w` map (about a third of the positions), covered with rectangles as
/// a session covers a cached frame's changes.
fn random_cover(h: usize, w: usize, seed: u64) -> (Mask, Vec<Rect>) {
    let mut rng = common::Weights(seed);
    let mut mask = Mask::new(h, w);
    for y in 0..h {
        for x in 0..w {
            mask.set(y, x, rng.next() < -0.2);
        }
    }
    let rects = framecache::reuse::cover(&mask);
    (mask, rects)
}

/// Positions of `mask` hold `want`'s bits in `got`; the others are still NaN.
fn same_bits_inside(got: &[f32], want: &[f32], mask: &Mask, c: usize, what: &str) -> Result<(), TestCaseError> {
    for y in 0..mask.h {
        for x in 0..mask.w {
            for ch in 0..c {
                let i = (y * mask.w + x) * c + ch;
                if mask.get(y, x) {
                    prop_assert_eq!(got[i].to_bits(), want[i].to_bits(), "{} at ({},{},{})", what, y, x, ch);
                } else {
                    prop_assert!(got[i].is_nan(), "{} wrote outside its rectangles at ({},{})", what, y, x);
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(24), ..ProptestConfig::default() })]

    /// A cached frame's scattered rectangles, computed together: pointwise products over
    /// gathered batches of pixels (`compute_rects`), and a bottleneck's expansion and
    /// depthwise + projection over batches (`bottleneck::expand`, `bottleneck::from_expanded`),
    /// give the bits of each node computed in full, at every level. The channel counts put
    /// the weights past L1, where the kernels batch, with a strided pointwise convolution and
    /// a projection with a fused residual add.
    #[test]
    #[cfg_attr(miri, ignore = "weights past L1 (8K floats and more per product) take Miri too long")]
    fn batched_rectangles_are_bit_identical(
        h in 5usize..20,
        w in 5usize..20,
        cin in 40usize..52,
        s in 1usize..3,
        cout in 48usize..200,
        seed in any::<u64>(),
        // Int8 products (batches of gathered pixels quantized as they are read).
        int8 in any::<bool>(),
    ) {
        use framecache::graph::{fuse, Activation, GraphBuilder, Op, Window};
        use framecache::kernels::{bottleneck, compute_rects, In, OutBuf};
        let mut b = GraphBuilder::new(h, w, 3);
        let mut rng = common::Weights(seed);
        let mut wgt = || rng.next() * 0.2;
        let one = |s| Window { kh: 1, kw: 1, sh: s, sw: s, dh: 1, dw: 1, pad: [0; 4] };
        let relu6 = Activation::Clip { min: 0.0, max: 6.0 };
        let stem = Window { kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, pad: [1; 4] };
        let x = b.conv(0, cin, stem, 1, Activation::Relu, &mut wgt).unwrap();
        // A pointwise convolution of stride s, batched.
        let p = b.conv(x, cout, one(s), 1, Activation::Relu, &mut wgt).unwrap();
        // An inverted-residual block; at stride 1 back to `cin` channels with the residual add.
        let e = b.conv(x, cin * 6, one(1), 1, relu6, &mut wgt).unwrap();
        let dw = Window { kh: 3, kw: 3, sh: s, sw: s, dh: 1, dw: 1, pad: [1; 4] };
        let d = b.conv(e, cin * 6, dw, cin * 6, relu6, &mut wgt).unwrap();
        let y = b.conv(d, if s == 1 { cin } else { cout }, one(1), 1, Activation::Identity, &mut wgt).unwrap();
        let y = if s == 1 {
            b.binary(y, x, framecache::graph::BinaryKind::Add, Activation::Relu).unwrap()
        } else {
            y
        };
        b.output(p).output(y);
        let mut plain = b.build();
        if int8 {
            common::quantize(&mut plain, seed);
        }
        let mut fused = plain.clone();
        prop_assert_eq!(fuse::bottlenecks(&mut fused), 1);
        fuse::residual_adds(&mut fused);
        framecache::kernels::prepare(&mut plain);
        framecache::kernels::prepare(&mut fused);
        let input: Vec<f32> = (0..h * w * 3).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
        let last = fused.nodes.len() - 1;
        let Op::Bottleneck(block) = &fused.nodes[last].op else { panic!("the block is not fused") };
        for level in SimdLevel::available() {
            let bufs = every_node_in_full(level, &plain, &input);
            let xs = In { data: &bufs[x], shape: plain.nodes[x].shape };
            let mut scratch = Vec::new();
            // The strided pointwise convolution on scattered rectangles.
            let sp = plain.nodes[p].shape;
            let (mask, rects) = random_cover(sp.h, sp.w, seed ^ 1);
            let mut got = vec![f32::NAN; sp.len()];
            // SAFETY: disjoint rectangles (a cover) inside the output.
            unsafe { compute_rects(level, &fused.nodes[p], &[xs], &OutBuf::new(&mut got, sp), &rects, &mut scratch) };
            same_bits_inside(&got, &bufs[p], &mask, sp.c, &format!("{level:?} pointwise"))?;
            // The expansion on the input positions of a random mask, into the map held from
            // "the last frame" (the full expansion, NaN where the mask is).
            let se = plain.nodes[e].shape;
            let (mask, rects) = random_cover(se.h, se.w, seed ^ 2);
            let mut store = bufs[e].clone();
            for (i, v) in store.iter_mut().enumerate() {
                if mask.get(i / se.c / se.w, i / se.c % se.w) {
                    *v = f32::NAN;
                }
            }
            // SAFETY: as above, for the expanded map.
            unsafe { bottleneck::expand(level, block, xs, &OutBuf::new(&mut store, se), &rects, &mut scratch) };
            prop_assert!(store.iter().zip(&bufs[e]).all(|(a, b)| a.to_bits() == b.to_bits()), "{:?}: expansion", level);
            // The depthwise convolution and the projection on the output's rectangles.
            let so = fused.nodes[last].shape;
            let (mask, rects) = random_cover(so.h, so.w, seed ^ 3);
            let residual = (s == 1).then_some(xs);
            let mut got = vec![f32::NAN; so.len()];
            let map = In { data: &store, shape: se };
            // SAFETY: as above.
            unsafe { bottleneck::from_expanded(level, block, map, residual, &OutBuf::new(&mut got, so), &rects, &mut scratch) };
            same_bits_inside(&got, &bufs[bufs.len() - 1], &mask, so.c, &format!("{level:?} bottleneck"))?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(64), ..ProptestConfig::default() })]

    /// One-pixel products (dense layers, one-pixel row segments) take the matrix-vector path.
    /// Each output has the bits of the same pixel computed in a tile of several pixels, at
    /// every level, for channel counts across one to several panels and their remainders.
    #[test]
    fn one_pixel_products_have_the_bits_of_tiles(
        cin in 1usize..common::size(300, 40),
        cout in 1usize..common::size(230, 40),
        act in 0u8..6,
        seed in any::<u64>(),
    ) {
        use framecache::kernels::pointwise;
        let mut rng = common::Weights(seed);
        let weights: Vec<f32> = (0..cin * cout).map(|_| rng.next()).collect();
        let bias: Vec<f32> = (0..cout).map(|_| rng.next()).collect();
        let packed = pointwise::pack(&weights, &bias, cin, cout);
        let x: Vec<f32> = (0..cin * 3).map(|_| rng.next() * 4.0).collect();
        let act = common::activation(act);
        let call = |src, npix| pointwise::Call {
            src,
            src_stride: cin,
            npix,
            cin,
            cout,
            packed: &packed,
            act,
            dst_stride: cout,
            runs: pointwise::ONE_RUN,
            blocks: 1,
        };
        for level in SimdLevel::available() {
            let mut three = vec![f32::NAN; 3 * cout];
            pointwise::run(level, &call(&x, 3), &mut three);
            for p in 0..3 {
                let mut one = vec![f32::NAN; cout];
                pointwise::run(level, &call(&x[p * cin..], 1), &mut one);
                for (co, (a, b)) in one.iter().zip(&three[p * cout..(p + 1) * cout]).enumerate() {
                    prop_assert_eq!(a.to_bits(), b.to_bits(), "{:?}: pixel {} column {}: {} vs {}", level, p, co, a, b);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(64), ..ProptestConfig::default() })]

    /// The passes that change the arithmetic (a whole-map average pool as a global one, a
    /// global average of a sum as a sum of averages, a linear 1x1 convolution moved before the
    /// resize that enlarges its input) give every output of the graph within float rounding of
    /// the graph as built, at every level, on random graphs that hold at least one of each.
    #[test]
    fn rewritten_decoders_match_the_graph_as_built(
        h in 4usize..common::size(20, 8),
        w in 4usize..common::size(20, 8),
        layers in prop::collection::vec(common::layer(), 0..common::size(5, 2)),
        linear in any::<bool>(),
        coord in 0u8..4,
        global in any::<bool>(),
        seed in any::<u64>(),
    ) {
        use framecache::graph::fuse;
        use framecache::{Plan, Preprocess, Session, SessionOptions};
        let layers: Vec<common::Layer> =
            [common::Layer::PooledSum { global }, common::Layer::UpProject { linear, coord, cout: 3 }]
                .into_iter()
                .chain(layers)
                .collect();
        let plain = common::build(h, w, &layers, seed);
        let mut rewritten = plain.clone();
        prop_assert!(fuse::global_pools(&mut rewritten) >= usize::from(!global));
        prop_assert!(fuse::pools_of_sums(&mut rewritten) >= 1);
        prop_assert!(fuse::pointwise_before_resize(&mut rewritten) >= 1);
        let (plain, rewritten) =
            (Plan::new(plain, Preprocess::default()).unwrap(), Plan::new(rewritten, Preprocess::default()).unwrap());
        let frame = common::sequence(h, w, seed, &[vec![]]).remove(0);
        let frame = framecache::Frame { width: w, height: h, channels: 3, data: &frame };
        for level in SimdLevel::available() {
            let opts = SessionOptions { threads: Some(1), simd: Some(level), ..Default::default() };
            let want = Session::new(plain.clone(), opts.clone()).unwrap().run_full(frame).unwrap();
            let got = Session::new(rewritten.clone(), opts).unwrap().run_full(frame).unwrap();
            prop_assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                common::close_to_reference(&g.data, &w.data)
                    .map_err(|e| TestCaseError::fail(format!("{level:?}, output {}: {e}", g.name)))?;
            }
        }
    }
}
