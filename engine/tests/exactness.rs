//! Exactness invariant: in exact mode `process` equals `run_full`, frame after frame, on
//! random graphs, random frame sizes and random sequences of changed regions (including
//! regions touching the borders). Every node's activation is compared, not only the outputs.

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

#[derive(Clone, Debug)]
struct Patch {
    y: usize,
    x: usize,
    h: usize,
    w: usize,
    value: u8,
}

fn patch() -> impl Strategy<Value = Patch> {
    (0usize..64, 0usize..64, 1usize..20, 1usize..20, any::<u8>()).prop_map(|(y, x, h, w, value)| Patch {
        y,
        x,
        h,
        w,
        value,
    })
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
        frames in prop::collection::vec(prop::collection::vec(patch(), 0..4), 1..5),
        threads in 1usize..3,
    ) {
        let graph = common::build(h, w, &layers, seed);
        let plan = Plan::new(graph, Preprocess::default()).unwrap();
        let opts = SessionOptions { mode: Mode::Exact, tile, threads: Some(threads), dense_crossover: 0.5, ..Default::default() };
        let mut cached = Session::new(plan.clone(), opts.clone()).unwrap();
        let mut full = Session::new(plan.clone(), opts).unwrap();

        let mut rng = common::Weights(seed ^ 0x9e37);
        let mut pixels: Vec<u8> = (0..h * w * 3).map(|_| (rng.next() * 255.0 + 128.0) as u8).collect();
        let mut sequence = vec![pixels.clone()];
        for patches in &frames {
            for p in patches {
                // Clamp into the frame so that patches touch the borders often.
                let (y0, x0) = (p.y.min(h - 1), p.x.min(w - 1));
                for y in y0..(y0 + p.h).min(h) {
                    for x in x0..(x0 + p.w).min(w) {
                        pixels[(y * w + x) * 3 + (y + x) % 3] = p.value;
                    }
                }
            }
            sequence.push(pixels.clone());
        }
        for (i, px) in sequence.iter().enumerate() {
            let f = Frame::rgb(w, h, px);
            let a = cached.process(&f).unwrap();
            let b = full.run_full(&f).unwrap();
            for n in 0..plan.graph().nodes.len() {
                close(cached.activation(n), full.activation(n))
                    .map_err(|e| TestCaseError::fail(format!("frame {i}, node {n} ({}): {e}", plan.graph().nodes[n].name)))?;
            }
            prop_assert_eq!(a.len(), b.len());
            if i > 0 && px == &sequence[i - 1] {
                let stats = cached.last_stats().unwrap();
                prop_assert_eq!(stats.dirty_tiles, 0);
                prop_assert_eq!(stats.macs_executed, 0);
            }
        }
    }
}
