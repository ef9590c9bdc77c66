//! Multi-task bundles on the real models and clips in `../shared/data` (skipped, with a
//! message, when it is absent): split against unsplit, decoders on real frames, head rates,
//! manifest errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use framecache::heads::ssd::iou;
use framecache::heads::{mask_to_frame, FrameMap, Head};
use framecache::{Bundle, BundleSession, Error, Frame, HeadStatus, Plan, Session, SessionOptions};
use framecache_tests::*;

fn model_dirs(data: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        ["mediapipe", "imagenet", "mtcnn", "rapidocr"].map(|d| data.join("models").join(d)).into();
    dirs.push(project_root().join("assets/models"));
    dirs
}

fn bundle(data: &Path, name: &str) -> anyhow::Result<Arc<Bundle>> {
    Ok(Bundle::load(project_root().join("assets/bundles").join(name), &model_dirs(data))?)
}

fn options() -> SessionOptions {
    SessionOptions { threads: Some(2), ..Default::default() }
}

/// `w x h` pixels of `f` from `(x0, y0)`, as an RGB buffer.
fn crop(f: &Rgb, x0: usize, y0: usize, w: usize, h: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(w * h * 3);
    for y in y0..y0 + h {
        let row = (y * f.width + x0) * 3;
        out.extend_from_slice(&f.data[row..row + w * 3]);
    }
    out
}

/// The split bundles (BlazePose into body + 4 heads, MobileNetV2 at its stride-16 tap) run
/// cached in exact mode over real frames, against the unsplit ONNX models run in full by
/// tract on the same input tensor.
#[test]
fn split_bundles_equal_the_unsplit_models_run_by_tract() -> anyhow::Result<()> {
    let Some(data) = shared_data_or_skip("split_bundles_equal_the_unsplit_models_run_by_tract") else { return Ok(()) };
    let frames = clip(&data, "handheld_office_short")?;
    for name in ["blazepose.toml", "mobilenet_v2_s16.toml"] {
        let b = bundle(&data, name)?;
        let bb = &b.backbones[0];
        let plan = &bb.plan;
        assert!(!plan.heads().is_empty());
        let (backbone_macs, head_macs) = plan.part_macs();
        assert!(backbone_macs > 0 && head_macs.iter().all(|&m| m > 0), "{name}: {backbone_macs} {head_macs:?}");
        let unsplit = Plan::from_onnx(&bb.model, plan.preprocess().clone())?;
        let tract = TractModel::load(&bb.model)?;
        let mut session = Session::new(Arc::clone(plan), options())?;
        let s = plan.graph().input_shape();
        for f in &frames[..4] {
            let ours = session.process(f.as_frame())?;
            let theirs = tract.run_nhwc(session.activation(0), s.h, s.w, s.c)?;
            for o in &ours {
                let k =
                    unsplit.graph().outputs.iter().position(|u| u.name == o.name).expect("output of the unsplit model");
                let (d, scale) = max_abs_diff(&o.data, &theirs[k]);
                let p99 = percentile_abs_diff(&o.data, &theirs[k], 0.99);
                let tol = 1e-4 * scale.max(1.0);
                // BlazePose's segmentation logits: see real_models.rs (tract and ORT differ by
                // 4.7e-4 of the scale at the worst pixel).
                assert!(d <= tol || (p99 <= tol && d <= 10.0 * tol), "{name}: {} differs by {d} (p99 {p99})", o.name);
            }
        }
    }
    Ok(())
}

