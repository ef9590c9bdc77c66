//! The per-node bound of the gated presets: after every frame, each gated node's cached output
//! differs from the node applied to its cached inputs by at most the node's threshold
//! (`level / 255` times the RMS of its output on the first, full frame), at every position.
//! Delta presets gate every convolution that is read, narrows the channels and does at least
//! `GATE_MACS_PER_VALUE` multiply-adds per output value; both families gate the single-position nodes (pools and
//! dense vectors) that are read, and every other node matches its inputs exactly. Nodes nobody
//! reads are never held back, so they match exactly. This is what keeps the error bounded per node
//! instead of compounding: every consumer sees inputs within its producer's threshold of the
//! truth for the values it was computed from.

mod common;

use framecache::diff::Metric;
use framecache::exec::GATE_MACS_PER_VALUE;
use framecache::graph::Op;
use framecache::kernels::reference;
use framecache::{Frame, Mode, Plan, Preprocess, Session, SessionOptions};
use proptest::prelude::*;

fn rms(a: &[f32]) -> f32 {
    (a.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>() / a.len().max(1) as f64).sqrt() as f32
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(128), ..ProptestConfig::default() })]

    #[test]
    fn every_node_stays_within_its_threshold_of_its_inputs(
        h in 9usize..40,
        w in 9usize..40,
        layers in prop::collection::vec(common::layer(), 1..7),
        seed in any::<u64>(),
        tile in prop::sample::select(vec![8usize, 12, 16]),
        level in prop::sample::select(vec![2.0f32, 8.0, 32.0, 100.0]),
        frames in prop::collection::vec(prop::collection::vec(common::patch(), 0..4), 1..6),
        threads in 1usize..3,
        all in any::<bool>(),
        metric in prop::sample::select(vec![Metric::MaxAbs, Metric::BlockMean]),
        fuse in any::<bool>(),
    ) {
        let mut graph = common::build(h, w, &layers, seed);
        if fuse {
            graph = framecache::import::fused(graph);
        }
        let plan = Plan::new(graph, Preprocess::default()).unwrap();
        let g = plan.graph();
        let mode = if all { Mode::Delta { metric, level } } else { Mode::Threshold { metric, level } };
        let opts = SessionOptions { mode, tile, threads: Some(threads), dense_crossover: 0.5, ..Default::default() };
        let mut session = Session::new(plan.clone(), opts).unwrap();
        let mut read = vec![false; g.nodes.len()];
        for n in &g.nodes {
            for &i in &n.inputs {
                read[i] = true;
            }
        }
        let gated: Vec<bool> = g
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                // A bottleneck is gated as its projection alone would be.
                let (cin, macs) = match &n.op {
                    Op::Conv(_) => (g.nodes[n.inputs[0]].shape.c, plan.macs_per_pixel(i)),
                    Op::Bottleneck(b) => (b.project.cin, b.project.macs_per_output_pixel()),
                    _ => (0, 0),
                };
                let costly = cin > n.shape.c && macs >= GATE_MACS_PER_VALUE * n.shape.c as u64;
                read[i] && (n.shape.pixels() == 1 || (all && costly))
            })
            .collect();
        let sequence = common::sequence(h, w, seed, &frames);
        let mut thresholds = Vec::new();
        for (f, px) in sequence.iter().enumerate() {
            session.process(Frame::rgb(w, h, px)).unwrap();
            // A dense frame (the first, or a scene that moved as a whole) takes the nodes'
            // scales again, and the gates of the next frames follow them.
            if session.last_stats().unwrap().reset.is_some() && f > 0 {
                thresholds = (0..g.nodes.len()).map(|i| session.gate_threshold(i).unwrap_or(0.0)).collect();
            }
            if f == 0 {
                thresholds = (0..g.nodes.len()).map(|i| level / 255.0 * rms(session.activation(i))).collect();
                for (i, node) in g.nodes.iter().enumerate() {
                    let gate = session.gate_threshold(i);
                    prop_assert_eq!(gate.is_some(), gated[i], "node {} ({}) gated", i, &node.name);
                    // The scale is taken over a sample of positions on large maps: near the
                    // exact RMS (a regular pattern can alias with the sampling, hence 4x).
                    if let Some(t) = gate {
                        prop_assert!(t <= 4.0 * thresholds[i] + 1e-6 && t >= 0.25 * thresholds[i] - 1e-6, "node {i}: gate {t} vs {}", thresholds[i]);
                        thresholds[i] = t;
                    }
                }
            }
            let stats = session.last_stats().unwrap();
            for (i, node) in g.nodes.iter().enumerate().skip(1) {
                let inputs: Vec<&[f32]> = node.inputs.iter().map(|&j| session.activation(j)).collect();
                let truth = reference::eval(node, g, &inputs);
                let cached = session.activation(i);
                // A fused residual add can cancel most of the convolution's value: rounding
                // follows the sum's terms, so the residual's magnitude joins the scale.
                let residual = node.op.residual().map_or(0.0, |_| inputs[inputs.len() - 1].iter().fold(0.0f32, |m, v| m.max(v.abs())));
                let scale = truth.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-3) + residual;
                // The kernels' tolerance against the reference (tests/kernels.rs): relative, plus
                // 1e-6 absolute for sums that cancel to nearly zero (a 20-term dot product to 9e-4
                // differed by 6e-8).
                let bound = if gated[i] { thresholds[i] } else { 0.0 } + 2e-5 * scale + 1e-6;
                for (k, (c, t)) in cached.iter().zip(&truth).enumerate() {
                    prop_assert!(
                        (c - t).abs() <= bound,
                        "frame {f}, node {i} ({}), index {k}: cached {c} vs its inputs give {t}, bound {bound}",
                        node.name
                    );
                }
                let ns = &stats.nodes[i];
                prop_assert!(ns.changed <= 1.0 - ns.hit_rate + 1e-12, "node {i} passes on only what it recomputed");
            }
            if f > 0 && px == &sequence[f - 1] {
                prop_assert_eq!(stats.macs_executed, 0, "a repeated frame reuses everything");
            }
        }
    }
}
