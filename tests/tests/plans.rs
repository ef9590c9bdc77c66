//! Compiled plan files (`framecache compile`): every model in `assets/models` and
//! `../shared/data/models` that the engine imports compiles into a plan that loads without its
//! sidecar and gives the same bits as the source model; the C ABI runs a plan from a file and
//! from memory; bad plans are clear errors.

use std::path::{Path, PathBuf};

use framecache::import::plan_file;
use framecache::{Frame, Mode, Session, SessionOptions, SidecarModel};
use framecache_tests::*;

fn assets_models() -> PathBuf {
    project_root().join("assets/models")
}

/// The size a model with dynamic input dims is compiled at (as a user gives `--input-size`).
fn input_size(file: &Path) -> Option<(usize, usize)> {
    match file.file_name()?.to_str()? {
        "mtcnn_pnet.onnx" => Some((160, 120)),
        "ch_PP-OCRv4_det_infer.onnx" => Some((320, 224)),
        _ => None,
    }
}

/// Every model file under `dir` (one level of subfolders): ONNX, TFLite and safetensors.
fn model_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    dirs.extend(std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()));
    for d in dirs {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "onnx" || x == "tflite" || x == "safetensors") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Full inference of `model` on each frame, every output's values.
fn outputs(model: &SidecarModel, frames: &[Frame<'_>]) -> Vec<Vec<Vec<f32>>> {
    let opts = SessionOptions { mode: Mode::Exact, threads: Some(1), ..Default::default() };
    let mut s = Session::new(model.plan.clone(), opts).unwrap();
    frames.iter().map(|f| s.run_full(f).unwrap().into_iter().map(|o| o.data).collect()).collect()
}

/// The plan of `model` gives the bits of `model` on `frames`, with its preprocessing, task,
/// labels and decoders; returns the plan's size in bytes.
fn plan_matches_source(model: &Path, frames: &[Frame<'_>]) -> usize {
    let dirs = [assets_models()];
    let size = input_size(model);
    let bytes = plan_file::compile(model, None, &dirs, size, "test")
        .unwrap_or_else(|e| panic!("{}: compile: {e}", model.display()));
    let source = SidecarModel::load(model, None, &dirs, size, None).unwrap();
    let plan = SidecarModel::from_plan(&bytes, Path::new("plan")).unwrap();
    let name = model.display();
    assert_eq!(plan.config.task, source.config.task, "{name}: task");
    assert_eq!(plan.config.preprocess, source.config.preprocess, "{name}: preprocessing");
    assert_eq!(plan.config.mask_threshold, source.config.mask_threshold, "{name}: mask threshold");
    assert_eq!(plan.labels, source.labels, "{name}: labels");
    assert_eq!(plan.decoders, source.decoders, "{name}: decoders");
    assert_eq!(plan.plan.graph().nodes.len(), source.plan.graph().nodes.len(), "{name}: node count");
    let (a, b) = (outputs(&plan, frames), outputs(&source, frames));
    for (f, (a, b)) in a.iter().zip(&b).enumerate() {
        for (k, (a, b)) in a.iter().zip(b).enumerate() {
            let same = a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{name}: output {k} of frame {f} differs from the source model's");
        }
    }
    bytes.len()
}

#[test]
fn every_model_compiles_to_a_plan_with_the_same_bits() {
    let coin = project_root().join("assets/clips/static_coin_motion");
    let frames = framecache_app::clip::Clip::open(&coin).unwrap();
    let rgb: Vec<_> = [0, 7].iter().map(|&i| frames.decode(i).unwrap()).collect();
    let frames: Vec<Frame<'_>> = rgb.iter().map(|f| f.as_frame()).collect();
    let mut files = model_files(&assets_models());
    if let Some(data) = shared_data_or_skip("every_model_compiles_to_a_plan_with_the_same_bits (shared models)") {
        files.extend(model_files(&data.join("models")));
    }
    // mobilenet_v2.safetensors in ../shared/data is a weight file for the training tests, and
    // the distilled heads (`*.head.safetensors`) run only as a bundle's heads (they have no
    // sidecar of their own).
    files.retain(|f| {
        !f.ends_with("imagenet/mobilenet_v2.safetensors") && !f.to_string_lossy().ends_with(".head.safetensors")
    });
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        plan_matches_source(f, &frames);
    }
}

#[test]
fn an_int8_model_compiles_to_a_plan_with_the_same_bits() {
    let dir = std::env::temp_dir().join(format!("framecache-plans-int8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (model, clip) =
        (assets_models().join("mobilenet_v2.onnx"), project_root().join("assets/clips/static_coin_motion"));
    let int8 = dir.join("mobilenet_v2.int8.safetensors");
    let (m, c, o) = (model.to_str().unwrap(), clip.to_str().unwrap(), int8.to_str().unwrap());
    cli("quantize", &[m, "--calibrate", c, "--frames", "8", "--out", o]).unwrap();
    let frames = framecache_app::clip::Clip::open(&clip).unwrap();
    let rgb = [frames.decode(3).unwrap()];
    let plan_bytes = plan_matches_source(&int8, &[rgb[0].as_frame()]);
    // The int8 weights are stored as int8 (the classifier and depthwise layers stay float).
    let float = std::fs::metadata(&model).unwrap().len() as usize;
    assert!(plan_bytes < float, "int8 plan {plan_bytes} bytes against the float model's {float}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_c_abi_runs_a_plan_from_a_file_and_from_memory() {
    use framecache_ffi::*;
    let dir = std::env::temp_dir().join(format!("framecache-plans-abi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("selfie.fcplan");
    let model = assets_models().join("selfie_segmentation.onnx");
    cli("compile", &[model.to_str().unwrap(), "--out", out.to_str().unwrap()]).unwrap();
    // From a file, alone in its folder: no sidecar beside it.
    c_abi_runs(&out);
    // From memory, with a null sidecar and labels.
    let from_memory = |bytes: &[u8]| {
        let mut e = 0;
        // SAFETY: `bytes` is readable; null sidecar, labels and options; a writable handle.
        let status = unsafe {
            fc_engine_create_from_bytes(
                bytes.as_ptr(),
                bytes.len(),
                std::ptr::null(),
                std::ptr::null(),
                std::ptr::null(),
                &mut e,
            )
        };
        (status, e)
    };
    let (status, e) = from_memory(&std::fs::read(&out).unwrap());
    assert_eq!(status, FcStatus::Ok);
    let mut heads = 0;
    // SAFETY: a live handle and a writable count.
    assert_eq!(unsafe { fc_engine_head_count(e, &mut heads) }, FcStatus::Ok);
    assert_eq!(heads, 1);
    assert_eq!(fc_engine_destroy(e), FcStatus::Ok);
    // An ONNX model from memory with a null sidecar: a clear error.
    assert_eq!(from_memory(&std::fs::read(&model).unwrap()).0, FcStatus::InvalidArgument);
    // SAFETY: the library's own NUL-terminated string.
    let msg = unsafe { std::ffi::CStr::from_ptr(fc_last_error()) }.to_string_lossy().into_owned();
    assert!(msg.contains("plan file"), "{msg}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `bytes` (a file of `format`, version 1) damaged, through `load`: truncated anywhere,
/// re-versioned, and with a corrupted tensor-table length (refused before anything is
/// allocated), each is an error naming the file (`name`), never a panic.
fn damaged_files_are_errors(bytes: &[u8], name: &str, format: &str, load: impl Fn(&[u8]) -> String) {
    for cut in [0, 7, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        let e = load(&bytes[..cut]);
        assert!(e.contains(name), "cut at {cut}: {e}");
    }
    let at = bytes.windows(11).position(|w| w == b"version = 1").expect("the manifest's version");
    let mut newer = bytes.to_vec();
    newer[at + 10] = b'9';
    let e = load(&newer);
    assert!(e.contains("version 9") && e.contains(&format!("reads {format} version 1")), "{e}");
    let mut corrupt = bytes.to_vec();
    corrupt[0] ^= 0x40;
    assert!(load(&corrupt).contains(name));
}

#[test]
fn bad_plans_are_clear_errors_and_compile_leaves_no_file() {
    let dir = std::env::temp_dir().join(format!("framecache-plans-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = assets_models().join("mobilenet_v2.onnx");
    let bytes = plan_file::compile(&model, None, &[], None, "test").unwrap();
    let load = |b: &[u8]| SidecarModel::from_plan(b, Path::new("bad.fcplan")).map(|_| ()).unwrap_err().to_string();
    damaged_files_are_errors(&bytes, "bad.fcplan", "framecache-plan", load);
    // The CLI: a plan is not compiled twice, an input is never overwritten, a missing model
    // writes nothing.
    let plan = dir.join("m.fcplan");
    std::fs::write(&plan, &bytes).unwrap();
    let compile = |args: &[&str]| cli("compile", args).unwrap_err().to_string();
    let out = dir.join("out.fcplan");
    assert!(compile(&[plan.to_str().unwrap(), "--out", out.to_str().unwrap()]).contains("already a plan file"));
    assert!(compile(&[plan.to_str().unwrap(), "--out", plan.to_str().unwrap()]).contains("overwrite"));
    let missing = dir.join("missing.onnx");
    assert!(compile(&[missing.to_str().unwrap(), "--out", out.to_str().unwrap()]).contains("missing.onnx"));
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "only the plan written above");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The bundle `assets/bundles/NAME.toml` with each of its models compiled into a plan file
/// (under the name the manifest gives it) and its labels files, in a folder under `root`: the
/// manifest's path there. Models are found as `framecache bundle` finds them (`dirs`).
fn plan_bundle(name: &str, root: &Path, dirs: &[PathBuf]) -> PathBuf {
    let source = project_root().join(format!("assets/bundles/{name}.toml"));
    let manifest = framecache::model::Manifest::load(&source).unwrap();
    let dir = root.join(name).join("bundles");
    std::fs::create_dir_all(&dir).unwrap();
    let locate = |file: &Path| {
        std::iter::once(source.parent().unwrap().join(file))
            .chain(dirs.iter().map(|d| d.join(file)))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{name}: {} not found", file.display()))
    };
    for b in &manifest.backbones {
        let out = dir.join(&b.model);
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        std::fs::write(&out, plan_file::compile(&locate(&b.model), None, dirs, None, "test").unwrap()).unwrap();
        for h in b.heads.iter().filter_map(|h| h.labels.as_ref()) {
            std::fs::copy(locate(h), dir.join(h)).unwrap();
        }
    }
    let out = dir.join(format!("{name}.toml"));
    std::fs::copy(&source, &out).unwrap();
    out
}

/// Every head's decoded result (`Debug`, so that floats compare by their digits) of `bundle`
/// computed in full on each of `frames`.
fn decoded(bundle: std::sync::Arc<framecache::Bundle>, frames: &[Rgb]) -> Vec<String> {
    let mut s =
        framecache::BundleSession::new(bundle, SessionOptions { threads: Some(1), ..Default::default() }).unwrap();
    frames
        .iter()
        .map(|f| format!("{:?}", s.run_full(f.as_frame()).unwrap().iter().map(|h| &h.output).collect::<Vec<_>>()))
        .collect()
}

/// A bundle whose model files are all plans runs as the bundle of ONNX files does, bit for bit:
/// its taps and outputs are found by the source model's tensor names (the graph's aliases).
#[test]
fn bundles_of_plans_compute_what_bundles_of_models_do() {
    use framecache::Bundle;
    let Some(_) = shared_data_or_skip("bundles_of_plans_compute_what_bundles_of_models_do") else { return };
    let dirs = framecache_app::bundle::model_dirs(&[]);
    let coin = framecache_app::clip::Clip::open(&project_root().join("assets/clips/static_coin_motion")).unwrap();
    let rgb = [coin.decode(0).unwrap(), coin.decode(5).unwrap()];
    let root = std::env::temp_dir().join(format!("framecache-plans-bundles-{}", std::process::id()));
    // Three bundles: one model with four heads, three models on one stream (labels beside the
    // manifest), and a cut at tapped tensors (labels in ../models).
    for name in ["blazepose", "camera_stream", "mobilenet_v2_s16"] {
        let manifest = plan_bundle(name, &root, &dirs);
        let plans = Bundle::load(&manifest, &[]).unwrap();
        let models = Bundle::load(project_root().join(format!("assets/bundles/{name}.toml")), &dirs).unwrap();
        assert_eq!(decoded(plans, &rgb), decoded(models, &rgb), "{name}: the bundle of plans decodes other results");
    }
    std::fs::remove_dir_all(&root).unwrap();
}

/// The C ABI runs a bundle of plans (as a phone does) and gives every head's result as the
/// engine's own bundle session does: classes with labels, masks, boxes with their keypoints,
/// landmarks, and each head's name, status and cost.
#[test]
fn the_c_abi_runs_bundles_of_plans_with_every_head() {
    use framecache::heads::Head;
    use framecache::{Bundle, BundleSession};
    use framecache_ffi::*;
    let Some(data) = shared_data_or_skip("the_c_abi_runs_bundles_of_plans_with_every_head") else { return };
    let dirs = framecache_app::bundle::model_dirs(&[]);
    let office = clip(&data, "handheld_office_short").unwrap();
    let root = std::env::temp_dir().join(format!("framecache-plans-abi-bundles-{}", std::process::id()));
    let err = || unsafe { std::ffi::CStr::from_ptr(fc_last_error()) }.to_string_lossy().into_owned();
    // Classes, a mask and boxes with keypoints (camera_stream); landmarks and more masks (BlazePose).
    for name in ["camera_stream", "blazepose"] {
        let manifest = plan_bundle(name, &root, &dirs);
        let path = std::ffi::CString::new(manifest.to_str().unwrap()).unwrap();
        let options = FcOptions { mode: FC_MODE_EXACT, threshold: 8.0, tile: 16, threads: 1, bypass: 0 };
        let mut e = 0;
        // SAFETY: a NUL-terminated path, valid options and a writable handle.
        assert_eq!(unsafe { fc_engine_create_bundle(path.as_ptr(), &options, &mut e) }, FcStatus::Ok, "{}", err());
        let bundle = Bundle::load(&manifest, &[]).unwrap();
        let opts = SessionOptions { mode: Mode::Exact, threads: Some(1), ..Default::default() };
        let mut reference = BundleSession::new(bundle, opts).unwrap();
        for f in [&office[0], &office[20]] {
            let rgba: Vec<u8> = f.data.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect();
            let (w, h) = (f.width as u32, f.height as u32);
            // SAFETY: `rgba` holds h rows of w * 4 bytes.
            let status = unsafe { fc_engine_push_rgba(e, rgba.as_ptr(), w, h, w * 4, FC_PIXEL_RGBA, 0) };
            assert_eq!(status, FcStatus::Ok, "{}", err());
            let results = reference.process(f.as_frame()).unwrap();
            let mut count = 0;
            // SAFETY (every call below): a live handle and writable outputs of the sizes given.
            assert_eq!(unsafe { fc_engine_head_count(e, &mut count) }, FcStatus::Ok);
            assert_eq!(count as usize, results.len(), "{name}: head count");
            for (k, r) in results.iter().enumerate() {
                let k32 = k as u32;
                let mut st = FcHeadStatus { name: std::ptr::null(), status: 9, macs: 0, ms: 0.0 };
                assert_eq!(unsafe { fc_engine_head_status(e, k32, &mut st) }, FcStatus::Ok);
                let head_name = unsafe { std::ffi::CStr::from_ptr(st.name) }.to_str().unwrap().to_owned();
                assert_eq!(head_name, r.name, "{name}: head {k}");
                assert_eq!(
                    st.status, FC_HEAD_COMPUTED,
                    "{name}: {head_name}: every head runs in exact mode's first frames"
                );
                assert!(st.ms >= 0.0, "{name}: {head_name}: {st:?}");
                let mut info = FcHeadInfo { kind: 99, count: 0, width: 0, height: 0 };
                assert_eq!(unsafe { fc_engine_head_info(e, k32, &mut info) }, FcStatus::Ok);
                let mut n = 0usize;
                match r.output.as_ref().unwrap() {
                    Head::Classes { top, .. } => {
                        assert_eq!(info.kind, FC_HEAD_CLASSES);
                        let mut out = vec![FcClass { index: 0, prob: 0.0, label: std::ptr::null() }; top.len()];
                        assert_eq!(
                            unsafe { fc_engine_classes(e, k32, out.as_mut_ptr(), out.len(), &mut n) },
                            FcStatus::Ok
                        );
                        for (c, t) in out.iter().zip(top) {
                            let label = unsafe { std::ffi::CStr::from_ptr(c.label) }.to_str().unwrap();
                            assert_eq!(
                                (c.index as usize, c.prob.to_bits(), label),
                                (t.index, t.prob.to_bits(), t.label.as_str())
                            );
                        }
                    }
                    Head::Mask { width, height, probs, .. } => {
                        assert_eq!(
                            (info.kind, info.width as usize, info.height as usize),
                            (FC_HEAD_MASK, *width, *height)
                        );
                        let (mut out, mut mw, mut mh) = (vec![0.0f32; probs.len()], 0, 0);
                        let status = unsafe { fc_engine_mask(e, k32, out.as_mut_ptr(), out.len(), &mut mw, &mut mh) };
                        assert_eq!(status, FcStatus::Ok);
                        assert!(out.iter().zip(probs).all(|(a, b)| a.to_bits() == b.to_bits()), "{name}: {head_name}");
                    }
                    Head::Detections { detections, .. } => {
                        assert_eq!((info.kind, info.count as usize), (FC_HEAD_DETECTIONS, detections.len()));
                        let blank = FcBox { score: 0.0, xmin: 0.0, ymin: 0.0, xmax: 0.0, ymax: 0.0, keypoints: 0 };
                        let mut out = vec![blank; detections.len()];
                        assert_eq!(
                            unsafe { fc_engine_boxes(e, k32, out.as_mut_ptr(), out.len(), &mut n) },
                            FcStatus::Ok
                        );
                        for (i, (b, d)) in out.iter().zip(detections).enumerate() {
                            assert_eq!(
                                [b.xmin, b.ymin, b.xmax, b.ymax, b.score],
                                [d.bbox[0], d.bbox[1], d.bbox[2], d.bbox[3], d.score]
                            );
                            let mut xy = vec![0.0f32; 2 * b.keypoints as usize];
                            let status =
                                unsafe { fc_engine_box_keypoints(e, k32, i as u32, xy.as_mut_ptr(), xy.len(), &mut n) };
                            assert_eq!(status, FcStatus::Ok);
                            assert_eq!(xy, d.keypoints.iter().flatten().copied().collect::<Vec<_>>());
                        }
                        // A box past the end, and a short buffer (which reports the size needed).
                        let status = unsafe {
                            fc_engine_box_keypoints(e, k32, out.len() as u32, std::ptr::null_mut(), 0, &mut n)
                        };
                        assert_eq!(status, FcStatus::InvalidArgument);
                        if !detections.is_empty() {
                            let status = unsafe { fc_engine_boxes(e, k32, out.as_mut_ptr(), 0, &mut n) };
                            assert_eq!((status, n), (FcStatus::BufferTooSmall, detections.len()));
                        }
                    }
                    Head::Keypoints { points, .. } => {
                        assert_eq!((info.kind, info.count as usize), (FC_HEAD_KEYPOINTS, points.len()));
                        let blank = FcKeypoint { x: 0.0, y: 0.0, z: 0.0, visibility: 0.0 };
                        let mut out = vec![blank; points.len()];
                        assert_eq!(
                            unsafe { fc_engine_keypoints(e, k32, out.as_mut_ptr(), out.len(), &mut n) },
                            FcStatus::Ok
                        );
                        for (a, p) in out.iter().zip(points) {
                            assert_eq!([a.x, a.y, a.z, a.visibility], [p.x, p.y, p.z, p.visibility.unwrap_or(-1.0)]);
                        }
                    }
                    Head::Values { .. } => assert_eq!(info.kind, FC_HEAD_VALUES),
                }
                // The wrong accessor for the head's kind is an error, not a crash.
                if !matches!(r.output, Some(Head::Keypoints { .. })) {
                    let status = unsafe { fc_engine_keypoints(e, k32, std::ptr::null_mut(), 0, &mut n) };
                    assert_eq!(status, FcStatus::InvalidArgument);
                }
            }
            // A head past the end.
            let mut st = FcHeadStatus { name: std::ptr::null(), status: 0, macs: 0, ms: 0.0 };
            assert_eq!(unsafe { fc_engine_head_status(e, count, &mut st) }, FcStatus::InvalidArgument);
        }
        assert_eq!(fc_engine_destroy(e), FcStatus::Ok);
    }
    // A missing manifest, and a model file that is not there beside it.
    let missing = std::ffi::CString::new(root.join("nothing.toml").to_str().unwrap()).unwrap();
    let mut e = 0;
    assert_eq!(unsafe { fc_engine_create_bundle(missing.as_ptr(), std::ptr::null(), &mut e) }, FcStatus::Model);
    std::fs::remove_dir_all(&root).unwrap();
}

/// `framecache compile --bundle`: one file holds the manifest and every file it names (models
/// as graph files, labels as text), and runs as the bundle of model files does, bit for bit,
/// with nothing beside it: in the engine and through the C ABI (`fc_engine_create_bundle`).
#[test]
fn bundle_files_compute_what_bundles_of_models_do() {
    use framecache::Bundle;
    use framecache_ffi::*;
    let Some(_) = shared_data_or_skip("bundle_files_compute_what_bundles_of_models_do") else { return };
    let dirs = framecache_app::bundle::model_dirs(&[]);
    let coin = framecache_app::clip::Clip::open(&project_root().join("assets/clips/static_coin_motion")).unwrap();
    let rgb = [coin.decode(0).unwrap(), coin.decode(5).unwrap()];
    let root = std::env::temp_dir().join(format!("framecache-bundle-files-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let err = || unsafe { std::ffi::CStr::from_ptr(fc_last_error()) }.to_string_lossy().into_owned();
    // One model with four heads; three models on one stream (labels beside the manifest); a cut
    // at tapped tensors (labels in ../models); a head with its own distilled model file.
    for name in ["blazepose", "camera_stream", "mobilenet_v2_s16", "mobilenet_v2_shared"] {
        let source = project_root().join(format!("assets/bundles/{name}.toml"));
        let file = root.join(format!("{name}.fcbundle"));
        cli("compile", &[source.to_str().unwrap(), "--bundle", "--out", file.to_str().unwrap()]).unwrap();
        // No model folders: everything comes from the file.
        let packed = Bundle::load(&file, &[]).unwrap();
        let models = Bundle::load(&source, &dirs).unwrap();
        assert_eq!(decoded(packed, &rgb), decoded(models, &rgb), "{name}: the bundle file decodes other results");
        let path = std::ffi::CString::new(file.to_str().unwrap()).unwrap();
        let options = FcOptions { mode: FC_MODE_EXACT, threshold: 8.0, tile: 16, threads: 1, bypass: 0 };
        let mut e = 0;
        // SAFETY: a NUL-terminated path, valid options and a writable handle.
        assert_eq!(unsafe { fc_engine_create_bundle(path.as_ptr(), &options, &mut e) }, FcStatus::Ok, "{}", err());
        let rgba: Vec<u8> = rgb[0].data.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect();
        let (w, h) = (rgb[0].width as u32, rgb[0].height as u32);
        // SAFETY: `rgba` holds h rows of w * 4 bytes; the handle is live.
        let status = unsafe { fc_engine_push_rgba(e, rgba.as_ptr(), w, h, w * 4, FC_PIXEL_RGBA, 0) };
        assert_eq!(status, FcStatus::Ok, "{}", err());
        if name == "mobilenet_v2_shared" {
            // As the phone apps push their camera: a landscape buffer turned upright. The
            // bundle turns its input with the frame (`aspect = "turn"`), so the person mask
            // comes out portrait, then landscape again for an unturned buffer.
            for (rotation, (mw, mh)) in [(90, (40, 72)), (0, (72, 40))] {
                // SAFETY: as above.
                let status = unsafe { fc_engine_push_rgba(e, rgba.as_ptr(), w, h, w * 4, FC_PIXEL_RGBA, rotation) };
                assert_eq!(status, FcStatus::Ok, "{}", err());
                let mut info = FcHeadInfo { kind: 0, count: 0, width: 0, height: 0 };
                // SAFETY: a live handle and a writable `FcHeadInfo`; head 1 is the person mask.
                assert_eq!(unsafe { fc_engine_head_info(e, 1, &mut info) }, FcStatus::Ok, "{}", err());
                assert_eq!((info.kind, info.width, info.height), (FC_HEAD_MASK, mw, mh), "rotation {rotation}");
            }
        }
        assert_eq!(fc_engine_destroy(e), FcStatus::Ok);
    }
    std::fs::remove_dir_all(&root).unwrap();
}

/// A truncated, re-versioned or corrupted bundle file is a clear error naming it, never a
/// panic; `compile --bundle` with a missing model writes nothing.
#[test]
fn bad_bundle_files_are_clear_errors_and_compile_leaves_no_file() {
    let dir = std::env::temp_dir().join(format!("framecache-bundle-files-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = project_root().join("assets/bundles/mobilenet_v2_s16.toml");
    let good = dir.join("good.fcbundle");
    cli("compile", &[source.to_str().unwrap(), "--bundle", "--out", good.to_str().unwrap()]).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let bad = dir.join("bad.fcbundle");
    let load = |b: &[u8]| {
        std::fs::write(&bad, b).unwrap();
        framecache::Bundle::load(&bad, &[]).map(|_| ()).unwrap_err().to_string()
    };
    damaged_files_are_errors(&bytes, "bad.fcbundle", "framecache-bundle", load);
    // A manifest naming a model that is nowhere: an error naming it, and no file.
    let manifest = dir.join("missing.toml");
    std::fs::write(
        &manifest,
        std::fs::read_to_string(&source).unwrap().replace("../models/mobilenet_v2.onnx", "nowhere.onnx"),
    )
    .unwrap();
    let out = dir.join("out.fcbundle");
    let e = cli("compile", &[manifest.to_str().unwrap(), "--bundle", "--out", out.to_str().unwrap()]).unwrap_err();
    assert!(format!("{e:#}").contains("nowhere.onnx"), "{e:#}");
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `framecache export`: the bundled selfie segmentation written as ONNX, with its sidecar
/// beside it, runs in the engine as the source does (the first output within 1e-5 of its
/// scale); the distilled two-tap head exports too. Bad requests are clear errors and leave no
/// file.
#[test]
fn export_writes_an_onnx_file_that_runs_as_the_source_and_bad_requests_write_nothing() {
    let dir = std::env::temp_dir().join(format!("framecache-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = assets_models().join("selfie_segmentation.onnx");
    let out = dir.join("selfie.onnx");
    let (m, o) = (model.to_str().unwrap(), out.to_str().unwrap());
    cli("export", &[m, "--out", o]).unwrap();
    assert!(framecache_app::args::with_ext(&out, ".toml").is_file(), "the sidecar beside the export");
    let frames = framecache_app::clip::Clip::open(&project_root().join("assets/clips/static_coin_motion")).unwrap();
    let frame = frames.decode(40).unwrap();
    let run = |path: &Path| {
        let loaded = SidecarModel::load(path, None, &[], None, None).unwrap();
        let mut session = Session::new(loaded.plan, SessionOptions { threads: Some(1), ..Default::default() }).unwrap();
        session.run_full(frame.as_frame()).unwrap().remove(0).data
    };
    let (d, scale) = max_abs_diff(&run(&out), &run(&model));
    assert!(d <= 1e-5 * scale.max(1.0), "the export differs from its source by {d} (scale {scale})");
    let head = assets_models().join("person_mobilenet_v2.head.safetensors");
    cli("export", &[head.to_str().unwrap(), "--out", dir.join("head.onnx").to_str().unwrap()]).unwrap();
    assert!(dir.join("head.onnx").is_file());

    let export = |args: &[&str]| cli("export", args).unwrap_err().to_string();
    let bad = dir.join("bad.onnx");
    let b = bad.to_str().unwrap();
    assert!(export(&[m, "--out", dir.join("bad.safetensors").to_str().unwrap()]).contains(".onnx"));
    assert!(export(&[o, "--out", o]).contains("overwrite"));
    assert!(export(&[dir.join("missing.onnx").to_str().unwrap(), "--out", b]).contains("missing.onnx"));
    // An int8 model has no ONNX form here: the error says to export the float model.
    let int8 = dir.join("selfie.int8.safetensors");
    let clip = project_root().join("assets/clips/static_coin_motion");
    let (c, q) = (clip.to_str().unwrap(), int8.to_str().unwrap());
    cli("quantize", &[m, "--calibrate", c, "--frames", "2", "--out", q]).unwrap();
    assert!(export(&[q, "--out", b]).contains("export its float model"));
    assert!(!bad.exists() && !framecache_app::args::with_ext(&bad, ".toml").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
