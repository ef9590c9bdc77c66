//! The Android app's JNI class on a host JVM: `FrameCache.java` (the app's own source) and
//! `tests/jni/JniCheck.java` are compiled with `javac -h`, whose generated header must name
//! exactly the `Java_*` symbols the host library exports; then `java` loads the library, pushes
//! a real frame as RGBA and as NV21 through direct buffers, and must agree with the Rust API.
//!
//! Needs a JDK (javac, java). Without one the test says so and passes, unless
//! `FRAMECACHE_REQUIRE_JNI=1` (set by `.ci/run`).
#![cfg(feature = "jni")]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use framecache::heads::{self, Head};
use framecache::{Session, SessionOptions, SidecarModel};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn output(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{cmd:?} failed:\n{text}\n{}", String::from_utf8_lossy(&o.stderr));
    text
}

#[test]
fn jni_class_runs_on_a_host_jvm_and_matches_the_rust_api() {
    if Command::new("javac").arg("-version").output().is_err() {
        assert!(std::env::var_os("FRAMECACHE_REQUIRE_JNI").is_none(), "javac is required here but missing");
        eprintln!("skipped: no JDK (javac) found");
        return;
    }
    let lib = common::built_library("libframecache_ffi.so");
    let lib_dir = lib.parent().unwrap().to_owned();

    let dir = std::env::temp_dir().join(format!("framecache-jni-{}", std::process::id()));
    let (classes, headers) = (dir.join("classes"), dir.join("headers"));
    std::fs::create_dir_all(&classes).unwrap();
    let java = root().join("android/app/src/main/java/com/framecache/FrameCache.java");
    let check = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jni/JniCheck.java");
    output(
        Command::new("javac")
            .arg("-Xlint:all")
            .arg("-Werror")
            .arg("-h")
            .arg(&headers)
            .arg("-d")
            .arg(&classes)
            .arg(&java)
            .arg(&check),
    );

    // The symbols javac expects are the ones the library exports.
    let header = std::fs::read_to_string(headers.join("com_framecache_FrameCache.h")).unwrap();
    let expected: BTreeSet<String> = header
        .split_whitespace()
        .filter(|w| w.starts_with("Java_com_framecache_FrameCache_"))
        .map(|w| w.trim_end_matches(|c: char| !c.is_alphanumeric() && c != '_').to_owned())
        .collect();
    let nm = output(Command::new("nm").args(["-D", "--defined-only"]).arg(&lib));
    let exported: BTreeSet<String> = nm
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|s| s.starts_with("Java_"))
        .map(str::to_owned)
        .collect();
    assert_eq!(expected.len(), 13, "{expected:?}");
    assert_eq!(expected, exported);

    let model = root().join("assets/models/mobilenet_v2.onnx");
    let frame = root().join("assets/clips/static_coin_motion/frame_0001.png");
    let out = output(
        Command::new("java")
            .arg(format!("-Djava.library.path={}", lib_dir.display()))
            .arg("-cp")
            .arg(&classes)
            .arg("JniCheck")
            .arg(&model)
            .arg(&frame)
            .arg(root().join("assets/bundles/mobilenet_v2_s16.toml")),
    );
    assert!(out.contains("jni ok"), "{out}");

    // RGBA: the same picture through the Rust API.
    let img = image::open(&frame).unwrap().to_rgb8();
    let m = SidecarModel::load(&model, None, &[], None, None).unwrap();
    let mut session =
        Session::new(std::sync::Arc::clone(&m.plan), SessionOptions { threads: Some(1), ..Default::default() })
            .unwrap();
    let outputs =
        session.process(framecache::Frame::rgb(img.width() as usize, img.height() as usize, img.as_raw())).unwrap();
    let Head::Classes { top, .. } = &heads::decode(&m.decoders, &outputs, &m.plan.frame_map(1, 1))[0] else { panic!() };
    let line = out.lines().find(|l| l.starts_with("rgba top ")).unwrap();
    let (prob, label) = line["rgba top ".len()..].split_once(' ').unwrap();
    assert_eq!(label, top[0].label, "{out}");
    assert!((prob.parse::<f32>().unwrap() - top[0].prob).abs() < 1e-6, "{out}");

    let (w, h) = (img.width(), img.height());
    assert!(out.contains(&format!("stats frame 1 size {w}x{h} tiles 14x14 of 16 map 196")), "{out}");
    // NV21, rotated a quarter turn: the frame is portrait now, and the class is still plausible.
    let nv21 = out.lines().find(|l| l.starts_with("nv21 top ")).unwrap();
    assert!(nv21.ends_with(&format!("rotated {h}x{w}")), "{out}");
    assert!(out.contains("stride error: fc_engine_push_rgba: row_stride"), "{out}");
    assert!(out.contains("heap buffer error: rgba is not a direct ByteBuffer"), "{out}");
    assert!(out.contains("model error: fc_engine_create:") && out.contains("/no/such/model.onnx"), "{out}");
    // The bundle cut at stride 16: one classification head, computed, with the top class the
    // engine's own bundle session gives on this frame.
    let bundle = framecache::Bundle::load(root().join("assets/bundles/mobilenet_v2_s16.toml"), &[]).unwrap();
    let mut s =
        framecache::BundleSession::new(bundle, SessionOptions { threads: Some(1), ..Default::default() }).unwrap();
    let results = s.process(framecache::Frame::rgb(w as usize, h as usize, img.as_raw())).unwrap();
    let Some(Head::Classes { top, .. }) = &results[0].output else { panic!("{results:?}") };
    assert!(out.contains(&format!("bundle head 0 imagenet kind 0 count 5 status 0 top {}", top[0].label)), "{out}");
    assert!(out.contains("boxes error: fc_engine_boxes: head 0 is not a detection head"), "{out}");
    assert!(out.contains("head error: fc_engine_head_status: head 1 does not exist"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
