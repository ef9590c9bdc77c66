//! The shared bundle on a portrait camera (docs/results-distill.md):
//!
//! ```text
//! cargo run --release -p framecache-tests --example portrait -- CLIP...
//! ```
//!
//! Each frame of each clip is taken whole, cut to its middle 9:16 and, separately, to its middle
//! 3:4 (a phone held upright; the phone apps' camera gives 3:4), and the bundle runs on each
//! three times, in full: as shipped (`aspect = "turn"`: a portrait frame at 160x288), with
//! `aspect = "follow"` (the frame's aspect at shorter side 160: 224x160 for 4:3, 160x224 for
//! 3:4), and with `aspect = "fixed"` (every frame stretched to 288x160, the cuts by 3.2x and
//! 2.4x). Against each, on the same frames:
//! - the person head against its teacher, selfie segmentation with its own sidecar: mean mask
//!   IoU (`p > 0.5`, the head's mask resampled to the teacher's grid as `distill`'s held-out
//!   report does) over the frames where the teacher's mask covers at least 1% of the frame;
//! - the classifier against MobileNetV2 with its own sidecar (the centre crop): top-1
//!   agreement;
//! - the milliseconds of a frame (median, one thread), the two bundles in turn.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use framecache::heads::{mask_iou, Head};
use framecache::{Bundle, BundleSession, Frame, SessionOptions, SidecarModel};
use framecache_train::distill::resample;

type Res<T> = anyhow::Result<T>;

/// The middle `aspect` (width ÷ height) of `f`, full height; all of it for `None`.
fn cut(f: &framecache_app::clip::RgbFrame, aspect: Option<f64>) -> (usize, usize, Vec<u8>) {
    let w = aspect.map_or(f.width, |a| ((f.height as f64 * a).round() as usize).min(f.width));
    let x0 = (f.width - w) / 2;
    let data =
        (0..f.height).flat_map(|y| &f.data[(y * f.width + x0) * 3..(y * f.width + x0 + w) * 3]).copied().collect();
    (w, f.height, data)
}

/// The shipped manifest with `aspect` set to `value`, written to a temporary folder and
/// loaded with the shipped manifest's folder to resolve its relative paths.
fn shared_bundle(assets: &Path, value: &str) -> Res<Arc<Bundle>> {
    let text = std::fs::read_to_string(assets.join("bundles/mobilenet_v2_shared.toml"))?;
    anyhow::ensure!(text.contains("aspect = \"turn\""), "the shipped bundle no longer turns with the frame");
    let dir = std::env::temp_dir().join(format!("framecache-portrait-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{value}.toml"));
    std::fs::write(&path, text.replace("aspect = \"turn\"", &format!("aspect = \"{value}\"")))?;
    let bundle = Bundle::load(&path, &[assets.join("bundles")]);
    std::fs::remove_dir_all(&dir)?;
    Ok(bundle?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn mask(r: &framecache::HeadResult) -> Option<(usize, usize, &[f32])> {
    match &r.output {
        Some(Head::Mask { width, height, probs, .. }) => Some((*width, *height, probs)),
        _ => None,
    }
}

fn top1(r: &framecache::HeadResult) -> Option<usize> {
    match &r.output {
        Some(Head::Classes { top, .. }) => top.first().map(|c| c.index),
        _ => None,
    }
}

fn main() -> Res<()> {
    let clips: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    anyhow::ensure!(!clips.is_empty(), "usage: portrait CLIP...");
    let assets = framecache_tests::project_root().join("assets");
    let one = SessionOptions { threads: Some(1), ..Default::default() };
    let load = |name: &str| SidecarModel::load(&assets.join("models").join(name), None, &[], None, None);
    let (selfie, classifier) = (load("selfie_segmentation.onnx")?, load("mobilenet_v2.onnx")?);
    let bundles = ["turn", "follow", "fixed"].map(|a| shared_bundle(&assets, a).map(|b| (a, b)));
    let bundles = bundles.into_iter().collect::<Res<Vec<_>>>()?;
    println!("| clip | cut | frames (teacher cover ≥ 1%) | aspect | input | person IoU vs selfie segmentation | top-1 agreement vs MobileNetV2 crop | ms (median) |");
    println!("|---|---|---|---|---|---|---|---|");
    let cuts = clips.iter().flat_map(|c| [(c, "whole", None), (c, "9:16", Some(9.0 / 16.0)), (c, "3:4", Some(0.75))]);
    for (clip, name_of_cut, aspect) in cuts {
        let frames = framecache_app::clip::Clip::open(clip)?.decode_all(None, || {})?;
        let tall: Vec<(usize, usize, Vec<u8>)> = frames.iter().map(|f| cut(f, aspect)).collect();
        // The references, once per frame.
        let mut teacher = framecache::Session::new(Arc::clone(&selfie.plan), one.clone())?;
        let mut reference = framecache::Session::new(Arc::clone(&classifier.plan), one.clone())?;
        let mut refs = Vec::new();
        for (w, h, data) in &tall {
            let frame = Frame::rgb(*w, *h, data);
            let t = teacher.run_full(frame)?;
            let logits = &reference.run_full(frame)?[0].data;
            let best = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap_or(0);
            refs.push((t[0].data.clone(), best));
        }
        let mut sessions = bundles
            .iter()
            .map(|(_, b)| BundleSession::new(Arc::clone(b), one.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut rows = vec![(Vec::new(), 0usize, Vec::new(), String::new()); bundles.len()];
        for (i, (w, h, data)) in tall.iter().enumerate() {
            let (teacher_probs, best) = &refs[i];
            let teacher_grid = selfie.plan.graph().input_shape();
            let teacher_map = selfie.plan.frame_map(*w, *h);
            for (session, row) in sessions.iter_mut().zip(&mut rows) {
                let started = Instant::now();
                let results = session.run_full(Frame::rgb(*w, *h, data))?;
                row.2.push(started.elapsed().as_secs_f64() * 1e3);
                let plan = session.session(0).plan();
                let input = plan.graph().input_shape();
                row.3 = format!("{}x{}", input.w, input.h);
                let person = results.iter().find(|r| r.name == "person").and_then(mask);
                let imagenet = results.iter().find(|r| r.name == "imagenet").and_then(top1);
                if let Some((mw, mh, probs)) = person {
                    let head = framecache::graph::Shape::new(mh, mw, 1);
                    let (th, tw) = (teacher_grid.h, teacher_grid.w);
                    let map = plan.frame_map(*w, *h);
                    let (at_teacher, _) = resample(probs, head, &map, th, tw, &teacher_map);
                    let (iou, cover) = mask_iou(&at_teacher, teacher_probs, 0.5);
                    if cover >= 0.01 {
                        row.0.push(iou);
                    }
                }
                row.1 += usize::from(imagenet == Some(*best));
            }
        }
        let name = clip.file_name().unwrap_or_default().to_string_lossy();
        for ((follow, _), (ious, agree, ms, input)) in bundles.iter().zip(rows) {
            let iou = if ious.is_empty() { f64::NAN } else { ious.iter().sum::<f64>() / ious.len() as f64 };
            println!(
                "| {name} | {name_of_cut} | {} ({}) | {follow} | {input} | {iou:.3} | {}/{} | {:.2} |",
                tall.len(),
                ious.len(),
                agree,
                tall.len(),
                median(ms)
            );
        }
    }
    Ok(())
}
