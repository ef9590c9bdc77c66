//! Every ONNX model in `../shared/data/models` imports, matches tract on real frames, and in
//! cached exact mode equals its own full inference frame by frame. Exported back to ONNX
//! (`framecache export`), it gives the same outputs in tract and in the engine. Models with dynamic spatial
//! input dims run at a size given here, as a user gives it (`input_size` or `--input-size`).

use framecache::import::{load_model, load_model_bytes, load_unfused, ImportOptions};
use framecache::{Mode, Plan, Preprocess, Session, SessionOptions};
use framecache_tests::*;

/// `(file under models/, preprocessing, input size for dynamic dims)`.
type Case = (&'static str, Preprocess, Option<(usize, usize)>);

fn all_models() -> Vec<Case> {
    let sym = Preprocess::tf_symmetric();
    let unit = Preprocess::default();
    vec![
        ("imagenet/mobilenet_v2.onnx", Preprocess::imagenet(), None),
        ("imagenet/efficientnet_lite0.onnx", sym.clone(), None),
        ("mediapipe/face_detection_full_range.onnx", sym.clone(), None),
        ("mediapipe/face_detection_short_range.onnx", sym.clone(), None),
        ("mediapipe/face_landmark.onnx", unit.clone(), None),
        ("mediapipe/hand_landmark_lite.onnx", unit.clone(), None),
        ("mediapipe/iris_landmark.onnx", unit.clone(), None),
        ("mediapipe/palm_detection_lite.onnx", unit.clone(), None),
        ("mediapipe/pose_landmark_full.onnx", unit.clone(), None),
        ("mediapipe/selfie_segmentation.onnx", unit.clone(), None),
        ("mediapipe/selfie_segmentation_landscape.onnx", unit.clone(), None),
        // MTCNN: (x - 127.5) / 128, as the original Caffe nets.
        ("mtcnn/mtcnn_pnet.onnx", sym.clone(), Some((160, 120))),
        ("mtcnn/mtcnn_rnet.onnx", sym.clone(), None),
        ("mtcnn/mtcnn_onet.onnx", sym.clone(), None),
        // RapidOCR: the detector takes multiples of 32; the classifier 192x48 text lines.
        ("rapidocr/ch_PP-OCRv4_det_infer.onnx", Preprocess::imagenet(), Some((320, 224))),
        ("rapidocr/ch_ppocr_mobile_v2.0_cls_infer.onnx", sym, Some((192, 48))),
    ]
}

#[test]
fn every_shared_model_imports_and_matches_tract_full_and_cached() -> anyhow::Result<()> {
    let Some(data) = shared_data_or_skip("every_shared_model_imports_and_matches_tract_full_and_cached") else {
        return Ok(());
    };
    // Tract on two real frames (the clip of the BlazePose check in real_models.rs); the cache on
    // a sequence with a moving patch, so that exact reuse happens.
    let office = clip(&data, "handheld_office_short")?;
    let real = [&office[0], &office[35]];
    let frames = pasted_sequence(&data, 4)?;
    let on_disk = std::fs::read_dir(data.join("models"))?
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).into_iter().flatten())
        .filter(|f| f.as_ref().is_ok_and(|f| f.path().extension().is_some_and(|e| e == "onnx")))
        .count();
    assert_eq!(on_disk, all_models().len(), "a model in ../shared/data/models is not in this test's list");
    for (file, pre, size) in all_models() {
        let path = data.join("models").join(file);
        let options = ImportOptions { input_size: size, ..Default::default() };
        let graph = load_model(&path, options)?;
        let plan = Plan::new(graph, pre.clone())?;
        let s = plan.graph().input_shape();
        let tract = TractModel::load_with_input(&path, Some([1, s.c, s.h, s.w]))?;
        // The graph as imported, written as ONNX (`framecache export`): tract and the engine
        // run that file too.
        let onnx = framecache::export::to_onnx(&load_unfused(&std::fs::read(&path)?, &path, options)?, "test")?;
        let exported = TractModel::from_bytes(&onnx)?;
        let mut reimported = Session::new(
            Plan::new(load_model_bytes(&onnx, &path, ImportOptions::default())?, pre)?,
            SessionOptions { threads: Some(2), ..Default::default() },
        )?;
        let opts = SessionOptions { mode: Mode::Exact, threads: Some(2), ..Default::default() };
        let (mut cached, mut full) = (Session::new(plan.clone(), opts.clone())?, Session::new(plan.clone(), opts)?);
        let mut worst = 0.0f32;
        for (i, f) in real.iter().enumerate() {
            let ours = full.run_full(f.as_frame())?;
            let theirs = tract.run_nhwc(full.activation(0), s.h, s.w, s.c)?;
            let from_export = exported.run_nhwc(full.activation(0), s.h, s.w, s.c)?;
            let again: Vec<Vec<f32>> = reimported.run_full(f.as_frame())?.into_iter().map(|o| o.data).collect();
            for (what, outputs) in [("tract", &theirs), ("tract on the export", &from_export), ("the export", &again)] {
                assert_eq!(ours.len(), outputs.len(), "{file}: output count of {what}");
                for (o, t) in ours.iter().zip(outputs) {
                    let (d, scale) = max_abs_diff(&o.data, t);
                    let p99 = percentile_abs_diff(&o.data, t, 0.99);
                    worst = worst.max(d / scale.max(1.0));
                    // As for BlazePose in real_models.rs: ill-conditioned logits may reach 1e-3
                    // of the scale at their worst value; 99% must be within 1e-4.
                    let tol = 1e-4 * scale.max(1.0);
                    assert!(
                        d <= tol || (p99 <= tol && d <= 10.0 * tol),
                        "{file}: output {} differs from {what} by {d} (p99 {p99}, scale {scale}) at frame {i}",
                        o.name
                    );
                }
            }
        }
        for (i, f) in frames.iter().enumerate() {
            let ours = full.run_full(f.as_frame())?;
            let reused = cached.process(f.as_frame())?;
            for (c, o) in reused.iter().zip(&ours) {
                let (d, scale) = max_abs_diff(&c.data, &o.data);
                assert!(d <= 1e-5 * scale.max(1e-3), "{file}: frame {i}, {}: cached differs from full by {d}", c.name);
            }
        }
        eprintln!("{file} ({s}): worst |ours - tract| / max(1, scale) = {worst:.2e}");
    }
    Ok(())
}

