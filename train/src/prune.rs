//! Structured pruning of inverted-residual blocks: whole expansion channels removed, so every
//! kernel does proportionally less work.
//!
//! A block is a pointwise expansion, a depthwise convolution on its output, and a pointwise
//! projection of that (`expand → depthwise → project`, each the only reader of the one before).
//! Dropping expansion channel `c` removes column `c` of the expansion, channel `c` of the
//! depthwise convolution and row `c` of the projection; the block's output shape stays, so
//! residual adds and the rest of the network are untouched.
//!
//! Which channels go ([`scores`]): the energy each one sends into the projection on real
//! frames, `E[z_c²] · ‖P_c‖²` (`z` the depthwise output, `P_c` the projection's row): a
//! measured criterion, where the L1 norm of the expansion's weights sees neither the
//! activation nor what the projection does with it. After a block is pruned its projection is
//! refitted ([`refit`]): weights and bias solved by least squares so that, from the pruned
//! network's own depthwise output, it reproduces the original network's projection output on
//! the calibration frames (channel pruning by reconstruction, He et al., ICCV 2017). Blocks are
//! pruned in order, each refitted on the network pruned before it, so later blocks also take
//! back what earlier ones lost. `framecache compress --method prune` may reach its ratio in
//! rounds ([`keep_counts`] of a growing fraction), fine-tuning the whole network towards the
//! source between them ([`crate::finetune`]).

use framecache::graph::{Graph, Op};
use framecache::{Frame, Plan, Preprocess, Session, SessionOptions};

use crate::lsq::Normal;
use crate::{Error, Result};

/// The node indices of one inverted-residual block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub expand: usize,
    pub depthwise: usize,
    pub project: usize,
}

/// Whether node `i` is a float 1x1 convolution of one group and stride 1.
fn pointwise(graph: &Graph, i: usize) -> bool {
    matches!(&graph.nodes[i].op, Op::Conv(c) if c.is_pointwise() && c.quant.is_none() && c.residual.is_none()
        && (c.window.sh, c.window.sw) == (1, 1))
}

/// The inverted-residual blocks of `graph` (unfused), in order. A node read by anything else
/// (another node, a graph output, a named tap other than its own) is not part of a block.
pub fn blocks(graph: &Graph) -> Vec<Block> {
    let mut readers = vec![Vec::new(); graph.nodes.len()];
    for (i, n) in graph.nodes.iter().enumerate() {
        for &j in &n.inputs {
            readers[j].push(i);
        }
    }
    let is_output = |i: usize| graph.outputs.iter().any(|o| o.node == i);
    let only = |i: usize| (readers[i].len() == 1 && !is_output(i)).then(|| readers[i][0]);
    let mut out = Vec::new();
    for e in 0..graph.nodes.len() {
        if !pointwise(graph, e) {
            continue;
        }
        let Some(d) = only(e) else { continue };
        let depthwise = matches!(&graph.nodes[d].op, Op::Conv(c) if c.is_depthwise()
            && c.quant.is_none() && c.residual.is_none());
        if !depthwise || graph.nodes[d].inputs != [e] {
            continue;
        }
        let Some(p) = only(d) else { continue };
        if pointwise(graph, p) && graph.nodes[p].inputs == [d] {
            out.push(Block { expand: e, depthwise: d, project: p });
        }
    }
    out
}

/// Each expansion channel's score: `E[z_c²] · ‖P_c‖²`, from `z_sq_mean` (the mean square of each
/// channel of the depthwise output over real frames) and the projection's weights.
pub fn scores(graph: &Graph, block: Block, z_sq_mean: &[f64]) -> Vec<f64> {
    let Op::Conv(p) = &graph.nodes[block.project].op else { return Vec::new() };
    (0..p.cin)
        .map(|c| {
            let row = &p.weights[c * p.cout..(c + 1) * p.cout];
            z_sq_mean.get(c).copied().unwrap_or(0.0) * row.iter().map(|&w| f64::from(w) * f64::from(w)).sum::<f64>()
        })
        .collect()
}

