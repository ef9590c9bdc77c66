//! Fusion passes on the IR, run after import: they count uses per IR node (not per source
//! tensor name), so a value read elsewhere is never folded away.

use super::{Activation, BinaryKind, Graph, Op};

/// Uses of every node: reads by other nodes plus graph outputs.
fn uses(graph: &Graph) -> Vec<usize> {
    let mut n = vec![0; graph.nodes.len()];
    for &i in graph.nodes.iter().flat_map(|node| &node.inputs) {
        n[i] += 1;
    }
    for o in &graph.outputs {
        n[o.node] += 1;
    }
    n
}

/// The activation slot of ops that apply one in their epilogue.
fn activation_slot(op: &mut Op) -> Option<&mut Activation> {
    match op {
        Op::Conv(c) => Some(&mut c.activation),
        Op::ConvTranspose(c) => Some(&mut c.activation),
        Op::Dense(d) => Some(&mut d.activation),
        Op::Binary { activation, .. } => Some(activation),
        _ => None,
    }
}

/// Hard-swish written as `x * HardSigmoid(x)` (MediaPipe's models, MobileNetV3) becomes one
/// activation: in the epilogue of the op producing `x` when nothing else reads `x`, otherwise
/// one standalone activation node instead of two. Returns how many were fused.
///
/// The fused node keeps the product's tensor names; the names of `x` before the activation
/// and of the hard-sigmoid are dropped, since those values no longer exist (a manifest that
/// taps them gets an unknown-tensor error instead of a silently different value).
pub fn hard_swish(graph: &mut Graph) -> usize {
    let uses = uses(graph);
    let mut alias: Vec<usize> = (0..graph.nodes.len()).collect();
    let mut dropped_names = Vec::new();
    let mut fused = 0;
    for m in 0..graph.nodes.len() {
        let node = &graph.nodes[m];
        if !matches!(node.op, Op::Binary { kind: BinaryKind::Mul, activation: Activation::Identity, residual: None }) {
            continue;
        }
        let [p, q] = node.inputs[..] else { continue };
        // One operand is HardSigmoid(other operand), read only here.
        let Some((x, h, alpha, beta)) = [(p, q), (q, p)].into_iter().find_map(|(x, h)| match graph.nodes[h].op {
            Op::Unary(Activation::HardSigmoid { alpha, beta })
                if graph.nodes[h].inputs == [x] && uses[h] == 1 && alias[h] == h =>
            {
                Some((x, h, alpha, beta))
            }
            _ => None,
        }) else {
            continue;
        };
        if graph.nodes[x].shape != node.shape || alias[x] != x {
            continue;
        }
        let act = Activation::HardSwish { alpha, beta };
        let into_producer =
            uses[x] == 2 && activation_slot(&mut graph.nodes[x].op).is_some_and(|slot| *slot == Activation::Identity);
        let target = if into_producer {
            *activation_slot(&mut graph.nodes[x].op).expect("checked above") = act;
            dropped_names.push(x);
            x
        } else {
            graph.nodes[h].op = Op::Unary(act);
            h
        };
        dropped_names.push(h);
        alias[m] = target;
        if target != h {
            alias[h] = target;
        }
        fused += 1;
    }
    graph.tensors.retain(|_, id| !dropped_names.contains(id));
    graph.remove_aliased(&alias);
    fused
}

impl Graph {
    /// Inserts `node` at index `at`: every reference to a node at or after `at` moves up by
    /// one (`node`'s own inputs must come before `at`).
    pub(crate) fn insert_node(&mut self, at: usize, node: super::Node) {
        let shift = |i: &mut usize| *i += usize::from(*i >= at);
        self.nodes.iter_mut().flat_map(|n| n.inputs.iter_mut()).for_each(shift);
        self.outputs.iter_mut().for_each(|o| shift(&mut o.node));
        self.tensors.values_mut().for_each(shift);
        self.nodes.insert(at, node);
    }

    /// Removes every node `i` with `alias[i] != i`; whatever read it reads `alias[i]` instead
    /// (an earlier node computing the same value), and its tensor names move there too.
    pub(crate) fn remove_aliased(&mut self, alias: &[usize]) {
        let root = |mut i: usize| {
            while alias[i] != i {
                i = alias[i];
            }
            i
        };
        let mut new_id = vec![usize::MAX; self.nodes.len()];
        let mut next = 0;
        for (i, id) in new_id.iter_mut().enumerate() {
            if alias[i] == i {
                *id = next;
                next += 1;
            }
        }
        let map = |i: usize| new_id[root(i)];
        let nodes = std::mem::take(&mut self.nodes);
        self.nodes = nodes
            .into_iter()
            .enumerate()
            .filter(|(i, _)| alias[*i] == *i)
            .map(|(_, mut n)| {
                n.inputs.iter_mut().for_each(|j| *j = map(*j));
                n
            })
            .collect();
        for o in &mut self.outputs {
            o.node = map(o.node);
        }
        for id in self.tensors.values_mut() {
            *id = map(*id);
        }
    }
}

