//! Per-op-type time of full inference:
//! `cargo run --release --example profile -- MODEL.onnx [threads] [--nodes]`.
//! `--nodes` also lists every node (shape, MACs, time, GMAC/s); `--level=baseline|avx2|avx512|neon`
//! forces a SIMD level (default: the best this CPU has); `--gap=MS` idles MS milliseconds between
//! frames, as a camera's frame interval does (the pool's workers fall asleep between frames).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;

use framecache::kernels::SimdLevel;
use framecache::{Frame, Plan, Preprocess, Session, SessionOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let nodes = args.iter().any(|a| a == "--nodes");
    let level = match args.iter().find_map(|a| a.strip_prefix("--level=")) {
        None => None,
        Some(name) => Some(
            SimdLevel::available()
                .into_iter()
                .find(|l| format!("{l:?}").to_lowercase().starts_with(name))
                .ok_or_else(|| format!("this CPU has no SIMD level {name:?} ({:?})", SimdLevel::available()))?,
        ),
    };
    let gap = args.iter().find_map(|a| a.strip_prefix("--gap=")).map(str::parse::<f64>).transpose()?;
    let args: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let model = args.get(1).ok_or("usage: profile MODEL.onnx [threads] [--nodes]")?;
    let threads = args.get(2).map(|t| t.parse()).transpose()?.unwrap_or(1);
    let plan = Plan::from_onnx(model, Preprocess::default())?;
    let mut s =
        Session::new(plan.clone(), SessionOptions { threads: Some(threads), simd: level, ..Default::default() })?;
    let inp = plan.graph().input_shape();
    let px: Vec<u8> = (0..inp.len()).map(|i| (i * 7 % 251) as u8).collect();
    let f = Frame::rgb(inp.w, inp.h, &px);
    const WARMUP: usize = 10;
    const RUNS: usize = 40;
    let mut per_node = vec![Vec::new(); plan.graph().nodes.len()];
    let mut totals = Vec::new();
    // Per stage: frame to input tensor, kernels, input and output copies.
    let mut stages = [Vec::new(), Vec::new(), Vec::new()];
    for it in 0..WARMUP + RUNS {
        if let Some(ms) = gap {
            std::thread::sleep(std::time::Duration::from_secs_f64(ms / 1e3));
        }
        s.run_full(f)?;
        let st = s.last_stats().ok_or("no stats")?;
        if it >= WARMUP {
            totals.push(st.times.total().as_secs_f64() * 1e3);
            for (v, d) in stages.iter_mut().zip([st.times.preprocess, st.times.compute, st.times.copy]) {
                v.push(d.as_secs_f64() * 1e3);
            }
            for (acc, ns) in per_node.iter_mut().zip(&st.nodes) {
                acc.push(ns.time.as_secs_f64() * 1e3);
            }
        }
    }
    let mut out = String::new();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    writeln!(out, "median total {:.2} ms ({threads} threads, {RUNS} runs, {:?})", median(&mut totals), s.simd_level())?;
    let [pre, compute, copy] = &mut stages;
    writeln!(
        out,
        "stages (medians): preprocess {:.2} ms, kernels {:.2} ms, copies {:.2} ms",
        median(pre),
        median(compute),
        median(copy)
    )?;
    let graph = plan.graph();
    let mut per: BTreeMap<&str, (f64, u64)> = BTreeMap::new();
    let mut rows = Vec::new();
    for (n, times) in graph.nodes.iter().zip(&mut per_node) {
        let ms = median(times);
        let macs = n.macs(graph);
        let e = per.entry(n.op.name()).or_default();
        e.0 += ms;
        e.1 += macs;
        rows.push((n, ms, macs));
    }
    writeln!(out, "{:<16} {:>8} {:>9} {:>8}", "op", "ms", "MMACs", "GMAC/s")?;
    for (k, (ms, macs)) in per {
        writeln!(out, "{k:<16} {ms:>8.3} {:>9.2} {:>8.1}", macs as f64 / 1e6, macs as f64 / 1e6 / ms.max(1e-9))?;
    }
    if nodes {
        writeln!(out)?;
        for (n, ms, macs) in rows {
            let ins: Vec<String> = n.inputs.iter().map(|&i| graph.nodes[i].shape.to_string()).collect();
            writeln!(
                out,
                "{:<16} {:>14} <- {:<28} {ms:>7.3} ms {:>7.2} MMACs {:>6.1} GMAC/s  {}",
                n.op.name(),
                n.shape.to_string(),
                ins.join(","),
                macs as f64 / 1e6,
                macs as f64 / 1e6 / ms.max(1e-9),
                n.name
            )?;
        }
    }
    // A closed pipe (`| head`) is the reader's choice, not an error.
    match std::io::stdout().write_all(out.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
