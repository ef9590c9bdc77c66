//! Small TFLite models written in code with the schema's own builders: for the TFLite reader's
//! hostile-input tests and the fuzz seeds. Each test describes tensors and operators by index,
//! so that it can also write what a valid exporter never would (a cycle, a quantized tensor).

use flatbuffers::FlatBufferBuilder;
use tract_tflite::tflite::{
    self, ActivationFunctionType, BufferArgs, BuiltinOperator, BuiltinOptions, Conv2DOptionsArgs, ModelArgs,
    OperatorArgs, OperatorCodeArgs, Padding, SubGraphArgs, TensorArgs, TensorType,
};

/// One tensor: dims, element type, and constant data (little-endian bytes) if any.
pub struct T {
    pub dims: Vec<i32>,
    pub ty: TensorType,
    pub data: Option<Vec<u8>>,
}

impl T {
    pub fn f32(dims: &[i32]) -> Self {
        Self { dims: dims.to_vec(), ty: TensorType::FLOAT32, data: None }
    }
    pub fn f32_const(dims: &[i32], v: &[f32]) -> Self {
        Self {
            dims: dims.to_vec(),
            ty: TensorType::FLOAT32,
            data: Some(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        }
    }
}

/// One operator: its builtin code, input and output tensor indices, and whether it is a
/// CONV_2D with SAME padding and stride 1 (the only options these models need).
pub struct O {
    pub code: BuiltinOperator,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
}

/// The flatbuffer of a one-subgraph model.
pub fn model(tensors: &[T], ops: &[O], inputs: &[i32], outputs: &[i32]) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    // Buffer 0 is the empty sentinel; constant tensor k gets buffer k + 1.
    let mut buffers = vec![tflite::Buffer::create(&mut fbb, &BufferArgs { data: None })];
    let mut tensor_offsets = Vec::new();
    for (k, t) in tensors.iter().enumerate() {
        let buffer = match &t.data {
            Some(d) => {
                let data = Some(fbb.create_vector(d));
                buffers.push(tflite::Buffer::create(&mut fbb, &BufferArgs { data }));
                (buffers.len() - 1) as u32
            }
            None => 0,
        };
        let shape = Some(fbb.create_vector(&t.dims));
        let name = Some(fbb.create_string(&format!("t{k}")));
        tensor_offsets.push(tflite::Tensor::create(
            &mut fbb,
            &TensorArgs { shape, type_: t.ty, buffer, name, ..Default::default() },
        ));
    }
    let mut codes: Vec<BuiltinOperator> = Vec::new();
    let mut op_offsets = Vec::new();
    for o in ops {
        let index = codes.iter().position(|&c| c == o.code).unwrap_or_else(|| {
            codes.push(o.code);
            codes.len() - 1
        });
        let (options_type, options) = if o.code == BuiltinOperator::CONV_2D {
            let args = Conv2DOptionsArgs {
                padding: Padding::SAME,
                stride_w: 1,
                stride_h: 1,
                fused_activation_function: ActivationFunctionType::RELU,
                ..Default::default()
            };
            (BuiltinOptions::Conv2DOptions, Some(tflite::Conv2DOptions::create(&mut fbb, &args).as_union_value()))
        } else {
            (BuiltinOptions::NONE, None)
        };
        let inputs = Some(fbb.create_vector(&o.inputs));
        let outputs = Some(fbb.create_vector(&o.outputs));
        op_offsets.push(tflite::Operator::create(
            &mut fbb,
            &OperatorArgs {
                opcode_index: index as u32,
                inputs,
                outputs,
                builtin_options_type: options_type,
                builtin_options: options,
                ..Default::default()
            },
        ));
    }
    let code_offsets: Vec<_> = codes
        .iter()
        .map(|&c| {
            let deprecated = i8::try_from(c.0).unwrap_or(127);
            tflite::OperatorCode::create(
                &mut fbb,
                &OperatorCodeArgs {
                    builtin_code: c,
                    deprecated_builtin_code: deprecated,
                    version: 1,
                    custom_code: None,
                },
            )
        })
        .collect();
    let subgraph = {
        let tensors = Some(fbb.create_vector(&tensor_offsets));
        let operators = Some(fbb.create_vector(&op_offsets));
        let inputs = Some(fbb.create_vector(inputs));
        let outputs = Some(fbb.create_vector(outputs));
        tflite::SubGraph::create(&mut fbb, &SubGraphArgs { tensors, inputs, outputs, operators, name: None })
    };
    let subgraphs = Some(fbb.create_vector(&[subgraph]));
    let operator_codes = Some(fbb.create_vector(&code_offsets));
    let buffers = Some(fbb.create_vector(&buffers));
    let root = tflite::Model::create(
        &mut fbb,
        &ModelArgs { version: 3, operator_codes, subgraphs, buffers, ..Default::default() },
    );
    tflite::finish_model_buffer(&mut fbb, root);
    fbb.finished_data().to_vec()
}

/// A valid model: a 3x3 SAME convolution with a fused ReLU, 3 -> 4 channels on 8x8, then a
/// logistic.
pub fn conv_model() -> Vec<u8> {
    let w: Vec<f32> = (0..4 * 3 * 3 * 3).map(|i| ((i * 7 % 11) as f32 - 5.0) / 10.0).collect();
    model(
        &[
            T::f32(&[1, 8, 8, 3]),
            T::f32_const(&[4, 3, 3, 3], &w),
            T::f32_const(&[4], &[0.1, -0.2, 0.3, 0.0]),
            T::f32(&[1, 8, 8, 4]),
            T::f32(&[1, 8, 8, 4]),
        ],
        &[
            O { code: BuiltinOperator::CONV_2D, inputs: vec![0, 1, 2], outputs: vec![3] },
            O { code: BuiltinOperator::LOGISTIC, inputs: vec![3], outputs: vec![4] },
        ],
        &[0],
        &[4],
    )
}
