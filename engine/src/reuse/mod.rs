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
pub use mask::{Mask, Runs};

use crate::graph::{AxisWindow, Graph, Node};

/// Geometry tables for propagation, derived once per graph: for every node and input, which
/// output positions read each input position, per axis. Propagating a frame's changes is then
/// a few word operations per changed run of positions, with no per-position window arithmetic.
#[derive(Clone, Debug)]
pub struct Reach {
    nodes: Vec<NodeReach>,
}

#[derive(Clone, Debug)]
enum NodeReach {
    /// Any change in any input changes every output position (global ops, and the input).
    Global,
    /// One entry per input.
    Inputs(Vec<InputReach>),
}

#[derive(Clone, Debug)]
enum InputReach {
    /// Output position `p` reads input position `p` alone: the mask passes through as it is.
    Identity,
    /// Separable windows: rows and columns apart.
    Window { rows: Box<AxisReach>, cols: Box<AxisReach> },
}

/// One axis of one input: for every input position `i`, the outputs whose window contains it.
/// Windows are contiguous and move monotonically with the output position (true of every op
/// in the IR), so these outputs are one contiguous range `first[i]..=last[i]`.
#[derive(Clone, Debug)]
struct AxisReach {
    /// `first[i]..=last[i]`: outputs reading input `i` (`first > last`: none).
    first: Vec<u32>,
    last: Vec<u32>,
    /// `next[a]`: the first input at or after `a` that some output reads (`n_in` if none).
    next: Vec<u32>,
    /// `prev[b]`: one past the last input before `b` that some output reads (0 if none).
    prev: Vec<u32>,
    /// Output positions whose window is not empty (the gaps of a transposed convolution
    /// whose kernel is smaller than its stride read nothing), as row words.
    readable: Vec<u64>,
}

impl AxisReach {
    fn new(n_in: usize, n_out: usize, window: impl Fn(usize) -> Option<AxisWindow>) -> Self {
        let (mut first, mut last) = (vec![u32::MAX; n_in], vec![0u32; n_in]);
        let mut readable = vec![0u64; n_out.div_ceil(64)];
        // The outputs that read something, with their windows (n_out fits in u32: shapes are
        // checked).
        let readers: Vec<(u32, AxisWindow)> = (0..n_out).filter_map(|o| window(o).map(|w| (o as u32, w))).collect();
        for &(o, _) in &readers {
            readable[o as usize / 64] |= 1 << (o % 64);
        }
        // Windows are monotone (`lo` and `hi` never decrease with the output), so one sweep each
        // way finds every input's first and last reader, in O(inputs + outputs) rather than
        // O(outputs x window): the readers with `hi >= i` are a suffix, and the first of them
        // reads `i` if any does; the readers with `lo <= i` are a prefix, and its last one
        // reads `i` if any does.
        let mut k = 0;
        for (i, f) in first.iter_mut().enumerate() {
            while k < readers.len() && readers[k].1.hi < i {
                k += 1;
            }
            if let Some(&(o, w)) = readers.get(k).filter(|(_, w)| w.lo <= i) {
                debug_assert!(w.hi >= i);
                *f = o;
            }
        }
        let mut k = readers.len();
        for (i, l) in last.iter_mut().enumerate().rev() {
            while k > 0 && readers[k - 1].1.lo > i {
                k -= 1;
            }
            if let Some(&(o, _)) = k.checked_sub(1).map(|j| &readers[j]).filter(|(_, w)| w.hi >= i) {
                *l = o;
            }
        }
        let read = |i: usize| first[i] <= last[i];
        let mut next = vec![n_in as u32; n_in + 1];
        for a in (0..n_in).rev() {
            next[a] = if read(a) { a as u32 } else { next[a + 1] };
        }
        let mut prev = vec![0u32; n_in + 1];
        for b in 1..=n_in {
            prev[b] = if read(b - 1) { b as u32 } else { prev[b - 1] };
        }
        Self { first, last, next, prev, readable }
    }

