//! A model file is untrusted input. Malformed models, built in code, must give an error that
//! names the node, never a panic, an abort, a heap overwrite or a silently wrong graph. The
//! sweep at the end mutates every attribute and integer tensor of a model that uses every
//! supported op, and of the real models when `../shared/data` is there.

use std::panic::{catch_unwind, AssertUnwindSafe};

use framecache::graph::MAX_TENSOR_VALUES;
use framecache::import::load_onnx_bytes;
use framecache::{Error, Frame, Plan, Preprocess, Session, SessionOptions};
use framecache_tests::onnx::{f32_tensor, i64_tensor, int, ints, zoo, Onnx};
use tract_onnx::pb::GraphProto;

/// Imports, compiles and runs one frame; the first error.
fn outcome(bytes: &[u8]) -> Result<(), Error> {
    let graph = load_onnx_bytes(bytes)?;
    let plan = Plan::new(graph, Preprocess::default())?;
    let mut s = Session::new(plan, SessionOptions { threads: Some(1), ..Default::default() })?;
    let pixels: Vec<u8> = (0..16 * 12 * 3).map(|i| (i * 7 % 251) as u8).collect();
    s.process(Frame::rgb(16, 12, &pixels))?;
    Ok(())
}

/// The error of `m`, which must be an error (not a panic) whose message holds `needle` and no
/// wrapped integer.
#[track_caller]
fn rejects(m: &Onnx, needle: &str) -> Error {
    let e = match catch_unwind(AssertUnwindSafe(|| outcome(&m.bytes()))) {
        Ok(Err(e)) => e,
        Ok(Ok(())) => panic!("accepted; expected an error about '{needle}'"),
        Err(_) => panic!("panicked; expected an error about '{needle}'"),
    };
    let msg = e.to_string();
    assert!(msg.contains(needle), "'{msg}' does not mention '{needle}'");
    assert!(!msg.contains("184467440737"), "a wrapped integer in '{msg}'");
    e
}

fn conv_model(attrs: Vec<tract_onnx::pb::AttributeProto>) -> Onnx {
    let mut m = Onnx::new(3, 8, 8);
    m.conv("x", "y", 3, 4, 3, attrs).output("y");
    m
}

#[test]
fn the_test_models_are_valid() {
    // The models the tests break, unbroken, import and run: every rejection below is caused
    // by the one change each test makes.
    outcome(&conv_model(vec![ints("pads", &[1, 1, 1, 1])]).bytes()).unwrap();
    outcome(&zoo().bytes()).unwrap();
}

#[test]
fn huge_or_wrapping_window_attributes_are_errors() {
    // Pads of i64::MAX used to wrap the output size and allocate a wrapped buffer.
    rejects(&conv_model(vec![ints("pads", &[i64::MAX, 0, 0, 0])]), "pads");
    rejects(&conv_model(vec![ints("pads", &[1 << 20, 1 << 20, 1 << 20, 1 << 20])]), "over the limit");
    rejects(&conv_model(vec![ints("strides", &[1 << 40, 1])]), "strides");
    rejects(&conv_model(vec![ints("strides", &[0, 1])]), "strides");
    rejects(&conv_model(vec![ints("dilations", &[i64::MAX, 1])]), "dilations");
    rejects(&conv_model(vec![ints("dilations", &[1 << 19, 1])]), "does not fit");
}

#[test]
fn a_conv_kernel_of_height_zero_is_an_error() {
    // It used to give a 33x30 output from a 32x32 input.
    let mut m = Onnx::new(3, 8, 8);
    m.init(f32_tensor("w", &[2, 3, 0, 3], vec![])).node("Conv", &["x", "w"], "y", vec![]).output("y");
    rejects(&m, "every dimension");
}

#[test]
fn resize_to_an_absurd_size_is_an_error() {
    for scale in [1e30f32, f32::INFINITY, f32::NAN, 1e-30] {
        let mut m = Onnx::new(3, 8, 8);
        m.init(f32_tensor("s", &[4], vec![1.0, 1.0, scale, scale]))
            .node("Resize", &["x", "", "s"], "r", vec![])
            .conv("r", "y", 3, 4, 3, vec![])
            .output("y");
        rejects(&m, "scales");
    }
    for side in [1i64 << 40, i64::MAX, 0, -3] {
        let mut m = Onnx::new(3, 8, 8);
        m.init(i64_tensor("sz", &[4], vec![1, 3, side, side]))
            .node("Resize", &["x", "", "", "sz"], "r", vec![])
            .conv("r", "y", 3, 4, 1, vec![])
            .output("y");
        rejects(&m, "sizes");
    }
    // Each side in range, the tensor over the limit of values per tensor.
    let mut m = Onnx::new(3, 8, 8);
    m.init(i64_tensor("sz", &[4], vec![1, 3, 1 << 13, 1 << 13]))
        .node("Resize", &["x", "", "", "sz"], "r", vec![])
        .conv("r", "y", 3, 8, 1, vec![])
        .output("y");
    rejects(&m, &format!("over the limit of {MAX_TENSOR_VALUES} per tensor"));
}

