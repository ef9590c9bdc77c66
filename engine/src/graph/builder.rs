//! Building graphs in code: for tests, benchmarks and built-in architectures.

use super::*;
use crate::error::{Error, Result};

/// Appends nodes to a graph, computing output shapes and checking that they fit.
pub struct GraphBuilder {
    nodes: Vec<Node>,
    outputs: Vec<GraphOutput>,
}

impl GraphBuilder {
    /// A graph whose input is an `h x w x c` image.
    pub fn new(h: usize, w: usize, c: usize) -> Self {
        let input = Node { name: "input".into(), op: Op::Input, inputs: vec![], shape: Shape::new(h, w, c) };
        Self { nodes: vec![input], outputs: vec![] }
    }

    /// One more input (a head's graph reads one per tap); inputs come before every op.
    pub fn input(&mut self, h: usize, w: usize, c: usize) -> Result<usize> {
        self.push(Op::Input, vec![], Shape::new(h, w, c))
    }

    pub fn shape(&self, id: usize) -> Shape {
        self.nodes[id].shape
    }

    fn push(&mut self, op: Op, inputs: Vec<usize>, shape: Shape) -> Result<usize> {
        let name = format!("{}_{}", op.name(), self.nodes.len());
        let node = Node { name, op, inputs, shape };
        check_node(&self.nodes, &node).map_err(|reason| Error::InvalidModel {
            node: node.name.clone(),
            op: node.op.name().into(),
            reason,
        })?;
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    fn invalid(op: &str, reason: String) -> Error {
        Error::InvalidModel { node: format!("<builder {op}>"), op: op.into(), reason }
    }

    /// A convolution; `weight` is called for every weight and bias value.
    pub fn conv(
        &mut self,
        x: usize,
        cout: usize,
        window: Window,
        groups: usize,
        activation: Activation,
        weight: &mut impl FnMut() -> f32,
    ) -> Result<usize> {
        let s = self.shape(x);
        if groups == 0 || !s.c.is_multiple_of(groups) || !cout.is_multiple_of(groups) {
            return Err(Self::invalid("Conv", format!("groups {groups} vs {} -> {cout} channels", s.c)));
        }
        let (oh, ow) = window
            .output_hw(s.h, s.w, false)
            .ok_or_else(|| Self::invalid("Conv", format!("window does not fit {s}")))?;
        let n = window.kh * window.kw * (s.c / groups) * cout;
        let conv = Conv {
            window,
            groups,
            cin: s.c,
            cout,
            weights: (0..n).map(|_| weight()).collect(),
            bias: (0..cout).map(|_| weight()).collect(),
            activation,
            residual: None,
            quant: None,
            packed: Vec::new(),
        };
        self.push(Op::Conv(conv), vec![x], Shape::new(oh, ow, cout))
    }

    /// A transposed convolution (no output padding).
    pub fn conv_transpose(
        &mut self,
        x: usize,
        cout: usize,
        window: Window,
        activation: Activation,
        weight: &mut impl FnMut() -> f32,
    ) -> Result<usize> {
        let s = self.shape(x);
        let w = &window;
        let (oh, ow) = w
            .transposed_output_hw(s.h, s.w)
            .ok_or_else(|| Self::invalid("ConvTranspose", "padding removes the output".into()))?;
        let n = w.kh * w.kw * s.c * cout;
        let ct = ConvTranspose {
            window,
            cin: s.c,
            cout,
            weights: (0..n).map(|_| weight()).collect(),
            bias: (0..cout).map(|_| weight()).collect(),
            activation,
            packed: None,
        };
        self.push(Op::ConvTranspose(ct), vec![x], Shape::new(oh, ow, cout))
    }

    pub fn pool(&mut self, x: usize, kind: PoolKind, window: Window) -> Result<usize> {
        let s = self.shape(x);
        let (oh, ow) = window
            .output_hw(s.h, s.w, false)
            .ok_or_else(|| Self::invalid("Pool", format!("window does not fit {s}")))?;
        self.push(Op::Pool { kind, window }, vec![x], Shape::new(oh, ow, s.c))
    }

    pub fn global_avg_pool(&mut self, x: usize) -> Result<usize> {
        let c = self.shape(x).c;
        self.push(Op::GlobalAvgPool, vec![x], Shape::new(1, 1, c))
    }

    pub fn resize(&mut self, x: usize, h: usize, w: usize, mode: ResizeMode, coord: CoordMode) -> Result<usize> {
        let c = self.shape(x).c;
        self.push(Op::Resize { mode, coord }, vec![x], Shape::new(h, w, c))
    }

    pub fn unary(&mut self, x: usize, activation: Activation) -> Result<usize> {
        let s = self.shape(x);
        self.push(Op::Unary(activation), vec![x], s)
    }

    /// Elementwise op with broadcasting of dimensions equal to 1.
    pub fn binary(&mut self, a: usize, b: usize, kind: BinaryKind, activation: Activation) -> Result<usize> {
        let (sa, sb) = (self.shape(a), self.shape(b));
        match sa.broadcast(sb) {
            Some(s) => self.push(Op::Binary { kind, activation, residual: None }, vec![a, b], s),
            None => Err(Self::invalid("Binary", format!("{sa} and {sb} do not broadcast"))),
        }
    }

    pub fn concat(&mut self, xs: &[usize]) -> Result<usize> {
        let first = self.shape(xs[0]);
        if xs.iter().any(|&x| (self.shape(x).h, self.shape(x).w) != (first.h, first.w)) {
            return Err(Self::invalid("Concat", "spatial sizes differ".into()));
        }
        let c = xs.iter().map(|&x| self.shape(x).c).sum();
        self.push(Op::Concat, xs.to_vec(), Shape::new(first.h, first.w, c))
    }

    /// Zero channels before and after `x`'s channels.
    pub fn pad_channels(&mut self, x: usize, before: usize, after: usize) -> Result<usize> {
        let s = self.shape(x);
        self.push(Op::PadChannels { before, after }, vec![x], Shape::new(s.h, s.w, s.c + before + after))
    }

    /// The buffers of `xs` one after the other, as a `1x1xN` vector.
    pub fn flat_concat(&mut self, xs: &[usize]) -> Result<usize> {
        let n = xs.iter().map(|&x| self.shape(x).len()).sum();
        self.push(Op::FlatConcat, xs.to_vec(), Shape::new(1, 1, n))
    }

    pub fn dense(
        &mut self,
        x: usize,
        cout: usize,
        activation: Activation,
        weight: &mut impl FnMut() -> f32,
    ) -> Result<usize> {
        let s = self.shape(x);
        if s.h != 1 || s.w != 1 {
            return Err(Self::invalid("Dense", format!("input {s} is not a vector")));
        }
        let d = Dense {
            cin: s.c,
            cout,
            weights: (0..s.c * cout).map(|_| weight()).collect(),
            bias: (0..cout).map(|_| weight()).collect(),
            activation,
            packed: Vec::new(),
        };
        self.push(Op::Dense(d), vec![x], Shape::new(1, 1, cout))
    }

    /// Marks node `id` as a graph output (reported in NCHW, or flat for `1x1xC`).
    pub fn output(&mut self, id: usize) -> &mut Self {
        let s = self.shape(id);
        let nchw = !(s.h == 1 && s.w == 1);
        let onnx_shape = if nchw { vec![1, s.c, s.h, s.w] } else { vec![1, s.c] };
        self.outputs.push(GraphOutput { name: self.nodes[id].name.clone(), node: id, onnx_shape, nchw });
        self
    }

    pub fn build(self) -> Graph {
        let tensors = self.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        Graph { input_name: "input".into(), nodes: self.nodes, outputs: self.outputs, tensors }
    }
}
