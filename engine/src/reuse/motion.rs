//! Motion labels: which output positions of every node are clean, can be copied from the
//! cached output at a shifted place, or must be recomputed.
//!
//! A position labelled `Shift(dy, dx)` (in that node's own pixels) holds exactly the cached
//! value at `(y - dy, x - dx)`. This follows from translation equivariance, and the rules keep
//! it exact:
//! - A window op (conv, pool) with stride `s`: if every input position in the window is
//!   `Shift(v)` with the same `v`, the window lies wholly inside the input (no zero padding,
//!   whose place does not move), and `v` is a multiple of `s` on both axes, the output is
//!   `Shift(v / s)`. A vector that is not aligned with the stride is never used unaligned:
//!   the position becomes dirty.
//! - Elementwise ops, concatenation and channel padding: the same label on every input.
//! - Resize, transposed convolution, global ops: anything other than clean is dirty.
//! - Any mix of labels, or any dirty input, is dirty. All clean is clean.
//!
//! The source `(y - dy, x - dx)` of a `Shift` always lies inside the node's output: its window
//! is the shifted window, which the rule required to lie inside the input.

use crate::graph::{Graph, Node, Op};

/// The label of one output position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    Clean,
    Dirty,
    /// Copy from the cached output `dy` rows and `dx` columns back.
    Shift(i32, i32),
}

/// Labels of every position of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labels {
    pub h: usize,
    pub w: usize,
    pub labels: Vec<Label>,
}

impl Labels {
    pub fn new(h: usize, w: usize, label: Label) -> Self {
        Self { h, w, labels: vec![label; h * w] }
    }
    pub fn get(&self, y: usize, x: usize) -> Label {
        self.labels[y * self.w + x]
    }
    pub fn set(&mut self, y: usize, x: usize, l: Label) {
        self.labels[y * self.w + x] = l;
    }
    pub fn count(&self, f: impl Fn(Label) -> bool) -> usize {
        self.labels.iter().filter(|&&l| f(l)).count()
    }
    /// The dirty positions as a mask.
    pub fn dirty(&self) -> super::Mask {
        self.mask(|l| l == Label::Dirty)
    }
    /// The positions whose label `f` accepts, as a mask.
    pub fn mask(&self, f: impl Fn(Label) -> bool) -> super::Mask {
        let mut m = super::Mask::new(self.h, self.w);
        for y in 0..self.h {
            for x in 0..self.w {
                if f(self.get(y, x)) {
                    m.set(y, x, true);
                }
            }
        }
        m
    }
}

/// Combines the labels `a` and `b` of two inputs read by one output position.
fn meet(a: Option<Label>, b: Label) -> Label {
    match (a, b) {
        (None, l) => l,
        (Some(x), y) if x == y => x,
        _ => Label::Dirty,
    }
}

/// Propagates the input labels through the graph: one map per node, node 0 being `input`.
pub fn propagate_labels(graph: &Graph, input: Labels) -> Vec<Labels> {
    let mut out: Vec<Labels> = Vec::with_capacity(graph.nodes.len());
    out.push(input);
    for node in &graph.nodes[1..] {
        let l = propagate_node(graph, node, &out);
        out.push(l);
    }
    out
}

/// The labels of `node`'s output given the labels of every earlier node.
pub fn propagate_node(graph: &Graph, node: &Node, labels: &[Labels]) -> Labels {
    let s = node.shape;
    // Past the layers a vector reaches, labels are only clean or dirty: the boolean
    // propagation (prefix sums) is much faster and gives the same answer.
    if node.inputs.iter().all(|&i| !labels[i].labels.iter().any(|l| matches!(l, Label::Shift(..)))) {
        let masks: Vec<super::Mask> = (0..=node.inputs.iter().copied().max().unwrap_or(0))
            .map(|i| if node.inputs.contains(&i) { labels[i].dirty() } else { super::Mask::new(0, 0) })
            .collect();
        let m = super::propagate_node(graph, node, &masks);
        let mut out = Labels::new(s.h, s.w, Label::Clean);
        for y in 0..s.h {
            for x in 0..s.w {
                if m.get(y, x) {
                    out.set(y, x, Label::Dirty);
                }
            }
        }
        return out;
    }
    let any_change = |i: usize| labels[i].labels.iter().any(|&l| l != Label::Clean);
    if node.op.is_global() {
        let dirty = node.inputs.iter().any(|&i| any_change(i));
        return Labels::new(s.h, s.w, if dirty { Label::Dirty } else { Label::Clean });
    }
    // (stride, kernel span) per axis for window ops; `None` for position-wise ops.
    let window = match &node.op {
        Op::Conv(c) => Some(c.window),
        Op::Pool { window, .. } => Some(*window),
        _ => None,
    };
    let equivariant = window.is_some()
        || matches!(
            node.op,
            Op::Unary(_) | Op::Binary { .. } | Op::ChannelAffine { .. } | Op::Concat | Op::PadChannels { .. }
        );
    let mut out = Labels::new(s.h, s.w, Label::Clean);
    let rows: Vec<Vec<_>> =
        (0..node.inputs.len()).map(|k| (0..s.h).map(|y| node.rows_read(graph, k, y)).collect()).collect();
    let cols: Vec<Vec<_>> =
        (0..node.inputs.len()).map(|k| (0..s.w).map(|x| node.cols_read(graph, k, x)).collect()).collect();
    for y in 0..s.h {
        for x in 0..s.w {
            let mut acc: Option<Label> = None;
            let mut clipped = false;
            for (k, &i) in node.inputs.iter().enumerate() {
                let src = &labels[i];
                let (Some(r), Some(c)) = (rows[k][y], cols[k][x]) else {
                    clipped = true;
                    continue;
                };
                if let Some(w) = &window {
                    let full_h = w.dh * (w.kh - 1);
                    let full_w = w.dw * (w.kw - 1);
                    clipped |= r.hi - r.lo != full_h || c.hi - c.lo != full_w;
                }
                // A broadcast input (one position for the whole map) must be clean.
                let broadcast = src.h * src.w == 1 && s.h * s.w > 1;
                for yy in r.lo..=r.hi {
                    for xx in c.lo..=c.hi {
                        let l = src.get(yy, xx);
                        if !broadcast {
                            acc = Some(meet(acc, l));
                        } else if l != Label::Clean {
                            acc = Some(Label::Dirty);
                        }
                    }
                }
            }
            let l = match acc.unwrap_or(Label::Clean) {
                Label::Shift(..) if !equivariant || clipped => Label::Dirty,
                Label::Shift(dy, dx) => match window {
                    Some(w) if dy % w.sh as i32 != 0 || dx % w.sw as i32 != 0 => Label::Dirty,
                    Some(w) => Label::Shift(dy / w.sh as i32, dx / w.sw as i32),
                    None => Label::Shift(dy, dx),
                },
                // A position that reads no input at all (transposed-conv gaps) keeps its value.
                l => l,
            };
            out.set(y, x, l);
        }
    }
    out
}
