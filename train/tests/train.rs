//! The training core on synthetic data: the loop really trains, and a trained head written as
//! a graph file runs in the engine as candle ran it.

use candle_core::{Device, Tensor};
use framecache::graph::{Activation, GraphBuilder, Shape, Window};
use framecache::{Frame, Plan, Preprocess, Session, SessionOptions};
use framecache_train::distill::{build_head, fit, FitOptions, HeadSpec, Rng, Samples};
use framecache_train::net::{from_nhwc, to_nhwc, Net};

/// A student 1x1 convolution learns a known linear teacher (weights and bias) from its
/// outputs alone: the loop converges to the teacher, not just runs.
#[test]
fn a_student_learns_a_linear_teacher() {
    let (n, c, h, w, out) = (64, 4, 6, 6, 2);
    let teacher_w: Vec<f32> = (0..c * out).map(|i| (i as f32 - 3.5) / 4.0).collect(); // [ci][co]
    let teacher_b = [0.25f32, -0.5];
    let mut rng = Rng::new(3);
    let features: Vec<f32> = (0..n * c * h * w).map(|_| rng.range(-1.0, 1.0)).collect();
    let mut targets = vec![0.0; n * out * h * w];
    for s in 0..n {
        for p in 0..h * w {
            for co in 0..out {
                let mut v = teacher_b[co];
                for ci in 0..c {
                    v += features[(s * c + ci) * h * w + p] * teacher_w[ci * out + co];
                }
                targets[(s * out + co) * h * w + p] = v;
            }
        }
    }
    let samples = Samples {
        n,
        feature_shapes: vec![[c, h, w]],
        target_shape: [out, h, w],
        features: vec![features],
        targets,
        weights: vec![1.0; n * h * w],
    };
    let mut b = GraphBuilder::new(h, w, c);
    let one = Window { kh: 1, kw: 1, sh: 1, sw: 1, dh: 1, dw: 1, pad: [0; 4] };
    let y = b.conv(0, out, one, 1, Activation::Identity, &mut || 0.0).unwrap();
    b.output(y);
    let net = Net::new(b.build(), &Device::Cpu).unwrap();
    let options = FitOptions { epochs: 150, batch: 16, learning_rate: 2e-2, weight_decay: 0.0, seed: 1 };
    let curve = fit(&net, &samples, &options, |_, _, _, _| {}).unwrap();
    assert!(curve[0] > 0.1, "the untrained student is already right: {}", curve[0]);
    assert!(*curve.last().unwrap() < 1e-4, "the loss stayed at {:?}", curve.last());
    let learned = net.to_graph().unwrap();
    let framecache::graph::Op::Conv(conv) = &learned.nodes[1].op else { panic!("not a conv") };
    for (a, b) in conv.weights.iter().zip(&teacher_w).chain(conv.bias.iter().zip(&teacher_b)) {
        assert!((a - b).abs() < 1e-2, "learned {a}, the teacher has {b}");
    }
}

/// A head of the distillation family (on a 3-channel tap, so the engine can run it alone):
/// candle's forward equals the engine's, and its graph file runs bit for bit as the graph.
#[test]
fn a_head_runs_in_the_engine_as_in_candle_and_through_its_file() {
    let mut rng = Rng::new(11);
    let head =
        build_head(&[Shape::new(10, 14, 3)], 1, Activation::Sigmoid, HeadSpec { channels: 8, upsample: 2 }, &mut rng)
            .unwrap();
    let pixels: Vec<u8> = (0..14 * 10 * 3).map(|i| (i * 53 % 256) as u8).collect();
    let frame = Frame::rgb(14, 10, &pixels);
    let run = |g: framecache::graph::Graph| {
        let mut s = Session::new(Plan::new(g, Preprocess::default()).unwrap(), SessionOptions::default()).unwrap();
        let out = s.run_full(frame).unwrap().remove(0).data;
        (out, s.activation(0).to_vec())
    };
    let (engine, input) = run(head.clone());
    let net = Net::new(head.clone(), &Device::Cpu).unwrap();
    let x = from_nhwc(&input, head.input_shape(), &Device::Cpu).unwrap();
    let out = head.outputs[0].node;
    let y: Tensor = net.forward(&[(0, x)], &[out]).unwrap().remove(0);
    let candle = to_nhwc(&y).unwrap();
    assert_eq!(candle.len(), 40 * 56);
    let worst = candle.iter().zip(&engine).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "candle and the engine differ by {worst}");
    let bytes = framecache::import::graph_file::to_bytes(&net.to_graph().unwrap(), "test").unwrap();
    let loaded =
        framecache::import::load_model_bytes(&bytes, std::path::Path::new("h.safetensors"), Default::default())
            .unwrap();
    let (again, _) = run(loaded);
    assert!(again.iter().zip(&engine).all(|(a, b)| a.to_bits() == b.to_bits()), "the file changed the head");
}