/// Inverted-residual blocks become [`Op::Bottleneck`] nodes: a stride-1 pointwise conv (the
/// projection) whose input is a depthwise conv read by nothing else, itself fed (optionally)
/// by a stride-1 pointwise conv read by nothing else (the expansion). The expanded tensors no
/// longer exist as nodes, so their tensor names are dropped (a manifest that taps one gets an
/// unknown-tensor error). Returns how many were fused.
pub fn bottlenecks(graph: &mut Graph) -> usize {
    let uses = uses(graph);
    let one_to_one = |op: &Op| match op {
        Op::Conv(c) => c.is_pointwise() && (c.window.sh, c.window.sw) == (1, 1),
        _ => false,
    };
    let take = |graph: &mut Graph, i: usize| match std::mem::replace(&mut graph.nodes[i].op, Op::Input) {
        Op::Conv(c) => c,
        _ => unreachable!("a convolution, checked before"),
    };
    let mut alias: Vec<usize> = (0..graph.nodes.len()).collect();
    let mut fused = 0;
    for p in 0..graph.nodes.len() {
        if !one_to_one(&graph.nodes[p].op) {
            continue;
        }
        let d = graph.nodes[p].inputs[0];
        if uses[d] != 1 || !matches!(&graph.nodes[d].op, Op::Conv(c) if c.is_depthwise()) {
            continue;
        }
        let x = graph.nodes[d].inputs[0];
        let (expand, input) = if x > 0 && uses[x] == 1 && one_to_one(&graph.nodes[x].op) {
            // Nothing reads the removed nodes any more; aliasing them to the block's input
            // only makes `remove_aliased` drop them.
            alias[x] = graph.nodes[x].inputs[0];
            (Some(take(graph, x)), graph.nodes[x].inputs[0])
        } else {
            (None, x)
        };
        alias[d] = input;
        let depthwise = take(graph, d);
        let project = take(graph, p);
        graph.nodes[p].op = Op::Bottleneck(Box::new(super::Bottleneck { expand, depthwise, project }));
        graph.nodes[p].inputs = vec![input];
        fused += 1;
    }
    graph.tensors.retain(|_, id| alias[*id] == *id);
    graph.remove_aliased(&alias);
    fused
}

/// Residual adds become the epilogue of the op producing one side: `Add(f(x), r)`, with the
/// Add's activation, turns into one node reading `f`'s inputs and `r` that adds `r` after `f`'s
/// own activation ([`super::Conv::residual`]), so the sum is never a separate pass over memory.
/// `f` is a convolution or bottleneck with a stride-1 window, or an elementwise op (the
/// squeeze-excite product `x * s` before the block's skip). Fused only when nothing else reads
/// `f`'s output and both sides and the sum have one shape. The result is the same bits (IEEE
/// addition commutes, and the activation is the one function both kernels call). The node
/// keeps the Add's tensor names; `f`'s are dropped, since that value no longer exists. Run
/// after [`bottlenecks`]. Returns how many were fused.
pub fn residual_adds(graph: &mut Graph) -> usize {
    let uses = uses(graph);
    let mut alias: Vec<usize> = (0..graph.nodes.len()).collect();
    let mut fused = 0;
    for m in 0..graph.nodes.len() {
        let node = &graph.nodes[m];
        let Op::Binary { kind: BinaryKind::Add, activation, residual: None } = node.op else { continue };
        let [p, q] = node.inputs[..] else { continue };
        let shape = node.shape;
        let fusable = |c: usize, r: usize| {
            let producer = &graph.nodes[c];
            c != r
                && uses[c] == 1
                && alias[c] == c
                && producer.shape == shape
                && graph.nodes[r].shape == shape
                && producer.op.residual().is_none()
                && match &producer.op {
                    Op::Conv(_) | Op::Bottleneck(_) => producer.op.window().is_some_and(|w| (w.sh, w.sw) == (1, 1)),
                    Op::Binary { .. } => true,
                    _ => false,
                }
        };
        // The later operand first: in a residual block the convolution comes after the skip.
        let Some((c, r)) = [(q, p), (p, q)].into_iter().find(|&(c, r)| fusable(c, r)) else { continue };
        let mut op = std::mem::replace(&mut graph.nodes[c].op, Op::Input);
        *op.residual_slot().expect("an op with a residual slot, checked above") = Some(activation);
        let mut inputs = std::mem::take(&mut graph.nodes[c].inputs);
        // Nothing reads the producer any more; aliasing it to its first input only makes
        // `remove_aliased` drop it.
        alias[c] = inputs[0];
        inputs.push(r);
        graph.nodes[m].op = op;
        graph.nodes[m].inputs = inputs;
        fused += 1;
    }
    graph.tensors.retain(|_, id| alias[*id] == *id);
    graph.remove_aliased(&alias);
    fused
}

