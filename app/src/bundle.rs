//! `framecache bundle`: a multi-task bundle over clips. Reports the split (backbone and head
//! MACs), what sharing the backbone saves against one full model per head, and the cached
//! backbone against the uncached one, as medians and same-run ratios.

use std::fmt::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use framecache::exec::HeadPart;
use framecache::{Bundle, BundleSession, HeadStatus, Mode, Plan, Session, SessionOptions};

use crate::clip::Clip;

#[derive(Args, Debug)]
pub struct BundleArgs {
    /// Bundle manifest (TOML), e.g. assets/bundles/blazepose.toml, or bundle file (`framecache
    /// compile --bundle`).
    #[arg(long)]
    pub bundle: PathBuf,
    /// Clips to run (PNG folders or .y4m; default: the bundled clip).
    #[arg(long)]
    pub clip: Vec<PathBuf>,
    /// Frames per clip.
    #[arg(long, default_value_t = 30)]
    pub frames: usize,
    /// Change detection of the cached runs.
    #[arg(long, default_value_t = framecache::exec::DEFAULT_MODE, value_parser = crate::args::parse_mode)]
    pub mode: Mode,
    /// Extra folders to look for model files in (after the manifest's folder, assets/models
    /// and ../shared/data/models/*).
    #[arg(long)]
    pub model_dir: Vec<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Recompute everything every N frames in the cached runs, or `never` (default: every 16
    /// frames in the approximate modes, never in exact mode).
    #[arg(long, value_parser = crate::args::parse_refresh)]
    pub refresh: Option<crate::args::Refresh>,
}

/// Folders a manifest's model files are looked up in: `extra`, assets/models, and the
/// shared data's model folders (`$FRAMECACHE_SHARED_DATA` or ../shared/data) when present.
pub fn model_dirs(extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = extra.to_vec();
    dirs.extend(crate::model::sidecar_dirs());
    if let Some(data) = crate::args::project_path("FRAMECACHE_SHARED_DATA", "../shared/data", |p| p.is_dir()) {
        dirs.extend(["mediapipe", "imagenet", "mtcnn", "rapidocr"].map(|sub| data.join("models").join(sub)));
    }
    dirs
}

/// Mean of the finite values (NaN marks frames where a ratio is undefined).
fn mean(v: &[f64]) -> f64 {
    let ok: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    ok.iter().sum::<f64>() / ok.len().max(1) as f64
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

pub fn run(args: BundleArgs) -> Result<()> {
    print!("{}", report(&args)?);
    Ok(())
}

/// The bundle's report as markdown: the split, sharing, cached vs full, and fidelity.
pub fn report(args: &BundleArgs) -> Result<String> {
    let mut out = String::new();
    let bundle = Bundle::load(&args.bundle, &model_dirs(&args.model_dir))
        .with_context(|| format!("loading bundle {}", args.bundle.display()))?;
    let clips = if args.clip.is_empty() { vec![crate::args::default_clip()?] } else { args.clip.clone() };
    // The cached sessions run as the product does, adaptive bypass on; the full ones are the
    // reference.
    let options = SessionOptions {
        mode: args.mode,
        threads: args.threads,
        bypass: true,
        refresh_interval: crate::args::refresh_interval(args.refresh, args.mode),
        ..Default::default()
    };
    let full_options = SessionOptions { mode: Mode::Exact, bypass: false, refresh_interval: None, ..options.clone() };
    writeln!(out, "# bundle {} ({})\n", bundle.name, args.bundle.display())?;

    writeln!(out, "## Split\n")?;
    writeln!(out, "| backbone | part | nodes | MMACs | reads |")?;
    writeln!(out, "|---|---|---|---|---|")?;
    for b in &bundle.backbones {
        let plan = &b.plan;
        let (bb, heads) = plan.part_macs();
        let model = b.name();
        let backbone_nodes = (0..plan.graph().nodes.len()).filter(|&i| plan.part(i).is_none()).count();
        writeln!(out, "| {model} | backbone | {backbone_nodes} | {:.1} | |", bb as f64 / 1e6)?;
        for (h, m) in plan.heads().iter().zip(heads) {
            let reads: Vec<String> = h
                .reads
                .iter()
                .map(|&j| format!("{} {}", plan.graph().nodes[j].name, plan.graph().nodes[j].shape))
                .collect();
            writeln!(
                out,
                "| | head {} (every {} frame) | {} | {:.1} | {} |",
                h.name,
                h.rate,
                h.nodes.len(),
                m as f64 / 1e6,
                reads.join(", ")
            )?;
        }
    }

    let first = Clip::open(&clips[0])?.decode_all(Some(args.frames), || {})?;
    writeln!(
        out,
        "\n## Sharing: one backbone for all heads vs a full model per head ({} frames of {}, full inference)\n",
        first.len(),
        clips[0].display()
    )?;
    writeln!(out, "| backbone | all heads shared: ms (MMACs) | each head alone: ms (MMACs) | shared ÷ costliest head alone | shared ÷ mean head alone | shared ÷ sum of heads alone |")?;
    writeln!(out, "|---|---|---|---|---|---|")?;
    for b in &bundle.backbones {
        let plan = &b.plan;
        // The shared plan first, then one plan per head with its own copy of the backbone;
        // frame by frame in turn, so that every median comes from the same stretch of time.
        let mut plans = vec![Arc::clone(plan)];
        for h in plan.heads() {
            let part = HeadPart { nodes: Vec::new(), reads: Vec::new(), ..h.clone() };
            plans.push(Plan::with_heads(plan.graph().clone(), plan.preprocess().clone(), vec![part], &[])?);
        }
        let mut sessions =
            plans.iter().map(|p| Session::new(Arc::clone(p), full_options.clone())).collect::<Result<Vec<_>, _>>()?;
        let mut times = vec![Vec::new(); plans.len()];
        for (i, f) in first.iter().enumerate() {
            for (s, t) in sessions.iter_mut().zip(&mut times) {
                let started = Instant::now();
                s.run_full(f.as_frame())?;
                if i > 0 {
                    t.push(started.elapsed().as_secs_f64() * 1e3); // frame 0 warms up
                }
            }
        }
        let mut medians = times.into_iter().map(median_ms);
        let shared = medians.next().unwrap_or(f64::NAN);
        let singles: Vec<(String, f64, u64)> = plan
            .heads()
            .iter()
            .zip(medians)
            .zip(&plans[1..])
            .map(|((h, t), p)| (h.name.clone(), t, p.total_macs()))
            .collect();
        let cells: Vec<String> =
            singles.iter().map(|(n, t, m)| format!("{n} {t:.2} ({:.0})", *m as f64 / 1e6)).collect();
        let mean_single = singles.iter().map(|s| s.1).sum::<f64>() / singles.len().max(1) as f64;
        let sum_single: f64 = singles.iter().map(|s| s.1).sum();
        let max_single = singles.iter().map(|s| s.1).fold(f64::NAN, f64::max);
        writeln!(
            out,
            "| {} | {shared:.2} ({:.0}) | {} | {:.2}x | {:.2}x | {:.2}x |",
            b.name(),
            plan.total_macs() as f64 / 1e6,
            cells.join("; "),
            shared / max_single,
            shared / mean_single,
            shared / sum_single
        )?;
    }

    writeln!(out, "\n## Cached ({}) vs uncached, per clip\n", args.mode)?;
    writeln!(out, "Skip-2 is the baseline to beat: full inference on every other frame, the last result held \
                   in between (its mean time counts the full frames at their measured cost and the held ones as free).\n")?;
    writeln!(out, "| clip | frames | full ms (median) | cached ms (median) | speedup (median) | full ms (mean) | cached ms (mean) | × full (mean) | skip-2 × full (mean) | MAC saving | backbone share of cached MACs | head runs (computed / unchanged / skipped) |")?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|")?;
    let mut fidelity = Vec::new();
    for clip in &clips {
        let frames = Clip::open(clip)?.decode_all(Some(args.frames), || {})?;
        let mut full = BundleSession::new(Arc::clone(&bundle), full_options.clone())?;
        let mut cached = BundleSession::new(Arc::clone(&bundle), options.clone())?;
        let (mut tf, mut tc, mut saving, mut bb_share) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut counts = [0usize; 3];
        let mut agree: Vec<(String, &'static str, Vec<f64>)> = Vec::new();
        // Skip-2: the full results of the last even frame, and its per-frame cost.
        let mut held: Vec<framecache::HeadResult> = Vec::new();
        let mut skip_ms = Vec::new();
        let mut skip_agree: Vec<(String, Vec<f64>)> = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let started = Instant::now();
            let reference = full.run_full(f.as_frame())?;
            let t_full = started.elapsed().as_secs_f64() * 1e3;
            if i % 2 == 0 {
                held.clone_from(&reference);
            }
            let started = Instant::now();
            let results = cached.process(f.as_frame())?;
            let t_cached = started.elapsed().as_secs_f64() * 1e3;
            if i == 0 {
                continue; // the cold frame is a full computation in both
            }
            tf.push(t_full);
            tc.push(t_cached);
            skip_ms.push(if i % 2 == 0 { t_full } else { 0.0 });
            for (h, want) in held.iter().zip(&reference) {
                if let (Some(a), Some(b)) = (&h.output, &want.output) {
                    if let Some((_, v)) = framecache::heads::agreement(a, b) {
                        match skip_agree.iter_mut().find(|(n, _)| *n == h.name) {
                            Some(e) => e.1.push(v),
                            None => skip_agree.push((h.name.clone(), vec![v])),
                        }
                    }
                }
            }
            let (mut exec, mut total, mut bb) = (0u64, 0u64, 0u64);
            for k in 0..bundle.backbones.len() {
                let st = cached.session(k).last_stats().expect("stats");
                exec += st.macs_executed;
                total += st.macs_full;
                bb += st.backbone_macs();
            }
            saving.push(1.0 - exec as f64 / total.max(1) as f64);
            bb_share.push(if exec == 0 { f64::NAN } else { bb as f64 / exec as f64 });
            for (r, want) in results.iter().zip(&reference) {
                if let (Some(a), Some(b)) = (&r.output, &want.output) {
                    if let Some((metric, v)) = framecache::heads::agreement(a, b) {
                        match agree.iter_mut().find(|(n, _, _)| *n == r.name) {
                            Some(e) => e.2.push(v),
                            None => agree.push((r.name.clone(), metric, vec![v])),
                        }
                    }
                }
                counts[match r.status {
                    HeadStatus::Computed => 0,
                    HeadStatus::Unchanged => 1,
                    HeadStatus::Skipped => 2,
                }] += 1;
            }
        }
        let (full_mean, cached_mean, skip_mean) = (mean(&tf), mean(&tc), mean(&skip_ms));
        let (full_ms, cached_ms) = (median_ms(tf), median_ms(tc));
        writeln!(
            out,
            "| {} | {} | {full_ms:.2} | {cached_ms:.2} | {:.2}x | {full_mean:.2} | {cached_mean:.2} | {:.2}x | {:.2}x | {:.1}% | {:.1}% | {} / {} / {} |",
            clip.file_name().unwrap_or_default().to_string_lossy(),
            frames.len(),
            full_ms / cached_ms,
            full_mean / cached_mean,
            full_mean / skip_mean,
            100.0 * mean(&saving),
            100.0 * mean(&bb_share),
            counts[0],
            counts[1],
            counts[2]
        )?;
        fidelity.extend(agree.into_iter().map(|(head, metric, v)| {
            let name = clip.file_name().unwrap_or_default().to_string_lossy().into_owned();
            // Errors are worst at their largest, agreements at their smallest.
            let worst = if metric.contains("error") {
                v.iter().copied().fold(f64::NAN, f64::max)
            } else {
                v.iter().copied().fold(f64::NAN, f64::min)
            };
            let skip = skip_agree.iter().find(|(n, _)| *n == head).map_or(f64::NAN, |(_, v)| mean(v));
            (name, head, metric, mean(&v), worst, skip)
        }));
    }
    writeln!(out, "\n## Fidelity of the cached heads against full inference, per clip (mean over frames after the first; worst frame)\n")?;
    writeln!(out, "| clip | head | metric | mean | worst frame | skip-2 mean |")?;
    writeln!(out, "|---|---|---|---|---|---|")?;
    for (clip, head, metric, m, worst, skip) in fidelity {
        writeln!(out, "| {clip} | {head} | {metric} | {m:.3} | {worst:.3} | {skip:.3} |")?;
    }
    Ok(out)
}