/// The `keep` channels (ascending, at least one, at most all the block has) of `block`'s
/// expansion, depthwise convolution and projection: the rest are removed.
pub fn prune(graph: &mut Graph, block: Block, keep: &[usize]) -> Result<()> {
    let n = graph.nodes[block.depthwise].shape.c;
    if keep.is_empty() || keep.windows(2).any(|w| w[0] >= w[1]) || keep.last().is_some_and(|&c| c >= n) {
        return Err(Error::Input(format!("keep {} of {n} channels: ascending, distinct, in range", keep.len())));
    }
    let k = keep.len();
    if let Op::Conv(e) = &mut graph.nodes[block.expand].op {
        // `[ci][co]`: keep columns.
        e.weights =
            (0..e.cin).flat_map(|ci| keep.iter().map(move |&c| (ci, c))).map(|(ci, c)| e.weights[ci * n + c]).collect();
        e.bias = keep.iter().map(|&c| e.bias[c]).collect();
        e.cout = k;
        e.packed.clear();
    }
    graph.nodes[block.expand].shape.c = k;
    if let Op::Conv(d) = &mut graph.nodes[block.depthwise].op {
        // `[ky][kx][c]`.
        let taps = d.window.kh * d.window.kw;
        d.weights = (0..taps).flat_map(|t| keep.iter().map(move |&c| t * n + c)).map(|i| d.weights[i]).collect();
        d.bias = keep.iter().map(|&c| d.bias[c]).collect();
        (d.cin, d.cout, d.groups) = (k, k, k);
        d.packed.clear();
    }
    graph.nodes[block.depthwise].shape.c = k;
    if let Op::Conv(p) = &mut graph.nodes[block.project].op {
        // `[ci][co]`: keep rows.
        p.weights = keep.iter().flat_map(|&c| p.weights[c * p.cout..(c + 1) * p.cout].to_vec()).collect();
        p.cin = k;
        p.packed.clear();
    }
    for i in [block.expand, block.depthwise, block.project] {
        framecache::graph::check_node(&graph.nodes[..i], &graph.nodes[i]).map_err(|reason| Error::Unsupported {
            node: graph.nodes[i].name.clone(),
            op: "Conv".into(),
            reason: format!("after pruning: {reason}"),
        })?;
    }
    Ok(())
}

/// Refits `block`'s projection to the rows added to `normal` (inputs: the pruned depthwise
/// output, `cin` values; targets: the original projection's output, `cout` values). Returns
/// the relative RMS error before and after.
pub fn refit(graph: &mut Graph, block: Block, normal: &Normal) -> Result<(f64, f64)> {
    let Op::Conv(p) = &mut graph.nodes[block.project].op else {
        return Err(Error::Input("the block's projection is not a convolution".into()));
    };
    crate::lsq::refit(p, normal)
}

/// What pruning did to one block.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Pruned {
    /// The expansion's node name.
    pub block: String,
    pub channels: usize,
    pub kept: usize,
    /// The projection's output error (relative RMS, on the sampled positions of the frames)
    /// before and after a least-squares refit; equal for the other recoveries.
    pub error_before: f64,
    pub error_after: f64,
}

/// Positions (of `n`) sampled per frame for the statistics and refits: at most 64, evenly.
fn sampled(n: usize) -> impl Iterator<Item = usize> {
    let k = n.min(64);
    (0..k).map(move |i| i * n / k)
}

/// How a pruned block's projection takes back what the removed channels carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recovery {
    /// Nothing: the projection loses the removed channels' contribution, mean included.
    None,
    /// The removed channels' mean contribution, `Σ E[z_c] · P_c` over the frames, goes into the
    /// projection's bias: each output channel keeps its mean.
    Mean,
    /// The projection's weights and bias refitted by least squares ([`refit`]) from the pruned
    /// network's own depthwise output to the original's projection output.
    LeastSquares,
}

/// The expansion channels of each of `blocks` (from [`blocks`] of `graph`).
pub fn channels(graph: &Graph, blocks: &[Block]) -> Vec<usize> {
    blocks.iter().map(|b| graph.nodes[b.depthwise].shape.c).collect()
}

/// How many of each block's `channels` stay when `fraction` (0 to below 1) of them go: the
/// fraction's floor goes, and at least one channel stays; then the count is rounded to the
/// nearest multiple of `multiple` (halves up; at least one multiple, at most all `n`), so that
/// the kernels' channel loops have no remainder (1: no rounding).
pub fn keep_counts(channels: &[usize], fraction: f64, multiple: usize) -> Vec<usize> {
    let m = multiple.max(1);
    channels
        .iter()
        .map(|&n| {
            let keep = n - ((n as f64 * fraction).floor() as usize).min(n.saturating_sub(1));
            ((keep + m / 2) / m * m).clamp(m.min(n), n)
        })
        .collect()
}

