//! Session behaviour: resets on a new frame size, periodic refresh, scene motion, `reset()`,
//! and the thread-safety contract of `Plan`.

use framecache::graph::{Activation, GraphBuilder, Window};
use framecache::{Frame, Mode, Plan, Preprocess, Reset, Session, SessionOptions};

fn plan() -> std::sync::Arc<Plan> {
    let mut b = GraphBuilder::new(16, 16, 3);
    let mut w = || 0.1;
    let win = Window { kh: 3, kw: 3, sh: 2, sw: 2, dh: 1, dw: 1, pad: [1; 4] };
    let x = b.conv(0, 4, win, 1, Activation::Relu, &mut w).unwrap();
    b.output(x);
    Plan::new(b.build(), Preprocess::default()).unwrap()
}

#[test]
fn plan_is_shareable_and_session_movable() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Plan>();
    send::<Session>();
}

#[test]
fn new_frame_size_resets_and_computes_in_full() {
    let mut s = Session::new(plan(), SessionOptions { threads: Some(1), ..Default::default() }).unwrap();
    let a = vec![10u8; 16 * 16 * 3];
    let b = vec![10u8; 32 * 16 * 3];
    s.process(Frame::rgb(16, 16, &a)).unwrap();
    assert_eq!(s.last_stats().unwrap().reset, Some(Reset::Cold));
    s.process(Frame::rgb(16, 16, &a)).unwrap();
    assert_eq!(s.last_stats().unwrap().reset, None);
    assert_eq!(s.last_stats().unwrap().macs_executed, 0);
    s.process(Frame::rgb(32, 16, &b)).unwrap();
    let st = s.last_stats().unwrap();
    assert_eq!(st.reset, Some(Reset::FrameSize { from: (16, 16), to: (32, 16) }));
    assert_eq!(st.macs_executed, st.macs_full);
    s.reset();
    s.process(Frame::rgb(32, 16, &b)).unwrap();
    assert_eq!(s.last_stats().unwrap().reset, Some(Reset::Cold));
}

#[test]
fn refresh_interval_recomputes_every_n_frames() {
    let opts = SessionOptions { refresh_interval: Some(3), mode: Mode::Exact, threads: Some(1), ..Default::default() };
    let mut s = Session::new(plan(), opts).unwrap();
    let a = vec![10u8; 16 * 16 * 3];
    let resets: Vec<Option<Reset>> = (0..7)
        .map(|_| {
            s.process(Frame::rgb(16, 16, &a)).unwrap();
            s.last_stats().unwrap().reset
        })
        .collect();
    let r = Some(Reset::Refresh);
    assert_eq!(resets, vec![Some(Reset::Cold), None, None, r, None, None, r]);
}

/// A 16x16 frame of grey `base`, with `by` added to the 8x8 tiles listed (row, column).
fn frame_with(base: u8, by: u8, tiles: &[(usize, usize)]) -> Vec<u8> {
    let mut px = vec![base; 16 * 16 * 3];
    for &(ty, tx) in tiles {
        for y in ty * 8..ty * 8 + 8 {
            for x in tx * 8..tx * 8 + 8 {
                for c in 0..3 {
                    px[(y * 16 + x) * 3 + c] += by;
                }
            }
        }
    }
    px
}

/// Brightens tile (0, 0) by 3 grey levels per frame for `frames` frames: per frame, the dirty
/// tiles and the reset.
fn brighten(mode: &str, refresh_interval: Option<u32>, frames: u8) -> Vec<(usize, Option<Reset>)> {
    let opts = SessionOptions {
        mode: mode.parse().unwrap(),
        tile: 8,
        threads: Some(1),
        refresh_interval,
        ..Default::default()
    };
    let mut s = Session::new(plan(), opts).unwrap();
    (0..frames)
        .map(|i| {
            s.process(Frame::rgb(16, 16, &frame_with(100, 3 * i, &[(0, 0)]))).unwrap();
            let st = s.last_stats().unwrap();
            (st.dirty_tiles, st.reset)
        })
        .collect()
}

#[test]
fn threshold_mode_accumulates_changes_against_the_reference() {
    // Each step is under the threshold, but the accumulated change crosses it on the second
    // step because tiles are compared with the reference, not with the previous frame.
    assert_eq!(brighten("threshold=4", None, 4), vec![(4, Some(Reset::Cold)), (0, None), (1, None), (0, None)]);
    // The same through refreshes, for both tile tests: after a refresh the reference is the
    // refreshed frame, not the tile rewritten before it.
    let r = Some(Reset::Refresh);
    for mode in ["threshold=4", "block-threshold=4"] {
        assert_eq!(
            brighten(mode, Some(3), 7),
            vec![(4, Some(Reset::Cold)), (0, None), (1, None), (4, r), (0, None), (1, None), (4, r)],
            "{mode}"
        );
    }
}

