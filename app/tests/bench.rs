//! `framecache bench` end to end on the bundled model and clip (no ../shared needed).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn framecache(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_framecache")).args(args).output().expect("the binary runs")
}

/// A fresh folder for one test; each test removes it at its end, so a failing test leaves
/// what it wrote.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("framecache-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn bundled_frame(i: usize) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../assets/clips/static_coin_motion/frame_{i:04}.png"))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

const REQUIRED: [&str; 22] = [
    "model",
    "clip",
    "mode",
    "frames",
    "input_hit_rate_mean",
    "mac_saving",
    "ms_full_median",
    "ms_cached_median",
    "ms_tract_median",
    "speedup_vs_full",
    "speedup_vs_tract",
    "top1_agreement",
    "mask_iou_mean",
    "max_abs_error",
    "nodes",
    "ms_mean",
    "ms_full_mean",
    "ms_max",
    "speedup_mean",
    "top5_overlap",
    "kl_mean",
    "mask_cover",
];

#[test]
fn json_has_every_field_and_consistent_figures() {
    let dir = scratch("e2e");
    let json = dir.join("bench.json");
    let out = framecache(&[
        "bench",
        "--frames",
        "8",
        "--threads",
        "1",
        "--warmup",
        "1",
        "--mode",
        "full,exact,threshold=8",
        "--json",
        json.to_str().unwrap(),
        "--out",
        dir.join("plots").to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("| mobilenet_v2 | static_coin_motion | threshold=8 | 8 |"), "{stdout}");
    assert!(stdout.contains("Hit rate per node, mobilenet_v2 on static_coin_motion"), "{stdout}");

    let report = read_json(&json);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(
        runs.iter().map(|r| r["mode"].as_str().unwrap()).collect::<Vec<_>>(),
        ["full", "exact", "threshold=8", "noise-floor"]
    );
    for r in runs {
        for key in REQUIRED {
            assert!(r.get(key).is_some(), "run lacks {key}: {r}");
        }
        assert_eq!(r["frames"], 8);
        assert_eq!(r["per_frame"].as_array().unwrap().len(), 8);
        for key in
            ["input_hit_rate_mean", "input_hit_rate_p10", "input_hit_rate_p50", "input_hit_rate_p90", "mac_saving"]
        {
            assert!((0.0..=1.0).contains(&f(r, key)), "{key} = {} out of [0, 1]", r[key]);
        }
        assert!(f(r, "input_hit_rate_p10") <= f(r, "input_hit_rate_p50"));
        assert!(f(r, "input_hit_rate_p50") <= f(r, "input_hit_rate_p90"));
        // MAC saving equals the per-node MAC savings weighted by each node's MACs.
        let nodes = r["nodes"].as_array().unwrap();
        let total: f64 = nodes.iter().map(|n| f(n, "macs")).sum();
        assert_eq!(total, f(r, "macs_full"), "node MACs add up to the model's");
        let weighted: f64 = nodes.iter().map(|n| f(n, "macs") * f(n, "mac_saving")).sum::<f64>() / total;
        assert!((weighted - f(r, "mac_saving")).abs() < 1e-9, "weighted {weighted} vs {}", r["mac_saving"]);
        for n in nodes {
            assert!((0.0..=1.0).contains(&f(n, "hit_rate")), "{n}");
        }
        // Speedups are the ratios of the medians, or of the means, of the same run.
        assert!((f(r, "speedup_vs_full") - f(r, "ms_full_median") / f(r, "ms_cached_median")).abs() < 1e-9);
        assert!((f(r, "speedup_mean") - f(r, "ms_full_mean") / f(r, "ms_mean")).abs() < 1e-9);
        assert!(f(r, "ms_max") >= f(r, "ms_cached_p90") && f(r, "ms_cached_p90") >= f(r, "ms_cached_median"));
        assert!((0.0..=1.0).contains(&f(r, "top5_overlap")) && f(r, "kl_mean") >= 0.0);
        assert!((f(r, "speedup_vs_tract") - f(r, "ms_tract_median") / f(r, "ms_cached_median")).abs() < 1e-9);
        // tract computes the same model.
        assert!(f(r, "tract_max_abs_diff") < 1e-3, "tract differs: {}", r["tract_max_abs_diff"]);
        assert!(r["mask_iou_mean"].is_null(), "a classifier has no mask");
    }
    // Engine-full is the reference, and exact mode equals it.
    assert_eq!((f(&runs[0], "mac_saving"), f(&runs[0], "max_abs_error")), (0.0, 0.0));
    assert!(f(&runs[1], "max_abs_error") < 1e-3, "exact mode differs: {}", runs[1]["max_abs_error"]);
    assert_eq!(f(&runs[1], "top1_agreement"), 1.0);
    assert_eq!(f(&runs[1], "top5_overlap"), 1.0);
    assert!(f(&runs[1], "kl_mean") < 1e-6);
    // A static camera: threshold mode reuses most of the input.
    assert!(f(&runs[2], "input_hit_rate_mean") > 0.5, "{}", runs[2]["input_hit_rate_mean"]);

    for plot in [
        "nodes_mobilenet_v2_static_coin_motion.png",
        "timeline_mobilenet_v2_static_coin_motion.png",
        "pareto_mobilenet_v2_static_coin_motion.png",
    ] {
        let img = image::open(dir.join("plots").join(plot)).unwrap_or_else(|e| panic!("{plot}: {e}")).to_rgb8();
        let distinct: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        assert!(distinct.len() > 8, "{plot} looks blank: {} colours", distinct.len());
    }
    assert!(dir.join("plots/report.md").is_file() && dir.join("plots/report.json").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A 4:4:4 Y4M clip of 64x64 frames: `frames[i]` is the seed of frame i's texture.
fn synthetic_y4m(path: &Path, frames: &[u8]) {
    let mut bytes = b"YUV4MPEG2 W64 H64 F30:1 C444\n".to_vec();
    for &seed in frames {
        bytes.extend_from_slice(b"FRAME\n");
        for plane in 0..3u32 {
            for y in 0..64u32 {
                for x in 0..64u32 {
                    let v = (x * 7 + y * 13 + plane * 50) * u32::from(seed) + (x * y) % 17;
                    bytes.push((v % 200 + 28) as u8);
                }
            }
        }
    }
    std::fs::write(path, bytes).unwrap();
}

fn run_of<'a>(report: &'a Value, mode: &str) -> &'a Value {
    report["runs"].as_array().unwrap().iter().find(|r| r["mode"] == mode).unwrap_or_else(|| panic!("no {mode} run"))
}

fn computed(run: &Value) -> Vec<bool> {
    run["per_frame"].as_array().unwrap().iter().map(|f| f["computed"].as_bool().unwrap()).collect()
}

#[test]
fn skip_and_gate_baselines_hold_results_and_see_cuts() {
    let dir = scratch("skip-gate");
    let (constant, cut) = (dir.join("constant.y4m"), dir.join("cut.y4m"));
    synthetic_y4m(&constant, &[3; 8]);
    synthetic_y4m(&cut, &[3, 3, 3, 3, 9, 9, 9, 9]);
    let json = dir.join("bench.json");
    let out = framecache(&[
        "bench",
        "--clip",
        constant.to_str().unwrap(),
        "--clip",
        cut.to_str().unwrap(),
        "--mode",
        "exact,skip=2,skip=3,gate=2",
        "--baseline",
        "none",
        "--threads",
        "1",
        "--warmup",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("dominates_skip"), "{stdout}");
    let report = read_json(&json);
    let runs: Vec<&Value> = report["runs"].as_array().unwrap().iter().collect();
    let (constant_runs, cut_runs): (Vec<&Value>, Vec<&Value>) = runs.iter().partition(|r| r["clip"] == "constant");
    let pick = |rs: &[&Value], mode: &str| -> Value {
        (*rs.iter().find(|r| r["mode"] == mode).unwrap_or_else(|| panic!("no {mode}"))).clone()
    };
    // A constant clip: holding the last result is exact, and so is the noise floor.
    for mode in ["skip=2", "skip=3", "gate=2", "noise-floor"] {
        let r = pick(&constant_runs, mode);
        assert_eq!(f(&r, "top1_agreement"), 1.0, "{mode}");
        assert_eq!(f(&r, "max_abs_error"), 0.0, "{mode}");
    }
    assert_eq!(computed(&pick(&constant_runs, "skip=3")), [true, false, false, true, false, false, true, false]);
    assert_eq!(computed(&pick(&constant_runs, "gate=2")), [true, false, false, false, false, false, false, false]);
    // A cut: the gate recomputes on the first frame after it and stays exact; skip-3 holds
    // the old result on frames 5 and 6 (0-based 4 and 5).
    let gate = pick(&cut_runs, "gate=2");
    assert_eq!(computed(&gate), [true, false, false, false, true, false, false, false]);
    assert_eq!(f(&gate, "max_abs_error"), 0.0);
    let skip = pick(&cut_runs, "skip=3");
    assert_eq!(computed(&skip), [true, false, false, true, false, false, true, false]);
    assert!(f(&skip, "max_abs_error") > 0.0, "skip-3 holds a stale result after the cut");
    // The noise floor of the cut sees the cut.
    assert!(f(&pick(&cut_runs, "noise-floor"), "max_abs_error") > 0.0);
    // A frame that skip or gate computes is charged engine-full's time on that frame.
    for (rs, mode) in [(&constant_runs, "skip=3"), (&cut_runs, "skip=2"), (&cut_runs, "gate=2")] {
        let r = pick(rs, mode);
        for frame in r["per_frame"].as_array().unwrap().iter().filter(|f| f["computed"] == true) {
            assert_eq!(frame["ms_cached"], frame["ms_full"], "{mode}: {frame}");
        }
    }
    // Verdicts name every skip baseline.
    let verdicts = report["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 2);
    for v in verdicts {
        let ns: Vec<u64> = v["skip"].as_array().unwrap().iter().map(|k| k["n"].as_u64().unwrap()).collect();
        assert_eq!(ns, [2, 3], "{v}");
    }
    let _ = run_of(&report, "exact");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn identical_consecutive_frames_are_fully_reused() {
    let clip = scratch("identical");
    for name in ["frame_0001.png", "frame_0002.png"] {
        std::fs::copy(bundled_frame(1), clip.join(name)).unwrap();
    }
    let json = clip.join("bench.json");
    let out = framecache(&[
        "bench",
        "--clip",
        clip.to_str().unwrap(),
        "--mode",
        "exact",
        "--baseline",
        "none",
        "--threads",
        "1",
        // The adaptive bypass would spend the second frame measuring a dense one.
        "--no-bypass",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = &read_json(&json)["runs"][0];
    let second = &r["per_frame"][1];
    assert_eq!(f(second, "input_hit_rate"), 1.0, "{second}");
    assert_eq!(f(second, "mac_saving"), 1.0, "{second}");
    assert_eq!(f(r, "input_hit_rate_mean"), 1.0);
    assert!(r["ms_tract_median"].is_null(), "no tract with --baseline none");
    let _ = std::fs::remove_dir_all(&clip);
}

#[test]
fn bad_clips_are_reported_and_the_others_still_run() {
    let root = scratch("bad");
    let missing = root.join("missing");
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let mixed = root.join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    std::fs::copy(bundled_frame(1), mixed.join("frame_0001.png")).unwrap();
    image::RgbImage::new(64, 48).save(mixed.join("frame_0002.png")).unwrap();
    let corrupt = root.join("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::copy(bundled_frame(1), corrupt.join("frame_0001.png")).unwrap();
    let bytes = std::fs::read(bundled_frame(2)).unwrap();
    std::fs::write(corrupt.join("frame_0002.png"), &bytes[..bytes.len() / 2]).unwrap();
    let y4m = root.join("cut.y4m");
    let good = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/coin_420.y4m")).unwrap();
    std::fs::write(&y4m, &good[..good.len() - 10]).unwrap();
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/clips/static_coin_motion");
    let json = root.join("bench.json");

    let mut args = vec!["bench", "--frames", "3", "--mode", "exact", "--baseline", "none", "--threads", "1"];
    let clips = [&missing, &empty, &mixed, &corrupt, &y4m, &bundled].map(|p| p.to_str().unwrap().to_owned());
    for c in &clips {
        args.extend(["--clip", c]);
    }
    args.extend(["--json", json.to_str().unwrap()]);
    let out = framecache(&args);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "problems must make the exit code non-zero");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The bundled clip's exact run and its noise floor.
    assert!(stderr.contains("5 problem(s); 2 run(s) measured"), "{stderr}");
    for expected in [
        "cannot read clip folder",
        "empty holds no PNG or JPEG frames",
        "frame 2 (frame_0002.png) is 64x48 but frame 1 (frame_0001.png) is 320x180",
        "cannot decode frame",
        "cut.y4m: frame 3 is truncated",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in the summary:\n{stdout}");
    }
    assert!(stdout.contains("corrupt/frame_0002.png"), "{stdout}");
    let report = read_json(&json);
    assert_eq!(report["errors"].as_array().unwrap().len(), 5);
    assert_eq!(report["runs"][0]["clip"], "static_coin_motion");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn ort_baseline_without_python_says_so_plainly() {
    let dir = scratch("no-python");
    let json = dir.join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_framecache"))
        .args(["bench", "--frames", "2", "--mode", "exact", "--baseline", "ort", "--threads", "1", "--json"])
        .arg(&json)
        .env("PATH", "")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ONNX Runtime baseline not run: cannot start python3"), "{stderr}");
    let report = read_json(&json);
    assert!(report["runs"][0]["ms_ort_median"].is_null());
    assert!(report["notes"][0].as_str().unwrap().contains("cannot start python3"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ort_baseline_runs_or_says_why_not() {
    let dir = scratch("ort");
    let json = dir.join("bench.json");
    let out = framecache(&[
        "bench",
        "--frames",
        "3",
        "--mode",
        "exact",
        "--baseline",
        "tract,ort",
        "--threads",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = read_json(&json);
    let run = &report["runs"][0];
    match framecache_app::baseline::ort_available() {
        Ok(version) => {
            eprintln!("ONNX Runtime {version}: ms {} (engine full {})", run["ms_ort_median"], run["ms_full_median"]);
            assert!(f(run, "ms_ort_median") > 0.0);
            assert!(f(run, "ort_max_abs_diff") < 1e-3, "ORT computes the same model: {}", run["ort_max_abs_diff"]);
            assert!(run["per_frame"][2]["ms_ort"].is_number());
            // Like for like: engine-full without its preprocessing, which ORT's time lacks.
            let inference = f(run, "ms_full_inference_median");
            assert!(inference > 0.0 && inference < f(run, "ms_full_median"), "{inference}");
            let ratio = f(run, "speedup_vs_ort_inference");
            assert!((ratio - f(run, "ms_ort_median") / inference).abs() < 1e-9 * ratio, "{ratio}");
        }
        // CI installs ONNX Runtime and requires this branch not to be taken.
        Err(why) if std::env::var_os("FRAMECACHE_REQUIRE_ORT").is_some() => {
            panic!("FRAMECACHE_REQUIRE_ORT is set, but ONNX Runtime is unavailable: {why}")
        }
        Err(why) => {
            eprintln!("ONNX Runtime unavailable here: {why}");
            assert!(run["ms_ort_median"].is_null());
            let notes = report["notes"].to_string();
            assert!(notes.contains("ONNX Runtime baseline not run") && notes.contains("onnxruntime"), "{notes}");
            assert!(String::from_utf8_lossy(&out.stderr).contains("ONNX Runtime baseline not run"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[test]
fn ctrl_c_prints_what_was_measured() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = scratch("ctrlc");
    let json = dir.join("bench.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_framecache"))
        .args(["bench", "--mode", "full,exact", "--threads", "1", "--repeat", "3", "--json"])
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 && !line.contains("measuring") {
        line.clear();
    }
    assert!(line.contains("measuring mobilenet_v2 on static_coin_motion"), "{line}");
    // Three passes over the clip take about 40 s here; stop after the warm-up and some frames.
    std::thread::sleep(std::time::Duration::from_millis(3000));
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}");
    assert!(stdout.contains("Interrupted: the figures above cover only the frames measured"), "{stdout}");
    let report = read_json(&json);
    assert_eq!(report["interrupted"], true);
    let frames = report["runs"][0]["frames"].as_u64().unwrap();
    assert!(frames > 0 && frames < 150, "{frames} frames measured before Ctrl-C");
    assert!(stdout.contains(&format!("| mobilenet_v2 | static_coin_motion | exact | {frames} |")), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--bundle` adds the bundle's tables to the bench report (markdown and JSON), once per cached
/// mode, on the same clips.
#[test]
fn bundles_are_added_to_the_report() {
    let dir = scratch("bundle");
    let json = dir.join("r.json");
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/bundles/mobilenet_v2_s16.toml");
    let out = framecache(&[
        "bench",
        "--bundle",
        manifest,
        "--frames",
        "4",
        "--mode",
        "exact,threshold=8",
        "--baseline",
        "none",
        "--threads",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for section in ["## Split", "## Sharing", "## Cached (exact)", "## Cached (threshold=8)", "top-1 agreement"] {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
    let v = read_json(&json);
    let bundles = v["bundles"].as_array().expect("bundles in the JSON report");
    assert_eq!(bundles.len(), 2);
    // Exact mode agrees with full inference by construction.
    assert!(bundles[0]
        .as_str()
        .unwrap()
        .contains("| static_coin_motion | imagenet | top-1 agreement | 1.000 | 1.000 |"));
    let _ = std::fs::remove_dir_all(&dir);
}
