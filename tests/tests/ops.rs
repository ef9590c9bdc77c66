//! One test per imported op (or op pattern): a tiny ONNX model built in code, imported by the
//! engine and run by tract on the same input tensor, compared within 1e-5 of the output scale;
//! then the engine's cached exact mode against its full inference on a second frame that
//! changes in one corner. None of this needs `../shared`.

use framecache::import::{load_model, load_model_bytes, load_unfused, ImportOptions};
use framecache::{Mode, Plan, Preprocess, Session, SessionOptions};
use framecache_tests::onnx::*;
use framecache_tests::*;

/// Deterministic values in [-1, 1).
fn pseudo(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn frame(w: usize, h: usize, seed: u64) -> Rgb {
    let data = pseudo(w * h * 3, seed).iter().map(|v| ((v + 1.0) * 127.5) as u8).collect();
    Rgb { width: w, height: h, data }
}

/// Imports `m` (fixing dynamic input dims to `size`), runs it and tract on the same tensor, and
/// checks the cache; returns the worst difference from tract relative to the output scale.
fn matches_tract(test: &str, m: &Onnx, size: Option<(usize, usize)>) -> anyhow::Result<f32> {
    let path = std::env::temp_dir().join(format!("framecache-ops-{}-{test}.onnx", std::process::id()));
    std::fs::write(&path, m.bytes())?;
    let result = (|| {
        let options = ImportOptions { input_size: size, ..Default::default() };
        let graph = load_model(&path, options)?;
        let plan = Plan::new(graph, Preprocess { mean: [0.5; 3], std: [0.5; 3], ..Default::default() })?;
        let s = plan.graph().input_shape();
        let tract = TractModel::load_with_input(&path, Some([1, s.c, s.h, s.w]))?;
        let opts = SessionOptions { mode: Mode::Exact, tile: 8, threads: Some(1), ..Default::default() };
        let (mut full, mut cached) = (Session::new(plan.clone(), opts.clone())?, Session::new(plan.clone(), opts)?);
        let first = frame(s.w, s.h, 1);
        let ours = full.run_full(first.as_frame())?;
        let theirs = tract.run_nhwc(full.activation(0), s.h, s.w, s.c)?;
        assert_eq!(ours.len(), theirs.len(), "{test}: output count");
        // The graph as imported, exported to ONNX again: tract on it, and the engine on it.
        let unfused = load_unfused(&std::fs::read(&path)?, &path, options)?;
        let exported = exported_in_tract(&unfused, full.activation(0))?;
        let onnx = framecache::export::to_onnx(&unfused, "test")?;
        let reimported =
            Plan::new(load_model_bytes(&onnx, &path, ImportOptions::default())?, plan.preprocess().clone())?;
        let again = Session::new(reimported, SessionOptions { threads: Some(1), ..Default::default() })?
            .run_full(first.as_frame())?;
        assert_eq!((exported.len(), again.len()), (ours.len(), ours.len()), "{test}: exported output count");
        let mut worst = 0.0f32;
        for (((o, t), e), a) in ours.iter().zip(&theirs).zip(&exported).zip(&again) {
            for (what, other) in
                [("tract", t), ("tract on the exported model", e), ("the engine on the exported model", &a.data)]
            {
                let (d, scale) = max_abs_diff(&o.data, other);
                assert!(
                    d <= 1e-5 * scale.max(1.0),
                    "{test}: output {} differs from {what} by {d} (scale {scale})",
                    o.name
                );
                worst = worst.max(d / scale.max(1.0));
            }
        }
        // A second frame that differs in its top-left 8x8 pixels only.
        let mut second = Rgb { width: first.width, height: first.height, data: first.data.clone() };
        for y in 0..8.min(s.h) {
            for x in 0..8.min(s.w) {
                let at = (y * s.w + x) * 3;
                second.data[at..at + 3].iter_mut().for_each(|v| *v = v.wrapping_add(97));
            }
        }
        for f in [&first, &second] {
            let (a, b) = (cached.process(f.as_frame())?, full.run_full(f.as_frame())?);
            for (x, y) in a.iter().zip(&b) {
                let (d, scale) = max_abs_diff(&x.data, &y.data);
                assert!(d <= 1e-5 * scale.max(1e-3), "{test}: cached {} differs from full by {d}", x.name);
            }
        }
        Ok(worst)
    })();
    let _ = std::fs::remove_file(&path);
    result
}

fn init(m: &mut Onnx, name: &str, dims: &[i64], seed: u64) {
    let n = dims.iter().product::<i64>() as usize;
    m.init(f32_tensor(name, dims, pseudo(n, seed)));
}

#[test]
fn prelu_with_a_per_channel_and_a_scalar_slope() -> anyhow::Result<()> {
    let mut m = Onnx::new(3, 12, 12);
    init(&mut m, "w", &[6, 3, 3, 3], 2);
    init(&mut m, "slope", &[6, 1, 1], 3);
    init(&mut m, "one", &[1], 4);
    m.node("Conv", &["x", "w"], "c", vec![ints("pads", &[1, 1, 1, 1])])
        .node("PRelu", &["c", "slope"], "p", vec![])
        .node("PRelu", &["p", "one"], "q", vec![])
        .output("q");
    matches_tract("prelu", &m, None)?;
    Ok(())
}

#[test]
fn softmax_over_the_channels_of_a_map_and_of_a_vector() -> anyhow::Result<()> {
    let mut m = Onnx::new(3, 10, 14);
    init(&mut m, "w", &[4, 3, 3, 3], 5);
    init(&mut m, "g", &[4, 7], 6);
    m.node("Conv", &["x", "w"], "c", vec![])
        .node("Softmax", &["c"], "s", vec![int("axis", 1)])
        .node("GlobalAveragePool", &["c"], "gap", vec![])
        .node("Flatten", &["gap"], "f", vec![])
        .node("MatMul", &["f", "g"], "mm", vec![])
        .node("Softmax", &["mm"], "v", vec![])
        .output("s")
        .output("v");
    matches_tract("softmax", &m, None)?;
    Ok(())
}

#[test]
fn reduce_mean_over_space_with_and_without_kept_dims_and_over_channels() -> anyhow::Result<()> {
    let mut m = Onnx::new(3, 9, 11);
    init(&mut m, "w", &[5, 3, 3, 3], 7);
    init(&mut m, "g", &[5, 3], 8);
    m.node("Conv", &["x", "w"], "c", vec![ints("strides", &[2, 1])])
        .node("ReduceMean", &["c"], "keep", vec![ints("axes", &[2, 3])])
        .node("Mul", &["c", "keep"], "se", vec![])
        .node("ReduceMean", &["se"], "flat", vec![ints("axes", &[-1, -2]), int("keepdims", 0)])
        .node("Gemm", &["flat", "g"], "gm", vec![])
        .node("ReduceMean", &["se"], "chan", vec![ints("axes", &[1])])
        .output("gm")
        .output("chan");
    matches_tract("reduce_mean", &m, None)?;
    Ok(())
}

#[test]
fn sub_and_div_by_constants() -> anyhow::Result<()> {
    let mut m = Onnx::new(3, 8, 8);
    init(&mut m, "w", &[4, 3, 1, 1], 9);
    init(&mut m, "b", &[1, 4, 1, 1], 10);
    m.init(f32_tensor("six", &[], vec![6.0]))
        .node("Conv", &["x", "w"], "c", vec![])
        .node("Sub", &["c", "b"], "s", vec![])
        .node("Div", &["s", "six"], "d", vec![])
        .output("d");
    matches_tract("sub_div", &m, None)?;
    Ok(())
}

#[test]
fn a_transpose_that_reorders_a_map_then_flatten_and_gemm() -> anyhow::Result<()> {
    // MTCNN's R-Net and O-Net flatten in [N, W, H, C] order.
    let mut m = Onnx::new(3, 6, 5);
    init(&mut m, "w", &[4, 3, 3, 3], 11);
    init(&mut m, "g", &[4 * 4 * 3, 6], 12);
    m.node("Conv", &["x", "w"], "c", vec![])
        .node("Transpose", &["c"], "t", vec![ints("perm", &[0, 3, 2, 1])])
        .node("Flatten", &["t"], "f", vec![])
        .node("Gemm", &["f", "g"], "gm", vec![])
        .node("Transpose", &["c"], "t2", vec![ints("perm", &[0, 1, 3, 2])])
        .output("gm")
        .output("t2");
    matches_tract("permute", &m, None)?;
    Ok(())
}

#[test]
fn shape_arithmetic_on_constants_is_folded() -> anyhow::Result<()> {
    // PaddleOCR's flatten: Shape -> Cast -> Slice -> Concat with a constant -> Reshape; and a
    // bias vector reshaped at run time.
    let mut m = Onnx::new(3, 8, 8);
    init(&mut m, "w", &[4, 3, 3, 3], 13);
    init(&mut m, "bias", &[4], 14);
    init(&mut m, "g", &[4, 2], 15);
    m.init(i64_tensor("bshape", &[4], vec![1, 4, 1, 1]))
        .init(i64_tensor("s0", &[1], vec![0]))
        .init(i64_tensor("s1", &[1], vec![1]))
        .init(i64_tensor("rest", &[1], vec![4]))
        .node("Conv", &["x", "w"], "c", vec![])
        .node("Reshape", &["bias", "bshape"], "b4", vec![])
        .node("Add", &["c", "b4"], "cb", vec![])
        .node("GlobalAveragePool", &["cb"], "gap", vec![])
        .node("Shape", &["gap"], "shape", vec![])
        .node("Cast", &["shape"], "shape32", vec![int("to", 6)])
        .node("Slice", &["shape32", "s0", "s1", "s0", "s1"], "batch", vec![])
        .node("Cast", &["batch"], "batch64", vec![int("to", 7)])
        .node("Concat", &["batch64", "rest"], "target", vec![int("axis", 0)])
        .node("Reshape", &["gap", "target"], "flat", vec![])
        .node("MatMul", &["flat", "g"], "mm", vec![])
        .output("mm");
    matches_tract("fold", &m, None)?;
    Ok(())
}

#[test]
fn dynamic_input_dims_take_the_given_size() -> anyhow::Result<()> {
    let mut m = Onnx::with_input(&[-1, 3, -1, -1]);
    init(&mut m, "w", &[4, 3, 3, 3], 16);
    m.node("Conv", &["x", "w"], "c", vec![ints("strides", &[2, 2]), ints("pads", &[1, 1, 1, 1])])
        .node("Softmax", &["c"], "s", vec![int("axis", 1)])
        .output("s");
    matches_tract("dynamic", &m, Some((20, 12)))?;
    let path = std::env::temp_dir().join(format!("framecache-ops-{}-dynamic-none.onnx", std::process::id()));
    std::fs::write(&path, m.bytes())?;
    let err = load_model(&path, ImportOptions::default()).unwrap_err().to_string();
    assert!(err.contains("dynamic spatial dims") && err.contains("--input-size"), "{err}");
    // Without an input size, the frame's size rounded down to the multiple; an explicit size
    // wins over it; a static model ignores the frame size, but not an explicit size.
    let at = |options: ImportOptions| load_model(&path, options).map(|g| g.input_shape());
    let frame = ImportOptions { frame_size: Some((37, 21)), multiple: 8, ..Default::default() };
    assert_eq!(at(frame)?, framecache::graph::Shape::new(16, 32, 3));
    assert_eq!(at(ImportOptions { frame_size: Some((5, 5)), multiple: 8, ..Default::default() })?.h, 8);
    assert_eq!(at(ImportOptions { input_size: Some((20, 12)), ..frame })?, framecache::graph::Shape::new(12, 20, 3));
    let _ = std::fs::remove_file(&path);
    let mut fixed = Onnx::new(3, 10, 10);
    init(&mut fixed, "w", &[4, 3, 3, 3], 16);
    fixed.node("Conv", &["x", "w"], "c", vec![]).output("c");
    std::fs::write(&path, fixed.bytes())?;
    assert_eq!(at(frame)?, framecache::graph::Shape::new(10, 10, 3));
    // An explicit size replaces static dims: a convolution runs at any size.
    let explicit = ImportOptions { input_size: Some((14, 12)), ..Default::default() };
    assert_eq!(at(explicit)?, framecache::graph::Shape::new(12, 14, 3));
    let _ = std::fs::remove_file(&path);
    Ok(())
}

#[test]
fn conv_transpose_pad_folding_views_resize_modes_and_ceil_pooling() -> anyhow::Result<()> {
    let mut m = Onnx::new(3, 12, 12);
    init(&mut m, "w", &[6, 3, 3, 3], 17);
    init(&mut m, "ct", &[6, 4, 2, 2], 18);
    m.init(i64_tensor("sp", &[8], vec![0, 0, 1, 0, 0, 0, 2, 1]))
        .node("Pad", &["x", "sp"], "px", vec![])
        .node("Conv", &["px", "w"], "c", vec![ints("strides", &[2, 2])])
        .node("ConvTranspose", &["c", "ct"], "t", vec![ints("strides", &[2, 2])])
        .node(
            "MaxPool",
            &["t"],
            "mp",
            vec![ints("kernel_shape", &[3, 3]), ints("strides", &[2, 2]), int("ceil_mode", 1)],
        )
        .init(f32_tensor("scales", &[4], vec![1.0, 1.0, 2.0, 2.0]))
        .node("Resize", &["mp", "", "scales"], "lin", vec![string("mode", "linear")])
        .node(
            "Resize",
            &["mp", "", "scales"],
            "ac",
            vec![string("mode", "linear"), string("coordinate_transformation_mode", "align_corners")],
        )
        .node("Resize", &["mp", "", "scales"], "nn", vec![string("mode", "nearest"), string("nearest_mode", "floor")])
        .node("Transpose", &["nn"], "nhwc", vec![ints("perm", &[0, 2, 3, 1])])
        .init(i64_tensor("flat", &[3], vec![1, -1, 4]))
        .node("Reshape", &["nhwc", "flat"], "rows", vec![])
        .output("lin")
        .output("ac")
        .output("rows");
    matches_tract("spatial", &m, None)?;
    Ok(())
}