/// Every bundle in `assets/bundles` loads; each single-model backbone, run cached in exact
/// mode over real frames, gives every output of its model as tract computes it on the same
/// input tensor (at the manifest's `input_size` for fully convolutional models).
#[test]
fn every_bundle_in_assets_matches_tract() -> anyhow::Result<()> {
    let Some(data) = shared_data_or_skip("every_bundle_in_assets_matches_tract") else { return Ok(()) };
    let frames = clip(&data, "handheld_office_short")?;
    let mut names: Vec<String> = std::fs::read_dir(project_root().join("assets/bundles"))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    assert!(names.len() >= 9, "{names:?}");
    for name in names.iter().filter(|n| n.ends_with(".toml")) {
        let b = bundle(&data, name)?;
        for bb in b.backbones.iter().filter(|bb| bb.models.len() == 1) {
            let plan = &bb.plan;
            let s = plan.graph().input_shape();
            let tract = TractModel::load_with_input(&bb.model, Some([1, s.c, s.h, s.w]))?;
            let names = tract_output_names(&bb.model)?;
            // Heads with a model of their own (a distilled head's graph file) are not in the
            // backbone's ONNX file: tests/train.rs checks them.
            let size = framecache::import::ImportOptions { input_size: Some((s.w, s.h)), ..Default::default() };
            let model = framecache::import::load_model(&bb.model, size)?;
            let own: Vec<&String> = model.outputs.iter().map(|o| &o.name).chain(model.tensors.keys()).collect();
            let mut session = Session::new(Arc::clone(plan), options())?;
            for f in [&frames[0], &frames[1], &frames[20]] {
                let ours = session.process(f.as_frame())?;
                let theirs = tract.run_nhwc(session.activation(0), s.h, s.w, s.c)?;
                for o in ours.iter().filter(|o| own.contains(&&o.name)) {
                    let k = names.iter().position(|n| *n == o.name).expect("an output of the model");
                    let (d, scale) = max_abs_diff(&o.data, &theirs[k]);
                    let p99 = percentile_abs_diff(&o.data, &theirs[k], 0.99);
                    let tol = 1e-4 * scale.max(1.0);
                    // BlazePose's segmentation logits: see real_models.rs.
                    assert!(
                        d <= tol || (p99 <= tol && d <= 10.0 * tol),
                        "{name} ({}): {} differs by {d} (p99 {p99})",
                        bb.name(),
                        o.name
                    );
                }
            }
        }
    }
    Ok(())
}

/// The output names of an ONNX file, in order.
fn tract_output_names(model: &Path) -> anyhow::Result<Vec<String>> {
    use tract_onnx::prelude::Framework;
    let bytes = std::fs::read(model)?;
    let proto = tract_onnx::onnx().proto_model_for_read(&mut &*bytes)?;
    Ok(proto.graph.map(|g| g.output.into_iter().map(|o| o.name).collect()).unwrap_or_default())
}

/// BlazeFace on a face crop of a dev clip finds the face where it was measured by hand, and
/// finds nothing above threshold on a frame without faces.
///
/// Provenance of the box: `fast_animation_bunny/frame_0051.png` (Big Buck Bunny, CC-BY-3.0
/// Blender Foundation), cropped to the 96x96 square at (72, 0) so that the 128x128 model input
/// is not distorted. The bunny's face (eyes, nose and mouth, without the ears) was measured
/// by hand on a 4x enlargement with a 10-pixel grid: x 101–129, y 17–43 in frame pixels,
/// i.e. x 29–57, y 17–43 in the crop. There is no human face in the shared clips.
#[test]
fn blazeface_finds_the_hand_measured_face_and_nothing_on_a_faceless_frame() -> anyhow::Result<()> {
    let Some(data) = shared_data_or_skip("blazeface_finds_the_hand_measured_face") else { return Ok(()) };
    let b = bundle(&data, "camera_stream.toml")?;
    let mut stream = BundleSession::new(b, options())?;
    let faces = |results: &[framecache::HeadResult]| match results.iter().find(|r| r.name == "faces") {
        Some(framecache::HeadResult { output: Some(Head::Detections { detections, .. }), .. }) => detections.clone(),
        other => panic!("no face head result: {other:?}"),
    };

    let bunny = clip(&data, "fast_animation_bunny")?;
    let face_crop = crop(&bunny[50], 72, 0, 96, 96);
    let found = faces(&stream.process(Frame::rgb(96, 96, &face_crop))?);
    let hand = [29.0, 17.0, 57.0, 43.0];
    eprintln!("detections on the face crop: {found:?}");
    let best = found.first().expect("a face above threshold");
    let overlap = iou(&best.bbox, &hand);
    assert!(best.score >= 0.5 && overlap >= 0.4, "best {best:?}: IoU {overlap} with the hand box {hand:?}");
    assert_eq!(best.keypoints.len(), 6);

    // Handheld cockatoo: a bird, no face (ORT's best score over the clip is 0.18).
    let bird = clip(&data, "handheld_cockatoo")?;
    for f in [&bird[0], &bird[70], &bird[140]] {
        let found = faces(&stream.process(f.as_frame())?);
        assert!(found.is_empty(), "faces on a faceless frame: {found:?}");
    }
    Ok(())
}

