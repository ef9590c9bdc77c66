//! Fine-tuning a compressed model towards its source: knowledge distillation with the source
//! model as the teacher on unlabeled frames, so that no dataset is needed.
//!
//! The student is a compressed model's graph in [`Net`]; the loss ([`Loss`]) compares its
//! output with the teacher's on the same inputs, and AdamW updates the weights and biases of
//! the nodes the caller chooses. Two methods use it:
//!
//! - quantization-aware training ([`int8_convolutions`]): every int8 convolution's input is
//!   rounded to its `u8` grid and its weights to their per-channel int8 grid in the forward
//!   pass, with a straight-through gradient, so the loss sees exactly what the engine's integer
//!   kernels compute and the float weights underneath move until their rounding serves the
//!   output. Only the int8 convolutions train (the int8 file reads the float layers from the
//!   float model, so they stay it); the calibration's scales and ranges stay;
//! - structured pruning ([`crate::prune`]): every float convolution and dense layer of the
//!   pruned network trains, between rounds of pruning.

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use framecache::graph::{Graph, Node, Op};

use crate::distill::Rng;
use crate::net::{from_nhwc, Net};
use crate::{Error, Result};

/// What the student's output is compared with the teacher's by.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loss {
    /// The mean squared difference of the outputs: any output, every value weighing alike.
    Mse,
    /// For logits: the Kullback–Leibler divergence of the student's softmax from the
    /// teacher's, both at `temperature`, times its square (Hinton et al. 2015), averaged over
    /// the batch. The classes the teacher ranks high weigh most, where the mean squared error
    /// spends itself on hundreds of logits that never matter.
    Softmax { temperature: f64 },
}

/// How the student trains.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct FinetuneOptions {
    pub loss: Loss,
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub seed: u64,
}

/// The nodes quantization-aware training updates: the int8 convolutions.
pub fn int8_convolutions(node: &Node) -> bool {
    matches!(&node.op, Op::Conv(c) if c.quant.is_some())
}

/// The nodes a float model's fine-tuning updates: its float convolutions, transposed
/// convolutions and dense layers.
pub fn float_layers(node: &Node) -> bool {
    match &node.op {
        Op::Conv(c) => c.quant.is_none(),
        Op::ConvTranspose(_) | Op::Dense(_) => true,
        _ => false,
    }
}

/// Fine-tunes the nodes of `student` (an unfused graph, as [`framecache::import::load_unfused`]
/// or [`framecache::quant::file::load`] gives it) for which `train` is true, so that its node
/// `output` reproduces `targets` (the teacher's output for each of `inputs`, NHWC, flat), in
/// shuffled batches with AdamW; `progress(epoch, loss)` after each epoch. Returns the trained
/// graph (int8 weights back on their grids) and each epoch's mean loss, the first entry being
/// the loss before any step.
pub fn finetune(
    student: Graph,
    output: usize,
    inputs: &[Vec<f32>],
    targets: &[Vec<f32>],
    train: impl Fn(&Node) -> bool,
    options: FinetuneOptions,
    mut progress: impl FnMut(usize, f32),
) -> Result<(Graph, Vec<f32>)> {
    if inputs.is_empty() || inputs.len() != targets.len() {
        return Err(Error::Input(format!("{} inputs for {} targets", inputs.len(), targets.len())));
    }
    if !student.nodes.iter().any(&train) {
        return Err(Error::Input("the model has no layer of the kind this method trains".into()));
    }
    let device = Device::Cpu;
    let shape = student.input_shape();
    let out_len = student.nodes.get(output).map(|n| n.shape.len()).unwrap_or(0);
    if targets.iter().any(|t| t.len() != out_len) || inputs.iter().any(|x| x.len() != shape.len()) {
        return Err(Error::Input("an input or a target of the wrong size".into()));
    }
    let net = Net::new(student, &device)?;
    let vars = net.vars(|_, n| train(n));
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
        Ok(match options.loss {
            Loss::Mse => (y - t)?.sqr()?.mean_all()?,
            Loss::Softmax { temperature } => {
                let log_p = candle_nn::ops::log_softmax(&(t / temperature)?, 1)?;
                let log_q = candle_nn::ops::log_softmax(&(y / temperature)?, 1)?;
                let kl = (log_p.exp()? * (log_p - log_q)?)?.sum(1)?.mean_all()?;
                (kl * (temperature * temperature))?
            }
        })
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
