//! The candle module built from the engine's IR (`framecache-train`) against the engine's own
//! full inference: every node of every real model, on a real frame.

use candle_core::Device;
use framecache::graph::Graph;
use framecache::{Frame, Plan, Preprocess, Session, SessionOptions};
use framecache_tests::{clip, max_abs_diff, percentile_abs_diff, shared_data_or_skip};
use framecache_train::net::{from_nhwc, to_nhwc, Net};

/// Runs `graph` in the engine and in candle on `frame` and returns the worst relative errors
/// over all nodes (a node's largest difference, and its 99th percentile, over its largest
/// value), with the node of the largest.
fn worst_node(graph: Graph, preprocess: Preprocess, frame: &Frame<'_>) -> (f32, f32, String) {
    let plan = Plan::new(graph.clone(), preprocess).unwrap();
    let mut session = Session::new(plan, SessionOptions::default()).unwrap();
    session.run_full(frame).unwrap();
    let net = Net::new(graph, &Device::Cpu).unwrap();
    let input = from_nhwc(session.activation(0), net.graph().input_shape(), &Device::Cpu).unwrap();
    let all: Vec<usize> = (1..net.graph().nodes.len()).collect();
    let values = net.forward(&[(0, input)], &all).unwrap();
    let mut worst = (0.0f32, 0.0f32, String::new());
    for (&i, t) in all.iter().zip(&values) {
        let node = &net.graph().nodes[i];
        // Flat outputs (dense, permuted, concatenated vectors) are `[1, n, 1, 1]` either way.
        let got = to_nhwc(t).unwrap();
        let (d, s) = max_abs_diff(&got, session.activation(i));
        let rel = d / s.max(1e-6);
        worst.1 = worst.1.max(percentile_abs_diff(&got, session.activation(i), 0.99) / s.max(1e-6));
        if rel > worst.0 {
            worst.0 = rel;
            worst.2 = format!("{} ({})", node.name, node.op.name());
        }
    }
    worst
}

#[test]
fn candle_forward_equals_engine_full_inference_on_real_models() {
    let Some(data) = shared_data_or_skip("candle_forward_equals_engine_full_inference_on_real_models") else {
        return;
    };
    let frames = clip(&data, "static_vtest_pedestrians").unwrap();
    let f = &frames[10];
    let frame = Frame::rgb(f.width, f.height, &f.data);
    let m = data.join("models");
    // The largest difference may reach `worst` of a node's largest value; 99% of the values
    // of every node must be within 1e-4 of it. BlazePose is ill-conditioned (segmentation
    // logits up to ~1700): on the same input tract and ONNX Runtime differ by 4.7e-4 of the
    // scale at their worst pixel (tests/real_models.rs), so its worst value gets 1e-2.
    let models = [
        ("imagenet/mobilenet_v2.onnx", Preprocess::imagenet(), 1e-4),
        ("imagenet/efficientnet_lite0.onnx", Preprocess::tf_symmetric(), 1e-4),
        ("mediapipe/selfie_segmentation.onnx", Preprocess::default(), 1e-4),
        ("mediapipe/face_detection_short_range.onnx", Preprocess::default(), 1e-4),
        ("mediapipe/palm_detection_lite.onnx", Preprocess::default(), 1e-4),
        ("mtcnn/mtcnn_onet.onnx", Preprocess::default(), 1e-4),
        ("mediapipe/pose_landmark_full.onnx", Preprocess::default(), 1e-2),
    ];
    for (name, pre, worst) in models {
        let graph = framecache::import::load_model(m.join(name), Default::default()).unwrap();
        let (max, p99, node) = worst_node(graph, pre, &frame);
        eprintln!("{name}: |candle - engine| / max |engine|: worst {max:.2e} (node {node}), p99 {p99:.2e}");
        assert!(max <= worst, "{name}: node {node} differs by {max:.2e} of its largest value");
        assert!(p99 <= 1e-4, "{name}: a node's 99th percentile differs by {p99:.2e} of its largest value");
    }
}