/// Average pools whose unpadded window is the whole input map (how MediaPipe's models write a
/// global pool) become [`Op::GlobalAvgPool`]: the same value up to the order of the sum, by the
/// global pool's kernel, which splits the map across threads where a pool of one output pixel
/// cannot. Returns how many were rewritten.
pub fn global_pools(graph: &mut Graph) -> usize {
    let mut rewritten = 0;
    for i in 0..graph.nodes.len() {
        let node = &graph.nodes[i];
        if matches!(node.op, Op::Pool { .. }) && node.averages_whole_input(graph.nodes[node.inputs[0]].shape) {
            graph.nodes[i].op = Op::GlobalAvgPool;
            rewritten += 1;
        }
    }
    rewritten
}

/// The global average of a sum read by nothing else, `Pool(a + b)` (after [`global_pools`]),
/// becomes the sum of the averages, `Pool(a) + Pool(b)` (both operands of the map's shape):
/// the sum is never written as a map. MediaPipe's segmentation decoders pool `skip + up` only
/// to compute a channel attention vector (selfie segmentation's 128x128x16 sum was a full pass
/// over memory for one vector of 16 values). The value is the same up to the order of the
/// float sums. Returns how many were rewritten.
pub fn pools_of_sums(graph: &mut Graph) -> usize {
    let mut rewritten = 0;
    loop {
        let uses = uses(graph);
        let found = (0..graph.nodes.len()).find_map(|p| {
            let node = &graph.nodes[p];
            let &[m] = &node.inputs[..] else { return None };
            let sum = &graph.nodes[m];
            let plain_add = matches!(
                sum.op,
                Op::Binary { kind: BinaryKind::Add, activation: Activation::Identity, residual: None }
            );
            let same_shapes = sum.inputs.len() == 2 && sum.inputs.iter().all(|&i| graph.nodes[i].shape == sum.shape);
            (plain_add && same_shapes && uses[m] == 1 && matches!(node.op, Op::GlobalAvgPool)).then_some((p, m))
        });
        let Some((p, m)) = found else { return rewritten };
        let (a, b) = (graph.nodes[m].inputs[0], graph.nodes[m].inputs[1]);
        let (shape, name) = (graph.nodes[p].shape, graph.nodes[p].name.clone());
        // The sum's names go: that map no longer exists.
        graph.tensors.retain(|_, id| *id != m);
        graph.nodes[m] = super::Node { name: format!("{name}.0"), op: Op::GlobalAvgPool, inputs: vec![a], shape };
        graph.insert_node(
            m + 1,
            super::Node { name: format!("{name}.1"), op: Op::GlobalAvgPool, inputs: vec![b], shape },
        );
        let p = p + 1;
        graph.nodes[p].op = Op::Binary { kind: BinaryKind::Add, activation: Activation::Identity, residual: None };
        graph.nodes[p].inputs = vec![m, m + 1];
        rewritten += 1;
    }
}

/// A linear pointwise convolution of a resized map, `Conv(Resize(x))` (stride 1, no
/// activation, no residual, float weights, the resize read by nothing else), becomes
/// `Resize(Conv(x))` where the resize enlarges the map and the convolution does not add
/// channels: the product then runs on the smaller map and the resize moves no more channels
/// than before. Both are linear per pixel and a resize's taps sum to one, so the bias passes
/// through; the value is the same up to float rounding. MediaPipe's segmentation decoders
/// upsample and then project (selfie segmentation's last one: a 16 → 16 product on 128x128
/// instead of 64x64). The convolution keeps its tensor names; the resized input's are dropped.
/// Returns how many were rewritten.
pub fn pointwise_before_resize(graph: &mut Graph) -> usize {
    let uses = uses(graph);
    let mut rewritten = 0;
    for c in 0..graph.nodes.len() {
        let Op::Conv(conv) = &graph.nodes[c].op else { continue };
        let linear = conv.is_pointwise()
            && (conv.window.sh, conv.window.sw) == (1, 1)
            && conv.activation == Activation::Identity
            && conv.residual.is_none()
            && conv.quant.is_none();
        let r = graph.nodes[c].inputs[0];
        if !linear || uses[r] != 1 || !matches!(graph.nodes[r].op, Op::Resize { .. }) {
            continue;
        }
        let x = graph.nodes[r].inputs[0];
        let (small, large) = (graph.nodes[x].shape, graph.nodes[r].shape);
        if small.pixels() >= large.pixels() || conv.cout > conv.cin {
            continue;
        }
        graph.tensors.retain(|_, id| *id != r);
        let cout = conv.cout;
        let (resize, project) = graph.nodes[..=c].split_at_mut(c);
        std::mem::swap(&mut resize[r].op, &mut project[0].op);
        std::mem::swap(&mut resize[r].name, &mut project[0].name);
        resize[r].shape = super::Shape::new(small.h, small.w, cout);
        rewritten += 1;
    }
    rewritten
}
