//! What the engine accepts as a graph, and its size limits.
//!
//! Every node is checked against the nodes before it, with checked arithmetic, before anything
//! is allocated for it: the importer and [`super::GraphBuilder`] check each node as they add
//! it, and [`crate::Plan`] checks the whole graph again (its fields are public, so a graph may
//! have been built or edited by hand). The kernels index their buffers from these shapes and
//! weights, so what passes here is what makes their raw-pointer writes sound.
//!
//! The limits are far above any real model (MobileNetV2 at 224² has 7.0 M activation values
//! in all and does 0.3 GMAC per frame); they exist so that a hostile or corrupt model file is
//! an error that names the node and the size, not an allocation abort or a hang.

use super::{Conv, Graph, Node, Op, Shape, Window};

/// Largest value of any one dimension (height, width, channels) and of any window attribute
/// (kernel size, stride, dilation, padding, channel padding).
pub const MAX_DIM: usize = 1 << 20;
/// Most values in one tensor (512 MiB of `f32`).
pub const MAX_TENSOR_VALUES: usize = 1 << 27;
/// Most activation values of one plan, all node outputs together (2 GiB of `f32`). A session
/// holds one buffer per node, so this bounds its memory; `framecache inspect` prints a model's
/// figure.
pub const MAX_PLAN_VALUES: u64 = 1 << 29;
/// Most multiply-accumulates of one full inference (about 1.1 TMAC, minutes per frame).
pub const MAX_PLAN_MACS: u64 = 1 << 40;

/// Checks a shape against [`MAX_DIM`] and [`MAX_TENSOR_VALUES`]; the reason names the limit.
pub fn check_shape(shape: Shape) -> Result<(), String> {
    let Shape { h, w, c } = shape;
    if h == 0 || w == 0 || c == 0 {
        return Err(format!("shape {shape} is empty"));
    }
    if h > MAX_DIM || w > MAX_DIM || c > MAX_DIM {
        return Err(format!("shape {shape} has a dimension over the limit of {MAX_DIM}"));
    }
    match h.checked_mul(w).and_then(|p| p.checked_mul(c)) {
        Some(n) if n <= MAX_TENSOR_VALUES => Ok(()),
        _ => Err(format!(
            "shape {shape} holds {} values, over the limit of {MAX_TENSOR_VALUES} per tensor",
            h as u128 * w as u128 * c as u128
        )),
    }
}

/// Checks that every window attribute is in range: kernel, stride and dilation in
/// `1..=MAX_DIM`, padding at most [`MAX_DIM`].
pub fn check_window(w: &Window) -> Result<(), String> {
    let named = [("kernel", w.kh), ("kernel", w.kw), ("stride", w.sh), ("stride", w.sw)];
    let named = named.into_iter().chain([("dilation", w.dh), ("dilation", w.dw)]);
    for (what, v) in named {
        if v == 0 || v > MAX_DIM {
            return Err(format!("{what} {v} is out of range 1..={MAX_DIM}"));
        }
    }
    if let Some(p) = w.pad.iter().find(|&&p| p > MAX_DIM) {
        return Err(format!("padding {p} is over the limit of {MAX_DIM}"));
    }
    Ok(())
}

/// The product of `dims`, or `None` when it overflows.
pub(crate) fn product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

fn expect_len(what: &str, got: usize, dims: &[usize]) -> Result<(), String> {
    match product(dims) {
        Some(n) if n == got => Ok(()),
        Some(n) => Err(format!("{what}: {got} values where the shape needs {n}")),
        None => Err(format!("{what} dimensions {dims:?} overflow")),
    }
}

