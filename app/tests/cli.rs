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