fn assets() -> std::path::PathBuf {
    framecache_tests::project_root().join("assets")
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("framecache-distill-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn distill(args: &[&str]) -> anyhow::Result<()> {
    use clap::Parser;
    let argv = ["framecache", "distill"].into_iter().chain(args.iter().copied());
    framecache_app::cli::run(framecache_app::cli::Cli::try_parse_from(argv)?)
}

/// A few frames of the bundled clip as a clip of their own (a held-out clip needs a name of
/// its own).
fn frames_of_bundled_clip(dir: &std::path::Path, every: usize) -> std::path::PathBuf {
    let out = dir.join("heldout");
    std::fs::create_dir_all(&out).unwrap();
    let clip = assets().join("clips/static_coin_motion");
    for (k, p) in framecache_app::clip::frame_paths(&clip).unwrap().iter().step_by(every).enumerate() {
        std::fs::copy(p, out.join(format!("frame_{:04}.png", k + 1))).unwrap();
    }
    out
}

/// `framecache distill` from a fresh clone's assets: a head trained for two epochs on the
/// bundled clip, written with its bundle, report and plot, loads as a bundle head and runs
/// (cached equal to full), and a second run with `--resume` continues from the checkpoint.
#[test]
fn distill_writes_a_head_that_runs_as_a_bundle() {
    let dir = temp("run");
    let held = frames_of_bundled_clip(&dir, 25);
    let out = dir.join("person.head.safetensors");
    let (teacher, backbone) =
        (assets().join("models/selfie_segmentation.onnx"), assets().join("models/mobilenet_v2.onnx"));
    let clip = assets().join("clips/static_coin_motion");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let args = [
        "--teacher",
        &s(&teacher),
        "--backbone",
        &s(&backbone),
        "--tap",
        "features.13.add.out",
        "--train",
        &s(&clip),
        "--holdout",
        &s(&held),
        "--stride",
        "15",
        "--copies",
        "1",
        "--channels",
        "8",
        "--epochs",
        "2",
        "--out",
        &s(&out),
    ];
    distill(&args).unwrap();
    for ext in ["", ".json", ".loss.png", ".bundle.toml"] {
        let p = format!("{}{ext}", out.display());
        assert!(std::path::Path::new(&p).is_file(), "{p} was not written");
    }
    assert!(!std::path::Path::new(&format!("{}.ckpt", out.display())).exists(), "the checkpoint was left behind");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{}.json", out.display())).unwrap()).unwrap();
    assert_eq!(report["loss"].as_array().unwrap().len(), 2);
    assert_eq!(report["holdout"][0]["frames"], 6);

    let bundle = framecache::Bundle::load(format!("{}.bundle.toml", out.display()), &[]).unwrap();
    let options = SessionOptions { mode: framecache::Mode::Exact, ..Default::default() };
    let mut cached = framecache::BundleSession::new(bundle.clone(), options.clone()).unwrap();
    let mut full = framecache::BundleSession::new(bundle, options).unwrap();
    for f in framecache_app::clip::Clip::open(&clip).unwrap().decode_all(Some(4), || {}).unwrap() {
        let a = cached.process(&f.as_frame()).unwrap();
        let b = full.run_full(&f.as_frame()).unwrap();
        let outputs = |r: &[framecache::HeadResult]| format!("{:?}", r.iter().map(|h| &h.output).collect::<Vec<_>>());
        assert!(outputs(&a) == outputs(&b), "cached and full heads differ");
    }

    // Two more epochs from the checkpoint a run leaves when it stops early: the loss curve
    // goes on from the first two.
    std::fs::copy(&out, format!("{}.ckpt", out.display())).unwrap();
    std::fs::write(format!("{}.ckpt.json", out.display()), r#"{"loss": [0.9, 0.8]}"#).unwrap();
    let mut resume = args.to_vec();
    let epochs = resume.len() - 3;
    resume[epochs] = "4";
    resume.push("--resume");
    distill(&resume).unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{}.json", out.display())).unwrap()).unwrap();
    let loss = report["loss"].as_array().unwrap();
    assert_eq!((loss.len(), loss[0].as_f64()), (4, Some(0.9f32 as f64)));
}

/// Bad input is a clear error, and nothing is written.
#[test]
fn distill_bad_input_is_a_clear_error_and_writes_nothing() {
    let dir = temp("bad");
    let held = frames_of_bundled_clip(&dir, 50);
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = dir.join("out").join("x.head.safetensors");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let s = |p: std::path::PathBuf| p.to_str().unwrap().to_owned();
    let (teacher, backbone) =
        (s(assets().join("models/selfie_segmentation.onnx")), s(assets().join("models/mobilenet_v2.onnx")));
    let clip = s(assets().join("clips/static_coin_motion"));
    let base = |teacher: &str, tap: &str, train: &str, out: &str| {
        vec![
            "--teacher".to_string(),
            teacher.into(),
            "--backbone".into(),
            backbone.clone(),
            "--tap".into(),
            tap.into(),
            "--train".into(),
            train.into(),
            "--holdout".into(),
            s(held.clone()),
            "--epochs".into(),
            "1".into(),
            "--out".into(),
            out.into(),
        ]
    };
    let o = s(out.clone());
    let cases = [
        (base("/nonexistent/teacher.onnx", "features.13.add.out", &clip, &o), "teacher.onnx"),
        (base(&teacher, "no.such.tensor", &clip, &o), "no tensor 'no.such.tensor'"),
        (base(&backbone, "features.13.add.out", &clip, &o), "not a map"),
        (base(&teacher, "features.13.add.out", &s(empty.clone()), &o), "no PNG or JPEG frames"),
        (base(&teacher, "features.13.add.out", &clip, &s(dir.join("out/x.onnx"))), ".safetensors"),
        (base(&teacher, "features.13.add.out", &s(held.clone()), &o), "both a training and a held-out clip"),
    ];
    for (args, needle) in cases {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let e = distill(&argv).expect_err(needle);
        let text = format!("{e:#}");
        assert!(text.contains(needle), "expected '{needle}' in: {text}");
        let left: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
        assert!(left.is_empty(), "{needle}: files were written: {left:?}");
    }
}

/// The shared bundle of the assets (MobileNetV2 with its classifier and the distilled person
/// head) runs from a fresh clone: both heads decode, and cached equals full.
#[test]
fn the_shared_bundle_runs_from_the_assets() {
    let bundle = framecache::Bundle::load(assets().join("bundles/mobilenet_v2_shared.toml"), &[]).unwrap();
    let options = SessionOptions { mode: framecache::Mode::Exact, ..Default::default() };
    let mut cached = framecache::BundleSession::new(bundle.clone(), options.clone()).unwrap();
    let mut full = framecache::BundleSession::new(bundle, options).unwrap();
    let clip = assets().join("clips/static_coin_motion");
    for f in framecache_app::clip::Clip::open(&clip).unwrap().decode_all(Some(6), || {}).unwrap() {
        let a = cached.process(&f.as_frame()).unwrap();
        let b = full.run_full(&f.as_frame()).unwrap();
        assert_eq!(a.len(), 2);
        assert!(matches!(a[1].output, Some(framecache::heads::Head::Mask { .. })), "the person head is not a mask");
        let outputs = |r: &[framecache::HeadResult]| format!("{:?}", r.iter().map(|h| &h.output).collect::<Vec<_>>());
        assert!(outputs(&a) == outputs(&b), "cached and full heads differ");
    }
}
