//! [`Plan`]: a validated, compiled model (graph, preprocessing, per-node costs and geometry,
//! and the backbone/head split of a multi-task plan). Immutable and shared by sessions.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::frame::Preprocess;
use crate::graph::{Graph, NodeGeometry, Op};
use crate::reuse::Reach;

/// What a multi-task plan's head is made of: its name, the graph outputs it produces, how
/// often it runs by default, and (filled by [`Plan::with_heads`]) the nodes only it needs.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadPart {
    pub name: String,
    /// Indices into the graph's outputs.
    pub outputs: Vec<usize>,
    /// Runs on every `rate`-th frame (1: every frame).
    pub rate: u32,
    /// The nodes computed for this head alone, in topological order.
    pub nodes: Vec<usize>,
    /// Backbone nodes this head reads (its taps).
    pub reads: Vec<usize>,
}

/// A compiled model: graph, preprocessing and per-node costs. Immutable and shareable.
#[derive(Debug)]
pub struct Plan {
    graph: Graph,
    preprocess: Preprocess,
    macs_per_pixel: Vec<u64>,
    geometry: Vec<NodeGeometry>,
    reach: Reach,
    total_macs: u64,
    has_consumers: Vec<bool>,
    heads: Vec<HeadPart>,
    /// The head each node belongs to; `None` for the shared backbone.
    part: Vec<Option<usize>>,
}

impl Plan {
    /// Compiles a graph. The input must be a 3-channel image.
    pub fn new(graph: Graph, preprocess: Preprocess) -> Result<Arc<Self>> {
        Self::compile(graph, preprocess, Vec::new(), Vec::new()).map(Arc::new)
    }

    /// Validates the graph ([`Graph::validate`]), checks the input, prepares the kernels' data and derives the per-node tables. `part`
    /// is empty for a plan without heads.
    fn compile(
        mut graph: Graph,
        preprocess: Preprocess,
        heads: Vec<HeadPart>,
        part: Vec<Option<usize>>,
    ) -> Result<Self> {
        graph.validate()?;
        let input = graph.input_shape();
        if graph.inputs() > 1 {
            return Err(Error::InvalidModel {
                node: graph.nodes[1].name.clone(),
                op: "input".into(),
                reason: format!("{} inputs: a head's graph runs attached at taps of a backbone", graph.inputs()),
            });
        }
        if input.c != 3 || !matches!(graph.nodes[0].op, Op::Input) {
            return Err(Error::InvalidModel {
                node: graph.input_name.clone(),
                op: "input".into(),
                reason: format!("the input must be a 3-channel image, got {input}"),
            });
        }
        if preprocess.aspect != crate::Aspect::Fixed && input.h != input.w {
            // The plan of a frame of the other orientation must compile: refused here, at load,
            // rather than on the first such frame.
            graph.at_input_size(input.w, input.h)?;
        }
        crate::kernels::prepare(&mut graph);
        let macs_per_pixel = graph.nodes.iter().map(|n| n.macs_per_pixel(&graph)).collect();
        let geometry = graph.geometry();
        let reach = Reach::new(&graph);
        let total_macs = graph.total_macs();
        let mut has_consumers = vec![false; graph.nodes.len()];
        for &i in graph.nodes.iter().flat_map(|n| &n.inputs) {
            has_consumers[i] = true;
        }
        let part = if part.is_empty() { vec![None; graph.nodes.len()] } else { part };
        Ok(Self { graph, preprocess, macs_per_pixel, geometry, reach, total_macs, has_consumers, heads, part })
    }

