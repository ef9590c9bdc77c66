//! Int8 end to end, from a fresh clone's own assets: `framecache quantize` on the bundled
//! MobileNetV2 and clip, the file it writes loading and running as any model does (cached
//! equal to full bit for bit), and bad input as clear errors with no file left behind.

use std::path::{Path, PathBuf};

use framecache::graph::{ConvQuant, Op};
use framecache::quant::Method;
use framecache::{Mode, Session, SessionOptions};
use framecache_app::clip::Clip;
use framecache_app::model::Model;
use framecache_tests::project_root;

fn bytes_of(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

/// The first int8 convolution of a graph.
fn first_int8(g: &framecache::graph::Graph) -> usize {
    g.nodes.iter().position(|n| matches!(&n.op, Op::Conv(c) if c.quant.is_some())).unwrap()
}

/// A change made to a quantized graph before it is written.
type Edit = dyn Fn(&mut framecache::graph::Graph);

/// The int8 form of node `i`, a quantized convolution.
fn quant_of(g: &mut framecache::graph::Graph, i: usize) -> &mut ConvQuant {
    match &mut g.nodes[i].op {
        Op::Conv(c) => c.quant.as_mut().unwrap(),
        _ => unreachable!("node {i} is a convolution"),
    }
}

fn assets() -> PathBuf {
    project_root().join("assets")
}

fn temp(name: &str) -> framecache_tests::Scratch {
    framecache_tests::Scratch::new(&format!("int8-{name}"))
}

fn quantize(model: &Path, clip: &Path, out: &Path) -> anyhow::Result<()> {
    let (model, clip, out) = (model.to_str().unwrap(), clip.to_str().unwrap(), out.to_str().unwrap());
    // 32 frames, as `bench --calibrate` quantizes in memory.
    framecache_tests::cli("quantize", &[model, "--calibrate", clip, "--frames", "32", "--out", out])
}

#[test]
fn a_quantized_model_runs_everywhere_a_model_does() {
    let dir = temp("run");
    let (model, clip) = (assets().join("models/mobilenet_v2.onnx"), assets().join("clips/static_coin_motion"));
    let out = dir.join("mobilenet_v2.int8.safetensors");
    quantize(&model, &clip, &out).unwrap();
    // Smaller than the float model: one byte per weight of the layers that run in int8 (and
    // their scales), where the float model stores four per weight of every layer.
    let (size, float) = (std::fs::metadata(&out).unwrap().len(), std::fs::metadata(&model).unwrap().len());
    assert!(size * 3 < float, "{size} bytes vs the float model's {float}");

    // It loads as any model: the float model's sidecar (preprocessing, labels) is found.
    let int8 = Model::load(&out, None, None, None).unwrap();
    let fp32 = Model::load(&model, None, None, None).unwrap();
    assert!(int8.labels.is_some(), "the float model's labels carry over");
    let (int8_macs, total) = framecache_app::quantize::int8_share(&int8.plan);
    assert!(int8_macs * 100 > total * 60, "{int8_macs} of {total} MACs in int8");

    // The file holds what calibration made: the in-memory form gives the same bits.
    let clips = [Clip::open(&clip).unwrap()];
    let memory = framecache_app::quantize::in_memory(&fp32, &clips, fp32.config.import_options(None, None)).unwrap();
    let frames: Vec<_> = (0..6).map(|i| clips[0].decode(i * 20).unwrap()).collect();
    let opts = |mode| SessionOptions { mode, threads: Some(2), ..Default::default() };
    let mut full = Session::new(int8.plan.clone(), opts(Mode::Exact)).unwrap();
    let mut cached = Session::new(int8.plan.clone(), opts(Mode::Exact)).unwrap();
    let mut again = Session::new(memory.plan.clone(), opts(Mode::Exact)).unwrap();
    let mut float = Session::new(fp32.plan.clone(), opts(Mode::Exact)).unwrap();
    let bits = |o: &[framecache::exec::Output]| o[0].data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let mut worst = 0.0f32;
    for f in &frames {
        let f = f.as_frame();
        let a = full.run_full(f).unwrap();
        assert_eq!(bits(&a), bits(&cached.process(f).unwrap()), "int8 cached equals int8 full");
        assert_eq!(bits(&a), bits(&again.run_full(f).unwrap()), "the file and the in-memory form agree");
        let b = float.run_full(f).unwrap();
        let scale = b[0].data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        worst = worst.max(a[0].data.iter().zip(&b[0].data).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) / scale);
    }
    // The C ABI loads it from its path (the float model's sidecar found as above); from
    // memory there is no path to find the float model by, and it says so.
    framecache_tests::c_abi_runs(&out);
    let bytes = std::fs::read(&out).unwrap();
    let e = framecache::SidecarModel::from_bytes(&bytes, "[preprocess]\n", None).err().unwrap();
    assert!(e.to_string().contains("load it from its file"), "{e}");

    // Int8 is near fp32, not equal to it: per-tensor input ranges leave logits off by up to
    // about a third of the largest logit here (0.31 seen); a wrong scale or a transposed weight
    // layout is off by more than the logits themselves.
    assert!(worst > 0.0 && worst < 0.5, "int8 logits differ from fp32 by {worst} of their range");
}

