//! Quantization-aware training: the int8 convolutions of a post-training-quantized model
//! ([`framecache::quant`]) fine-tuned so that its output matches the float model's again.
//!
//! The student is the int8 model's graph in [`Net`]: every int8 convolution's input is rounded
//! to its `u8` grid and its weights to their per-channel int8 grid in the forward pass, with a
//! straight-through gradient, so the loss sees exactly what the engine's integer kernels
//! compute and the float weights underneath move until their rounding serves the output. Only
//! the int8 convolutions' weights and biases train (the float layers are read from the float
//! model by the int8 file, and stay it); the scales and input ranges of the calibration stay.
//! The teacher is the float model's own output on the same frames (knowledge distillation, no
//! labels): the loss is the mean squared difference of the outputs.

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use framecache::graph::{Graph, Op};

use crate::distill::Rng;
use crate::net::{from_nhwc, Net};
use crate::{Error, Result};

/// How the student trains.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct QatOptions {
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub seed: u64,
}

/// Fine-tunes the int8 convolutions of `student` (an unfused graph with int8 convolutions, as
/// [`framecache::quant::file::load`] gives it) so that its node `output` reproduces `targets`
/// (the float model's output for each of `inputs`, NHWC, flat), in shuffled batches with
/// AdamW; `progress(epoch, loss)` after each epoch. Returns the trained graph (weights back on
/// their int8 grids) and each epoch's mean loss, the first entry being the loss before any
/// step.
pub fn finetune(
    student: Graph,
    output: usize,
    inputs: &[Vec<f32>],
    targets: &[Vec<f32>],
    options: QatOptions,
    mut progress: impl FnMut(usize, f32),
) -> Result<(Graph, Vec<f32>)> {
    if inputs.is_empty() || inputs.len() != targets.len() {
        return Err(Error::Input(format!("{} inputs for {} targets", inputs.len(), targets.len())));
    }
    if !student.nodes.iter().any(|n| matches!(&n.op, Op::Conv(c) if c.quant.is_some())) {
        return Err(Error::Input("the model has no int8 convolution to train".into()));
    }
    let device = Device::Cpu;
    let shape = student.input_shape();
    let out_len = student.nodes.get(output).map(|n| n.shape.len()).unwrap_or(0);
    if targets.iter().any(|t| t.len() != out_len) || inputs.iter().any(|x| x.len() != shape.len()) {
        return Err(Error::Input("an input or a target of the wrong size".into()));
    }
    let net = Net::new(student, &device)?;
    let vars = net.vars(|_, n| matches!(&n.op, Op::Conv(c) if c.quant.is_some()));
    let params = ParamsAdamW { lr: options.learning_rate, weight_decay: 0.0, ..Default::default() };
    let mut opt = AdamW::new(vars, params)?;
    let batch = options.batch.max(1);
    let to_batch = |ids: &[usize]| -> Result<(Tensor, Tensor)> {
        let x = ids.iter().map(|&i| from_nhwc(&inputs[i], shape, &device)).collect::<Result<Vec<_>>>()?;
        let t =
            ids.iter().map(|&i| Tensor::from_slice(&targets[i], out_len, &device)).collect::<Result<Vec<_>, _>>()?;
        Ok((Tensor::cat(&x, 0)?, Tensor::stack(&t, 0)?))
    };
    let loss = |ids: &[usize]| -> Result<Tensor> {
        let (x, t) = to_batch(ids)?;
        // NCHW to the engine's NHWC, as the targets are.
        let y = net.forward(&[(0, x)], &[output])?.remove(0).permute((0, 2, 3, 1))?.flatten_from(1)?;
        Ok((y - t)?.sqr()?.mean_all()?)
    };
    let all: Vec<usize> = (0..inputs.len()).collect();
    let mut curve = Vec::with_capacity(options.epochs + 1);
    let mut before = 0.0;
    for ids in all.chunks(batch) {
        before += loss(ids)?.to_scalar::<f32>()? * ids.len() as f32;
    }
    curve.push(before / inputs.len() as f32);
    let mut rng = Rng::new(options.seed);
    for epoch in 0..options.epochs {
        let mut order = all.clone();
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        let mut sum = 0.0;
        for ids in order.chunks(batch) {
            let l = loss(ids)?;
            opt.backward_step(&l)?;
            sum += l.to_scalar::<f32>()? * ids.len() as f32;
        }
        curve.push(sum / inputs.len() as f32);
        progress(epoch, sum / inputs.len() as f32);
    }
    Ok((net.to_graph()?, curve))
}