/// Checks `node` against `earlier`, the nodes before it: input indices, arity, attribute
/// ranges, weight and bias lengths, and that its shape is the one its op computes from its
/// inputs. The error is the reason; the caller names the node.
pub fn check_node(earlier: &[Node], node: &Node) -> Result<(), String> {
    let expected = node_output(earlier, node)?;
    let s = node.shape;
    if expected != s {
        return Err(format!("declares output {s}, but its op gives {expected}"));
    }
    // `node_output` checked the inputs: a fused residual is the last one.
    if let (Some(_), Some(&last)) = (node.op.residual(), node.inputs.last()) {
        let r = earlier[last].shape;
        if r != s {
            return Err(format!("adds a {r} residual to its {s} output"));
        }
        if node.op.window().is_some_and(|w| (w.sh, w.sw) != (1, 1)) {
            return Err("a fused residual add needs a stride-1 window".into());
        }
    }
    // `s` passed `check_shape` in `node_output`, and `expected` equals it.
    Ok(())
}

/// The output shape that `node`'s op computes from its inputs among `earlier` (after the checks
/// of [`check_node`] but the comparison with the declared shape). Where the op alone does not
/// fix it, the declared shape decides: a resize's output size, a pool's ceil or floor
/// rounding, and an input's shape.
pub(crate) fn node_output(earlier: &[Node], node: &Node) -> Result<Shape, String> {
    check_shape(node.shape)?;
    if let Some(&j) = node.inputs.iter().find(|&&j| j >= earlier.len()) {
        return Err(format!("reads node #{j}, which does not come before it"));
    }
    let arity = match &node.op {
        Op::Input => 0..=0,
        // A fused residual add reads the residual as one more input, the last.
        Op::Binary { residual: Some(_), .. } => 3..=3,
        Op::Binary { .. } => 2..=2,
        op if op.residual().is_some() => 2..=2,
        Op::Concat | Op::FlatConcat => 1..=usize::MAX,
        _ => 1..=1,
    };
    if !arity.contains(&node.inputs.len()) {
        return Err(format!("{} inputs; {} takes {arity:?}", node.inputs.len(), node.op.name()));
    }
    let ins: Vec<Shape> = node.inputs.iter().map(|&j| earlier[j].shape).collect();
    let s = node.shape;
    let expected = match &node.op {
        Op::Input => {
            // A head's graph may have several inputs (one per tap), all before any op.
            if earlier.iter().any(|n| !matches!(n.op, Op::Input)) {
                return Err("an input after an op: inputs come first".into());
            }
            s
        }
        Op::Conv(conv) => conv_output(conv, ins[0])?,
        Op::Bottleneck(b) => {
            let one_to_one = |c: &Conv| c.is_pointwise() && (c.window.sh, c.window.sw) == (1, 1);
            if !b.expand.as_ref().is_none_or(one_to_one) || !one_to_one(&b.project) || !b.depthwise.is_depthwise() {
                return Err("a bottleneck is a stride-1 pointwise, a depthwise and a stride-1 pointwise conv".into());
            }
            let expanded = match &b.expand {
                Some(e) => conv_output(e, ins[0]).map_err(|e| format!("expansion: {e}"))?,
                None => ins[0],
            };
            check_shape(expanded)?;
            let d = conv_output(&b.depthwise, expanded).map_err(|e| format!("depthwise: {e}"))?;
            check_shape(d)?;
            conv_output(&b.project, d).map_err(|e| format!("projection: {e}"))?
        }
        Op::ConvTranspose(ct) => {
            check_window(&ct.window)?;
            let x = ins[0];
            if ct.cin != x.c {
                return Err(format!("{} input channels on a {x} input", ct.cin));
            }
            let w = &ct.window;
            expect_len("weights", ct.weights.len(), &[w.kh, w.kw, ct.cin, ct.cout])?;
            expect_len("bias", ct.bias.len(), &[ct.cout])?;
            let (oh, ow) = w
                .transposed_output_hw(x.h, x.w)
                .ok_or_else(|| format!("the window {w:?} leaves no output of the input {x}"))?;
            Shape::new(oh, ow, ct.cout)
        }
        Op::Pool { window: w, .. } => {
            check_window(w)?;
            let x = ins[0];
            // The op does not record ceil mode; the shape says which one the model asked for.
            let floor = w.output_hw(x.h, x.w, false);
            let ceil = w.output_hw(x.h, x.w, true);
            match ceil.filter(|&(h, w)| (h, w) == (s.h, s.w)).or(floor) {
                Some((oh, ow)) => Shape::new(oh, ow, x.c),
                None => return Err(format!("the window {w:?} does not fit the input {x}")),
            }
        }
        Op::GlobalAvgPool => Shape::new(1, 1, ins[0].c),
        Op::Resize { .. } => Shape::new(s.h, s.w, ins[0].c),
        Op::Unary(_) | Op::Softmax => ins[0],
        Op::PRelu { slope } => {
            expect_len("slope", slope.len(), &[ins[0].c])?;
            ins[0]
        }
        Op::ChannelAffine { scale, bias } => {
            expect_len("scale", scale.len(), &[ins[0].c])?;
            expect_len("bias", bias.len(), &[ins[0].c])?;
            ins[0]
        }
        Op::Binary { .. } => {
            let (a, b) = (ins[0], ins[1]);
            match a.broadcast(b) {
                Some(s) => s,
                None => return Err(format!("inputs {a} and {b} do not broadcast")),
            }
        }
        Op::Concat => {
            let first = ins[0];
            if let Some(x) = ins.iter().find(|x| (x.h, x.w) != (first.h, first.w)) {
                return Err(format!("inputs {first} and {x} differ in spatial size"));
            }
            let c = ins.iter().try_fold(0usize, |acc, x| acc.checked_add(x.c)).ok_or("channel count overflows")?;
            Shape::new(first.h, first.w, c)
        }
        Op::PadChannels { before, after } => {
            let x = ins[0];
            if *before > MAX_DIM || *after > MAX_DIM {
                return Err(format!("channel padding {before}+{after} is over the limit of {MAX_DIM}"));
            }
            Shape::new(x.h, x.w, x.c + before + after)
        }
        Op::Permute { perm } => {
            let mut sorted = *perm;
            sorted.sort_unstable();
            if sorted != [0, 1, 2, 3] {
                return Err(format!("{perm:?} is not a permutation of 4 axes"));
            }
            Shape::new(1, 1, ins[0].len())
        }
        Op::FlatConcat => {
            let n = ins.iter().try_fold(0usize, |acc, x| acc.checked_add(x.len())).ok_or("length overflows")?;
            Shape::new(1, 1, n)
        }
        Op::Dense(d) => {
            let x = ins[0];
            if x.pixels() != 1 || x.c != d.cin {
                return Err(format!("a dense layer of {} inputs on a {x} input", d.cin));
            }
            expect_len("weights", d.weights.len(), &[d.cin, d.cout])?;
            expect_len("bias", d.bias.len(), &[d.cout])?;
            Shape::new(1, 1, d.cout)
        }
    };
    check_shape(expected)?;
    Ok(expected)
}

