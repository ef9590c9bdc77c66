//! Small ONNX models written in code, for the hostile-input tests: each test builds the one
//! graph it needs, then breaks one attribute or tensor of it.

pub use framecache::export::{int, ints, string, value_info};
use prost::Message;
use tract_onnx::pb::{type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto};

/// A model under construction: one image input `x` of `[1, c, h, w]`.
pub struct Onnx {
    pub graph: GraphProto,
}

/// An f32 tensor.
pub fn f32_tensor(name: &str, dims: &[i64], data: Vec<f32>) -> TensorProto {
    TensorProto { name: name.into(), dims: dims.to_vec(), data_type: 1, float_data: data, ..Default::default() }
}

/// An i64 tensor.
pub fn i64_tensor(name: &str, dims: &[i64], data: Vec<i64>) -> TensorProto {
    TensorProto { name: name.into(), dims: dims.to_vec(), data_type: 7, int64_data: data, ..Default::default() }
}

impl Onnx {
    pub fn new(c: i64, h: i64, w: i64) -> Self {
        Self::with_input(&[1, c, h, w])
    }

    /// A model whose input declares `dims` (which may be anything).
    pub fn with_input(dims: &[i64]) -> Self {
        Self { graph: GraphProto { name: "hostile".into(), input: vec![value_info("x", dims)], ..Default::default() } }
    }

    pub fn init(&mut self, t: TensorProto) -> &mut Self {
        self.graph.initializer.push(t);
        self
    }

    pub fn node(&mut self, op: &str, inputs: &[&str], output: &str, attrs: Vec<AttributeProto>) -> &mut Self {
        self.graph.node.push(NodeProto {
            name: format!("{op}_{}", self.graph.node.len()),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute: attrs,
            ..Default::default()
        });
        self
    }

    /// A 3x3 (or `k`x`k`) convolution from `x` to `y` with `cout` outputs, weights all 0.1.
    pub fn conv(&mut self, x: &str, y: &str, cin: i64, cout: i64, k: i64, attrs: Vec<AttributeProto>) -> &mut Self {
        let w = format!("{y}_w");
        self.init(f32_tensor(&w, &[cout, cin, k, k], vec![0.1; (cout * cin * k * k) as usize]));
        self.node("Conv", &[x, &w], y, attrs)
    }

    /// Declares `name` a graph output (of unknown shape).
    pub fn output(&mut self, name: &str) -> &mut Self {
        let mut v = value_info(name, &[]);
        if let Some(type_proto::Value::TensorType(t)) = v.r#type.as_mut().and_then(|t| t.value.as_mut()) {
            t.shape = None;
        }
        self.graph.output.push(v);
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
            graph: Some(self.graph.clone()),
            ..Default::default()
        }
        .encode_to_vec()
    }
}

/// A 16x16 model that uses every op the importer supports, with attributes and integer tensors
/// for the sweep to break.
pub fn zoo() -> Onnx {
    let mut m = Onnx::new(3, 16, 16);
    m.conv("x", "c1", 3, 8, 3, vec![ints("pads", &[1, 1, 1, 1]), ints("strides", &[2, 2])])
        .node("Relu", &["c1"], "r1", vec![])
        .init(f32_tensor("dw_w", &[8, 1, 3, 3], vec![0.1; 72]))
        .node("Conv", &["r1", "dw_w"], "d1", vec![int("group", 8), string("auto_pad", "SAME_UPPER")])
        .init(i64_tensor("sp", &[8], vec![0, 0, 1, 1, 0, 0, 1, 1]))
        .node("Pad", &["d1", "sp"], "p1", vec![])
        .conv("p1", "c2", 8, 8, 3, vec![ints("dilations", &[1, 1])])
        .init(f32_tensor("ct_w", &[8, 4, 2, 2], vec![0.05; 128]))
        .node("ConvTranspose", &["c2", "ct_w"], "t1", vec![ints("strides", &[2, 2]), ints("kernel_shape", &[2, 2])])
        .node("HardSigmoid", &["t1"], "h1", vec![])
        .node(
            "MaxPool",
            &["h1"],
            "m1",
            vec![ints("kernel_shape", &[3, 3]), ints("strides", &[2, 2]), int("ceil_mode", 1)],
        )
        .node(
            "AveragePool",
            &["m1"],
            "a1",
            vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1]), int("count_include_pad", 1)],
        )
        .init(f32_tensor("scales", &[4], vec![1.0, 1.0, 2.0, 2.0]))
        .node("Resize", &["a1", "", "scales"], "rs", vec![string("mode", "linear")])
        .init(i64_tensor("cp", &[8], vec![0, 1, 0, 0, 0, 1, 0, 0]))
        .node("Pad", &["rs", "cp"], "pc", vec![])
        .init(i64_tensor("sizes", &[4], vec![1, 8, 16, 16]))
        .node("Resize", &["c2", "", "", "sizes"], "up", vec![])
        .node("Concat", &["pc", "up"], "cat", vec![int("axis", 1)])
        .init(f32_tensor("k", &[14, 1, 1], vec![0.5; 14]))
        .node("Add", &["cat", "k"], "ad", vec![])
        .node("Sigmoid", &["ad"], "sg", vec![])
        .node("Mul", &["ad", "sg"], "mu", vec![])
        .node("Clip", &["mu"], "cl", vec![])
        .node("GlobalAveragePool", &["cl"], "gap", vec![])
        .node("Flatten", &["gap"], "fl", vec![int("axis", 1)])
        .init(f32_tensor("gw", &[14, 5], vec![0.1; 70]))
        .init(f32_tensor("gb", &[5], vec![0.0; 5]))
        .node("Gemm", &["fl", "gw", "gb"], "gm", vec![])
        .node("Transpose", &["c2"], "tr", vec![ints("perm", &[0, 2, 3, 1])])
        .init(i64_tensor("flat", &[2], vec![1, -1]))
        .node("Reshape", &["tr", "flat"], "rr", vec![])
        .node("Concat", &["rr", "gm"], "fc", vec![int("axis", 1)])
        .node("Identity", &["fc"], "out", vec![])
        .output("out")
        .output("cl");
    m
}
