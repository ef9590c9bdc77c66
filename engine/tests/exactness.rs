//! Exactness invariant: in exact mode `process` equals `run_full`, frame after frame, on
//! random graphs, random frame sizes and random sequences of changed regions (including
//! regions touching the borders). Every node's activation is compared, not only the outputs,
//! and full inference itself is checked node by node against the naive reference.

mod common;

use framecache::kernels::SimdLevel;
use framecache::{Frame, Mode, Plan, Preprocess, Session, SessionOptions};
use proptest::prelude::*;

use common::close;

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(192), ..ProptestConfig::default() })]

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
        // The adaptive bypass decides from wall time which frames are dense; either way the
        // result is full inference's.
        bypass in any::<bool>(),
        // Every kernel level this CPU runs.
        level in prop::sample::select(SimdLevel::available()),
        // The importer's fusions (inverted-residual blocks, residual adds), or none.
        fuse in any::<bool>(),
        // Int8 convolutions: then cached equals full bit for bit.
        int8 in any::<bool>(),
    ) {
        let mut graph = common::build(h, w, &layers, seed);
        if int8 {
            common::quantize(&mut graph, seed);
        }
        if fuse {
            graph = framecache::import::fused(graph);
        }
        let plan = Plan::new(graph, Preprocess::default()).unwrap();
        let opts = SessionOptions { mode: Mode::Exact, tile, threads: Some(threads), dense_crossover: 0.5, bypass, simd: Some(level), ..Default::default() };
        let mut cached = Session::new(plan.clone(), opts.clone()).unwrap();
        let mut full = Session::new(plan.clone(), opts).unwrap();

        let sequence = common::sequence(h, w, seed, &frames);
        for (i, px) in sequence.iter().enumerate() {
            let f = Frame::rgb(w, h, px);
            let a = cached.process(f).unwrap();
            let b = full.run_full(f).unwrap();
            let same: fn(&[f32], &[f32]) -> Result<(), String> = if int8 { common::same_bits } else { close };
            for n in 0..plan.graph().nodes.len() {
                same(cached.activation(n), full.activation(n))
                    .map_err(|e| TestCaseError::fail(format!("frame {i}, node {n} ({}): {e}", plan.graph().nodes[n].name)))?;
            }
            prop_assert_eq!(a.len(), b.len());
            // (A fused int8 block quantizes its own depthwise output, whose float bits differ
            // from the reference's by level: kernels.rs checks those blocks against their
            // unfused convolutions instead.)
            if i == 0 && !(int8 && fuse) {
                // Full inference computes every position of every node, even positions that
                // read no input (a transposed conv with kernel < stride leaves bias-only gaps).
                for (n, node) in plan.graph().nodes.iter().enumerate().skip(1) {
                    let inputs: Vec<&[f32]> = node.inputs.iter().map(|&j| full.activation(j)).collect();
                    common::close_to_reference(full.activation(n), &framecache::kernels::reference::eval(node, plan.graph(), &inputs))
                        .map_err(|e| TestCaseError::fail(format!("full inference, node {n} ({}): {e}", node.name)))?;
                }
            }
            if i > 0 && px == &sequence[i - 1] && !bypass {
                let stats = cached.last_stats().unwrap();
                prop_assert_eq!(stats.dirty_tiles, 0);
                prop_assert_eq!(stats.macs_executed, 0);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(96), ..ProptestConfig::default() })]

    /// Multi-task plans: the random graph's three outputs (a map, a dense vector, a flat
    /// concat) as three heads with random rates, some turned off and on again. Whenever a
    /// head runs, its outputs equal full inference of that frame: what changed while it was
    /// skipped is caught up exactly. Skipped heads execute nothing.
    #[test]
    fn heads_at_any_rate_catch_up_exactly(
        h in 9usize..32,
        w in 9usize..32,
        layers in prop::collection::vec(common::layer(), 1..6),
        seed in any::<u64>(),
        rates in prop::array::uniform3(1u32..4),
        off in prop::collection::vec((0usize..3, any::<bool>()), 0..6),
        frames in prop::collection::vec(prop::collection::vec(common::patch(), 0..3), 2..7),
        fuse in any::<bool>(),
    ) {
        use framecache::exec::HeadPart;
        use framecache::HeadStatus;
        let mut graph = common::build(h, w, &layers, seed);
        if fuse {
            graph = framecache::import::fused(graph);
        }
        let parts = (0..3)
            .map(|k| HeadPart { name: format!("h{k}"), outputs: vec![k], rate: rates[k], nodes: vec![], reads: vec![] })
            .collect();
        let plan = Plan::with_heads(graph, Preprocess::default(), parts, &[]).unwrap();
        let opts = SessionOptions { mode: Mode::Exact, tile: 8, threads: Some(1), ..Default::default() };
        let mut cached = Session::new(plan.clone(), opts.clone()).unwrap();
        let mut full = Session::new(plan.clone(), opts).unwrap();
        let sequence = common::sequence(h, w, seed, &frames);
        let mut enabled = [true; 3];
        for (i, px) in sequence.iter().enumerate() {
            if let Some(&(k, on)) = off.get(i) {
                cached.set_head_enabled(k, on).unwrap();
                enabled[k] = on;
            }
            let f = Frame::rgb(w, h, px);
            let a = cached.process(f).unwrap();
            let b = full.run_full(f).unwrap();
            let stats = cached.last_stats().unwrap();
            for (k, part) in plan.heads().iter().enumerate() {
                let due = enabled[k] && (i as u32).is_multiple_of(rates[k]);
                let st = stats.heads[k];
                prop_assert_eq!(st.status == HeadStatus::Skipped, !due, "frame {}, head {}", i, k);
                if !due {
                    prop_assert_eq!(st.macs, 0);
                    continue;
                }
                for &o in &part.outputs {
                    close(&a[o].data, &b[o].data)
                        .map_err(|e| TestCaseError::fail(format!("frame {i}, head {k}: {e}")))?;
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(192), ..ProptestConfig::default() })]

    /// Propagation through the reach tables (word operations over runs) equals its definition
    /// on random graphs and random masks: an output position is changed when any position of
    /// its window over any input changed (global ops: when anything did).
    #[test]
    fn propagation_equals_the_window_definition(
        h in 9usize..40,
        w in 9usize..80,
        layers in prop::collection::vec(common::layer(), 1..7),
        seed in any::<u64>(),
        rects in prop::collection::vec((0usize..40, 1usize..12, 0usize..80, 1usize..12), 0..4),
        dots in prop::collection::vec((0usize..40, 0usize..80), 0..6),
    ) {
        use framecache::reuse::{propagate, Mask, Reach};
        let graph = common::build(h, w, &layers, seed);
        let mut input = Mask::new(h, w);
        for (y, dy, x, dx) in rects {
            input.set_rect(y % h, y % h + dy, x % w, x % w + dx);
        }
        for (y, x) in dots {
            input.set(y % h, x % w, true);
        }
        let got = propagate(&graph, &Reach::new(&graph), input.clone());
        let mut want = vec![input];
        for node in &graph.nodes[1..] {
            let s = node.shape;
            let mut m = Mask::new(s.h, s.w);
            for oy in 0..s.h {
                for ox in 0..s.w {
                    let hit = node.inputs.iter().enumerate().any(|(k, &j)| {
                        let src = &want[j];
                        if node.op.is_global() {
                            return src.any();
                        }
                        let (Some(r), Some(c)) = (node.rows_read(&graph, k, oy), node.cols_read(&graph, k, ox)) else {
                            return false;
                        };
                        (r.lo..=r.hi).any(|iy| (c.lo..=c.hi).any(|ix| src.get(iy, ix)))
                    });
                    m.set(oy, ox, hit);
                }
            }
            want.push(m);
        }
        for (i, (g, e)) in got.iter().zip(&want).enumerate() {
            prop_assert!(g == e, "node {} ({}): {} positions, want {}", i, graph.nodes[i].op.name(), g.count(), e.count());
        }
    }
}
