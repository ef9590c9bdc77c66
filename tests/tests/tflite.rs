//! The TFLite reader: the two MediaPipe `.tflite` files against their ONNX conversions in
//! `../shared/data` on real frames (full, and cached exact mode), and hostile files built with
//! the schema's own builders (`framecache_tests::tflite`): each a clear error, never a panic.

use std::path::Path;

use framecache::import::{load_model_bytes, ImportOptions};
use framecache::{Error, Mode, Plan, Preprocess, Session, SessionOptions};
use framecache_tests::tflite::{conv_model, model, O, T};
use framecache_tests::*;
use tract_tflite::tflite::{BuiltinOperator, TensorType};

fn load(bytes: &[u8]) -> Result<framecache::graph::Graph, Error> {
    load_model_bytes(bytes, Path::new("test.tflite"), ImportOptions::default())
}

fn rejects(bytes: &[u8], needle: &str) {
    match load(bytes) {
        Ok(_) => panic!("accepted; expected an error containing '{needle}'"),
        Err(e) => assert!(e.to_string().contains(needle), "'{e}' does not contain '{needle}'"),
    }
}

#[test]
fn mediapipe_tflite_files_match_their_onnx_conversions() -> anyhow::Result<()> {
    let Some(data) = shared_data_or_skip("mediapipe_tflite_files_match_their_onnx_conversions") else { return Ok(()) };
    let frames = clip(&data, "handheld_office_short")?;
    let m = data.join("models/mediapipe");
    for (name, pre) in
        [("selfie_segmentation", Preprocess::default()), ("face_detection_short_range", Preprocess::signed_unit())]
    {
        let lite = Plan::from_onnx(m.join(format!("{name}.tflite")), pre.clone())?;
        let onnx = Plan::from_onnx(m.join(format!("{name}.onnx")), pre)?;
        assert_eq!(lite.graph().input_shape(), onnx.graph().input_shape(), "{name}");
        let opts = SessionOptions { mode: Mode::Exact, threads: Some(2), ..Default::default() };
        let (mut a, mut b) = (Session::new(lite.clone(), opts.clone())?, Session::new(onnx, opts.clone())?);
        let mut cached = Session::new(lite, opts)?;
        let mut worst = 0.0f32;
        for f in [&frames[0], &frames[1], &frames[20]] {
            let (x, y, z) = (a.run_full(f.as_frame())?, b.run_full(f.as_frame())?, cached.process(f.as_frame())?);
            assert_eq!(x.len(), y.len());
            for ((p, q), r) in x.iter().zip(&y).zip(&z) {
                assert_eq!(p.name, q.name);
                // NHWC against NCHW: the same order for one channel or flat outputs.
                assert_eq!(p.data.len(), q.data.len(), "{name}: {}", p.name);
                let (d, scale) = max_abs_diff(&p.data, &q.data);
                worst = worst.max(d / scale.max(1.0));
                assert!(
                    d <= 1e-4 * scale.max(1.0),
                    "{name}: {} differs from the ONNX twin by {d} (scale {scale})",
                    p.name
                );
                let (d, scale) = max_abs_diff(&r.data, &p.data);
                assert!(d <= 1e-5 * scale.max(1e-3), "{name}: cached {} differs from full by {d}", p.name);
            }
        }
        eprintln!("{name}.tflite: worst |tflite - onnx| / max(1, scale) = {worst:.2e}");
    }
    Ok(())
}

/// The classifiers converted to TFLite by `../shared/tools/peers/setup.sh` (onnx2tf 2.6.9,
/// float32) against the ONNX files they came from. They live in the peers' folder
/// (`$PEERS_DIR`, default `~/.cache/framecache-peers`), not in `../shared`, so the test skips
/// with a message where the peers are not set up.
#[test]
fn onnx2tf_classifiers_match_their_onnx_sources() -> anyhow::Result<()> {
    let Some(data) = shared_data_or_skip("onnx2tf_classifiers_match_their_onnx_sources") else { return Ok(()) };
    let peers = std::env::var_os("PEERS_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/framecache-peers")));
    let Some(dir) = peers.map(|p| p.join("models/tflite")).filter(|d| d.is_dir()) else {
        eprintln!("skipping onnx2tf_classifiers_match_their_onnx_sources: no peers' models/tflite (run ../shared/tools/peers/setup.sh)");
        return Ok(());
    };
    let frames = clip(&data, "static_vtest_pedestrians")?;
    for name in ["mobilenet_v2", "efficientnet_lite0"] {
        let lite = dir.join(name).join(format!("{name}_float32.tflite"));
        if !lite.is_file() {
            eprintln!("skipping {name}: {} is missing", lite.display());
            continue;
        }
        let pre = Preprocess::imagenet();
        let (a, b) = (
            Plan::from_onnx(&lite, pre.clone())?,
            Plan::from_onnx(data.join(format!("models/imagenet/{name}.onnx")), pre)?,
        );
        let opts = SessionOptions { threads: Some(2), ..Default::default() };
        let (mut a, mut b) = (Session::new(a, opts.clone())?, Session::new(b, opts)?);
        let mut worst = 0.0f32;
        for f in [&frames[0], &frames[40]] {
            let (x, y) = (a.run_full(f.as_frame())?, b.run_full(f.as_frame())?);
            let (d, scale) = max_abs_diff(&x[0].data, &y[0].data);
            worst = worst.max(d / scale.max(1.0));
            assert!(d <= 1e-4 * scale.max(1.0), "{name}: the TFLite conversion differs by {d} (scale {scale})");
        }
        eprintln!("{name}_float32.tflite: worst |tflite - onnx| / max(1, scale) = {worst:.2e}");
    }
    Ok(())
}

