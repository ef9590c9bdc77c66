//! `framecache bundle`: a multi-task bundle over clips. Reports the split (backbone and head
//! MACs), what sharing the backbone saves against one full model per head, and the cached
//! backbone against the uncached one, as medians and same-run ratios.

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
    /// Bundle manifest (TOML), e.g. assets/bundles/blazepose.toml.
    #[arg(long)]
    pub bundle: PathBuf,
    /// Clips to run (PNG folders or .y4m; default: the bundled clip).
    #[arg(long)]
    pub clip: Vec<PathBuf>,
    /// Frames per clip.
    #[arg(long, default_value_t = 30)]
    pub frames: usize,
    /// Change detection of the cached runs.
    #[arg(long, default_value = "exact", value_parser = crate::cli::parse_mode)]
    pub mode: Mode,
    /// Extra folders to look for model files in (after the manifest's folder, assets/models
    /// and ../shared/data/models/*).
    #[arg(long)]
    pub model_dir: Vec<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Folders a manifest's model files are looked up in: `extra`, assets/models, and the
/// shared data's model folders (`$FRAMECACHE_SHARED_DATA` or ../shared/data) when present.
pub fn model_dirs(extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = extra.to_vec();
    dirs.extend(crate::model::sidecar_dirs());
    if let Some(data) = crate::cli::project_path("FRAMECACHE_SHARED_DATA", "../shared/data", |p| p.is_dir()) {
        dirs.extend(["mediapipe", "imagenet"].map(|sub| data.join("models").join(sub)));
    }
    dirs
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
    let bundle = Bundle::load(&args.bundle, &model_dirs(&args.model_dir))
        .with_context(|| format!("loading bundle {}", args.bundle.display()))?;
    let clips = if args.clip.is_empty() { vec![crate::cli::default_clip()?] } else { args.clip.clone() };
    let options = SessionOptions { mode: args.mode, threads: args.threads, ..Default::default() };
    let full_options = SessionOptions { mode: Mode::Exact, ..options.clone() };
    println!("# bundle {} ({})\n", bundle.name, args.bundle.display());

    println!("## Split\n");
    println!("| backbone | part | nodes | MMACs | reads |");
    println!("|---|---|---|---|---|");
    for b in &bundle.backbones {
        let plan = &b.plan;
        let (bb, heads) = plan.part_macs();
        let model = b.model.file_name().unwrap_or_default().to_string_lossy();
        let backbone_nodes = (0..plan.graph().nodes.len()).filter(|&i| plan.part(i).is_none()).count();
        println!("| {model} | backbone | {backbone_nodes} | {:.1} | |", bb as f64 / 1e6);
        for (h, m) in plan.heads().iter().zip(heads) {
            let reads: Vec<String> = h
                .reads
                .iter()
                .map(|&j| format!("{} {}", plan.graph().nodes[j].name, plan.graph().nodes[j].shape))
                .collect();
            println!(
                "| | head {} (every {} frame) | {} | {:.1} | {} |",
                h.name,
                h.rate,
                h.nodes.len(),
                m as f64 / 1e6,
                reads.join(", ")
            );
        }
    }

    let first = Clip::open(&clips[0])?.decode_all(Some(args.frames), || {})?;
    println!(
        "\n## Sharing: one backbone for all heads vs a full model per head ({} frames of {}, full inference)\n",
        first.len(),
        clips[0].display()
    );
    println!("| backbone | all heads shared: ms (MMACs) | each head alone: ms (MMACs) | shared ÷ costliest head alone | shared ÷ mean head alone | shared ÷ sum of heads alone |");
    println!("|---|---|---|---|---|---|");
    for b in &bundle.backbones {
        let plan = &b.plan;
        let time_full = |p: &Arc<Plan>| -> Result<f64> {
            let mut s = Session::new(Arc::clone(p), full_options.clone())?;
            s.run_full(&first[0].as_frame())?; // warm-up
            let mut t = Vec::new();
            for f in &first {
                let started = Instant::now();
                s.run_full(&f.as_frame())?;
                t.push(started.elapsed().as_secs_f64() * 1e3);
            }
            Ok(median_ms(t))
        };
        let shared = time_full(plan)?;
        let mut singles = Vec::new();
        for h in plan.heads() {
            let part = HeadPart { nodes: Vec::new(), reads: Vec::new(), ..h.clone() };
            let alone = Plan::with_heads(plan.graph().clone(), plan.preprocess().clone(), vec![part], &[])?;
            singles.push((h.name.clone(), time_full(&alone)?, alone.total_macs()));
        }
        let cells: Vec<String> =
            singles.iter().map(|(n, t, m)| format!("{n} {t:.2} ({:.0})", *m as f64 / 1e6)).collect();
        let mean_single = singles.iter().map(|s| s.1).sum::<f64>() / singles.len().max(1) as f64;
        let sum_single: f64 = singles.iter().map(|s| s.1).sum();
        let max_single = singles.iter().map(|s| s.1).fold(f64::NAN, f64::max);
        println!(
            "| {} | {shared:.2} ({:.0}) | {} | {:.2}x | {:.2}x | {:.2}x |",
            b.model.file_name().unwrap_or_default().to_string_lossy(),
            plan.total_macs() as f64 / 1e6,
            cells.join("; "),
            shared / max_single,
            shared / mean_single,
            shared / sum_single
        );
    }

    println!("\n## Cached ({}) vs uncached, per clip\n", args.mode);
    println!("| clip | frames | full ms | cached ms | speedup | MAC saving | backbone share of cached MACs | head runs (computed / unchanged / skipped) |");
    println!("|---|---|---|---|---|---|---|---|");
    for clip in &clips {
        let frames = Clip::open(clip)?.decode_all(Some(args.frames), || {})?;
        let mut full = BundleSession::new(Arc::clone(&bundle), full_options.clone())?;
        let mut cached = BundleSession::new(Arc::clone(&bundle), options.clone())?;
        let (mut tf, mut tc, mut saving, mut bb_share) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut counts = [0usize; 3];
        for (i, f) in frames.iter().enumerate() {
            let started = Instant::now();
            full.run_full(&f.as_frame())?;
            let t_full = started.elapsed().as_secs_f64() * 1e3;
            let started = Instant::now();
            let results = cached.process(&f.as_frame())?;
            let t_cached = started.elapsed().as_secs_f64() * 1e3;
            if i == 0 {
                continue; // the cold frame is a full computation in both
            }
            tf.push(t_full);
            tc.push(t_cached);
            let (mut exec, mut total, mut bb) = (0u64, 0u64, 0u64);
            for k in 0..bundle.backbones.len() {
                let st = cached.session(k).last_stats().expect("stats");
                exec += st.macs_executed;
                total += st.macs_full;
                bb += st.backbone_macs();
            }
            saving.push(1.0 - exec as f64 / total.max(1) as f64);
            bb_share.push(if exec == 0 { f64::NAN } else { bb as f64 / exec as f64 });
            for r in &results {
                counts[match r.status {
                    HeadStatus::Computed => 0,
                    HeadStatus::Unchanged => 1,
                    HeadStatus::Skipped => 2,
                }] += 1;
            }
        }
        let (full_ms, cached_ms) = (median_ms(tf), median_ms(tc));
        let mean = |v: &[f64]| {
            let ok: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
            ok.iter().sum::<f64>() / ok.len().max(1) as f64
        };
        println!(
            "| {} | {} | {full_ms:.2} | {cached_ms:.2} | {:.2}x | {:.1}% | {:.1}% | {} / {} / {} |",
            clip.file_name().unwrap_or_default().to_string_lossy(),
            frames.len(),
            full_ms / cached_ms,
            100.0 * mean(&saving),
            100.0 * mean(&bb_share),
            counts[0],
            counts[1],
            counts[2]
        );
    }
    Ok(())
}
