//! The `framecache` binary end to end, on the bundled assets (no ../shared needed).

use std::process::Command;

fn framecache(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_framecache")).args(args).output().expect("the binary runs")
}

#[test]
fn inspect_prints_the_bundled_graph() {
    let out = framecache(&["inspect"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    // MobileNetV2's inverted-residual blocks are one node each.
    assert!(text.contains("Bottleneck") && text.contains("e96 3x3/2 p[1, 1, 1, 1]"), "{text}");
    assert!(text.contains("total 301.1 MMACs per frame"), "{text}");
    assert!(text.contains("activations ") && text.contains("MiB of f32"), "{text}");
    assert!(text.contains("output 'logits' [1, 1000]"), "{text}");
}

#[test]
fn run_processes_the_bundled_clip_with_the_cache() {
    // No --mode: the default is the approximate preset, which reuses on camera footage (exact
    // mode reuses almost nothing there: sensor noise touches every tile).
    let out = framecache(&["run", "--frames", "6", "--threads", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let frames: Vec<&str> = text.lines().filter(|l| l.contains("logits:")).collect();
    assert_eq!(frames.len(), 6, "{text}");
    // The clip is a static camera: after the first frames (the cold one, and the one that
    // measures what a dense frame costs) most tiles are reused.
    assert!(text.contains("mean input hit rate"), "{text}");
    let hit: f64 = text
        .split("mean input hit rate ")
        .nth(1)
        .and_then(|s| s.split('%').next())
        .and_then(|s| s.parse().ok())
        .expect("hit rate printed");
    assert!(hit > 50.0, "hit rate {hit}% on a static clip: {text}");
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    let out = framecache(&["run", "--model", "/nonexistent/model.onnx"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read model /nonexistent/model.onnx"), "{err}");
    // The I/O error is the source, printed as the cause.
    assert!(err.contains("caused by: No such file or directory"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let dir = std::env::temp_dir().join(format!("framecache-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("frame_0001.png");
    std::fs::write(&png, b"\x89PNG\r\n\x1a\n truncated").unwrap();
    let out = framecache(&["run", "--clip", dir.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot decode frame") && err.contains("frame_0001.png"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let out = framecache(&["run", "--tile", "64"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tile"));
}

/// A reader that stops early ends `run` quietly; a full disk is an error, not a panic; special
/// files as the model are refused without blocking or reading for ever.
#[test]
fn failed_output_and_special_files_are_errors_not_panics() {
    use std::process::Stdio;
    let bin = env!("CARGO_BIN_EXE_framecache");
    let mut child = Command::new(bin)
        .args(["run", "--frames", "4", "--threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe.
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut first).unwrap();
    assert!(first.starts_with("model "), "{first}");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("panicked"), "{:?}: {err}", out.status);

    if std::path::Path::new("/dev/full").exists() {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let out = Command::new(bin).args(["run", "--frames", "2", "--threads", "1"]).stdout(full).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("cannot write the results to stdout"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }

    let dir = std::env::temp_dir().join(format!("framecache-special-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("model.onnx");
    let mut specials = vec!["/dev/zero".to_string()];
    if Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success()) {
        specials.push(fifo.display().to_string());
    }
    let sidecar = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/models/mobilenet_v2.onnx.toml");
    for special in specials {
        for args in [["--model", &special, "--preprocess", sidecar], ["--preprocess", &special, "--frames", "1"]] {
            let out = framecache(&[&["run"], &args[..]].concat());
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success() && err.contains("not a regular file"), "{args:?}: {err}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What bench could not measure is on stderr, in full: with stdout redirected it is still seen.
#[test]
fn bench_lists_what_it_could_not_measure_on_stderr() {
    let dir = std::env::temp_dir().join(format!("framecache-bench-err-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("mobilenet_v2.onnx");
    std::fs::write(&bad, b"not a model").unwrap();
    let bad = bad.to_str().unwrap();
    let out = framecache(&["bench", "--model", bad, "--frames", "2", "--mode", "exact", "--baseline", "none"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("Not measured:") && err.contains(bad) && err.contains("cannot read model"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The MobileNetV2 bundle cut at stride 16 runs from the bundled assets: the split, the
/// sharing table and the cached-vs-full table are printed with consistent numbers.
#[test]
fn bundle_reports_split_sharing_and_cache_on_the_bundled_model() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/bundles/mobilenet_v2_s16.toml");
    let out = framecache(&["bundle", "--bundle", manifest, "--frames", "5", "--threads", "1", "--mode", "threshold=8"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    // Backbone up to the stride-16 tap and the classifier head, 301.1 MMACs in all.
    let mmacs: Vec<f64> = text
        .lines()
        .filter(|l| (l.contains("| backbone |") && !l.starts_with("| backbone")) || l.contains("| head imagenet"))
        .map(|l| l.split('|').nth(4).and_then(|v| v.trim().parse().ok()).expect("MMACs column"))
        .collect();
    assert_eq!(mmacs.len(), 2, "{text}");
    assert!((mmacs[0] + mmacs[1] - 301.1).abs() < 0.2, "{mmacs:?}\n{text}");
    assert!(text.contains("features.13.add 14x14x96"), "the head reads the tap: {text}");
    let row = text.lines().find(|l| l.starts_with("| static_coin_motion |")).expect("cached row");
    let cols: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!(cols[2], "5", "{row}");
    let saving: f64 = cols[6].trim_end_matches('%').parse().expect("MAC saving");
    assert!(saving > 0.0 && saving < 100.0, "{row}");
}

#[test]
fn a_bad_bundle_manifest_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("framecache-bad-bundle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("b.toml");
    std::fs::write(&p, "[[backbone]]\nmodel = \"nowhere.onnx\"\n[backbone.preprocess]\nfit = \"stretch\"\n[[backbone.head]]\nname = \"x\"\ndecoder = \"raw\"\noutputs = [\"y\"]\n").unwrap();
    let out = framecache(&["bundle", "--bundle", p.to_str().unwrap(), "--frames", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("backbone[0].model") && err.contains("nowhere.onnx"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two models with the same input geometry but different normalisation (the bundled
/// MobileNetV2 declared twice) are merged into one backbone through a per-channel affine node:
/// one resample and one change detection, and each head's result equals its model run alone.
#[test]
fn same_geometry_models_share_one_backbone_and_keep_their_results() {
    use framecache::heads::Head;
    use framecache::{Bundle, BundleSession, Frame, Plan, Preprocess, Session, SessionOptions};
    let assets = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets");
    let dir = std::env::temp_dir().join(format!("framecache-merge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("twice.toml");
    let model = assets.join("models/mobilenet_v2.onnx");
    let backbone = |head: &str, mean: f32, std: f32| {
        format!(
            "[[backbone]]\nmodel = {model:?}\n[backbone.preprocess]\nfit = \"stretch\"\nmean = [{mean}, {mean}, {mean}]\n\
             std = [{std}, {std}, {std}]\n[[backbone.head]]\nname = \"{head}\"\ndecoder = \"raw\"\noutputs = [\"logits\"]\n"
        )
    };
    std::fs::write(&manifest, backbone("a", 0.45, 0.225) + &backbone("b", 0.5, 0.5)).unwrap();
    let bundle = Bundle::load(&manifest, &[]).unwrap();
    assert_eq!(bundle.backbones.len(), 1, "one merged backbone");
    assert_eq!(bundle.backbones[0].models.len(), 2);
    let plan = &bundle.backbones[0].plan;
    assert_eq!(plan.heads().len(), 2);
    assert!(plan.graph().nodes.iter().any(|n| n.name.starts_with("normalize for")));

    let img = image::open(assets.join("clips/static_coin_motion/frame_0001.png")).unwrap().to_rgb8();
    let frame = Frame::rgb(img.width() as usize, img.height() as usize, img.as_raw());
    let mut merged =
        Session::new(std::sync::Arc::clone(plan), SessionOptions { threads: Some(1), ..Default::default() }).unwrap();
    let outputs = merged.process(frame).unwrap();
    for (k, (mean, std)) in [(0.45f32, 0.225f32), (0.5, 0.5)].into_iter().enumerate() {
        let pre = Preprocess { mean: [mean; 3], std: [std; 3], ..Default::default() };
        let alone = Plan::from_onnx(&model, pre).unwrap();
        let mut s = Session::new(alone, SessionOptions { threads: Some(1), ..Default::default() }).unwrap();
        let want = s.process(frame).unwrap();
        let got = &outputs[plan.heads()[k].outputs[0]].data;
        let scale = want[0].data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let diff = got.iter().zip(&want[0].data).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff <= 1e-4 * scale, "head {k}: merged differs from the model alone by {diff} (scale {scale})");
    }
    let mut stream = BundleSession::new(bundle, SessionOptions { threads: Some(1), ..Default::default() }).unwrap();
    let results = stream.process(frame).unwrap();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| matches!(r.output, Some(Head::Values { .. }))));
    let _ = std::fs::remove_dir_all(&dir);
}
