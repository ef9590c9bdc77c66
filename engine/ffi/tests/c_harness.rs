//! The C ABI from C: `tests/harness.c` is compiled against the committed header and the host
//! staticlib, runs the bundled MobileNetV2 on real frames, and must print what the Rust API
//! computes; then it runs again under AddressSanitizer with its misuse cases (null pointers,
//! bad sizes and strides, use after free, double free).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use framecache::heads::{self, Head};
use framecache::{Session, SessionOptions, SidecarModel};

const FRAMES: usize = 6;

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets")
}

fn staticlib() -> PathBuf {
    common::built_library("libframecache_ffi.a")
}

fn frames() -> Vec<image::RgbImage> {
    (1..=FRAMES)
        .map(|i| {
            let p = assets().join(format!("clips/static_coin_motion/frame_{i:04}.png"));
            image::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).to_rgb8()
        })
        .collect()
}

/// Writes the frames as RGBA rows padded to `stride` bytes, behind a text header.
fn write_rgba(frames: &[image::RgbImage], path: &Path) -> usize {
    let (w, h) = frames[0].dimensions();
    let stride = w as usize * 4 + 12;
    let mut bytes = format!("{w} {h} {} {stride}\n", frames.len()).into_bytes();
    for f in frames {
        for row in f.rows() {
            let start = bytes.len();
            for p in row {
                bytes.extend_from_slice(&[p[0], p[1], p[2], 255]);
            }
            bytes.resize(start + stride, 0xAB);
        }
    }
    std::fs::write(path, bytes).unwrap();
    stride
}

fn compile(out: &Path, sanitize: bool) -> Result<(), String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut cmd = Command::new(&cc);
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g"]).arg("-I").arg(dir.join("include"));
    if sanitize {
        cmd.args(["-fsanitize=address", "-fno-omit-frame-pointer"]);
    }
    cmd.arg(dir.join("tests/harness.c")).arg(staticlib()).args(["-lpthread", "-ldl", "-lm", "-lrt", "-o"]).arg(out);
    let o = cmd.output().map_err(|e| format!("cannot run {cc}: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("{cc} failed:\n{}", String::from_utf8_lossy(&o.stderr)))
    }
}

/// What the Rust API gives for one frame.
struct Expected {
    hit: f64,
    saving: f64,
    dirty: usize,
    /// Top classes as (index, probability).
    top: Vec<(usize, f32)>,
}

fn rust_reference(frames: &[image::RgbImage]) -> Vec<Expected> {
    let model = assets().join("models/mobilenet_v2.onnx");
    let m = SidecarModel::load(&model, None, &[], None, None).unwrap();
    let mut session =
        Session::new(std::sync::Arc::clone(&m.plan), SessionOptions { threads: Some(1), ..Default::default() })
            .unwrap();
    frames
        .iter()
        .map(|f| {
            let outputs =
                session.process(framecache::Frame::rgb(f.width() as usize, f.height() as usize, f.as_raw())).unwrap();
            let s = session.last_stats().unwrap();
            let Head::Classes { top, .. } = &heads::decode(&m.decoders, &outputs, &m.plan.frame_map(1, 1))[0] else {
                panic!("not a classifier")
            };
            Expected {
                hit: s.input_hit_rate(),
                saving: s.mac_saving(),
                dirty: s.dirty_tiles,
                top: top.iter().map(|c| (c.index, c.prob)).collect(),
            }
        })
        .collect()
}

fn run_harness(exe: &Path, frames_file: &Path) -> String {
    let model = assets().join("models/mobilenet_v2.onnx");
    let o = Command::new(exe)
        .arg(&model)
        .arg(frames_file)
        .arg(assets().join("bundles/mobilenet_v2_s16.toml"))
        .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=23")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        exe.display(),
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

#[test]
fn c_harness_matches_the_rust_api_and_survives_misuse_under_asan() {
    let dir = std::env::temp_dir().join(format!("framecache-ffi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let frames = frames();
    let frames_file = dir.join("frames.rgba");
    write_rgba(&frames, &frames_file);
    let expected = rust_reference(&frames);

    let plain = dir.join("harness");
    compile(&plain, false).unwrap();
    let out = run_harness(&plain, &frames_file);
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("frame ")).collect();
    assert_eq!(lines.len(), FRAMES, "{out}");
    let labels = std::fs::read_to_string(assets().join("models/imagenet_classes.txt")).unwrap();
    for (line, Expected { hit, saving, dirty, top }) in lines.iter().zip(&expected) {
        let (numbers, label) = line.split_once(" # ").unwrap();
        let f: Vec<&str> = numbers.split_whitespace().collect();
        assert_eq!(f[2], "hit");
        assert!((f[3].parse::<f64>().unwrap() - hit).abs() < 1e-9, "{line}");
        assert!((f[5].parse::<f64>().unwrap() - saving).abs() < 1e-9, "{line}");
        assert_eq!(f[7].parse::<usize>().unwrap(), *dirty, "{line}");
        let got: Vec<(usize, f32)> = f[9..]
            .iter()
            .map(|t| {
                let (i, p) = t.split_once(':').unwrap();
                (i.parse().unwrap(), p.parse().unwrap())
            })
            .collect();
        assert_eq!(got.len(), top.len(), "{line}");
        for ((gi, gp), (ei, ep)) in got.iter().zip(top) {
            assert_eq!(gi, ei, "{line}");
            assert!((gp - ep).abs() <= 1e-6 * ep.abs().max(1.0), "{line}");
        }
        assert_eq!(label, labels.lines().nth(top[0].0).unwrap(), "{line}");
    }
    assert!(out.contains("misuse ok"), "{out}");
    // The bundle: its one head, computed on its first frame, with its cost.
    let bundle: Vec<&str> = out.lines().filter(|l| l.starts_with("bundle ")).collect();
    assert_eq!(bundle.len(), 1, "{out}");
    assert!(bundle[0].starts_with("bundle 0 imagenet status 0 kind 0 count 5 macs "), "{out}");
    assert!(!bundle[0].ends_with("macs 0"), "{out}");

    let asan = dir.join("harness-asan");
    match compile(&asan, true) {
        Ok(()) => {
            let out = run_harness(&asan, &frames_file);
            assert!(out.contains("misuse ok"), "{out}");
        }
        // A compiler without the ASan runtime: say so; CI installs it and must not skip.
        Err(e) if std::env::var_os("FRAMECACHE_REQUIRE_ASAN").is_none() => eprintln!("skipped ASan run: {e}"),
        Err(e) => panic!("{e}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