    /// The outputs reading some input in `a..b`, as a half-open range, once the outputs that
    /// read nothing are taken out ([`AxisReach::reads`]): windows are monotone, so they run
    /// from the first output reading the run's first read input to the last one reading its
    /// last.
    fn outputs(&self, a: usize, b: usize) -> Option<(usize, usize)> {
        let (i0, i1) = (self.next[a] as usize, self.prev[b] as usize);
        (i0 < i1).then(|| (self.first[i0] as usize, self.last[i1 - 1] as usize + 1))
    }

    /// Whether output `o`'s window is not empty.
    fn reads(&self, o: usize) -> bool {
        self.readable[o / 64] >> (o % 64) & 1 == 1
    }
}

impl Reach {
    pub fn new(graph: &Graph) -> Self {
        let nodes = graph.nodes.iter().map(|node| node_reach(graph, node)).collect();
        Self { nodes }
    }
}

fn node_reach(graph: &Graph, node: &Node) -> NodeReach {
    if node.op.is_global() || node.inputs.is_empty() {
        return NodeReach::Global;
    }
    let out = node.shape;
    let inputs = (0..node.inputs.len())
        .map(|k| {
            let src = graph.nodes[node.inputs[k]].shape;
            let identity = |n: usize, f: &dyn Fn(usize) -> Option<AxisWindow>| {
                (0..n).all(|o| f(o).is_some_and(|a| a.lo == o && a.hi == o))
            };
            let rows = |y: usize| node.rows_read(graph, k, y);
            let cols = |x: usize| node.cols_read(graph, k, x);
            if (src.h, src.w) == (out.h, out.w) && identity(out.h, &rows) && identity(out.w, &cols) {
                InputReach::Identity
            } else {
                InputReach::Window {
                    rows: Box::new(AxisReach::new(src.h, out.h, rows)),
                    cols: Box::new(AxisReach::new(src.w, out.w, cols)),
                }
            }
        })
        .collect();
    NodeReach::Inputs(inputs)
}

/// Propagates the input mask through the graph: one mask per node, node 0 being `input`.
pub fn propagate(graph: &Graph, reach: &Reach, input: Mask) -> Vec<Mask> {
    let mut masks: Vec<Mask> = Vec::with_capacity(graph.nodes.len());
    masks.push(input);
    for i in 1..graph.nodes.len() {
        let m = propagate_node(graph, reach, i, &masks);
        masks.push(m);
    }
    masks
}

/// The positions of node `i`'s output to recompute, given the changed positions of every
/// earlier node (`changed[j]` for node `j`; only node `i`'s inputs are read).
pub fn propagate_node(graph: &Graph, reach: &Reach, i: usize, changed: &[Mask]) -> Mask {
    let node = &graph.nodes[i];
    let s = node.shape;
    let mut out = Mask::new(s.h, s.w);
    match &reach.nodes[i] {
        NodeReach::Global => {
            if node.inputs.iter().any(|&j| changed[j].any()) {
                out.fill(true);
            }
        }
        NodeReach::Inputs(inputs) => {
            let mut row = vec![0u64; s.w.div_ceil(64)];
            for (&j, r) in node.inputs.iter().zip(inputs) {
                match r {
                    InputReach::Identity => out.union_with(&changed[j]),
                    InputReach::Window { rows, cols } => dilate_into(&changed[j], rows, cols, &mut row, &mut out),
                }
            }
        }
    }
    out
}

/// ORs into `out` the positions whose window meets `src`: per changed input row, the output
/// columns reading its runs (`row`, scratch of one output row), then that row into every
/// output row reading the input row.
fn dilate_into(src: &Mask, rows: &AxisReach, cols: &AxisReach, row: &mut [u64], out: &mut Mask) {
    for iy in 0..src.h {
        if !src.row_any(iy) || rows.first[iy] > rows.last[iy] {
            continue;
        }
        row.fill(0);
        for (a, b) in src.runs(iy) {
            if let Some((x0, x1)) = cols.outputs(a, b) {
                mask::set_bits(row, x0, x1);
            }
        }
        for (w, r) in row.iter_mut().zip(&cols.readable) {
            *w &= r;
        }
        for oy in rows.first[iy] as usize..=rows.last[iy] as usize {
            if rows.reads(oy) {
                out.or_row(oy, row);
            }
        }
    }
}