#[test]
fn bad_int8_input_is_a_clear_error_and_leaves_no_file() {
    let dir = temp("bad");
    let clip = assets().join("clips/static_coin_motion");
    // The float model beside the int8 file, named relatively.
    let model = dir.join("m.onnx");
    std::fs::copy(assets().join("models/mobilenet_v2.onnx"), &model).unwrap();
    std::fs::copy(assets().join("models/mobilenet_v2.onnx.toml"), dir.join("m.onnx.toml")).unwrap();
    let out = dir.join("m.int8.safetensors");
    quantize(&model, &clip, &out).unwrap();
    let bytes = std::fs::read(&out).unwrap();

    // A truncated file.
    let cut = dir.join("cut.int8.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = framecache::import::load_model(&cut, Default::default()).unwrap_err();
    assert!(e.to_string().contains("cut.int8.safetensors"), "{e}");

    // Its float model replaced by another file, then gone.
    std::fs::copy(assets().join("models/selfie_segmentation.onnx"), &model).unwrap();
    let e = framecache::import::load_model(&out, Default::default()).unwrap_err();
    assert!(e.to_string().contains("made from another model file"), "{e}");
    std::fs::remove_file(&model).unwrap();
    let e = framecache::import::load_model(&out, Default::default()).unwrap_err();
    assert!(e.to_string().contains("cannot read its float model"), "{e}");

    std::fs::copy(assets().join("models/mobilenet_v2.onnx"), &model).unwrap();
    // Forged layers, written with the file's own writer: a weight of -128, a scale that is not
    // a number, a depthwise convolution. Each is an error naming the node.
    // (The bundled model's sidecar: the copy's labels file is not beside it.)
    let fp32 = Model::load(&assets().join("models/mobilenet_v2.onnx"), None, None, None).unwrap();
    let clips = [Clip::open(&clip).unwrap()];
    let options = fp32.config.import_options(None, None);
    let (graph, _) = framecache_app::quantize::calibrate(
        &bytes_of(&model),
        &model,
        &fp32.config,
        options,
        &clips,
        2,
        Method::MinMax,
        framecache_app::quantize::Floor::Skip2,
    )
    .unwrap();
    let manifest = framecache::quant::file::Manifest {
        format: "framecache-int8".into(),
        version: framecache::quant::file::VERSION,
        source: "m.onnx".into(),
        source_bytes: bytes_of(&model).len() as u64,
        source_crc32: framecache::quant::file::crc32(&bytes_of(&model)),
        method: "minmax".into(),
        calibration_frames: 2,
        calibration_clips: vec!["static_coin_motion".into()],
        layer: Vec::new(),
    };
    let forged = dir.join("forged.int8.safetensors");
    let edits: [(&str, Box<Edit>); 3] = [
        ("-128", Box::new(|g| quant_of(g, first_int8(g)).weights[0] = i8::MIN)),
        ("finite positive", Box::new(|g| quant_of(g, first_int8(g)).weight_scale[0] = f32::NAN)),
        (
            "cannot run in int8",
            Box::new(|g| {
                let dw = g.nodes.iter().position(|n| matches!(&n.op, Op::Conv(c) if c.is_depthwise())).unwrap();
                if let Op::Conv(c) = &mut g.nodes[dw].op {
                    let range = framecache::quant::Range { lo: 0.0, hi: 6.0 };
                    c.quant = Some(Box::new(framecache::quant::quantize_conv(c, range)));
                }
            }),
        ),
    ];
    for (want, edit) in edits {
        let mut g = graph.clone();
        edit(&mut g);
        std::fs::write(&forged, framecache::quant::file::to_bytes(&g, manifest.clone()).unwrap()).unwrap();
        let e = framecache::import::load_model(&forged, Default::default())
            .and_then(|g| framecache::Plan::new(g, Default::default()))
            .unwrap_err();
        assert!(e.to_string().contains(want), "{want}: {e}");
    }
    std::fs::remove_file(&forged).unwrap();

    // Quantize: an empty clip, a folder that does not exist for the output. No file either way.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let fresh = dir.join("fresh.int8.safetensors");
    assert!(quantize(&model, &empty, &fresh).is_err());
    // A fidelity floor that is not a fraction; one that no int8 layer reaches (selfie
    // segmentation's mask IoU of 1 on every calibration frame: all 21 layers go back).
    let selfie = assets().join("models/selfie_segmentation.onnx");
    let floor = |f: &str| {
        let (m, c, o) = (selfie.to_str().unwrap(), clip.to_str().unwrap(), fresh.to_str().unwrap());
        framecache_tests::cli("quantize", &[m, "--calibrate", c, "--frames", "4", "--floor", f, "--out", o])
            .unwrap_err()
    };
    assert!(format!("{:#}", floor("1.5")).contains("neither skip2 nor a fidelity"));
    assert!(format!("{:#}", floor("1")).contains("went back to float"));
    let nowhere = dir.join("no/such/folder/x.int8.safetensors");
    let e = quantize(&model, &clip, &nowhere).unwrap_err();
    assert!(format!("{e:#}").contains("cannot write"), "{e:#}");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(
        left.iter().all(|n| ["m.onnx", "m.onnx.toml", "m.int8.safetensors", "cut.int8.safetensors", "empty"]
            .contains(&n.to_str().unwrap())),
        "files left behind: {left:?}"
    );
}