#[test]
fn absurd_input_sizes_are_errors() {
    rejects(&Onnx::with_input(&[1, 3, 1, 1 << 40]), "a [1, C, H, W] image input is required");
    rejects(&Onnx::with_input(&[1, 3, 20000, 20000]), "over the limit");
    rejects(&Onnx::with_input(&[2, 3, 8, 8]), "a [1, C, H, W] image input with static C is required");
    rejects(&Onnx::with_input(&[1, -1, 8, 8]), "static C");
    // Dynamic spatial dims need a size: the error says how to give one.
    rejects(&Onnx::with_input(&[1, 3, -1, 8]), "--input-size");
}

#[test]
fn transposed_conv_with_a_huge_stride_is_an_error() {
    for (stride, needle) in [(1i64 << 40, "strides"), (1 << 19, "over the limit")] {
        let mut m = Onnx::new(3, 8, 8);
        m.init(f32_tensor("w", &[3, 2, 2, 2], vec![0.5; 24]))
            .node("ConvTranspose", &["x", "w"], "y", vec![ints("strides", &[stride, stride])])
            .output("y");
        rejects(&m, needle);
    }
}

#[test]
fn channel_padding_out_of_range_is_an_error() {
    for (pad, needle) in [(i64::MAX, "pads"), (1 << 40, "pads"), (1 << 20, "over the limit")] {
        let mut m = Onnx::new(3, 8, 8);
        m.init(i64_tensor("p", &[8], vec![0, 0, 0, 0, 0, pad, 0, 0])).node("Pad", &["x", "p"], "y", vec![]).output("y");
        rejects(&m, needle);
    }
}

#[test]
fn pooling_with_huge_pads_in_ceil_mode_is_an_error() {
    let mut m = Onnx::new(3, 8, 8);
    let attrs = vec![ints("kernel_shape", &[2, 2]), ints("pads", &[i64::MAX; 4]), int("ceil_mode", 1)];
    m.node("MaxPool", &["x"], "y", attrs).output("y");
    rejects(&m, "pads");
}

#[test]
fn nodes_without_inputs_are_errors() {
    for op in ["Identity", "Dropout", "Concat", "Relu"] {
        let mut m = Onnx::new(3, 8, 8);
        m.node(op, &[], "y", if op == "Concat" { vec![int("axis", 1)] } else { vec![] }).output("y");
        let e = rejects(&m, "input");
        assert!(e.to_string().contains(op), "{e}");
    }
}

#[test]
fn non_numeric_and_oversized_tensors_are_errors() {
    // A string initializer with raw data reached `unimplemented!` inside tract.
    let mut m = Onnx::new(3, 8, 8);
    let mut w = f32_tensor("w", &[4, 3, 1, 1], vec![]);
    (w.data_type, w.raw_data) = (8, vec![b'a'; 48]);
    m.init(w).node("Conv", &["x", "w"], "y", vec![]).output("y");
    rejects(&m, "element type 8");
    // Dimensions of 10^18 values with no data behind them.
    let mut m = Onnx::new(3, 8, 8);
    m.init(f32_tensor("w", &[1 << 30, 1 << 30, 1, 1], vec![])).node("Conv", &["x", "w"], "y", vec![]).output("y");
    rejects(&m, "over the limit");
    // An output channel count of 1M, declared but without its data.
    let mut m = Onnx::new(3, 8, 8);
    m.init(f32_tensor("w", &[1 << 20, 3, 1, 1], vec![0.1; 3])).node("Conv", &["x", "w"], "y", vec![]).output("y");
    rejects(&m, "initializer");
}

#[test]
fn a_reshape_whose_size_wraps_is_an_error() {
    // 4 x 4611686018427388154 wraps to 1000 in 64 bits.
    let mut m = Onnx::new(3, 1, 1);
    m.conv("x", "c", 3, 1000, 1, vec![])
        .node("Flatten", &["c"], "f", vec![])
        .init(i64_tensor("s", &[2], vec![4, 4611686018427388154]))
        .node("Reshape", &["f", "s"], "y", vec![])
        .output("y");
    rejects(&m, "does not hold 1000 values");
}

#[test]
fn a_one_dimensional_constant_broadcasts_along_width_not_channels() {
    // ONNX aligns a [C] constant with W of an NCHW map; it used to be applied per channel.
    let mut m = Onnx::new(3, 8, 8);
    m.init(f32_tensor("k", &[3], vec![1.0, 2.0, 3.0])).node("Add", &["x", "k"], "y", vec![]).output("y");
    rejects(&m, "does not broadcast per channel");
    let mut m = Onnx::new(3, 8, 8);
    m.init(f32_tensor("k", &[3, 1, 1], vec![1.0, 2.0, 3.0])).node("Add", &["x", "k"], "y", vec![]).output("y");
    outcome(&m.bytes()).unwrap();
}

