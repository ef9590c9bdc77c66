//! `framecache bench` as a library on the real models and clips of ../shared/data.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use clap::Parser;
use framecache_app::bench::{self, report::Report};
use framecache_app::cli::{Cli, Command};
use framecache_tests::*;
use prost::Message;
use tract_onnx::prelude::Framework;

fn bench(args: &[&str]) -> Report {
    let cli =
        Cli::try_parse_from(std::iter::once("framecache").chain(std::iter::once("bench")).chain(args.iter().copied()))
            .expect("valid arguments");
    let Command::Bench(a) = cli.command else { unreachable!() };
    bench::bench(&a, &AtomicBool::new(false)).expect("bench runs")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn an_unsupported_op_is_reported_by_node_and_the_other_models_run() {
    let Some(data) = shared_data_or_skip("bench unsupported op") else { return };
    let good = data.join("models/imagenet/mobilenet_v2.onnx");
    let mut proto = tract_onnx::onnx().proto_model_for_read(&mut &*std::fs::read(&good).unwrap()).unwrap();
    let node = proto.graph.as_mut().unwrap().node.iter_mut().find(|n| n.op_type == "Add").unwrap();
    node.op_type = "Softplus".into();
    let name = node.name.clone();
    let dir = framecache_tests::Scratch::new("bench-op");
    // Same file name, so the project's sidecar for it applies.
    let bad = dir.join("mobilenet_v2.onnx");
    std::fs::write(&bad, proto.encode_to_vec()).unwrap();
    let clip = data.join("video/static_vtest_pedestrians");

    let report = bench(&[
        "--model",
        s(&bad),
        "--model",
        s(&good),
        "--clip",
        s(&clip),
        "--frames",
        "3",
        "--mode",
        "exact",
        "--baseline",
        "none",
    ]);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    let msg = &report.errors[0].message;
    assert!(msg.contains(&name) && msg.contains("Softplus"), "{msg}");
    // The good model's exact run and its noise floor.
    assert_eq!(report.runs.iter().map(|r| r.mode.as_str()).collect::<Vec<_>>(), ["exact", "noise-floor"]);
    assert!(report.runs.iter().all(|r| r.model_path == good.display().to_string()));
}

#[test]
fn real_models_report_task_fidelity_and_reference_accuracy() {
    let Some(data) = shared_data_or_skip("bench real models") else { return };
    let m = data.join("models");
    let report = bench(&[
        "--model",
        s(&m.join("imagenet/efficientnet_lite0.onnx")),
        "--model",
        s(&m.join("mediapipe/selfie_segmentation.onnx")),
        "--clip",
        s(&data.join("video/static_vtest_pedestrians")),
        "--frames",
        "6",
        "--mode",
        "exact,threshold=8",
        "--baseline",
        "none",
        "--threads",
        "1",
    ]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    // Per model: exact, threshold=8 and the noise floor.
    assert_eq!(report.runs.len(), 6);
    for r in &report.runs {
        assert!(r.max_abs_error.is_finite());
        if r.mode == "exact" {
            assert!(r.max_abs_error < 1e-3, "{} exact differs by {}", r.model, r.max_abs_error);
        }
        match r.model.as_str() {
            "efficientnet_lite0" => {
                assert!(r.top1_agreement.is_some() && r.mask_iou_mean.is_none());
                // The reference TSV of ../shared/data/reference is found beside the clips.
                let a = r.accuracy.as_ref().expect("reference top-1 found");
                assert_eq!((a.source.as_str(), a.frames), ("dev__static_vtest_pedestrians.top5.tsv", 5));
                assert!(a.top1_full >= 0.8, "engine full agrees with ONNX Runtime's top-1 on {}", a.top1_full);
            }
            "selfie_segmentation" => {
                let iou = r.mask_iou_mean.expect("segmenter reports IoU");
                assert!(r.top1_agreement.is_none() && r.accuracy.is_none());
                if r.mode == "exact" {
                    assert_eq!(iou, 1.0);
                } else {
                    assert!((0.0..=1.0).contains(&iou));
                }
                // A few people in a wide street scene: a small but real mask.
                let cover = r.mask_cover.expect("segmenter reports cover");
                assert!(cover > 0.0 && cover < 0.5, "cover {cover}");
            }
            other => panic!("unexpected model {other}"),
        }
    }
}
