//! The graph file ([`framecache::import::graph_file`]): a graph written and loaded back runs
//! bit for bit as the original, and a damaged or forged file is a clear error.

mod common;

use std::path::Path;

use framecache::import::{graph_file, load_model_bytes};
use framecache::{Error, Frame, Plan, Preprocess, Session, SessionOptions};
use proptest::prelude::*;

fn outputs(graph: framecache::graph::Graph, frame: &Frame<'_>) -> Vec<Vec<f32>> {
    let plan = Plan::new(graph, Preprocess::default()).unwrap();
    let mut s = Session::new(plan, SessionOptions::default()).unwrap();
    s.run_full(frame).unwrap().into_iter().map(|o| o.data).collect()
}

fn load(bytes: &[u8]) -> framecache::Result<framecache::graph::Graph> {
    load_model_bytes(bytes, Path::new("head.safetensors"), Default::default())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(48), ..ProptestConfig::default() })]

    #[test]
    fn a_graph_file_runs_bit_for_bit_as_its_graph(
        h in 9usize..32,
        w in 9usize..32,
        layers in prop::collection::vec(common::layer(), 1..7),
        seed in any::<u64>(),
    ) {
        let graph = common::build(h, w, &layers, seed);
        let bytes = graph_file::to_bytes(&graph, "test").unwrap();
        let loaded = load(&bytes).unwrap();
        let mut fused = graph.clone();
        common::fuse(&mut fused);
        prop_assert_eq!(loaded.nodes.len(), fused.nodes.len());
        let pixels: Vec<u8> = (0..h * w * 3).map(|i| (i * 37 % 251) as u8).collect();
        let frame = Frame::rgb(w, h, &pixels);
        let (a, b) = (outputs(fused, &frame), outputs(loaded, &frame));
        prop_assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            common::same_bits(x, y).map_err(TestCaseError::fail)?;
        }
    }
}

/// A change to a graph file's manifest.
type Edit = dyn Fn(&mut graph_file::Manifest);

/// A small graph's file, with its manifest rewritten by `edit`.
fn forged(edit: impl Fn(&mut graph_file::Manifest)) -> Vec<u8> {
    let graph = common::build(12, 12, &[], 7);
    let bytes = graph_file::to_bytes(&graph, "test").unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut manifest: graph_file::Manifest =
        toml::from_str(meta.metadata().as_ref().unwrap().get(graph_file::KEY).unwrap()).unwrap();
    edit(&mut manifest);
    let text = toml::to_string(&manifest).unwrap();
    let tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> = st.tensors();
    safetensors::serialize(tensors, Some([(graph_file::KEY.to_string(), text)].into())).unwrap()
}

#[test]
fn damaged_and_forged_graph_files_are_clear_errors() {
    let graph = common::build(12, 12, &[], 7);
    let bytes = graph_file::to_bytes(&graph, "test").unwrap();
    assert!(load(&bytes).is_ok());
    // Every truncation: an error, never a panic.
    for n in (0..bytes.len()).step_by(97) {
        assert!(load(&bytes[..n]).is_err(), "a file cut at {n} bytes loaded");
    }
    let cases: Vec<(&str, Box<Edit>, &str)> = vec![
        ("version", Box::new(|m| m.version = 99), "version 99"),
        ("input size", Box::new(|m| m.input[0].shape = [1 << 40, 1 << 40, 3]), "input"),
        ("no input", Box::new(|m| m.input.clear()), "no input"),
        ("node shape", Box::new(|m| m.node[0].shape = [1 << 30, 1 << 30, 4]), "over"),
        ("wrong shape", Box::new(|m| m.node[0].shape[2] += 1), "weights"),
        ("unknown input", Box::new(|m| m.node[0].inputs = vec!["nowhere".into()]), "not an earlier node"),
        ("cycle", Box::new(|m| m.node[0].inputs = vec![m.node[1].name.clone()]), "not an earlier node"),
        ("output", Box::new(|m| m.outputs[0].node = "nowhere".into()), "names no node"),
        ("no outputs", Box::new(|m| m.outputs.clear()), "no outputs"),
        ("duplicate", Box::new(|m| m.node[1].name = m.node[0].name.clone()), "second node"),
        (
            "missing tensor",
            Box::new(|m| {
                let n = m.node.len() - 1;
                m.node.swap(0, n);
            }),
            "",
        ),
    ];
    for (what, edit, needle) in cases {
        let e = load(&forged(edit)).expect_err(what);
        let text = e.to_string();
        assert!(
            matches!(e, Error::ModelFile { .. } | Error::InvalidModel { .. }) && text.contains(needle),
            "{what}: {text}"
        );
    }
}