/// A head on two taps (context at stride 4, detail at stride 2) of a small backbone, attached
/// by the engine and written through its file: the engine's output equals candle's forward
/// from the taps' values.
#[test]
fn a_two_tap_head_attached_to_a_backbone_equals_candle() {
    let mut rng = Rng::new(5);
    let mut b = GraphBuilder::new(16, 24, 3);
    let s2 = Window { kh: 3, kw: 3, sh: 2, sw: 2, dh: 1, dw: 1, pad: [1; 4] };
    let mut w = || rng.range(-0.5, 0.5);
    let fine = b.conv(0, 6, s2, 1, Activation::Relu, &mut w).unwrap();
    let coarse = b.conv(fine, 10, s2, 1, Activation::Relu, &mut w).unwrap();
    b.output(coarse);
    let backbone = b.build();
    let shapes = [backbone.nodes[coarse].shape, backbone.nodes[fine].shape];
    let spec = HeadSpec { channels: 8, upsample: 1 };
    let head = build_head(&shapes, 1, Activation::Sigmoid, spec, &mut rng).unwrap();
    assert_eq!(head.inputs(), 2);
    let bytes = framecache::import::graph_file::to_bytes(&head, "test").unwrap();
    let loaded =
        framecache::import::load_model_bytes(&bytes, std::path::Path::new("h.safetensors"), Default::default())
            .unwrap();
    let (plan, out) =
        framecache_train::distill::attach(backbone, Preprocess::default(), loaded, &[coarse, fine]).unwrap();
    let pixels: Vec<u8> = (0..24 * 16 * 3).map(|i| (i * 29 % 256) as u8).collect();
    let mut s = Session::new(plan.clone(), SessionOptions::default()).unwrap();
    s.run_full(Frame::rgb(24, 16, &pixels)).unwrap();
    let feed = |n: usize| from_nhwc(s.activation(n), plan.graph().nodes[n].shape, &Device::Cpu).unwrap();
    let net = Net::new(head.clone(), &Device::Cpu).unwrap();
    let y = net.forward(&[(0, feed(coarse)), (1, feed(fine))], &[head.outputs[0].node]).unwrap().remove(0);
    let candle = to_nhwc(&y).unwrap();
    assert_eq!(candle.len(), plan.graph().nodes[out].shape.len());
    let worst = candle.iter().zip(s.activation(out)).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "candle and the engine differ by {worst}");
}

/// An int8 convolution (a grouped one, so the per-group scales are exercised) runs in candle
/// as fake quantization: the same values as the engine's integer kernel, within float
/// rounding.
#[test]
fn an_int8_convolution_runs_in_candle_as_in_the_engine() {
    let mut rng = Rng::new(9);
    let mut b = GraphBuilder::new(9, 11, 3);
    let k3 = Window { kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, pad: [1; 4] };
    let x = b.conv(0, 8, k3, 1, Activation::Identity, &mut || rng.range(-1.0, 1.0)).unwrap();
    let y = b.conv(x, 16, k3, 2, Activation::Relu, &mut || rng.range(-0.5, 0.5)).unwrap();
    b.output(y);
    let mut g = b.build();
    let framecache::graph::Op::Conv(conv) = &mut g.nodes[y].op else { panic!("not a conv") };
    let cout_g = conv.cout / conv.groups;
    let per_group = conv.weights.len() / conv.groups;
    let mut scale = vec![0.0f32; conv.cout];
    for (i, w) in conv.weights.iter().enumerate() {
        let co = i / per_group * cout_g + i % cout_g;
        scale[co] = scale[co].max(w.abs() / 127.0);
    }
    let weights: Vec<i8> = conv
        .weights
        .iter()
        .enumerate()
        .map(|(i, w)| (w / scale[i / per_group * cout_g + i % cout_g]).round() as i8)
        .collect();
    conv.quant = Some(Box::new(framecache::graph::ConvQuant {
        input_scale: 0.05,
        input_zero: 100,
        weight_scale: scale,
        weights,
    }));
    let pixels: Vec<u8> = (0..11 * 9 * 3).map(|i| (i * 71 % 256) as u8).collect();
    let mut s = Session::new(Plan::new(g.clone(), Preprocess::default()).unwrap(), SessionOptions::default()).unwrap();
    s.run_full(Frame::rgb(11, 9, &pixels)).unwrap();
    let engine = s.activation(y).to_vec();
    let net = Net::new(g.clone(), &Device::Cpu).unwrap();
    let input = from_nhwc(s.activation(0), g.input_shape(), &Device::Cpu).unwrap();
    let out = net.forward(&[(0, input)], &[y]).unwrap().remove(0);
    let candle = to_nhwc(&out).unwrap();
    let scale = engine.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let worst = candle.iter().zip(&engine).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(scale > 0.1 && worst <= 1e-4 * scale, "candle and the engine differ by {worst} (scale {scale})");
}