    /// Compiles a graph split into a shared backbone and heads. Each head names the graph
    /// outputs it produces (`outputs` are output indices, `nodes` is filled here). A node
    /// belongs to a head when only that head needs it and it does not feed a tap; everything
    /// else (the ancestors of `taps`, and nodes that several heads need) is the backbone. A
    /// single head without taps owns no nodes: the whole model is its backbone.
    /// Graph outputs that no head claims are dropped, and so are nodes nobody needs.
    pub fn with_heads(graph: Graph, preprocess: Preprocess, heads: Vec<HeadPart>, taps: &[usize]) -> Result<Arc<Self>> {
        let (graph, new_id) = prune(graph, &heads)?;
        let n = graph.nodes.len();
        // After pruning, head outputs are renumbered in claim order.
        let mut heads = heads;
        let mut next = 0;
        for h in &mut heads {
            h.outputs = (next..next + h.outputs.len()).collect();
            next += h.outputs.len();
        }
        let mut tap_ids = Vec::with_capacity(taps.len());
        for &t in taps {
            match new_id.get(t) {
                Some(&id) if id != usize::MAX => tap_ids.push(id),
                _ => {
                    return Err(Error::InvalidModel {
                        node: format!("node #{t}"),
                        op: "tap".into(),
                        reason: "no head reads this tap".into(),
                    })
                }
            }
        }
        let taps = tap_ids;
        let mut in_backbone = ancestors(&graph, &taps);
        let needs: Vec<Vec<bool>> = heads
            .iter()
            .map(|h| ancestors(&graph, &h.outputs.iter().map(|&o| graph.outputs[o].node).collect::<Vec<_>>()))
            .collect();
        for i in 0..n {
            // A single head without taps: the whole model is the backbone (nothing is shared,
            // so there is no split to find).
            if needs.iter().filter(|s| s[i]).count() > 1 || (heads.len() == 1 && taps.is_empty()) {
                in_backbone[i] = true;
            }
        }
        in_backbone[0] = true;
        // Backbone nodes are closed under ancestors: whatever a shared node reads is shared.
        let roots: Vec<usize> = (0..n).filter(|&i| in_backbone[i]).collect();
        let in_backbone = ancestors(&graph, &roots);
        let mut part = vec![None; n];
        for (k, h) in heads.iter_mut().enumerate() {
            h.nodes = (0..n).filter(|&i| needs[k][i] && !in_backbone[i]).collect();
            for &i in &h.nodes {
                part[i] = Some(k);
            }
            let mut reads: Vec<usize> = h
                .nodes
                .iter()
                .flat_map(|&i| graph.nodes[i].inputs.iter().copied())
                .chain(h.outputs.iter().map(|&o| graph.outputs[o].node))
                .filter(|&j| in_backbone[j])
                .collect();
            reads.sort_unstable();
            reads.dedup();
            h.reads = reads;
        }
        Self::compile(graph, preprocess, heads, part).map(Arc::new)
    }

    /// This plan at input size `h x w`, every node's shape following ([`Graph::at_input_size`]),
    /// with the same weights, preprocessing and heads: what a session runs on frames of another
    /// shape ([`crate::Aspect`]).
    pub fn at_input_size(&self, h: usize, w: usize) -> Result<Arc<Self>> {
        let graph = self.graph.at_input_size(h, w)?;
        Self::compile(graph, self.preprocess.clone(), self.heads.clone(), self.part.clone()).map(Arc::new)
    }

    /// The input size `(h, w)` this plan (as compiled) runs a `frame_w x frame_h` frame at, by
    /// its [`crate::Aspect`]: with `turn`, the compiled size in the frame's orientation; with
    /// `follow`, the compiled shorter side along the frame's shorter side and the longer side the
    /// frame's aspect times it, rounded to a multiple of [`Plan::total_stride`], at least the
    /// shorter side and at most the compiled longer side. Otherwise, and for a square compiled
    /// size, the compiled size.
    pub fn input_for_frame(&self, frame_w: usize, frame_h: usize) -> (usize, usize) {
        let s = self.graph.input_shape();
        let (short, long) = (s.h.min(s.w), s.h.max(s.w));
        let along = match self.preprocess.aspect {
            _ if s.h == s.w || frame_w == 0 || frame_h == 0 => return (s.h, s.w),
            crate::Aspect::Fixed => return (s.h, s.w),
            crate::Aspect::Turn => long,
            crate::Aspect::Follow => {
                let frame_aspect = frame_w.max(frame_h) as f64 / frame_w.min(frame_h) as f64;
                let stride = self.total_stride() as f64;
                (((short as f64 * frame_aspect / stride).round() * stride) as usize).clamp(short, long)
            }
        };
        if frame_h > frame_w {
            (along, short)
        } else {
            (short, along)
        }
    }

    /// The largest stride of any map of more than one position: the input pixels per position
    /// of the coarsest map (32 for MobileNetV2).
    pub fn total_stride(&self) -> usize {
        let nodes = self.graph.nodes.iter().zip(&self.geometry);
        let spatial = nodes.filter(|(n, _)| n.shape.pixels() > 1);
        spatial.map(|(_, g)| g.stride.0.max(g.stride.1).round() as usize).max().unwrap_or(1).max(1)
    }