#[test]
fn a_value_read_under_two_names_is_not_fused_away() {
    // Conv -> A; Identity(A) -> B; Relu(A) -> C; BatchNormalization(B) -> D. B's only reader is
    // the BatchNormalization, but A is read by the Relu too: folding the BatchNormalization into
    // the Conv (the use count of the name B is 1) used to scale C as well.
    let mut m = Onnx::new(3, 8, 8);
    m.conv("x", "a", 3, 4, 3, vec![ints("pads", &[1, 1, 1, 1])])
        .node("Identity", &["a"], "b", vec![])
        .node("Relu", &["a"], "c", vec![])
        .init(f32_tensor("gamma", &[4], vec![2.0; 4]))
        .init(f32_tensor("beta", &[4], vec![1.0; 4]))
        .init(f32_tensor("mean", &[4], vec![0.0; 4]))
        .init(f32_tensor("var", &[4], vec![1.0; 4]))
        .node("BatchNormalization", &["b", "gamma", "beta", "mean", "var"], "d", vec![])
        .output("c")
        .output("d");
    let plan = Plan::new(load_onnx_bytes(&m.bytes()).unwrap(), Preprocess::default()).unwrap();
    let mut s = Session::new(plan, SessionOptions { threads: Some(1), ..Default::default() }).unwrap();
    let pixels: Vec<u8> = (0..8 * 8 * 3).map(|i| (i * 37 % 256) as u8).collect();
    let out = s.run_full(Frame::rgb(8, 8, &pixels)).unwrap();
    let (c, d) = (&out[0].data, &out[1].data);
    let scale = 2.0 / (1.0f32 + 1e-5).sqrt();
    // C = relu(conv) and D = scale * conv + 1, so C = relu((D - 1) / scale).
    for (k, (&c, &d)) in c.iter().zip(d).enumerate() {
        let want = ((d - 1.0) / scale).max(0.0);
        assert!((c - want).abs() <= 1e-4 * (1.0 + want.abs()), "at {k}: relu output {c}, expected {want}");
    }
}

#[test]
fn a_hand_built_graph_is_validated_when_it_compiles() {
    use framecache::graph::{GraphBuilder, Op, Window};
    let build = || {
        let mut b = GraphBuilder::new(8, 8, 3);
        let win = Window { kh: 1, kw: 1, sh: 1, sw: 1, dh: 1, dw: 1, pad: [0; 4] };
        let x = b.conv(0, 4, win, 1, Default::default(), &mut || 0.1).unwrap();
        b.output(x);
        b.build()
    };
    // cout larger than the node's channels: gemm would write past each row.
    let mut g = build();
    let Op::Conv(c) = &mut g.nodes[1].op else { unreachable!() };
    c.cout = 64;
    c.weights = vec![0.1; 3 * 64];
    c.bias = vec![0.0; 64];
    let e = Plan::new(g, Preprocess::default()).unwrap_err();
    assert!(e.to_string().contains("its op gives 8x8x64"), "{e}");
    // Weights shorter than the window needs.
    let mut g = build();
    let Op::Conv(c) = &mut g.nodes[1].op else { unreachable!() };
    c.weights.truncate(5);
    let e = Plan::new(g, Preprocess::default()).unwrap_err();
    assert!(e.to_string().contains("weights: 5 values where the shape needs 12"), "{e}");
    // A node reading a later node.
    let mut g = build();
    g.nodes[1].inputs = vec![5];
    assert!(Plan::new(g, Preprocess::default()).unwrap_err().to_string().contains("does not come before"));
}

#[test]
fn frames_and_options_out_of_range_are_errors() {
    let plan = Plan::new(load_onnx_bytes(&conv_model(vec![]).bytes()).unwrap(), Preprocess::default()).unwrap();
    let mut s = Session::new(plan.clone(), SessionOptions::default()).unwrap();
    // 2^62 x 4 x 4 wraps to 0 bytes, which an empty buffer used to match.
    let e = s.process(Frame { width: 1 << 62, height: 4, channels: 4, data: &[] }).unwrap_err();
    assert!(matches!(e, Error::FrameData { .. }), "{e}");
    let nan = framecache::Mode::Threshold { metric: framecache::diff::Metric::MaxAbs, level: f32::NAN };
    for options in [
        SessionOptions { mode: nan, ..Default::default() },
        SessionOptions { threads: Some(100_000), ..Default::default() },
    ] {
        assert!(matches!(Session::new(plan.clone(), options), Err(Error::InvalidOption { .. })));
    }
}

