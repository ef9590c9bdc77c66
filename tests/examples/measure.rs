//! The engine-core performance table, every figure measured in one run:
//!
//! ```text
//! cargo run --release -p framecache-tests --example measure -- [../shared/data] [--reps N]
//! ```
//!
//! * full inference: engine vs tract, 1 and 2 threads (medians, interleaved runs);
//! * exact mode with 10%, 25%, 50% and 100% of the input tiles changing: MAC saving, ideal
//!   speedup 1/(1 − saving), measured speedup over engine-full, conversion efficiency;
//! * threshold 4 and 8 on the static clips: MAC saving, speedup, top-1 agreement with
//!   engine-full, mean and max logit error.

use std::path::PathBuf;
use std::time::Instant;

use framecache::diff::Metric;
use framecache::{Fit, Frame, Mode, Plan, Preprocess, Session, SessionOptions};
use framecache_tests::{argmax, clip as load_clip, Rgb, TractModel};

type Res<T> = anyhow::Result<T>;

/// A `size x size` crop at the top-left of `f` (or of `f` at offset `(ox, oy)`).
fn crop(f: &Rgb, ox: usize, oy: usize, size: usize) -> Rgb {
    let (fw, fh) = (f.width, f.height);
    let mut data = Vec::with_capacity(size * size * 3);
    for y in 0..size {
        let yy = (oy + y).min(fh - 1);
        for x in 0..size {
            let xx = (ox + x).min(fw - 1);
            data.extend_from_slice(&f.data[(yy * fw + xx) * 3..][..3]);
        }
    }
    Rgb { width: size, height: size, data }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed().as_secs_f64() * 1e3)
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let data = PathBuf::from(
        args.iter()
            .find(|a| !a.starts_with("--") && a.parse::<usize>().is_err())
            .cloned()
            .unwrap_or_else(|| "../shared/data".into()),
    );
    let reps: usize = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(30);
    let model = data.join("models/imagenet/mobilenet_v2.onnx");
    // Frames are given at 224x224 so that tiles map 1:1 onto the input.
    let pre = Preprocess { fit: Fit::Stretch, ..Preprocess::imagenet() };
    let plan = Plan::from_onnx(&model, pre.clone())?;
    let vtest = load_clip(&data, "static_vtest_pedestrians")?;
    let birds = load_clip(&data, "handheld_cockatoo")?;
    let background = crop(&vtest[0], 48, 8, 224);
    println!(
        "machine: {} threads available; SIMD level {:?}",
        std::thread::available_parallelism()?.get(),
        framecache::kernels::SimdLevel::best()
    );
    println!(
        "MobileNetV2 224x224, {:.0} MMACs, {reps} measured frames per cell after 5 warm-up frames\n",
        plan.total_macs() as f64 / 1e6
    );

    println!(
        "## Full inference (median ms)\n\n| threads | engine full | tract full | tract / engine |\n|---|---|---|---|"
    );
    for threads in [1usize, 2] {
        let tract = TractModel::load(&model)?.with_threads(threads);
        let mut s = Session::new(plan.clone(), SessionOptions { threads: Some(threads), ..Default::default() })?;
        let (mut te, mut tt) = (Vec::new(), Vec::new());
        for i in 0..reps + 5 {
            let f = crop(&vtest[i % vtest.len()], 48, 8, 224);
            let (_, e) = time(|| s.run_full(Frame::rgb(224, 224, &f.data)));
            let (r, t) = time(|| tract.run_nhwc(s.activation(0), 224, 224, 3));
            r?;
            if i >= 5 {
                te.push(e);
                tt.push(t);
            }
        }
        let (e, t) = (median(&mut te), median(&mut tt));
        println!("| {threads} | {e:.2} | {t:.2} | {:.2}x |", t / e);
    }
    println!("\n(tract 0.23.9 with `multithread-mm`: its matrix products run on a pool of the row's thread count.)");

    println!("\n## Exact mode: a real moving patch pasted into a real frame\n");
    println!("| threads | changed tiles | MAC saving | ideal speedup | engine full ms | cached ms | speedup | efficiency |\n|---|---|---|---|---|---|---|---|");
    for threads in [1usize, 2] {
        for frac in [0.10f64, 0.25, 0.50, 1.0] {
            let opts = SessionOptions { threads: Some(threads), ..Default::default() };
            let mut cached = Session::new(plan.clone(), opts.clone())?;
            let mut full = Session::new(plan.clone(), opts)?;
            // A square of 16 px blocks covering `frac` of the picture, refreshed from the
            // cockatoo clip every frame; 100% alternates two unrelated frames.
            let side = ((frac * 196.0).sqrt().round() as usize).clamp(1, 14);
            let (mut tf, mut tc, mut saving, mut dirty) = (Vec::new(), Vec::new(), 0.0, 0.0);
            for i in 0..reps + 5 {
                let f = if frac >= 1.0 {
                    crop(if i % 2 == 0 { &vtest[0] } else { &birds[0] }, 48, 8, 224)
                } else {
                    let mut f = background.clone();
                    let patch = crop(&birds[i % birds.len()], 40, 0, side * 16);
                    for y in 0..side * 16 {
                        let (dy, p) = (16 + y, y * side * 16 * 3);
                        f.data[(dy * 224 + 16) * 3..][..side * 16 * 3]
                            .copy_from_slice(&patch.data[p..p + side * 16 * 3]);
                    }
                    f
                };
                let fr = Frame::rgb(224, 224, &f.data);
                // Interleave: cached, then full, on the same frame.
                let (r, c) = time(|| cached.process(fr));
                r?;
                let (r, t) = time(|| full.run_full(fr));
                r?;
                if i >= 5 {
                    let st = cached.last_stats().expect("stats");
                    saving += st.mac_saving();
                    dirty += 1.0 - st.input_hit_rate();
                    tc.push(c);
                    tf.push(t);
                }
            }
            let (saving, dirty) = (saving / reps as f64, dirty / reps as f64);
            let (f, c) = (median(&mut tf), median(&mut tc));
            let ideal = 1.0 / (1.0 - saving);
            println!(
                "| {threads} | {:.0}% | {:.1}% | {ideal:.2}x | {f:.2} | {c:.2} | {:.2}x | {:.2} |",
                100.0 * dirty,
                100.0 * saving,
                f / c,
                (f / c) / ideal
            );
        }
    }

    println!("\n## Threshold mode on real static clips (every frame, in order; 1 thread)\n");
    println!("| clip | mode | input hit | MAC saving | full ms | cached ms | speedup | top-1 agreement | mean max-abs logit err | max logit err |\n|---|---|---|---|---|---|---|---|---|---|");
    let plan_crop = Plan::from_onnx(&model, Preprocess::imagenet())?;
    for clip in ["static_vtest_pedestrians", "static_coin_motion"] {
        let frames = load_clip(&data, clip)?;
        for level in [4.0f32, 8.0] {
            let mode = Mode::Threshold { metric: Metric::MaxAbs, level };
            let mut cached =
                Session::new(plan_crop.clone(), SessionOptions { mode, threads: Some(1), ..Default::default() })?;
            let mut full = Session::new(plan_crop.clone(), SessionOptions { threads: Some(1), ..Default::default() })?;
            let (mut tf, mut tc, mut hit, mut saving, mut agree, mut errs) =
                (Vec::new(), Vec::new(), 0.0, 0.0, 0, Vec::new());
            for f in &frames {
                let fr = f.as_frame();
                let (a, c) = time(|| cached.process(fr));
                let (b, t) = time(|| full.run_full(fr));
                let (a, b) = (a?, b?);
                let st = cached.last_stats().expect("stats");
                if st.frame_index > 1 {
                    tc.push(c);
                    tf.push(t);
                    hit += st.input_hit_rate();
                    saving += st.mac_saving();
                }
                agree += usize::from(argmax(&a[0].data) == argmax(&b[0].data));
                errs.push(a[0].data.iter().zip(&b[0].data).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max));
            }
            let n = (frames.len() - 1) as f64;
            let (f, c) = (median(&mut tf), median(&mut tc));
            let mean_err = errs.iter().sum::<f32>() / errs.len() as f32;
            let max_err = errs.iter().fold(0.0f32, |m, &e| m.max(e));
            println!(
                "| {clip} | threshold={level} | {:.1}% | {:.1}% | {f:.2} | {c:.2} | {:.2}x | {:.1}% | {mean_err:.3} | {max_err:.3} |",
                100.0 * hit / n,
                100.0 * saving / n,
                f / c,
                100.0 * agree as f64 / frames.len() as f64
            );
        }
    }
    println!("\n## Tile size and dense crossover (threshold=8, both static clips, 1 thread)\n");
    println!("Every configuration processes each frame in turn (interleaved), so machine noise hits all alike.\n");
    println!("| tile | crossover | MAC saving | median cached ms | top-1 agreement with full |\n|---|---|---|---|---|");
    let configs = [(8, 0.9), (16, 0.9), (32, 0.9), (16, 0.5), (16, 0.7), (16, 1.0)];
    let mut times = vec![Vec::new(); configs.len()];
    let mut savings = vec![0.0; configs.len()];
    let mut agree = vec![0usize; configs.len()];
    let (mut counted, mut frames_seen) = (0.0, 0usize);
    for name in ["static_vtest_pedestrians", "static_coin_motion"] {
        let frames = load_clip(&data, name)?;
        let mut sessions = configs
            .iter()
            .map(|&(tile, dense_crossover)| {
                let mode = Mode::Threshold { metric: Metric::MaxAbs, level: 8.0 };
                Session::new(
                    plan_crop.clone(),
                    SessionOptions { mode, tile, dense_crossover, threads: Some(1), ..Default::default() },
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut full = Session::new(plan_crop.clone(), SessionOptions { threads: Some(1), ..Default::default() })?;
        for (i, f) in frames.iter().enumerate() {
            let reference = argmax(&full.run_full(f.as_frame())?[0].data);
            frames_seen += 1;
            for (k, s) in sessions.iter_mut().enumerate() {
                let (r, c) = time(|| s.process(f.as_frame()));
                agree[k] += usize::from(argmax(&r?[0].data) == reference);
                if i > 0 {
                    times[k].push(c);
                    savings[k] += s.last_stats().expect("stats").mac_saving();
                }
            }
            if i > 0 {
                counted += 1.0;
            }
        }
    }
    for (k, (tile, crossover)) in configs.iter().enumerate() {
        println!(
            "| {tile} | {crossover} | {:.1}% | {:.2} | {:.1}% |",
            100.0 * savings[k] / counted,
            median(&mut times[k]),
            100.0 * agree[k] as f64 / frames_seen as f64
        );
    }
    Ok(())
}
