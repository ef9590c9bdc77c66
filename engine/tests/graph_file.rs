//! The graph file ([`framecache::import::graph_file`]): a graph written and loaded back runs
//! bit for bit as the original, and a damaged or forged file is a clear error.

mod common;

use std::collections::HashMap;
use std::path::Path;

use framecache::graph::Graph;
use framecache::import::graph_file::Clustered;
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
        let fused = framecache::import::fused(graph.clone());
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

/// `graph` with every convolution's weights rounded to at most `k` values (a codebook of
/// evenly spaced values over the layer's range) times a scale per output channel, and those
/// codebooks.
fn clustered(mut graph: framecache::graph::Graph, k: usize) -> (framecache::graph::Graph, HashMap<String, Clustered>) {
    let mut books = HashMap::new();
    for node in &mut graph.nodes {
        let framecache::graph::Op::Conv(c) = &mut node.op else { continue };
        let (lo, hi) = c.weights.iter().fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        let codebook: Vec<f32> = (0..k).map(|j| lo + (hi - lo) * j as f32 / (k - 1) as f32).collect();
        let indices: Vec<u8> =
            c.weights.iter().map(|&x| (((x - lo) / (hi - lo).max(1e-12)) * (k - 1) as f32).round() as u8).collect();
        // Per-output-channel scales where the output channel is the fastest-varying index.
        let scales = if c.groups == 1 || c.groups == c.cout {
            (0..c.cout).map(|j| 0.5 + j as f32 / 4.0).collect()
        } else {
            Vec::new()
        };
        let book = Clustered { codebook, indices, scales };
        c.weights = book.values();
        books.insert(format!("{}.weight", node.name), book);
    }
    (graph, books)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(96), ..ProptestConfig::default() })]

    #[test]
    fn packed_indices_round_trip(bits in 1u32..=8, raw in prop::collection::vec(any::<u8>(), 0..200)) {
        let indices: Vec<u8> = raw.iter().map(|&v| v & ((1u16 << bits) - 1) as u8).collect();
        let packed = graph_file::pack_indices(&indices, bits);
        prop_assert_eq!(packed.len(), (indices.len() * bits as usize).div_ceil(8));
        prop_assert_eq!(graph_file::unpack_indices(&packed, indices.len(), bits), Some(indices.clone()));
        // A length the bytes do not hold is refused.
        prop_assert_eq!(graph_file::unpack_indices(&packed, indices.len() + 8, bits), None);
    }

    #[test]
    fn a_clustered_graph_file_loads_as_its_codebook_lookup(
        h in 9usize..24,
        w in 9usize..24,
        layers in prop::collection::vec(common::layer(), 1..5),
        k in prop::sample::select(vec![2usize, 3, 16, 100, 256]),
        seed in any::<u64>(),
    ) {
        let (graph, books) = clustered(common::build(h, w, &layers, seed), k);
        let bytes = graph_file::to_bytes_clustered(&graph, "test", &books).unwrap();
        let loaded = load(&bytes).unwrap();
        let fused = framecache::import::fused(graph.clone());
        let pixels: Vec<u8> = (0..h * w * 3).map(|i| (i * 41 % 253) as u8).collect();
        let frame = Frame::rgb(w, h, &pixels);
        for (x, y) in outputs(fused, &frame).iter().zip(&outputs(loaded, &frame)) {
            common::same_bits(x, y).map_err(TestCaseError::fail)?;
        }
    }
}

#[test]
fn a_codebook_that_does_not_look_up_to_the_weights_is_refused() {
    let (graph, mut books) = clustered(common::build(12, 12, &[], 7), 16);
    let book = books.values_mut().next().unwrap();
    book.codebook[0] += 1.0;
    let e = graph_file::to_bytes_clustered(&graph, "test", &books).unwrap_err();
    assert!(e.to_string().contains("codebook"), "{e}");
}

#[test]
fn forged_clustered_tensors_are_clear_errors() {
    let (graph, books) = clustered(common::build(12, 12, &[], 7), 16);
    let bytes = graph_file::to_bytes_clustered(&graph, "test", &books).unwrap();
    assert!(load(&bytes).is_ok());
    for n in (0..bytes.len()).step_by(61) {
        assert!(load(&bytes[..n]).is_err(), "a file cut at {n} bytes loaded");
    }
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let manifest: graph_file::Manifest =
        toml::from_str(meta.metadata().as_ref().unwrap().get(graph_file::KEY).unwrap()).unwrap();
    let name = manifest.clustered[0].tensor.clone();
    // Rewrites one tensor's bytes or the manifest, and loads the result.
    let forge = |tensor: &str, data: Option<Vec<u8>>, edit: &dyn Fn(&mut graph_file::Manifest)| {
        let mut m = manifest.clone();
        edit(&mut m);
        let owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
            .tensors()
            .into_iter()
            .map(|(n, t)| {
                let d = if n == tensor { data.clone().unwrap() } else { t.data().to_vec() };
                let shape = if n == tensor { vec![d.len() * 8 / t.dtype().bitsize()] } else { t.shape().to_vec() };
                (n, t.dtype(), shape, d)
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
            .iter()
            .map(|(n, dt, s, d)| (n.clone(), safetensors::tensor::TensorView::new(*dt, s.clone(), d).unwrap()))
            .collect();
        let text = toml::to_string(&m).unwrap();
        load(&safetensors::serialize(views, Some([(graph_file::KEY.to_string(), text)].into())).unwrap())
    };
    let indices = format!("{name}.indices");
    let codebook = format!("{name}.codebook");
    let none: &dyn Fn(&mut graph_file::Manifest) = &|_| {};
    let cases: Vec<(&str, Result<Graph, Error>, &str)> = vec![
        ("short indices", forge(&indices, Some(vec![0; 3]), none), "not"),
        ("index past the codebook", forge(&codebook, Some(vec![0; 4 * 3]), none), "past the 3 codebook values"),
        ("codebook too long", forge(&codebook, Some(vec![0; 4 * 17]), none), "17 codebook values for 4-bit"),
        ("bits", forge("", None, &|m| m.clustered[0].bits = 9), "not"),
        ("huge len", forge("", None, &|m| m.clustered[0].len = usize::MAX / 2), "not"),
        ("listed twice", forge("", None, &|m| m.clustered.push(m.clustered[0].clone())), "twice"),
        ("scales", forge(&format!("{name}.scale"), Some(vec![0; 4 * 3]), none), "3 scales"),
        ("scale count", forge("", None, &|m| m.clustered[0].scales = 5), "the manifest says 5"),
    ];
    for (what, result, needle) in cases {
        let e = result.expect_err(what);
        assert!(
            matches!(e, Error::ModelFile { .. } | Error::InvalidModel { .. }) && e.to_string().contains(needle),
            "{what}: {e}"
        );
    }
}