/// Selfie segmentation on a crop of two pedestrians covers them and little else.
///
/// Provenance: `static_vtest_pedestrians/frame_0040.png` (OpenCV vtest.avi), 80x80 crop at
/// (216, 80). The two walkers, measured by hand on a 4x enlargement with a 10-pixel grid,
/// span x 24–50, y 17–58 of the crop.
#[test]
fn selfie_mask_covers_the_people() -> anyhow::Result<()> {
    let Some(data) = shared_data_or_skip("selfie_mask_covers_the_people") else { return Ok(()) };
    let b = bundle(&data, "camera_stream.toml")?;
    let mut stream = BundleSession::new(Arc::clone(&b), options())?;
    let frames = clip(&data, "static_vtest_pedestrians")?;
    let pixels = crop(&frames[39], 216, 80, 80, 80);
    let results = stream.process(Frame::rgb(80, 80, &pixels))?;
    let Some(Head::Mask { width, height, probs, threshold, .. }) = &results[0].output else { panic!("{results:?}") };
    let plan = &b.backbones[0].plan;
    let map = FrameMap::new(plan.preprocess(), 80, 80, plan.graph().input_shape());
    let mask = mask_to_frame(probs, *width, *height, &map, 80, 80);
    let (mut inside, mut n_in, mut outside, mut n_out) = (0, 0, 0, 0);
    for y in 0..80 {
        for x in 0..80 {
            let on = mask[y * 80 + x] >= *threshold;
            if (24..=50).contains(&x) && (17..=58).contains(&y) {
                n_in += 1;
                inside += usize::from(on);
            } else {
                n_out += 1;
                outside += usize::from(on);
            }
        }
    }
    let (cover, spill) = (inside as f64 / n_in as f64, outside as f64 / n_out as f64);
    eprintln!("mask covers {cover:.2} of the people's box and {spill:.3} of the rest");
    assert!(cover >= 0.5 && spill <= 0.05, "cover {cover}, spill {spill}");
    Ok(())
}

/// A head set to every 4th frame runs on exactly frames 0, 4, 8 and costs nothing on the
/// others; when it runs it has caught up with everything that changed meanwhile (exact mode:
/// equal to full inference of that frame).
#[test]
fn a_head_at_rate_4_runs_on_exactly_every_4th_frame() -> anyhow::Result<()> {
    let Some(data) = shared_data_or_skip("a_head_at_rate_4_runs_on_exactly_every_4th_frame") else { return Ok(()) };
    let b = bundle(&data, "blazepose.toml")?;
    let mut stream = BundleSession::new(Arc::clone(&b), options())?;
    stream.set_head_rate("segmentation", 4)?;
    let mut reference = BundleSession::new(b, options())?;
    let frames = clip(&data, "handheld_office_short")?;
    let mut ran = Vec::new();
    for (i, f) in frames[..11].iter().enumerate() {
        let results = stream.process(f.as_frame())?;
        let seg = results.iter().find(|r| r.name == "segmentation").unwrap();
        if seg.status == HeadStatus::Skipped {
            assert_eq!(seg.macs, 0, "frame {i}");
        } else {
            ran.push(i);
            let full = reference.run_full(f.as_frame())?;
            let want = &full.iter().find(|r| r.name == "segmentation").unwrap().output;
            let (Some(Head::Mask { probs: a, .. }), Some(Head::Mask { probs: b, .. })) = (&seg.output, want) else {
                panic!("{seg:?}")
            };
            let (d, _) = max_abs_diff(a, b);
            assert!(d <= 1e-5, "frame {i}: the caught-up mask differs from full inference by {d}");
        }
        let landmarks = results.iter().find(|r| r.name == "landmarks").unwrap();
        assert_ne!(landmarks.status, HeadStatus::Skipped, "frame {i}: rate-1 head skipped");
    }
    assert_eq!(ran, [0, 4, 8]);
    Ok(())
}

