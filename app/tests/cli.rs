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
    assert!(text.contains("ConvDepthwise+Clip"), "{text}");
    assert!(text.contains("total 301.1 MMACs per frame"), "{text}");
    assert!(text.contains("output 'logits' [1, 1000]"), "{text}");
}

#[test]
fn run_processes_the_bundled_clip_with_the_cache() {
    let out = framecache(&["run", "--frames", "4", "--threads", "1", "--mode", "threshold=8"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let frames: Vec<&str> = text.lines().filter(|l| l.contains("logits:")).collect();
    assert_eq!(frames.len(), 4, "{text}");
    // The clip is a static camera: after the first frame most tiles are reused.
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
    assert!(err.contains("cannot read ONNX model /nonexistent/model.onnx"), "{err}");
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