    /// Imports a model file (ONNX or TFLite) and compiles it.
    pub fn from_onnx(path: impl AsRef<Path>, preprocess: Preprocess) -> Result<Arc<Self>> {
        Self::new(crate::import::load_model(path, Default::default())?, preprocess)
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }
    /// Where this plan's input lies in a `frame_w x frame_h` frame, for decoding boxes and
    /// keypoints into frame pixels.
    pub fn frame_map(&self, frame_w: usize, frame_h: usize) -> crate::heads::FrameMap {
        crate::heads::FrameMap::new(&self.preprocess, frame_w, frame_h, self.graph.input_shape())
    }
    pub fn preprocess(&self) -> &Preprocess {
        &self.preprocess
    }
    pub fn geometry(&self) -> &[NodeGeometry] {
        &self.geometry
    }
    /// The propagation tables of the graph.
    pub fn reach(&self) -> &Reach {
        &self.reach
    }
    /// MACs of one output pixel of node `i`.
    pub fn macs_per_pixel(&self, i: usize) -> u64 {
        self.macs_per_pixel[i]
    }
    /// Whether another node reads node `i`'s output.
    pub fn has_consumers(&self, i: usize) -> bool {
        self.has_consumers[i]
    }
    /// MACs of one full inference.
    pub fn total_macs(&self) -> u64 {
        self.total_macs
    }
    /// Activation values of all nodes together: what a session allocates, one buffer per
    /// node plus the expanded map of each bottleneck with an expansion (within
    /// [`crate::graph::MAX_PLAN_VALUES`], checked when the plan compiles).
    pub fn activation_values(&self) -> u64 {
        let g = &self.graph;
        g.nodes.iter().map(|n| (n.shape.len() + n.expanded_len(g)) as u64).sum()
    }
    /// The heads of a multi-task plan (empty for a plain model).
    pub fn heads(&self) -> &[HeadPart] {
        &self.heads
    }
    /// The head node `i` belongs to, `None` for the backbone.
    pub fn part(&self, i: usize) -> Option<usize> {
        self.part[i]
    }
    /// MACs of one full inference of the backbone and of each head.
    pub fn part_macs(&self) -> (u64, Vec<u64>) {
        let mut heads = vec![0; self.heads.len()];
        let mut backbone = 0;
        for (i, n) in self.graph.nodes.iter().enumerate() {
            let m = n.macs(&self.graph);
            match self.part[i] {
                Some(k) => heads[k] += m,
                None => backbone += m,
            }
        }
        (backbone, heads)
    }
}

/// Marks `roots` and everything they read.
fn ancestors(graph: &Graph, roots: &[usize]) -> Vec<bool> {
    let mut seen = vec![false; graph.nodes.len()];
    let mut stack = roots.to_vec();
    while let Some(i) = stack.pop() {
        if !std::mem::replace(&mut seen[i], true) {
            stack.extend(&graph.nodes[i].inputs);
        }
    }
    seen
}

/// Keeps the outputs the heads claim (in claim order; an output that several heads read, say
/// two decoders of one tensor, is listed once per head, and the nodes it needs are shared, so
/// they are the backbone's) and the nodes they need. Returns the new graph and each old node's
/// new id (`usize::MAX` when dropped).
fn prune(graph: Graph, heads: &[HeadPart]) -> Result<(Graph, Vec<usize>)> {
    let claimed: Vec<usize> = heads.iter().flat_map(|h| h.outputs.iter().copied()).collect();
    if let Some(&o) = claimed.iter().find(|&&o| o >= graph.outputs.len()) {
        return Err(Error::InvalidModel {
            node: format!("output #{o}"),
            op: "head".into(),
            reason: format!("the graph has {} outputs", graph.outputs.len()),
        });
    }
    let keep = ancestors(&graph, &claimed.iter().map(|&o| graph.outputs[o].node).collect::<Vec<_>>());
    let mut new_id = vec![usize::MAX; graph.nodes.len()];
    let mut nodes = Vec::new();
    for (i, mut node) in graph.nodes.into_iter().enumerate() {
        if keep[i] || i == 0 {
            new_id[i] = nodes.len();
            node.inputs.iter_mut().for_each(|j| *j = new_id[*j]);
            nodes.push(node);
        }
    }
    let outputs = claimed
        .iter()
        .map(|&o| {
            let mut g = graph.outputs[o].clone();
            g.node = new_id[g.node];
            g
        })
        .collect();
    let tensors =
        graph.tensors.into_iter().filter(|(_, i)| new_id[*i] != usize::MAX).map(|(t, i)| (t, new_id[i])).collect();
    Ok((Graph { input_name: graph.input_name, nodes, outputs, tensors }, new_id))
}