fn write_manifest(dir: &Path, name: &str, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn manifest_errors_name_the_field_and_value() {
    let Some(data) = shared_data_or_skip("manifest_errors_name_the_field_and_value") else { return };
    let dir = std::env::temp_dir().join(format!("framecache-manifests-{}", std::process::id()));
    let dirs = model_dirs(&data);
    let mobilenet = "[[backbone]]\nmodel = \"mobilenet_v2.onnx\"\n[backbone.preprocess]\nfit = \"stretch\"\n";

    // A tap the model does not have.
    let p = write_manifest(
        &dir,
        "tap.toml",
        &format!(
            "{mobilenet}taps = []\n[[backbone.head]]\nname = \"c\"\ndecoder = \"classify\"\noutputs = [\"logits\"]\n"
        )
        .replace("taps = []\n", "")
        .replace("model = \"mobilenet_v2.onnx\"\n", "model = \"mobilenet_v2.onnx\"\ntaps = [\"features.99.out\"]\n"),
    );
    match Bundle::load(&p, &dirs) {
        Err(e @ Error::UnknownTensor { .. }) => {
            let m = e.to_string();
            assert!(m.contains("backbone[0].taps") && m.contains("features.99.out"), "{m}")
        }
        other => panic!("expected UnknownTensor, got {other:?}"),
    }

    // An output the model does not have.
    let p = write_manifest(
        &dir,
        "output.toml",
        &format!("{mobilenet}[[backbone.head]]\nname = \"c\"\ndecoder = \"classify\"\noutputs = [\"probs\"]\n"),
    );
    match Bundle::load(&p, &dirs) {
        Err(e @ Error::UnknownTensor { .. }) => assert!(e.to_string().contains("outputs = \"probs\""), "{e}"),
        other => panic!("expected UnknownTensor, got {other:?}"),
    }

    // A head model whose input (3x256x256) does not match its tap (MobileNetV2's 3x224x224 input).
    let p = write_manifest(
        &dir,
        "shape.toml",
        &format!(
            "{mobilenet}[[backbone.head]]\nname = \"seg\"\ndecoder = \"segment\"\nmodel = \"selfie_segmentation.onnx\"\n\
             input = \"input\"\noutputs = [\"activation_10\"]\n"
        ),
    );
    match Bundle::load(&p, &dirs) {
        Err(e @ Error::HeadShape { .. }) => {
            let m = e.to_string();
            assert!(m.contains("'seg'") && m.contains("[1, 3, 256, 256]") && m.contains("[1, 3, 224, 224]"), "{m}")
        }
        other => panic!("expected HeadShape, got {other:?}"),
    }

    // Anchors that do not match the output size (three layers give 512 + 256 = 768, not 896).
    let p = write_manifest(
        &dir,
        "anchors.toml",
        "[[backbone]]\nmodel = \"face_detection_short_range.onnx\"\n[backbone.preprocess]\nfit = \"stretch\"\n\
         [[backbone.head]]\nname = \"faces\"\ndecoder = \"detect_ssd\"\noutputs = [\"regressors\", \"classificators\"]\n\
         strides = [8, 16, 16]\nkeypoints = 6\n",
    );
    match Bundle::load(&p, &dirs) {
        Err(e @ Error::AnchorMismatch { .. }) => {
            let m = e.to_string();
            assert!(m.contains("strides") && m.contains("768 anchors") && m.contains("896 rows"), "{m}")
        }
        other => panic!("expected AnchorMismatch, got {other:?}"),
    }

    // Floats out of range, NaN among them (NMS with iou_threshold NaN or 1 used to panic).
    for (field, value) in [("iou_threshold", "nan"), ("iou_threshold", "1.0"), ("anchor_offset", "nan"), ("top_k", "0")]
    {
        let p = write_manifest(
            &dir,
            "floats.toml",
            &format!(
                "[[backbone]]\nmodel = \"face_detection_short_range.onnx\"\n[backbone.preprocess]\nfit = \"stretch\"\n\
                 [[backbone.head]]\nname = \"faces\"\ndecoder = \"detect_ssd\"\noutputs = [\"regressors\", \"classificators\"]\n\
                 strides = [8, 16, 16, 16]\nkeypoints = 6\n{field} = {value}\n"
            ),
        );
        match Bundle::load(&p, &dirs) {
            Err(e @ Error::Manifest { .. }) => assert!(e.report().contains(field), "{e}"),
            other => panic!("{field} = {value}: expected Manifest, got {other:?}"),
        }
    }

    // A field of the wrong decoder kind, and an unknown decoder.
    let p = write_manifest(
        &dir,
        "decoder.toml",
        &format!("{mobilenet}[[backbone.head]]\nname = \"c\"\ndecoder = \"detect\"\noutputs = [\"logits\"]\n"),
    );
    match Bundle::load(&p, &dirs) {
        Err(e @ Error::Manifest { .. }) => assert!(e.report().contains("detect"), "{e}"),
        other => panic!("expected Manifest, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The people bundle merges selfie segmentation and BlazePose (same 256x256 input) into one
/// backbone: one resample and one change detection for both. Their results equal the models'
/// own: the person mask of the camera-stream bundle (selfie alone) and the landmarks of the
/// BlazePose bundle, frame by frame in exact mode.
#[test]
fn models_with_one_input_geometry_share_preprocessing_and_change_detection() -> anyhow::Result<()> {
    let Some(data) = shared_data_or_skip("models_with_one_input_geometry_share_preprocessing") else { return Ok(()) };
    let people = bundle(&data, "people.toml")?;
    assert_eq!(people.backbones.len(), 2, "selfie + BlazePose merged, BlazeFace apart");
    assert_eq!(people.backbones[0].models.len(), 2);
    let mut merged = BundleSession::new(people, options())?;
    let mut selfie = BundleSession::new(bundle(&data, "camera_stream.toml")?, options())?;
    let mut pose = BundleSession::new(bundle(&data, "blazepose.toml")?, options())?;
    for f in &clip(&data, "static_vtest_pedestrians")?[..4] {
        let frame = f.as_frame();
        let m = merged.process(frame)?;
        let s = selfie.process(frame)?;
        let p = pose.process(frame)?;
        let find =
            |rs: &[framecache::HeadResult], name: &str| rs.iter().find(|r| r.name == name).unwrap().output.clone();
        let (Some(Head::Mask { probs: a, .. }), Some(Head::Mask { probs: b, .. })) =
            (find(&m, "person"), find(&s, "person"))
        else {
            panic!("masks")
        };
        assert!(max_abs_diff(&a, &b).0 <= 1e-5);
        let (Some(Head::Keypoints { points: a, .. }), Some(Head::Keypoints { points: b, .. })) =
            (find(&m, "pose"), find(&p, "landmarks"))
        else {
            panic!("keypoints")
        };
        for (x, y) in a.iter().zip(&b) {
            assert!((x.x - y.x).abs() <= 1e-3 && (x.y - y.y).abs() <= 1e-3, "{x:?} vs {y:?}");
        }
    }
    Ok(())
}

/// Twenty backbone entries of one model (same taps, size and preprocessing) are one backbone:
/// the model is loaded and compiled once and runs once per frame, its nodes shared by every
/// entry's head, and each head gives what the model alone gives. Head names stay unique across
/// the bundle. Needs only the bundled model.
#[test]
fn backbone_entries_of_one_model_compile_once() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("framecache-dedup-{}", std::process::id()));
    let model = project_root().join("assets/models/mobilenet_v2.onnx");
    let entry = |k: usize| {
        format!(
            "[[backbone]]\nmodel = {model:?}\n[backbone.preprocess]\nfit = \"stretch\"\n\
             [[backbone.head]]\nname = \"c{k}\"\ndecoder = \"classify\"\noutputs = [\"logits\"]\n",
            model = model.display().to_string()
        )
    };
    let one = Bundle::load(write_manifest(&dir, "one.toml", &entry(0)), &[])?;
    let many_text: String = (0..20).map(entry).collect();
    let many = Bundle::load(write_manifest(&dir, "many.toml", &many_text), &[])?;
    assert_eq!(many.backbones.len(), 1);
    assert_eq!(many.backbones[0].models.len(), 1);
    assert_eq!(many.backbones[0].heads.len(), 20);
    assert_eq!(many.backbones[0].plan.graph().nodes.len(), one.backbones[0].plan.graph().nodes.len());

    let (mut one, mut many) = (BundleSession::new(one, options())?, BundleSession::new(many, options())?);
    let frames = framecache_app::clip::Clip::open(&project_root().join("assets/clips/static_coin_motion"))?
        .decode_all(Some(3), || {})?;
    for f in &frames {
        let frame = f.as_frame();
        let alone = one.process(frame)?.remove(0).output;
        let shared = many.process(frame)?;
        assert_eq!(shared.len(), 20);
        for r in &shared {
            assert_eq!(format!("{:?}", r.output), format!("{alone:?}"), "head {}", r.name);
        }
    }

    match Bundle::load(write_manifest(&dir, "twice.toml", &format!("{}{}", entry(3), entry(3))), &[]) {
        Err(e @ Error::Manifest { .. }) => {
            let m = e.report();
            assert!(m.contains("backbone[1].head[0] ('c3').name") && m.contains("two heads have this name"), "{m}")
        }
        other => panic!("expected a Manifest error, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
