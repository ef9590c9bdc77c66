//! Reuse analysis: which output positions of every node must be recomputed, and the
//! rectangles that cover them. Pure functions, no buffers.
//!
//! **Propagation.** An output position is dirty when any input position in its window is
//! dirty (for a conv: dilate by the kernel's reach, subsample by the stride, rounding outward,
//! which the clipped windows of [`crate::graph::Node::rows_read`] do). Ops with several inputs
//! take the union; a broadcast input (`1x1xC`) that is dirty dirties the whole output. Global
//! ops are dirty when anything upstream is. Masks live at each node's own resolution.
//!
//! **Invariant:** if the input positions outside a mask are unchanged, then every node's
//! values outside its propagated mask are unchanged. Recomputing exactly the masked positions
//! therefore reproduces full inference.

mod cover;
mod mask;

pub use cover::{cover, Rect};
pub use mask::Mask;

use crate::graph::{Graph, Node, Op};

/// Propagates the input mask through the graph: one mask per node, node 0 being `input`.
pub fn propagate(graph: &Graph, input: Mask) -> Vec<Mask> {
    let mut masks: Vec<Mask> = Vec::with_capacity(graph.nodes.len());
    masks.push(input);
    for node in &graph.nodes[1..] {
        let m = propagate_node(graph, node, &masks);
        masks.push(m);
    }
    masks
}

/// The positions of `node`'s output to recompute, given the changed positions of every earlier
/// node (`changed[j]` for node `j`; only `node`'s inputs are read).
pub fn propagate_node(graph: &Graph, node: &Node, changed: &[Mask]) -> Mask {
    let s = node.shape;
    let mut out = Mask::new(s.h, s.w);
    if node.op.is_global() || matches!(node.op, Op::Input) {
        if node.inputs.iter().any(|&i| changed[i].any()) {
            out.fill(true);
        }
    } else {
        for (k, &i) in node.inputs.iter().enumerate() {
            dilate_into(graph, node, k, &changed[i], &mut out);
        }
    }
    out
}

/// ORs into `out` the positions of `node`'s output whose window over input `k` meets `src`.
fn dilate_into(graph: &Graph, node: &Node, k: usize, src: &Mask, out: &mut Mask) {
    let count = src.count();
    if count == 0 {
        return;
    }
    let cols: Vec<_> = (0..out.w).map(|x| node.cols_read(graph, k, x)).collect();
    let rows: Vec<_> = (0..out.h).map(|y| node.rows_read(graph, k, y)).collect();
    // Position-wise nodes (elementwise ops, unit-stride 1x1 convolutions at the same size):
    // output position p reads input position p alone, so the mask passes through as it is.
    let identity = |w: &[Option<crate::graph::AxisWindow>]| {
        w.iter().enumerate().all(|(o, a)| a.is_some_and(|a| a.lo == o && a.hi == o))
    };
    if (src.h, src.w) == (out.h, out.w) && identity(&cols) && identity(&rows) {
        out.union_with(src);
        return;
    }
    if count == src.h * src.w {
        // Everything changed: every position that reads any input is dirty.
        for (oy, r) in rows.iter().enumerate() {
            if r.is_some() {
                for (ox, c) in cols.iter().enumerate() {
                    if c.is_some() {
                        out.set(oy, ox, true);
                    }
                }
            }
        }
        return;
    }
    // Horizontal pass with per-row prefix counts: tmp[iy][ox] = any src[iy][window(ox)].
    let mut tmp = vec![false; src.h * out.w];
    let mut prefix = vec![0u32; src.w + 1];
    for iy in 0..src.h {
        let row = src.row(iy);
        for (x, &b) in row.iter().enumerate() {
            prefix[x + 1] = prefix[x] + u32::from(b);
        }
        if prefix[src.w] == 0 {
            continue;
        }
        for (ox, win) in cols.iter().enumerate() {
            if let Some(win) = win {
                tmp[iy * out.w + ox] = prefix[win.hi + 1] > prefix[win.lo];
            }
        }
    }
    // Vertical pass with per-column prefix counts.
    let mut colpre = vec![0u32; (src.h + 1) * out.w];
    for iy in 0..src.h {
        for ox in 0..out.w {
            colpre[(iy + 1) * out.w + ox] = colpre[iy * out.w + ox] + u32::from(tmp[iy * out.w + ox]);
        }
    }
    for (oy, win) in rows.iter().enumerate() {
        let Some(win) = win else { continue };
        let (lo, hi) = (win.lo * out.w, (win.hi + 1) * out.w);
        for ox in 0..out.w {
            if colpre[hi + ox] > colpre[lo + ox] {
                out.set(oy, ox, true);
            }
        }
    }
}
