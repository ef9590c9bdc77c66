//! Per-op-type time of full inference: `cargo run --release --example profile -- MODEL.onnx [threads]`.

use std::collections::BTreeMap;

use framecache::{Frame, Plan, Preprocess, Session, SessionOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let model = args.get(1).ok_or("usage: profile MODEL.onnx [threads]")?;
    let threads = args.get(2).map(|t| t.parse()).transpose()?.unwrap_or(1);
    let plan = Plan::from_onnx(model, Preprocess::default())?;
    let mut s = Session::new(plan.clone(), SessionOptions { threads: Some(threads), ..Default::default() })?;
    let inp = plan.graph().input_shape();
    let px: Vec<u8> = (0..inp.len()).map(|i| (i * 7 % 251) as u8).collect();
    let f = Frame::rgb(inp.w, inp.h, &px);
    let mut per: BTreeMap<&str, (f64, u64)> = BTreeMap::new();
    let mut totals = Vec::new();
    for it in 0..30 {
        s.run_full(&f)?;
        let st = s.last_stats().unwrap();
        totals.push(st.times.total().as_secs_f64() * 1e3);
        if it >= 10 {
            for (n, ns) in plan.graph().nodes.iter().zip(&st.nodes) {
                let e = per.entry(n.op.name()).or_default();
                e.0 += ns.time.as_secs_f64() * 1e3 / 20.0;
                e.1 += ns.macs / 20;
            }
        }
    }
    totals.sort_by(f64::total_cmp);
    println!("median total {:.2} ms ({threads} threads)", totals[totals.len() / 2]);
    for (k, (ms, macs)) in per {
        println!("{k:<16} {ms:>7.2} ms {:>8.1} MMACs {:>6.1} GMAC/s", macs as f64 / 1e6, macs as f64 / 1e6 / ms);
    }
    Ok(())
}