impl Graph {
    /// Checks the whole graph: node 0 is the only input, every node passes [`check_node`],
    /// outputs and tensor names point at nodes and match their sizes, and the activations and
    /// the cost of one inference are within [`MAX_PLAN_VALUES`] and [`MAX_PLAN_MACS`].
    pub fn validate(&self) -> crate::Result<()> {
        let invalid = |node: &str, op: &str, reason: String| crate::Error::InvalidModel {
            node: node.into(),
            op: op.into(),
            reason,
        };
        if !matches!(self.nodes.first(), Some(Node { op: Op::Input, .. })) {
            return Err(invalid(&self.input_name, "input", "the graph does not start with its input".into()));
        }
        let (mut values, mut macs) = (0u64, 0u64);
        for (i, node) in self.nodes.iter().enumerate() {
            check_node(&self.nodes[..i], node).map_err(|r| invalid(&node.name, node.op.name(), r))?;
            // A bottleneck's session also keeps its expanded map.
            values += (node.shape.len() + node.expanded_len(self)) as u64;
            // Shapes and attributes are bounded by now, so the cost fits in u128.
            let cost = node.macs_per_pixel(self) as u128 * node.shape.pixels() as u128;
            macs = macs.saturating_add(u64::try_from(cost).unwrap_or(u64::MAX));
            if values > MAX_PLAN_VALUES {
                return Err(invalid(
                    &node.name,
                    node.op.name(),
                    format!("the activations up to this node hold {values} values, over the limit of {MAX_PLAN_VALUES} per model"),
                ));
            }
            if macs > MAX_PLAN_MACS {
                return Err(invalid(
                    &node.name,
                    node.op.name(),
                    format!(
                        "one inference up to this node costs {macs} multiply-adds, over the limit of {MAX_PLAN_MACS}"
                    ),
                ));
            }
        }
        for o in &self.outputs {
            let Some(node) = self.nodes.get(o.node) else {
                return Err(invalid(&o.name, "output", format!("names node #{}, which does not exist", o.node)));
            };
            if product(&o.onnx_shape) != Some(node.shape.len()) {
                return Err(invalid(
                    &o.name,
                    "output",
                    format!(
                        "declared shape {:?} does not hold the {} values of node '{}'",
                        o.onnx_shape,
                        node.shape.len(),
                        node.name
                    ),
                ));
            }
        }
        if let Some((t, &j)) = self.tensors.iter().find(|(_, &j)| j >= self.nodes.len()) {
            return Err(invalid(t, "tensor", format!("names node #{j}, which does not exist")));
        }
        Ok(())
    }
}