#[test]
fn a_small_built_model_imports_and_runs() -> anyhow::Result<()> {
    let g = load(&conv_model())?;
    let plan = Plan::new(g, Preprocess::default())?;
    let mut s = Session::new(plan, SessionOptions { threads: Some(1), ..Default::default() })?;
    let pixels: Vec<u8> = (0..8 * 8 * 3).map(|i| (i * 29 % 256) as u8).collect();
    let out = s.run_full(framecache::Frame::rgb(8, 8, &pixels))?;
    assert_eq!(out[0].shape, vec![1, 8, 8, 4]);
    assert!(out[0].data.iter().all(|v| (0.5..=1.0).contains(v)), "logistic of a ReLU lies in [0.5, 1]");
    Ok(())
}

#[test]
fn truncated_files_wrong_magic_and_bad_offsets_are_errors() {
    let good = conv_model();
    for n in [0, 3, 8, 16, good.len() / 2, good.len() - 1] {
        assert!(load(&good[..n]).is_err(), "a file truncated to {n} bytes was accepted");
    }
    let mut magic = good.clone();
    magic[4..8].copy_from_slice(b"ONNX");
    // Not TFLite by its identifier: read as ONNX, which fails as a protobuf.
    assert!(load(&magic).is_err());
    // The root offset pointing past the end, then every 4-byte word overwritten in turn.
    let mut root = good.clone();
    root[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    rejects(&root, "invalid TFLite flatbuffer");
    for at in (8..good.len() - 4).step_by(4) {
        let mut bad = good.clone();
        bad[at..at + 4].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
        let _ = load(&bad);
    }
}

#[test]
fn a_cycle_unsupported_ops_and_quantized_tensors_are_clear_errors() {
    // t1 is read by the first operator but written by the second, which reads the first's.
    let cycle = model(
        &[T::f32(&[1, 4, 4, 3]), T::f32(&[1, 4, 4, 3]), T::f32(&[1, 4, 4, 3])],
        &[
            O { code: BuiltinOperator::RELU, inputs: vec![1], outputs: vec![2] },
            O { code: BuiltinOperator::RELU, inputs: vec![2], outputs: vec![1] },
        ],
        &[0],
        &[1],
    );
    rejects(&cycle, "before any operator produces it");
    let tanh = model(
        &[T::f32(&[1, 4, 4, 3]), T::f32(&[1, 4, 4, 3])],
        &[O { code: BuiltinOperator::TANH, inputs: vec![0], outputs: vec![1] }],
        &[0],
        &[1],
    );
    rejects(&tanh, "TANH");
    let int8 = model(
        &[
            T::f32(&[1, 4, 4, 3]),
            T { dims: vec![2, 1, 1, 3], ty: TensorType::INT8, data: Some(vec![1; 6]) },
            T::f32(&[1, 4, 4, 2]),
        ],
        &[O { code: BuiltinOperator::CONV_2D, inputs: vec![0, 1], outputs: vec![2] }],
        &[0],
        &[2],
    );
    rejects(&int8, "quantized TFLite needs int8 support");
    let int8_input = model(
        &[T { dims: vec![1, 4, 4, 3], ty: TensorType::UINT8, data: None }, T::f32(&[1, 4, 4, 3])],
        &[O { code: BuiltinOperator::RELU, inputs: vec![0], outputs: vec![1] }],
        &[0],
        &[1],
    );
    rejects(&int8_input, "int8 support");
    let out_of_range = model(
        &[T::f32(&[1, 4, 4, 3]), T::f32(&[1, 4, 4, 3])],
        &[O { code: BuiltinOperator::RELU, inputs: vec![7], outputs: vec![1] }],
        &[0],
        &[1],
    );
    rejects(&out_of_range, "tensor index 7 out of range");
}
