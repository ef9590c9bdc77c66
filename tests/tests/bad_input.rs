//! Bad input gives the right error variant, naming the culprit, and never panics.

use framecache::{Error, Frame, Plan, Preprocess, Session, SessionOptions};
use framecache_tests::*;
use prost::Message;
use tract_onnx::prelude::Framework;

fn mobilenet_bytes() -> Option<Vec<u8>> {
    let data = shared_data_or_skip("bad_input")?;
    Some(std::fs::read(data.join("models/imagenet/mobilenet_v2.onnx")).expect("readable model"))
}

#[test]
fn truncated_onnx_is_a_model_file_error() {
    let Some(bytes) = mobilenet_bytes() else { return };
    let dir = framecache_tests::Scratch::new("trunc");
    let path = dir.join("truncated.onnx");
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    match framecache::import::load_onnx(&path) {
        Err(e @ Error::ModelFile { .. }) => {
            let Error::ModelFile { path: p, reason, .. } = &e else { unreachable!() };
            assert_eq!(p, &path);
            assert_eq!(reason, "not an ONNX protobuf");
            // The protobuf decoder's own message is the source, shown by `caused by:` and `report`.
            let source = std::error::Error::source(&e).expect("the decoder's error as source");
            assert!(e.report().ends_with(&source.to_string()), "{}", e.report());
        }
        other => panic!("expected ModelFile, got {other:?}"),
    }
    // A missing file too, with the I/O error as its source.
    let e = framecache::import::load_onnx(dir.join("nope.onnx")).unwrap_err();
    let io = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<std::io::Error>());
    assert_eq!(io.map(std::io::Error::kind), Some(std::io::ErrorKind::NotFound), "{e:?}");
}

fn edited(bytes: &[u8], edit: impl FnOnce(&mut tract_onnx::pb::ModelProto)) -> Vec<u8> {
    let mut proto = tract_onnx::onnx().proto_model_for_read(&mut &*bytes).unwrap();
    edit(&mut proto);
    proto.encode_to_vec()
}

#[test]
fn unsupported_op_names_node_and_op() {
    let Some(bytes) = mobilenet_bytes() else { return };
    let mut name = String::new();
    let b = edited(&bytes, |m| {
        let g = m.graph.as_mut().unwrap();
        let n = g.node.iter_mut().find(|n| n.op_type == "Add").unwrap();
        n.op_type = "Softplus".into();
        name = n.name.clone();
    });
    match framecache::import::load_onnx_bytes(&b) {
        Err(e @ Error::UnsupportedOp { .. }) => {
            let Error::UnsupportedOp { node, op } = &e else { unreachable!() };
            assert_eq!(op, "Softplus");
            assert_eq!(node, &name);
            assert!(e.to_string().contains(&name) && e.to_string().contains("Softplus"), "{e}");
        }
        other => panic!("expected UnsupportedOp, got {other:?}"),
    }
}

#[test]
fn unsupported_attribute_names_node_op_and_attribute() {
    let Some(bytes) = mobilenet_bytes() else { return };
    let b = edited(&bytes, |m| {
        let g = m.graph.as_mut().unwrap();
        let n = g.node.iter_mut().find(|n| n.op_type == "Conv").unwrap();
        let a = n.attribute.iter_mut().find(|a| a.name == "dilations").unwrap();
        a.ints = vec![1, 1, 1];
    });
    match framecache::import::load_onnx_bytes(&b) {
        Err(Error::UnsupportedAttribute { op, attribute, .. }) => {
            assert_eq!(op, "Conv");
            assert_eq!(attribute, "dilations");
        }
        other => panic!("expected UnsupportedAttribute, got {other:?}"),
    }
    let b = edited(&bytes, |m| {
        let g = m.graph.as_mut().unwrap();
        let n = g.node.iter_mut().find(|n| n.op_type == "Gemm").unwrap();
        n.attribute.push(tract_onnx::pb::AttributeProto {
            name: "transA".into(),
            i: 1,
            r#type: 2,
            ..Default::default()
        });
    });
    assert!(matches!(
        framecache::import::load_onnx_bytes(&b),
        Err(Error::UnsupportedAttribute { ref attribute, .. }) if attribute == "transA"
    ));
}

