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
    let dir = std::env::temp_dir().join(format!("framecache-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
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
    assert!(matches!(s.process(&Frame::rgb(0, 8, &[])), Err(Error::EmptyFrame { width: 0, height: 8 })));
    let two = vec![0u8; 8 * 8 * 2];
    assert!(matches!(
        s.process(&Frame { width: 8, height: 8, channels: 2, data: &two }),
        Err(Error::FrameChannels { got: 2 })
    ));
    assert!(matches!(s.process(&Frame::rgb(8, 8, &two)), Err(Error::FrameData { expected: 192, got: 128, .. })));
    // The session still works after the errors.
    let ok = vec![7u8; 8 * 8 * 3];
    assert_eq!(s.process(&Frame::rgb(8, 8, &ok)).unwrap()[0].data.len(), 2 * 64);
}