/// An int8 convolution's quantization: a convolution the int8 kernels run, with a weight per
/// float weight in −127..=127, a finite positive scale per output channel and for the input,
/// and few enough rows that no `i32` sum overflows.
fn check_quant(conv: &Conv, q: &crate::graph::ConvQuant) -> Result<(), String> {
    if !crate::quant::takes_int8(conv) {
        return Err("a depthwise or one-channel convolution cannot run in int8".into());
    }
    expect_len("int8 weights", q.weights.len(), &[conv.weights.len()])?;
    expect_len("int8 weight scales", q.weight_scale.len(), &[conv.cout])?;
    if q.weights.contains(&i8::MIN) {
        return Err("an int8 weight is -128 (symmetric weights lie in -127..=127)".into());
    }
    let good = |s: f32| s.is_finite() && s > 0.0;
    if !good(q.input_scale) || !q.weight_scale.iter().all(|&s| good(s)) {
        return Err("an int8 scale is not a finite positive number".into());
    }
    let rows = conv.weights.len() / conv.cout;
    if rows > crate::kernels::int8::MAX_ROWS {
        return Err(format!("{rows} rows per output could overflow an int8 product's i32 sum"));
    }
    Ok(())
}

/// The output shape of `conv` on an `x` input, or why it does not apply.
fn conv_output(conv: &Conv, x: Shape) -> Result<Shape, String> {
    check_window(&conv.window)?;
    let g = conv.groups;
    if conv.cin != x.c || g == 0 || !conv.cin.is_multiple_of(g) || !conv.cout.is_multiple_of(g) {
        return Err(format!("{} groups, {} input and {} output channels on a {x} input", g, conv.cin, conv.cout));
    }
    let w = &conv.window;
    expect_len("weights", conv.weights.len(), &[w.kh, w.kw, conv.cin / g, conv.cout])?;
    expect_len("bias", conv.bias.len(), &[conv.cout])?;
    if let Some(q) = &conv.quant {
        check_quant(conv, q)?;
    }
    let (oh, ow) =
        w.output_hw(x.h, x.w, false).ok_or_else(|| format!("the window {w:?} does not fit the input {x}"))?;
    Ok(Shape::new(oh, ow, conv.cout))
}