/// Prunes each of `blocks` (from [`blocks`] of `graph`) to `keep` of its expansion channels
/// (one count per block, at most what it has), in order: channels ranked by [`scores`] on the
/// network's activations over `frames` before any of this call's pruning, then each projection
/// recovered as `recovery` says (statistics on the same frames, at most 64 positions of each).
pub fn prune_network(
    graph: &mut Graph,
    blocks: &[Block],
    preprocess: &Preprocess,
    frames: &[Frame<'_>],
    keep: &[usize],
    recovery: Recovery,
) -> Result<Vec<Pruned>> {
    let have = channels(graph, blocks);
    if frames.is_empty() || keep.len() != blocks.len() || keep.iter().zip(&have).any(|(&k, &n)| k == 0 || k > n) {
        return Err(Error::Input(format!(
            "keep {keep:?} of {have:?} channels on {} frames: at least one and at most all of each block's, on frames",
            frames.len()
        )));
    }
    // The original network: each block's depthwise mean squares, and its projection's output
    // at the sampled positions of every frame.
    let original = Plan::new(graph.clone(), preprocess.clone())?;
    let mut session = Session::new(original.clone(), SessionOptions::default())?;
    let mut z_sq = vec![Vec::new(); blocks.len()];
    let mut z_mean = vec![Vec::new(); blocks.len()];
    let mut targets = vec![Vec::new(); blocks.len()];
    for f in frames {
        session.run_full(f)?;
        for (b, block) in blocks.iter().enumerate() {
            let z = session.activation(block.depthwise);
            let c = original.graph().nodes[block.depthwise].shape.c;
            z_sq[b].resize(c, 0.0f64);
            z_mean[b].resize(c, 0.0f64);
            let per = (z.len() / c * frames.len()) as f64;
            for (k, &v) in z.iter().enumerate() {
                z_sq[b][k % c] += f64::from(v) * f64::from(v) / per;
                z_mean[b][k % c] += f64::from(v) / per;
            }
            let out = session.activation(block.project);
            let co = original.graph().nodes[block.project].shape.c;
            for p in sampled(out.len() / co) {
                targets[b].extend(out[p * co..(p + 1) * co].iter().map(|&v| f64::from(v)));
            }
        }
    }
    let mut report = Vec::new();
    for (b, &block) in blocks.iter().enumerate() {
        let scores = scores(graph, block, &z_sq[b]);
        let n = scores.len();
        let drop = n - keep[b];
        if drop == 0 {
            continue;
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&x, &y| scores[y].total_cmp(&scores[x]));
        let mut kept = order[..n - drop].to_vec();
        kept.sort_unstable();
        // What the removed channels add to the projection's output on average.
        let Op::Conv(p) = &graph.nodes[block.project].op else { unreachable!("blocks() checked it") };
        let mut shift = vec![0.0f64; p.cout];
        for &c in &order[n - drop..] {
            for (o, s) in shift.iter_mut().enumerate() {
                *s += z_mean[b][c] * f64::from(p.weights[c * p.cout + o]);
            }
        }
        prune(graph, block, &kept)?;
        if recovery == Recovery::Mean {
            let Op::Conv(p) = &mut graph.nodes[block.project].op else { unreachable!() };
            for (bias, s) in p.bias.iter_mut().zip(&shift) {
                *bias = (f64::from(*bias) + s) as f32;
            }
        }
        // The pruned network so far, on the same frames and positions.
        let mut pruned = Session::new(Plan::new(graph.clone(), preprocess.clone())?, SessionOptions::default())?;
        let (k, co) = (kept.len(), graph.nodes[block.project].shape.c);
        let mut normal = Normal::new(k, co);
        let mut row = 0;
        for f in frames {
            pruned.run_full(f)?;
            let z = pruned.activation(block.depthwise);
            for p in sampled(z.len() / k) {
                let x: Vec<f64> = z[p * k..(p + 1) * k].iter().map(|&v| f64::from(v)).collect();
                normal.add(&x, &targets[b][row * co..(row + 1) * co]);
                row += 1;
            }
        }
        let (error_before, error_after) = if recovery == Recovery::LeastSquares {
            refit(graph, block, &normal)?
        } else {
            let Op::Conv(p) = &graph.nodes[block.project].op else { unreachable!("blocks() checked it") };
            let e = normal.error(&p.weights.iter().chain(&p.bias).map(|&v| f64::from(v)).collect::<Vec<_>>());
            (e, e)
        };
        report.push(Pruned {
            block: graph.nodes[block.expand].name.clone(),
            channels: n,
            kept: k,
            error_before,
            error_after,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::keep_counts;

    /// The fraction's floor goes, then the count rounds to the nearest multiple, never below
    /// one multiple nor above what the block has.
    #[test]
    fn kept_counts_round_to_the_multiple() {
        assert_eq!(keep_counts(&[96, 144, 7, 960], 0.35, 1), [63, 94, 5, 624]);
        assert_eq!(keep_counts(&[96, 144, 7, 960], 0.35, 8), [64, 96, 7, 624]);
        // A block smaller than one multiple keeps every channel.
        assert_eq!(keep_counts(&[16, 3], 0.9, 8), [8, 3]);
        assert_eq!(keep_counts(&[20], 0.0, 8), [20]);
    }
}