#[test]
fn bad_frames_are_errors() {
    let graph = {
        let mut b = framecache::graph::GraphBuilder::new(8, 8, 3);
        let mut w = || 0.1;
        let x = b
            .conv(
                0,
                2,
                framecache::graph::Window { kh: 1, kw: 1, sh: 1, sw: 1, dh: 1, dw: 1, pad: [0; 4] },
                1,
                Default::default(),
                &mut w,
            )
            .unwrap();
        b.output(x);
        b.build()
    };
    let plan = Plan::new(graph, Preprocess::default()).unwrap();
    let mut s = Session::new(plan, SessionOptions::default()).unwrap();
    assert!(matches!(s.process(Frame::rgb(0, 8, &[])), Err(Error::EmptyFrame { width: 0, height: 8 })));
    let two = vec![0u8; 8 * 8 * 2];
    assert!(matches!(
        s.process(Frame { width: 8, height: 8, channels: 2, data: &two }),
        Err(Error::FrameChannels { got: 2 })
    ));
    assert!(matches!(s.process(Frame::rgb(8, 8, &two)), Err(Error::FrameData { expected: 192, got: 128, .. })));
    // The session still works after the errors.
    let ok = vec![7u8; 8 * 8 * 3];
    assert_eq!(s.process(Frame::rgb(8, 8, &ok)).unwrap()[0].data.len(), 2 * 64);
}

/// The commands and the C ABI load a single model through one loader (`SidecarModel`): a
/// fully convolutional model sized by its sidecar's `input_size` loads through the C ABI too
/// (it used to import with default options there and fail on its dynamic dims), a model bytes
/// buffer is imported as a file is, and a model without a sidecar gets one message in both.
#[test]
fn the_c_abi_and_the_commands_load_models_alike() {
    use framecache_ffi::*;
    let Some(data) = shared_data_or_skip("the_c_abi_and_the_commands_load_models_alike") else { return };
    let dir = std::env::temp_dir().join(format!("framecache-loader-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pnet = data.join("models/mtcnn/mtcnn_pnet.onnx");
    let sidecar = dir.join("pnet.toml");
    std::fs::write(&sidecar, "input_size = [64, 48]\n[preprocess]\nfit = \"stretch\"\n").unwrap();

    let m = framecache::SidecarModel::load(&pnet, Some(&sidecar), &[], None, None).unwrap();
    let s = m.plan.graph().input_shape();
    assert_eq!((s.w, s.h), (64, 48));
    let app = framecache_app::model::Model::load(&pnet, Some(&sidecar), None, None).unwrap();
    assert_eq!(app.plan.graph().input_shape(), s);

    let c = |p: &std::path::Path| std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let (model_c, sidecar_c) = (c(&pnet), c(&sidecar));
    let mut e = 0;
    // SAFETY: NUL-terminated strings, null options (defaults), a writable handle.
    let status = unsafe { fc_engine_create(model_c.as_ptr(), sidecar_c.as_ptr(), std::ptr::null(), &mut e) };
    assert_eq!(status, FcStatus::Ok, "{:?}", unsafe { std::ffi::CStr::from_ptr(fc_last_error()) });
    let frame = vec![128u8; 80 * 60 * 4];
    // SAFETY: 80x60 RGBA rows of 320 bytes.
    assert_eq!(unsafe { fc_engine_push_rgba(e, frame.as_ptr(), 80, 60, 320, FC_PIXEL_RGBA, 0) }, FcStatus::Ok);
    let mut stats = std::mem::MaybeUninit::<FcStats>::uninit();
    // SAFETY: a writable FcStats.
    assert_eq!(unsafe { fc_engine_stats(e, stats.as_mut_ptr()) }, FcStatus::Ok);
    // SAFETY: written by the call above.
    let stats = unsafe { stats.assume_init() };
    assert_eq!((stats.input_width, stats.input_height), (64, 48));
    assert_eq!(fc_engine_destroy(e), FcStatus::Ok);

    // No sidecar: the same error from the engine, the commands and the C ABI.
    let bare = dir.join("bare.onnx");
    std::fs::copy(&pnet, &bare).unwrap();
    let engine = framecache::SidecarModel::load(&bare, None, &[], None, None).unwrap_err();
    assert!(matches!(engine, Error::NoSidecar { .. }), "{engine:?}");
    let message = engine.to_string();
    assert!(message.contains("no sidecar for model") && message.contains("bare.onnx.toml"), "{message}");
    let app = framecache_app::model::Model::load(&bare, None, None, None).err().unwrap();
    assert!(format!("{app:#}").contains(&message), "{app:#}");
    let bare_c = c(&bare);
    // SAFETY: as above.
    let status = unsafe { fc_engine_create(bare_c.as_ptr(), std::ptr::null(), std::ptr::null(), &mut e) };
    assert_eq!(status, FcStatus::Model);
    // SAFETY: the thread's last error, NUL-terminated.
    let last = unsafe { std::ffi::CStr::from_ptr(fc_last_error()) }.to_string_lossy().into_owned();
    assert!(last.contains(&message), "{last}");
    let _ = std::fs::remove_dir_all(&dir);
}