#[test]
fn a_scene_that_moves_as_a_whole_is_computed_densely() {
    for mode in ["threshold=4", "block-delta=4"] {
        let opts = SessionOptions { mode: mode.parse().unwrap(), tile: 8, threads: Some(1), ..Default::default() };
        let mut s = Session::new(plan(), opts).unwrap();
        let mut step = |px: Vec<u8>| {
            s.process(Frame::rgb(16, 16, &px)).unwrap();
            let st = s.last_stats().unwrap();
            (st.reset, st.dirty_tiles, st.macs_executed == st.macs_full)
        };
        step(frame_with(100, 0, &[]));
        // Half of the tiles drifted by more than half the level: still a subject on a background.
        assert_eq!(step(frame_with(100, 3, &[(0, 0), (1, 1)])), (None, 0, false), "{mode}");
        // Three quarters: the scene moved, every tile is recomputed and becomes the reference.
        assert_eq!(step(frame_with(100, 3, &[(0, 0), (0, 1), (1, 1)])), (Some(Reset::Motion), 4, true), "{mode}");
        assert_eq!(step(frame_with(100, 3, &[(0, 0), (0, 1), (1, 1)])), (None, 0, false), "{mode}");
    }
    // Exact mode recomputes what changed and never more.
    let mut s = Session::new(plan(), SessionOptions { tile: 8, threads: Some(1), ..Default::default() }).unwrap();
    s.process(Frame::rgb(16, 16, &frame_with(100, 0, &[]))).unwrap();
    s.process(Frame::rgb(16, 16, &frame_with(100, 3, &[(0, 0), (0, 1), (1, 1)]))).unwrap();
    assert_eq!((s.last_stats().unwrap().reset, s.last_stats().unwrap().dirty_tiles), (None, 3));
}

#[test]
fn options_are_validated() {
    for opts in [
        SessionOptions { tile: 4, ..Default::default() },
        SessionOptions { tile: 33, ..Default::default() },
        SessionOptions { threads: Some(0), ..Default::default() },
        SessionOptions { dense_crossover: 1.5, ..Default::default() },
    ] {
        assert!(matches!(Session::new(plan(), opts), Err(framecache::Error::InvalidOption { .. })));
    }
    assert!("threshold=abc".parse::<Mode>().is_err());
    assert_eq!("threshold=0".parse::<Mode>().unwrap(), Mode::Exact);
}

/// A mean over a whole map (global pooling, or an average pool whose window is the map) runs
/// its row blocks on the pool when it is large: the same bits on one thread and on two, in
/// full and cached frames, and the reference's value.
#[test]
fn whole_map_means_have_the_same_bits_on_any_thread_count() {
    use framecache::graph::PoolKind;
    let (h, w) = (72, 40);
    let mut b = GraphBuilder::new(h, w, 3);
    let mut k = 0u32;
    let mut wgt = || {
        k = k.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (k >> 16) as f32 / 65_536.0 - 0.5
    };
    let one = Window { kh: 1, kw: 1, sh: 1, sw: 1, dh: 1, dw: 1, pad: [0; 4] };
    // 72 x 40 x 24 values: more than the MACs that go to the pool, in five row blocks.
    let x = b.conv(0, 24, one, 1, Activation::Relu, &mut wgt).unwrap();
    let g = b.global_avg_pool(x).unwrap();
    let whole = Window { kh: h, kw: w, sh: 1, sw: 1, dh: 1, dw: 1, pad: [0; 4] };
    let p = b.pool(x, PoolKind::Avg { count_include_pad: false }, whole).unwrap();
    b.output(g);
    b.output(p);
    let plan = Plan::new(b.build(), Preprocess::default()).unwrap();
    let frames: Vec<Vec<u8>> =
        (0..3u8).map(|f| (0..h * w * 3).map(|i| (i * 7 + usize::from(f) * 31) as u8).collect()).collect();
    let run = |threads| {
        let opts = SessionOptions { mode: Mode::Exact, threads: Some(threads), ..Default::default() };
        let mut s = Session::new(plan.clone(), opts).unwrap();
        frames.iter().map(|px| s.process(Frame::rgb(w, h, px)).unwrap()).collect::<Vec<_>>()
    };
    let (one_thread, two) = (run(1), run(2));
    for (a, b) in one_thread.iter().zip(&two) {
        for (a, b) in a.iter().zip(b) {
            let bits = |o: &framecache::Output| o.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(a), bits(b), "output {}", a.name);
        }
    }
    // Both means of the last frame: the same value, and the reference's.
    let last = &one_thread[2];
    let mut s = Session::new(plan.clone(), SessionOptions { threads: Some(1), ..Default::default() }).unwrap();
    s.run_full(Frame::rgb(w, h, &frames[2])).unwrap();
    let graph = plan.graph();
    for &n in &[g, p] {
        let node = &graph.nodes[n];
        let inputs: Vec<&[f32]> = node.inputs.iter().map(|&j| s.activation(j)).collect();
        let want = framecache::kernels::reference::eval(node, graph, &inputs);
        for (got, want) in s.activation(n).iter().zip(&want) {
            assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "node {n}: {got} against {want}");
        }
    }
    assert_eq!(last[0].data, last[1].data);
}
