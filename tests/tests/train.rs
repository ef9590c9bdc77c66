//! The candle module built from the engine's IR (`framecache-train`) against the engine's own
//! full inference: every node of every real model, on a real frame.

use candle_core::Device;
use framecache::graph::Graph;
use framecache::{Frame, Plan, Preprocess, Session, SessionOptions};
use framecache_tests::{cli, clip, exported_in_tract, max_abs_diff, percentile_abs_diff, shared_data_or_skip};
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

fn temp(name: &str) -> framecache_tests::Scratch {
    framecache_tests::Scratch::new(&format!("distill-{name}"))
}

fn distill(args: &[&str]) -> anyhow::Result<()> {
    cli("distill", args)
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
        // The backbone at another size than its file's 224x224 (a 16:9 frame's aspect): the
        // head's taps and the bundle written beside it follow.
        "--input-size",
        "288x160",
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
    let input = bundle.backbones[0].plan.graph().input_shape();
    assert_eq!((input.w, input.h), (288, 160), "the bundle does not run the backbone at the head's size");
    let options = SessionOptions { mode: framecache::Mode::Exact, ..Default::default() };
    let mut cached = framecache::BundleSession::new(bundle.clone(), options.clone()).unwrap();
    let mut full = framecache::BundleSession::new(bundle, options).unwrap();
    for f in framecache_app::clip::Clip::open(&clip).unwrap().decode_all(Some(4), || {}).unwrap() {
        let a = cached.process(f.as_frame()).unwrap();
        let b = full.run_full(f.as_frame()).unwrap();
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

/// A box teacher (a bundle's detector head): the head learns the map of its boxes, and the
/// held-out report counts boxes matched at IoU 0.5. BlazeFace (in `assets/bundles/people.toml`)
/// finds the bunny's face on most frames of fast_animation_bunny. A bundle without the head's
/// name, or a head that gives no boxes, is a clear error, and nothing is written.
#[test]
fn distill_learns_a_box_teacher_and_counts_matched_boxes() {
    let Some(data) = framecache_tests::shared_data_or_skip("distill_learns_a_box_teacher_and_counts_matched_boxes")
    else {
        return;
    };
    let dir = temp("boxes");
    let bunny = data.join("video/fast_animation_bunny");
    let held = dir.join("bunny_held");
    std::fs::create_dir_all(&held).unwrap();
    for (k, p) in framecache_app::clip::frame_paths(&bunny).unwrap().iter().skip(5).step_by(10).enumerate() {
        std::fs::copy(p, held.join(format!("frame_{:04}.png", k + 1))).unwrap();
    }
    let out = dir.join("out").join("face.head.safetensors");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let (teacher, backbone) = (s(&assets().join("bundles/people.toml")), s(&assets().join("models/mobilenet_v2.onnx")));
    let args = |head: Option<&str>| {
        let mut a = vec!["--teacher".to_string(), teacher.clone()];
        if let Some(h) = head {
            a.extend(["--teacher-output".to_string(), h.into()]);
        }
        let rest = ["--backbone", &backbone, "--tap", "features.13.add.out", "--train", &s(&bunny), "--holdout"];
        a.extend(rest.map(String::from));
        a.extend([s(&held), "--stride".into(), "20".into(), "--copies".into(), "1".into()]);
        a.extend(["--channels", "8", "--epochs", "1", "--out"].map(String::from));
        a.push(s(&out));
        a
    };
    for (head, needle) in [(None, "needs --teacher-output"), (Some("person"), "no box detector")] {
        let a = args(head);
        let e = distill(&a.iter().map(String::as_str).collect::<Vec<_>>()).expect_err(needle);
        assert!(format!("{e:#}").contains(needle), "expected '{needle}' in: {e:#}");
        assert_eq!(std::fs::read_dir(out.parent().unwrap()).unwrap().count(), 0, "{needle}: files were written");
    }
    let a = args(Some("faces"));
    distill(&a.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{}.json", out.display())).unwrap()).unwrap();
    let b = &report["holdout"][0]["boxes"];
    let n = |k: &str| b[k].as_u64().unwrap_or_else(|| panic!("no box count '{k}' in {b}"));
    assert!(n("teacher") >= 3, "the teacher found {} boxes on the held-out bunny frames", n("teacher"));
    assert!(n("matched") <= n("teacher").min(n("student")));
    // The head's 14x14 grid holds most of the teacher's boxes.
    assert!(2 * n("grid_matched") >= n("teacher"), "the grid keeps {} of {} boxes", n("grid_matched"), n("teacher"));
    assert!(report["holdout"][0]["mean_iou"].is_number() || report["holdout"][0]["frames_with_mask"] == 0);
}

/// The shared bundle of the assets (MobileNetV2 with its classifier and the distilled person
/// and face heads) runs from a fresh clone: every head decodes, and cached equals full.
#[test]
fn the_shared_bundle_runs_from_the_assets() {
    let bundle = framecache::Bundle::load(assets().join("bundles/mobilenet_v2_shared.toml"), &[]).unwrap();
    let options = SessionOptions { mode: framecache::Mode::Exact, ..Default::default() };
    let mut cached = framecache::BundleSession::new(bundle.clone(), options.clone()).unwrap();
    let mut full = framecache::BundleSession::new(bundle, options).unwrap();
    let clip = assets().join("clips/static_coin_motion");
    for f in framecache_app::clip::Clip::open(&clip).unwrap().decode_all(Some(6), || {}).unwrap() {
        let a = cached.process(f.as_frame()).unwrap();
        let b = full.run_full(f.as_frame()).unwrap();
        assert_eq!(a.len(), 3);
        for h in &a[1..] {
            assert!(
                matches!(h.output, Some(framecache::heads::Head::Mask { .. })),
                "the {} head is not a mask",
                h.name
            );
        }
        let outputs = |r: &[framecache::HeadResult]| format!("{:?}", r.iter().map(|h| &h.output).collect::<Vec<_>>());
        assert!(outputs(&a) == outputs(&b), "cached and full heads differ");
    }
}

/// The shared bundle (`aspect = "turn"`) on a phone's camera: a portrait frame, 9:16 or an
/// upright 3:4 (the phone apps' camera), runs MobileNetV2 and both heads at 160x288 instead of
/// squashing it into 288x160, and a landscape frame turns it back. Cached equals full through
/// every change, the first frame of each size is computed in full, the masks come out turned,
/// and the turned backbone computes what MobileNetV2 imported at 160x288 computes (the
/// importer's own shapes). `aspect = "follow"` runs the 3:4 frame at 160x224, again as the
/// importer's MobileNetV2 at that size.
#[test]
fn the_shared_bundle_turns_with_a_portrait_frame() {
    use framecache::heads::Head;
    use framecache::{Aspect, BundleSession, HeadResult, Mode, Reset};
    let bundle = framecache::Bundle::load(assets().join("bundles/mobilenet_v2_shared.toml"), &[]).unwrap();
    let options = SessionOptions { mode: Mode::Exact, threads: Some(2), ..Default::default() };
    let mut cached = BundleSession::new(bundle.clone(), options.clone()).unwrap();
    let mut full = BundleSession::new(bundle.clone(), options.clone()).unwrap();
    let clip = assets().join("clips/static_coin_motion");
    let wide = framecache_app::clip::Clip::open(&clip).unwrap().decode_all(Some(4), || {}).unwrap();
    // The middle `w` columns of each 320x180 frame.
    let middle = |w: usize| -> Vec<Vec<u8>> {
        let x0 = (320 - w) / 2;
        wide.iter()
            .map(|f| (0..180).flat_map(|y| &f.data[(y * 320 + x0) * 3..(y * 320 + x0 + w) * 3]).copied().collect())
            .collect()
    };
    let (tall, upright) = (middle(100), middle(135));
    let frame = |fw: usize, i: usize| match fw {
        100 => Frame::rgb(100, 180, &tall[i]),
        135 => Frame::rgb(135, 180, &upright[i]),
        _ => wide[i].as_frame(),
    };
    let outputs = |r: &[HeadResult]| format!("{:?}", r.iter().map(|h| &h.output).collect::<Vec<_>>());
    // (frame width, index): 320 wide, 100 (9:16) or 135 (3:4).
    let order = [(320, 0), (320, 1), (100, 1), (100, 2), (135, 2), (135, 3), (320, 3), (100, 0)];
    for (k, &(fw, i)) in order.iter().enumerate() {
        let a = cached.process(frame(fw, i)).unwrap();
        let b = full.run_full(frame(fw, i)).unwrap();
        assert!(outputs(&a) == outputs(&b), "frame {k}: cached and full heads differ");
        let input = cached.session(0).plan().graph().input_shape();
        let (w, h) = if fw == 320 { (288, 160) } else { (160, 288) };
        assert_eq!((input.w, input.h), (w, h), "frame {k}");
        for r in &a[1..] {
            match &r.output {
                Some(Head::Mask { width, height, .. }) => assert_eq!((*width, *height), (w / 4, h / 4), "{}", r.name),
                other => panic!("the {} head gave {other:?}", r.name),
            }
        }
        let reset = cached.session(0).last_stats().unwrap().reset;
        if k > 0 && fw != order[k - 1].0 {
            assert!(matches!(reset, Some(Reset::FrameSize { .. })), "frame {k} changed size, reset {reset:?}");
        } else if k > 0 {
            assert!(!matches!(reset, Some(Reset::FrameSize { .. })), "frame {k} kept its size, reset {reset:?}");
        }
    }
    let plan = &bundle.backbones[0].plan;
    for ((fw, fh), want) in [((500, 500), (160, 288)), ((1000, 100), (160, 288)), ((1080, 1440), (288, 160))] {
        assert_eq!(plan.input_for_frame(fw, fh), want, "a {fw}x{fh} frame, turn");
    }
    // The backbone at another size against MobileNetV2 imported at that size: turned, on the
    // last (9:16) frame, and with `follow` on a 3:4 frame.
    let onnx = assets().join("models/mobilenet_v2.onnx");
    let imported = |w: usize, h: usize, aspect: Aspect| {
        let options = framecache::import::ImportOptions { input_size: Some((w, h)), ..Default::default() };
        let graph = framecache::import::load_model(&onnx, options).unwrap();
        Plan::new(graph, Preprocess { aspect, ..bundle.backbones[0].plan.preprocess().clone() }).unwrap()
    };
    let same = |ours: &Session, theirs: &Session, names: &[&str]| {
        for name in names {
            let at = |s: &Session| s.activation(s.plan().graph().tensors[*name]).to_vec();
            let (d, scale) = max_abs_diff(&at(ours), &at(theirs));
            assert!(d <= 1e-5 * scale.max(1.0), "{name}: differs by {d} (scale {scale})");
        }
    };
    let mut reference = Session::new(imported(160, 288, Aspect::Fixed), options.clone()).unwrap();
    reference.run_full(frame(100, 0)).unwrap();
    same(full.session(0), &reference, &["features.3.add.out", "features.13.add.out", "logits"]);

    let follow = imported(288, 160, Aspect::Follow);
    assert_eq!(follow.total_stride(), 32);
    let sizes =
        [((500, 500), (160, 160)), ((1000, 100), (160, 288)), ((1080, 1440), (224, 160)), ((1920, 1080), (160, 288))];
    for ((fw, fh), want) in sizes {
        assert_eq!(follow.input_for_frame(fw, fh), want, "a {fw}x{fh} frame, follow");
    }
    let mut session = Session::new(follow, options.clone()).unwrap();
    session.run_full(frame(135, 0)).unwrap();
    let input = session.plan().graph().input_shape();
    assert_eq!((input.w, input.h), (160, 224));
    let mut reference = Session::new(imported(160, 224, Aspect::Fixed), options).unwrap();
    reference.run_full(frame(135, 0)).unwrap();
    same(&session, &reference, &["features.13.add.out", "logits"]);
}

/// Outputs of the model file at `path` (with `pre`) on `frame`, full inference.
fn run_file(path: &std::path::Path, pre: Preprocess, frame: &Frame<'_>) -> Vec<Vec<f32>> {
    let graph = framecache::import::load_model(path, Default::default()).unwrap();
    let mut s = Session::new(Plan::new(graph, pre).unwrap(), SessionOptions::default()).unwrap();
    s.run_full(frame).unwrap().into_iter().map(|o| o.data).collect()
}

/// `framecache compress --method cluster` on the bundled MobileNetV2: the file it writes loads
/// as the codebook lookup of the clustered weights (bit for bit against the same graph
/// clustered in memory), is over 4x smaller in its weights at 64 centroids, carries its
/// sidecar (labels resolved from the new folder), bias correction brings it closer to the
/// source, and `bench --variant` measures it against the source in one run.
#[test]
fn compress_cluster_writes_a_model_every_command_runs() {
    let dir = temp("cluster");
    let out = dir.join("mobilenet_v2.cluster.safetensors");
    let model = assets().join("models/mobilenet_v2.onnx");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    cli("compress", &[&s(&model), "--method", "cluster", "--centroids", "64", "--out", &s(&out)]).unwrap();
    for ext in ["", ".toml", ".json"] {
        assert!(framecache_app::args::with_ext(&out, ext).is_file(), "no {ext} beside the model");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(framecache_app::args::with_ext(&out, ".json")).unwrap()).unwrap();
    let (float, packed) =
        (report["result"]["weight_bytes_float"].as_f64().unwrap(), report["result"]["weight_bytes"].as_f64().unwrap());
    assert!(float / packed > 4.0, "weights {float} -> {packed} bytes");
    assert!(report["bytes"].as_f64().unwrap() < report["source_bytes"].as_f64().unwrap() / 4.0);

    // The same clustering in memory, run by the engine, equals the file bit for bit.
    let bytes = std::fs::read(&model).unwrap();
    let mut graph = framecache::import::load_unfused(&bytes, &model, Default::default()).unwrap();
    framecache_train::cluster::cluster(&mut graph, framecache_train::cluster::Centroids::Fixed(64)).unwrap();
    let graph = framecache::import::fused(graph);
    let clip = assets().join("clips/static_coin_motion");
    let frame0 = framecache_app::clip::Clip::open(&clip).unwrap().decode(0).unwrap();
    let frame = frame0.as_frame();
    let mut session =
        Session::new(Plan::new(graph, Preprocess::imagenet()).unwrap(), SessionOptions::default()).unwrap();
    let expected: Vec<Vec<f32>> = session.run_full(frame).unwrap().into_iter().map(|o| o.data).collect();
    let got = run_file(&out, Preprocess::imagenet(), &frame);
    assert_eq!(expected.len(), got.len());
    for (a, b) in expected.iter().zip(&got) {
        assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "the file differs from its graph");
    }
    // Its plan (`framecache compile`) keeps the codebooks: the graph file's size plus the
    // sidecar and the labels, and the same bits.
    let plan = dir.join("mobilenet_v2.cluster.fcplan");
    cli("compile", &[&s(&out), "--out", &s(&plan)]).unwrap();
    let (plan_bytes, file_bytes) = (std::fs::metadata(&plan).unwrap().len(), std::fs::metadata(&out).unwrap().len());
    assert!(plan_bytes < file_bytes + 64 * 1024, "plan {plan_bytes} bytes, clustered file {file_bytes}");
    let from_plan = framecache::SidecarModel::from_plan(&std::fs::read(&plan).unwrap(), &plan).unwrap();
    assert_eq!(from_plan.config.preprocess.resample, framecache::Resample::Pil, "the sidecar's, carried over");
    // The same preprocessing as `got` above.
    let graph = from_plan.plan.graph().clone();
    let mut session =
        Session::new(Plan::new(graph, Preprocess::imagenet()).unwrap(), SessionOptions::default()).unwrap();
    let planned: Vec<Vec<f32>> = session.run_full(frame).unwrap().into_iter().map(|o| o.data).collect();
    assert!(planned.iter().flatten().zip(got.iter().flatten()).all(|(x, y)| x.to_bits() == y.to_bits()));
    // Bias correction: coarse codebooks (16 centroids) with it are closer to the source than
    // without, on frames the correction never saw.
    let calib = frames_of_bundled_clip(&dir, 20);
    let coarse = |name: &str, extra: &[&str]| {
        let out = dir.join(name);
        cli(
            "compress",
            &[&[s(&model).as_str(), "--method", "cluster", "--centroids", "16", "--out", &s(&out)], extra].concat(),
        )
        .unwrap();
        out
    };
    let (plain, corrected) =
        (coarse("k16.safetensors", &[]), coarse("k16bc.safetensors", &["--calibrate", &s(&calib)]));
    let clip_frames = framecache_app::clip::Clip::open(&clip).unwrap();
    let (mut e_plain, mut e_corrected) = (0.0f64, 0.0f64);
    for k in (10..clip_frames.len()).step_by(20) {
        let f = clip_frames.decode(k).unwrap();
        let want = run_file(&model, Preprocess::imagenet(), &f.as_frame()).remove(0);
        let err = |p: &std::path::Path| {
            let got = run_file(p, Preprocess::imagenet(), &f.as_frame()).remove(0);
            got.iter().zip(&want).map(|(a, b)| f64::from((a - b).abs())).sum::<f64>()
        };
        e_plain += err(&plain);
        e_corrected += err(&corrected);
    }
    assert!(e_corrected < e_plain, "bias correction: logit error {e_plain} -> {e_corrected}");

    // The sidecar resolves (labels included) through the model loader every command uses.
    let loaded = framecache_app::model::Model::load(&out, None, None, None).unwrap();
    assert_eq!(loaded.labels.as_ref().map(Vec::len), Some(1000));
    // The C ABI runs it, from its file (sidecar beside it) and from memory.
    framecache_tests::c_abi_runs(&out);
    let sidecar = std::fs::read_to_string(framecache_app::args::with_ext(&out, ".toml")).unwrap();
    let m = framecache::SidecarModel::from_bytes(&std::fs::read(&out).unwrap(), &sidecar, None).unwrap();
    assert_eq!(m.plan.graph().outputs.len(), 1);

    // bench --variant: the variant's full and cached runs, with fidelity against the source.
    let json = dir.join("bench.json");
    cli(
        "bench",
        &[
            "--model",
            &s(&model),
            "--variant",
            &s(&out),
            "--clip",
            &s(&clip),
            "--frames",
            "6",
            "--warmup",
            "1",
            "--mode",
            "full,threshold=8",
            "--baseline",
            "none",
            "--threads",
            "1",
            "--json",
            &s(&json),
        ],
    )
    .unwrap();
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let runs = report["runs"].as_array().unwrap();
    let name = "mobilenet_v2.cluster.safetensors";
    let variant: Vec<&serde_json::Value> = runs.iter().filter(|r| r["variant"] == name).collect();
    assert_eq!(variant.len(), 2, "the variant's full and threshold=8 runs: {runs:?}");
    for r in &variant {
        let agree = r["fp32_top1_agreement"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&agree));
        assert!((0.0..=1.0).contains(&r["fp32_top5_overlap"].as_f64().unwrap()));
        // Clustered weights move every logit a little, so the softmax differs from fp32's.
        assert!(r["fp32_kl_mean"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["speedup_vs_fp32"].as_f64().unwrap() > 0.0);
    }
    // The source's own runs are not a variant's, and take part in the skip-N verdicts.
    assert!(runs.iter().any(|r| r["variant"].is_null() && r["mode"] == "threshold=8"));
}

#[test]
fn compress_bad_input_is_a_clear_error_and_writes_nothing() {
    let dir = temp("cluster-bad");
    let out_dir = dir.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let model = s(&assets().join("models/mobilenet_v2.onnx"));
    let out = s(&out_dir.join("m.safetensors"));
    let garbage = dir.join("garbage.onnx");
    std::fs::write(&garbage, b"not a model").unwrap();
    std::fs::write(dir.join("garbage.onnx.toml"), "[preprocess]\nfit = \"stretch\"\n").unwrap();
    let cases: [(Vec<String>, &str); 6] = [
        (vec![model.clone(), "--centroids".into(), "300".into()], "2 to 256"),
        (vec![model.clone(), "--centroids".into(), "1".into()], "2 to 256"),
        (vec![model.clone(), "--centroids".into(), "256".into(), "--max-error".into(), "0.1".into()], "cannot be used"),
        (vec![model.clone(), "--max-error".into(), "0".into()], "above 0"),
        (vec![s(&garbage)], "garbage.onnx"),
        (vec!["/nonexistent/m.onnx".into()], "m.onnx"),
    ];
    for (mut args, needle) in cases {
        args.splice(1..1, ["--method".to_string(), "cluster".into(), "--out".into(), out.clone()]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let e = cli("compress", &argv).expect_err(needle);
        let text = format!("{e:#}");
        assert!(text.contains(needle), "expected '{needle}' in: {text}");
        let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
        assert!(left.is_empty(), "{needle}: files were written: {left:?}");
    }
    // Pruning: impossible ratios, no frames, a model with no inverted-residual block.
    let clip = s(&assets().join("clips/static_coin_motion"));
    let head = s(&assets().join("models/person_mobilenet_v2.head.safetensors"));
    let sidecar = s(&assets().join("models/mobilenet_v2.onnx.toml"));
    let prune_cases: [(Vec<&str>, &str); 5] = [
        (vec![&model, "--ratio", "1.5", "--calibrate", &clip], "above 0 and below 1"),
        (vec![&model, "--ratio", "0", "--calibrate", &clip], "above 0 and below 1"),
        (vec![&model], "needs --calibrate"),
        (vec![&model, "--rounds", "0", "--calibrate", &clip], "--rounds must be at least 1"),
        (vec![&head, "--preprocess", &sidecar, "--calibrate", &clip], "no inverted-residual block"),
    ];
    for (extra, needle) in prune_cases {
        let argv = [&["--method", "prune", "--out", out.as_str()][..], &extra[..]].concat();
        let text = format!("{:#}", cli("compress", &argv).unwrap_err());
        assert!(text.contains(needle), "expected '{needle}' in: {text}");
        assert!(std::fs::read_dir(&out_dir).unwrap().next().is_none(), "{needle}: a file was written");
    }
    // More centroids than a layer has weights names the layer (selfie segmentation's 16-channel
    // depthwise convolutions have 144).
    let selfie = s(&assets().join("models/selfie_segmentation.onnx"));
    let argv = ["--method", "cluster", "--out", &out, &selfie, "--centroids", "200"];
    let text = format!("{:#}", cli("compress", &argv).unwrap_err());
    assert!(text.contains("only 144 weights"), "{text}");
    assert!(std::fs::read_dir(&out_dir).unwrap().next().is_none());
}

/// The model's input tensor (NHWC) for `frame`, and every node's output on it.
fn activations(graph: &Graph, pre: &Preprocess, frame: &Frame<'_>) -> (Vec<f32>, Vec<Vec<f32>>) {
    let plan = Plan::new(graph.clone(), pre.clone()).unwrap();
    let mut s = Session::new(plan, SessionOptions::default()).unwrap();
    s.run_full(frame).unwrap();
    (s.activation(0).to_vec(), (0..graph.nodes.len()).map(|i| s.activation(i).to_vec()).collect())
}

/// The Haar rewrite of the first convolution is exact: with all four bands, its output equals
/// the original's to 1e-5 of its scale (every later node to 1e-4), on a real frame, for both
/// bundled models.
/// Dropping bands and refitting the first convolution on frames brings the output back closer
/// to the original's than dropping them alone, on frames the fit never saw.
#[test]
fn the_wavelet_rewrite_is_exact_and_refitting_recovers_dropped_bands() {
    use framecache_train::wavelet::{self, Band};
    let clip = framecache_app::clip::Clip::open(&assets().join("clips/static_coin_motion")).unwrap();
    let frame0 = clip.decode(40).unwrap();
    let frame = frame0.as_frame();
    for (name, pre) in
        [("mobilenet_v2.onnx", Preprocess::imagenet()), ("selfie_segmentation.onnx", Preprocess::default())]
    {
        let path = assets().join("models").join(name);
        let bytes = std::fs::read(&path).unwrap();
        let graph = framecache::import::load_unfused(&bytes, &path, Default::default()).unwrap();
        let rewritten = wavelet::rewrite(&graph, &Band::ALL).unwrap();
        assert_eq!(rewritten.nodes.len(), graph.nodes.len() + 1);
        let (_, a) = activations(&graph, &pre, &frame);
        let (_, b) = activations(&rewritten, &pre, &frame);
        // The rewritten convolution to 1e-5 of its scale; rounding then carries through the
        // rest of the network, every node within 1e-4.
        let stem = (1..graph.nodes.len()).find(|&i| graph.nodes[i].inputs == [0]).unwrap();
        for i in 1..graph.nodes.len() {
            let (d, s) = max_abs_diff(&b[i + 1], &a[i]);
            let bound = if i == stem { 1e-5 } else { 1e-4 };
            assert!(d <= bound * s.max(1.0), "{name}: node {} differs by {d} (scale {s})", graph.nodes[i].name);
        }

        // Fewer bands: refit on every 8th frame, measure on the frames between.
        let inputs: Vec<Vec<f32>> = (0..clip.len())
            .step_by(8)
            .map(|k| activations(&graph, &pre, &clip.decode(k).unwrap().as_frame()).0)
            .collect();
        for bands in [vec![Band::Ll, Band::Lh, Band::Hl], vec![Band::Ll]] {
            let dropped = wavelet::rewrite(&graph, &bands).unwrap();
            let mut fitted = dropped.clone();
            let (before, after) = wavelet::fit_stem(&graph, &mut fitted, &bands, &inputs).unwrap();
            assert!(after < before, "{name} {bands:?}: fit error {before} -> {after}");
            let (mut e_dropped, mut e_fitted) = (0.0f64, 0.0f64);
            for k in (4..clip.len()).step_by(16) {
                let f = clip.decode(k).unwrap();
                let out = |g: &Graph| activations(g, &pre, &f.as_frame()).1.pop().unwrap();
                let want = out(&graph);
                let err = |got: Vec<f32>| got.iter().zip(&want).map(|(x, y)| f64::from((x - y).abs())).sum::<f64>();
                e_dropped += err(out(&dropped));
                e_fitted += err(out(&fitted));
            }
            assert!(e_fitted < e_dropped, "{name} {bands:?}: held-out output error {e_dropped} -> {e_fitted}");
        }
    }
}

/// `framecache compress --method wavelet`: the file runs through the model loader with its
/// sidecar, and impossible requests are clear errors that write nothing.
#[test]
fn compress_wavelet_writes_a_model_and_refuses_what_it_cannot_rewrite() {
    let dir = temp("wavelet");
    let out = dir.join("selfie.ll.safetensors");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let model = s(&assets().join("models/selfie_segmentation.onnx"));
    let clip = s(&assets().join("clips/static_coin_motion"));
    let base = ["--method", "wavelet", "--out"];
    cli("compress", &[&base[..], &[&s(&out), &model, "--bands", "LL", "--fit", &clip, "--frames", "4"]].concat())
        .unwrap();
    let m = framecache_app::model::Model::load(&out, None, None, None).unwrap();
    assert_eq!(m.plan.graph().nodes[1].name, framecache_train::wavelet::HAAR_NODE);
    let bad = dir.join("bad.safetensors");
    let bad_out = s(&bad);
    for (extra, needle) in [
        (vec!["--bands", "LL,XX"], "not a Haar band"),
        (vec!["--bands", "LL,LL"], "at most once"),
        (vec!["--bands", "LL", "--fit", "/nonexistent/clip"], "clip"),
    ] {
        let argv = [&base[..], &[&bad_out, &model], &extra[..]].concat();
        let e = format!("{:#}", cli("compress", &argv).unwrap_err());
        assert!(e.contains(needle), "expected '{needle}' in: {e}");
        assert!(!bad.exists() && !framecache_app::args::with_ext(&bad, ".toml").exists());
    }
}

/// The squared differences of node `output` of `a` and `b` from that of `reference`, summed
/// over `frames` of `clip`.
fn squared_errors(
    reference: &Graph,
    [a, b]: [&Graph; 2],
    output: usize,
    pre: &Preprocess,
    clip: &framecache_app::clip::Clip,
    frames: impl Iterator<Item = usize>,
) -> (f64, f64) {
    let (mut e_a, mut e_b) = (0.0f64, 0.0f64);
    for k in frames {
        let f = clip.decode(k).unwrap();
        let out = |g: &Graph| activations(g, pre, &f.as_frame()).1[output].clone();
        let want = out(reference);
        let err = |got: Vec<f32>| got.iter().zip(&want).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>();
        e_a += err(out(a));
        e_b += err(out(b));
    }
    (e_a, e_b)
}

/// The bundled MobileNetV2, unfused, its inverted-residual blocks, and the bundled clip.
fn mobilenet_v2_blocks_and_clip() -> (Graph, Vec<framecache_train::prune::Block>, framecache_app::clip::Clip) {
    let path = assets().join("models/mobilenet_v2.onnx");
    let bytes = std::fs::read(&path).unwrap();
    let graph = framecache::import::load_unfused(&bytes, &path, Default::default()).unwrap();
    let blocks = framecache_train::prune::blocks(&graph);
    let clip = framecache_app::clip::Clip::open(&assets().join("clips/static_coin_motion")).unwrap();
    (graph, blocks, clip)
}

/// Structured pruning of the bundled MobileNetV2's inverted-residual blocks: 35% of the
/// expansion channels go (over 25% of the MACs), and refitting each projection by least
/// squares brings the logits closer to the source's than pruning alone, on frames the refit
/// never saw. With every channel kept, a block is unchanged. The pruned model, exported to
/// ONNX, runs in tract to the engine's result.
#[test]
fn pruning_removes_macs_and_refitting_recovers_fidelity() {
    use framecache_train::prune;
    let (graph, blocks, clip) = mobilenet_v2_blocks_and_clip();
    // 17 inverted-residual blocks; the first has no expansion.
    assert_eq!(blocks.len(), 16);
    let pre = Preprocess::imagenet();
    let calib: Vec<_> = (0..clip.len()).step_by(15).map(|k| clip.decode(k).unwrap()).collect();
    let frames: Vec<Frame<'_>> = calib.iter().map(|f| f.as_frame()).collect();

    let mut same = graph.clone();
    let n = same.nodes[blocks[3].depthwise].shape.c;
    prune::prune(&mut same, blocks[3], &(0..n).collect::<Vec<_>>()).unwrap();
    assert_eq!(same.nodes.len(), graph.nodes.len());
    assert!(prune::prune(&mut same, blocks[3], &[2, 1]).is_err());

    let macs = |g: &Graph| Plan::new(g.clone(), pre.clone()).unwrap().total_macs() as f64;
    // 35%: channel counts such as 63 and 94, so that the kernels' remainders are exercised.
    let keep = prune::keep_counts(&prune::channels(&graph, &blocks), 0.35, 1);
    let mut plain = graph.clone();
    let report = prune::prune_network(&mut plain, &blocks, &pre, &frames, &keep, prune::Recovery::None).unwrap();
    assert!(report.iter().all(|r| r.kept < r.channels && r.error_before == r.error_after));
    let mut refit = graph.clone();
    let report =
        prune::prune_network(&mut refit, &blocks, &pre, &frames, &keep, prune::Recovery::LeastSquares).unwrap();
    assert!(report.iter().all(|r| r.error_after < r.error_before), "{report:?}");
    let saved = 1.0 - macs(&refit) / macs(&graph);
    assert!(saved > 0.25, "{saved} of the MACs saved");

    let (mut e_plain, mut e_refit) = (0.0f64, 0.0f64);
    for k in (7..clip.len()).step_by(15) {
        let f = clip.decode(k).unwrap();
        let out = |g: &Graph| activations(g, &pre, &f.as_frame()).1.pop().unwrap();
        let want = out(&graph);
        let err = |got: Vec<f32>| got.iter().zip(&want).map(|(a, b)| f64::from((a - b).abs())).sum::<f64>();
        e_plain += err(out(&plain));
        e_refit += err(out(&refit));
    }
    assert!(e_refit < e_plain, "held-out logit error: pruned {e_plain}, refitted {e_refit}");
    // The pruned model round-trips through the graph file, and the engine runs what it loads
    // (fused, with channel counts that are not multiples of any SIMD width) as candle runs it.
    let file = framecache::import::graph_file::to_bytes(&refit, "test").unwrap();
    let loaded =
        framecache::import::load_model_bytes(&file, std::path::Path::new("p.safetensors"), Default::default()).unwrap();
    assert!(keep.iter().any(|k| k % 8 != 0), "{keep:?}");
    // Exported to ONNX (`framecache export`), the same pruned weights run by tract give the
    // engine's logits, on frames the refit never saw.
    let mut session = Session::new(Plan::new(loaded.clone(), pre.clone()).unwrap(), SessionOptions::default()).unwrap();
    for k in [7, 82] {
        let f = clip.decode(k).unwrap();
        let ours = session.run_full(f.as_frame()).unwrap();
        let theirs = exported_in_tract(&refit, session.activation(0)).unwrap();
        let (d, scale) = max_abs_diff(&ours[0].data, &theirs[0]);
        assert!(
            d <= 1e-4 * scale.max(1.0),
            "frame {k}: tract on the exported pruned model differs by {d} (scale {scale})"
        );
    }
    let (max, _, node) = worst_node(loaded, pre, &frames[0]);
    assert!(max <= 1e-4, "node {node} differs by {max:.2e} of its largest value");
}

/// Fine-tuning after pruning: the bundled MobileNetV2 with a third of its expansion channels
/// pruned (no recovery), then every float layer trained for two epochs on six frames towards
/// the source's logits. The training loss falls, and the engine running the trained weights is
/// closer to the source's logits than the pruned model alone, on the training frames and on
/// frames between them that training never saw.
#[test]
fn fine_tuning_a_pruned_model_moves_it_towards_the_source() {
    use framecache_train::finetune::{finetune, float_layers, FinetuneOptions, Loss};
    use framecache_train::prune;
    let (graph, blocks, clip) = mobilenet_v2_blocks_and_clip();
    let pre = Preprocess::imagenet();
    let train: Vec<_> = (0..clip.len()).step_by(25).map(|k| clip.decode(k).unwrap()).collect();
    let frames: Vec<Frame<'_>> = train.iter().map(|f| f.as_frame()).collect();
    let keep = prune::keep_counts(&prune::channels(&graph, &blocks), 1.0 / 3.0, 1);
    let mut pruned = graph.clone();
    prune::prune_network(&mut pruned, &blocks, &pre, &frames, &keep, prune::Recovery::None).unwrap();
    let output = graph.outputs[0].node;
    let (mut inputs, mut targets) = (Vec::new(), Vec::new());
    for f in &frames {
        let (x, acts) = activations(&graph, &pre, f);
        inputs.push(x);
        targets.push(acts[output].clone());
    }
    let opts =
        FinetuneOptions { loss: Loss::Softmax { temperature: 2.0 }, epochs: 2, batch: 3, learning_rate: 1e-5, seed: 1 };
    let (trained, curve) = finetune(pruned.clone(), output, &inputs, &targets, float_layers, opts, |_, _| {}).unwrap();
    assert!(curve[curve.len() - 1] < curve[0], "loss {curve:?}");
    for (what, start) in [("training", 0), ("held-out", 12)] {
        let frames = (start..clip.len()).step_by(25);
        let (e_pruned, e_trained) = squared_errors(&graph, [&pruned, &trained], output, &pre, &clip, frames);
        assert!(
            e_trained < e_pruned,
            "squared logit error on the {what} frames: pruned {e_pruned}, fine-tuned {e_trained}"
        );
    }
}

/// Quantization-aware training on the bundled MobileNetV2: its calibrated int8 form, fine-tuned
/// for two epochs on six frames, lowers the training loss, and the engine running the trained
/// int8 weights (back on their grids) is closer to the float model's logits on those frames
/// than post-training quantization alone: the loop learns, and what it learns survives the
/// write-back. (Held-out fidelity is measured by the bench: docs/results-compress.md.)
#[test]
fn quantization_aware_training_moves_int8_towards_float() {
    use framecache_train::finetune::{finetune, int8_convolutions, FinetuneOptions, Loss};
    let path = assets().join("models/mobilenet_v2.onnx");
    let bytes = std::fs::read(&path).unwrap();
    let clip_path = assets().join("clips/static_coin_motion");
    let clip = framecache_app::clip::Clip::open(&clip_path).unwrap();
    let config = framecache::ModelConfig::load(assets().join("models/mobilenet_v2.onnx.toml")).unwrap();
    let options = Default::default();
    let (ptq, _) = framecache_app::quantize::calibrate(
        &bytes,
        &path,
        &config,
        options,
        std::slice::from_ref(&clip),
        8,
        framecache::quant::Method::MinMax,
        framecache_app::quantize::Floor::Skip2,
    )
    .unwrap();
    let float = framecache::import::load_unfused(&bytes, &path, options).unwrap();
    let pre = Preprocess::imagenet();
    let output = float.outputs[0].node;
    let (mut inputs, mut targets) = (Vec::new(), Vec::new());
    for k in (0..clip.len()).step_by(25) {
        let (x, acts) = activations(&float, &pre, &clip.decode(k).unwrap().as_frame());
        inputs.push(x);
        targets.push(acts[output].clone());
    }
    let opts = FinetuneOptions { loss: Loss::Mse, epochs: 2, batch: 4, learning_rate: 1e-5, seed: 1 };
    let (trained, curve) =
        finetune(ptq.clone(), output, &inputs, &targets, int8_convolutions, opts, |_, _| {}).unwrap();
    assert!(curve[curve.len() - 1] < curve[0], "loss {curve:?}");
    let frames = (0..clip.len()).step_by(25);
    let (e_ptq, e_qat) = squared_errors(&float, [&ptq, &trained], output, &pre, &clip, frames);
    assert!(e_qat < e_ptq, "squared logit error on the training frames: PTQ {e_ptq}, QAT {e_qat}");
}