/// Values that break integer fields: signs, zero, the edges of the engine's limits and of 32
/// and 64 bits.
const EXTREME_INTS: [i64; 12] =
    [i64::MIN, -1, 0, 1, 2, 7, (1 << 20) + 1, 1 << 31, 1 << 32, 1 << 62, i64::MAX - 1, i64::MAX];
const EXTREME_FLOATS: [f32; 7] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -1.0, 1e30, 1e-30];

/// One change to a model: what it is, and the edit.
type Mutation = (String, Box<dyn Fn(&mut GraphProto)>);

/// Every single-field mutation of `g`: each integer of each attribute, each integer-tensor
/// value, each dimension of each tensor, each value of small float tensors, and each node's
/// inputs removed.
fn mutations(g: &GraphProto) -> Vec<Mutation> {
    let mut out: Vec<Mutation> = Vec::new();
    for (ni, node) in g.node.iter().enumerate() {
        out.push((format!("{}: no inputs", node.name), Box::new(move |g| g.node[ni].input.clear())));
        for (ai, a) in node.attribute.iter().enumerate() {
            for &v in &EXTREME_INTS {
                out.push((
                    format!("{} {}.i = {v}", node.name, a.name),
                    Box::new(move |g| g.node[ni].attribute[ai].i = v),
                ));
                for k in 0..a.ints.len() {
                    let what = format!("{} {}[{k}] = {v}", node.name, a.name);
                    out.push((what, Box::new(move |g| g.node[ni].attribute[ai].ints[k] = v)));
                }
            }
        }
    }
    for (ti, t) in g.initializer.iter().enumerate() {
        for &v in &EXTREME_INTS {
            for k in 0..t.dims.len() {
                out.push((format!("{} dims[{k}] = {v}", t.name), Box::new(move |g| g.initializer[ti].dims[k] = v)));
            }
            for k in 0..t.int64_data.len() {
                out.push((format!("{}[{k}] = {v}", t.name), Box::new(move |g| g.initializer[ti].int64_data[k] = v)));
            }
        }
        if t.float_data.len() <= 16 {
            for &v in &EXTREME_FLOATS {
                for k in 0..t.float_data.len() {
                    out.push((
                        format!("{}[{k}] = {v}", t.name),
                        Box::new(move |g| g.initializer[ti].float_data[k] = v),
                    ));
                }
            }
        }
    }
    out
}

/// Runs every mutation of `g`: none may panic (a crash or an abort fails the whole test
/// binary). Returns how many were accepted and how many rejected.
fn sweep(g: &GraphProto, cases: Vec<Mutation>) -> (usize, usize) {
    let (mut ok, mut err) = (0, 0);
    for (what, edit) in cases {
        if std::env::var_os("FRAMECACHE_TRACE_SWEEP").is_some() {
            eprintln!("case {what}");
        }
        let mut m = Onnx { graph: g.clone() };
        edit(&mut m.graph);
        match catch_unwind(AssertUnwindSafe(|| outcome(&m.bytes()))) {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => {
                let msg = e.to_string();
                assert!(!msg.contains("184467440737"), "{what}: a wrapped integer in '{msg}'");
                err += 1;
            }
            Err(_) => panic!("{what}: panicked"),
        }
    }
    (ok, err)
}

#[test]
fn every_single_field_mutation_of_the_zoo_is_handled() {
    let zoo = zoo().graph;
    let cases = mutations(&zoo);
    let n = cases.len();
    let (ok, err) = sweep(&zoo, cases);
    eprintln!("zoo: {n} mutations, {ok} accepted, {err} rejected with an error");
    assert!(n > 1000 && err > n / 4, "the sweep must reach the checks: {ok} accepted, {err} rejected");
}

#[test]
fn mutations_of_the_real_models_are_handled() {
    use tract_onnx::prelude::Framework;
    let Some(data) = framecache_tests::shared_data_or_skip("mutations_of_the_real_models_are_handled") else {
        return;
    };
    // A fixed, evenly spread sample of each model's single-field mutations (all of them would
    // take minutes: every case re-encodes and re-parses the whole model).
    for model in ["mediapipe/selfie_segmentation.onnx", "imagenet/mobilenet_v2.onnx"] {
        let bytes = std::fs::read(data.join("models").join(model)).unwrap();
        let proto = tract_onnx::onnx().proto_model_for_read(&mut &*bytes).unwrap();
        let graph = proto.graph.unwrap();
        let all = mutations(&graph);
        let every = all.len().div_ceil(300);
        let cases: Vec<_> = all.into_iter().step_by(every).collect();
        let n = cases.len();
        let (ok, err) = sweep(&graph, cases);
        eprintln!("{model}: {n} mutations (every {every}th), {ok} accepted, {err} rejected with an error");
        assert!(err > 0, "{model}: the sweep must reach the checks");
    }
}
