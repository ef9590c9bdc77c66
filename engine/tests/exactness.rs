//! Exactness invariant: in exact mode `process` equals `run_full`, frame after frame, on
//! random graphs, random frame sizes and random sequences of changed regions (including
//! regions touching the borders). Every node's activation is compared, not only the outputs,
//! and full inference itself is checked node by node against the naive reference.

mod common;

use framecache::{Frame, Mode, Plan, Preprocess, Session, SessionOptions};
use proptest::prelude::*;

/// Tolerance: 1e-5 relative to the tensor's magnitude.
fn close(a: &[f32], b: &[f32]) -> Result<(), String> {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-3);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if (x - y).abs() > 1e-5 * scale {
            return Err(format!("index {i}: cached {x} vs full {y} (scale {scale})"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn cached_equals_full_on_random_graphs(
        h in 9usize..40,
        w in 9usize..40,
        layers in prop::collection::vec(common::layer(), 1..7),
        seed in any::<u64>(),
        tile in prop::sample::select(vec![8usize, 12, 16]),
        // Each frame after the first pastes a few patches; an empty list repeats the frame.
        frames in prop::collection::vec(prop::collection::vec(common::patch(), 0..4), 1..5),
        threads in 1usize..3,
    ) {
        let graph = common::build(h, w, &layers, seed);
        let plan = Plan::new(graph, Preprocess::default()).unwrap();
        let opts = SessionOptions { mode: Mode::Exact, tile, threads: Some(threads), dense_crossover: 0.5, ..Default::default() };
        let mut cached = Session::new(plan.clone(), opts.clone()).unwrap();
        let mut full = Session::new(plan.clone(), opts).unwrap();

        let sequence = common::sequence(h, w, seed, &frames);
        for (i, px) in sequence.iter().enumerate() {
            let f = Frame::rgb(w, h, px);
            let a = cached.process(&f).unwrap();
            let b = full.run_full(&f).unwrap();
            for n in 0..plan.graph().nodes.len() {
                close(cached.activation(n), full.activation(n))
                    .map_err(|e| TestCaseError::fail(format!("frame {i}, node {n} ({}): {e}", plan.graph().nodes[n].name)))?;
            }
            prop_assert_eq!(a.len(), b.len());
            if i == 0 {
                // Full inference computes every position of every node, even positions that
                // read no input (a transposed conv with kernel < stride leaves bias-only gaps).
                for (n, node) in plan.graph().nodes.iter().enumerate().skip(1) {
                    let inputs: Vec<&[f32]> = node.inputs.iter().map(|&j| full.activation(j)).collect();
                    close(full.activation(n), &framecache::kernels::reference::eval(node, plan.graph(), &inputs))
                        .map_err(|e| TestCaseError::fail(format!("full inference, node {n} ({}): {e}", node.name)))?;
                }
            }
            if i > 0 && px == &sequence[i - 1] {
                let stats = cached.last_stats().unwrap();
                prop_assert_eq!(stats.dirty_tiles, 0);
                prop_assert_eq!(stats.macs_executed, 0);
            }
        }
    }
}