/// An explicit input size replaces an ONNX model's static spatial dims: MobileNetV2, exported at
/// 224x224, runs at 288x160 (a 16:9 frame with its aspect kept, as the shared bundle runs it) and
/// equals tract at that size, cached and full alike. A model whose dense layer reads a flattened
/// map of its export's size (MTCNN's O-Net) is refused, naming the node.
#[test]
fn a_static_classifier_runs_at_another_size_and_a_dense_net_is_refused() -> anyhow::Result<()> {
    let Some(data) = shared_data_or_skip("a_static_classifier_runs_at_another_size_and_a_dense_net_is_refused") else {
        return Ok(());
    };
    let path = data.join("models/imagenet/mobilenet_v2.onnx");
    let options = ImportOptions { input_size: Some((288, 160)), ..Default::default() };
    let plan = Plan::new(load_model(&path, options)?, Preprocess::imagenet())?;
    let s = plan.graph().input_shape();
    assert_eq!((s.w, s.h, s.c), (288, 160, 3));
    let tract = TractModel::load_with_input(&path, Some([1, 3, 160, 288]))?;
    let opts = SessionOptions { mode: Mode::Exact, threads: Some(2), ..Default::default() };
    let (mut cached, mut full) = (Session::new(plan.clone(), opts.clone())?, Session::new(plan, opts)?);
    for f in &pasted_sequence(&data, 3)? {
        let ours = full.run_full(f.as_frame())?;
        let theirs = tract.run_nhwc(full.activation(0), s.h, s.w, s.c)?;
        assert_eq!(ours[0].data.len(), 1000);
        let (d, scale) = max_abs_diff(&ours[0].data, &theirs[0]);
        assert!(d <= 1e-4 * scale.max(1.0), "MobileNetV2 at 288x160 differs from tract by {d} (scale {scale})");
        let reused = cached.process(f.as_frame())?;
        assert_eq!(reused[0].data, ours[0].data, "cached differs from full at 288x160");
    }
    let onet = data.join("models/mtcnn/mtcnn_onet.onnx");
    let err = load_model(&onet, ImportOptions { input_size: Some((64, 64)), ..Default::default() }).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("node"), "the error names no node: {text}");
    eprintln!("O-Net at 64x64: {text}");
    Ok(())
}
