//! Weight clustering (parameter sharing): each layer's weights become a codebook of at most 256
//! values and one index per weight, which the graph file stores bit-packed
//! ([`framecache::import::graph_file::Clustered`]). The engine looks the indices up at load
//! and runs dense weights, so the saving is on disk and in download size, not in time.
//!
//! Each output channel is first divided by its RMS (`N.weight.scale`, one `f32` per channel in
//! the file), and one codebook serves the normalised values of every channel: after batch
//! norm is folded in, one channel's scale can be a hundred times another's, and a codebook
//! of raw values would spend every centroid on the large channels and round the small ones
//! to a few values. The codebook is then a 1-D k-means of the normalised values, whose error
//! is each channel's relative error. (Grouped convolutions that are not depthwise keep raw
//! values, with each weight weighing `1 / ‖w_c‖²` in the k-means, to the same end.)
//!
//! A layer's error is the root mean over its channels of `‖w_c − ŵ_c‖² / ‖w_c‖²`. Its number
//! of centroids is the smallest of 16, 32, 64, 128 and 256 whose error is at most the bound
//! ([`Centroids::ByError`]), else 256; a layer with no more weights than 16 stays float.
//!
//! Clustering moves each output channel's mean a little (its errors do not cancel over the
//! channel's inputs, whose means are not zero), and through a deep network those shifts
//! add up. [`correct_biases`] takes them back from the mean input of each layer over real
//! frames.

use std::collections::HashMap;

use framecache::graph::{Graph, Op};
use framecache::import::graph_file::Clustered;

use crate::{Error, Result};

/// How many centroids each layer gets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Centroids {
    /// The same number for every layer (2 to 256, fewer than each layer's weights).
    Fixed(usize),
    /// Per layer, the fewest of 16, 32, 64, 128 and 256 whose error is at most this (see the
    /// module's documentation), else 256.
    ByError(f64),
}

/// The codebook sizes [`Centroids::ByError`] tries, smallest first.
pub const SIZES: [usize; 5] = [16, 32, 64, 128, 256];

/// What clustering did to one weighted layer.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Layer {
    pub node: String,
    /// Its weights.
    pub len: usize,
    /// Centroids, or `None` when it stays float (16 weights or fewer).
    pub centroids: Option<usize>,
    /// The error of the codebook used (NaN for a float layer).
    pub error: f64,
}

/// The output channel of each weight of a layer, by its index.
type ChannelOf<'a> = Box<dyn Fn(usize) -> usize + 'a>;

/// The weights of a layer, the output channel of each, and whether the channel is the
/// fastest-varying index (`channel(i) == i % cout`, which per-channel scales in the file need).
fn layer_weights(op: &Op) -> Option<(&[f32], ChannelOf<'_>, bool)> {
    match op {
        Op::Conv(c) if c.quant.is_none() => {
            Some((&c.weights, Box::new(move |i| c.weight_channels(i).1), c.is_depthwise() || c.groups == 1))
        }
        Op::ConvTranspose(c) => Some((&c.weights, Box::new(move |i| i % c.cout), true)),
        Op::Dense(d) => Some((&d.weights, Box::new(move |i| i % d.cout), true)),
        _ => None,
    }
}

/// A k-means codebook of `values`, each weighing `weight[i]`, with at most `k` centroids.
/// In one dimension the clusters of an optimal codebook are runs of the sorted values, and
/// the best split into `k` runs is a dynamic program (Wang and Song's Ckmeans.1d.dp), solved
/// here with the divide-and-conquer speed-up over run boundaries restricted to `BINS_PER`
/// · `k` equal-count steps of the sorted values (the squared error of each run is exact,
/// from prefix sums). Returns the codebook (ascending, the mean of each run) and the
/// weighted squared error of [`assign`]'s lookup. With at most `k` distinct values it is
/// exact.
pub fn kmeans(values: &[f32], weight: &[f64], k: usize) -> (Vec<f32>, f64) {
    assert_eq!(values.len(), weight.len());
    assert!(k >= 1);
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let v: Vec<f64> = order.iter().map(|&i| f64::from(values[i])).collect();
    let mut distinct = v.clone();
    distinct.dedup();
    if distinct.len() <= k {
        return (distinct.iter().map(|&x| x as f32).collect(), 0.0);
    }
    // Prefix sums of w, w·v and w·v² (centred on the mean, for precision).
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let n = v.len();
    let (mut sw, mut sv, mut sq) = (vec![0.0; n + 1], vec![0.0; n + 1], vec![0.0; n + 1]);
    for (j, &i) in order.iter().enumerate() {
        let (w, x) = (weight[i], v[j] - mean);
        sw[j + 1] = sw[j] + w;
        sv[j + 1] = sv[j] + w * x;
        sq[j + 1] = sq[j] + w * x * x;
    }
    // Run boundaries: `m + 1` equal-count steps of the sorted values.
    let m = n.min(BINS_PER * k);
    let edge: Vec<usize> = (0..=m).map(|b| b * n / m).collect();
    let cost = |a: usize, b: usize| -> f64 {
        let (i, j) = (edge[a], edge[b]);
        let w = sw[j] - sw[i];
        if w <= 0.0 {
            return 0.0;
        }
        let s = sv[j] - sv[i];
        (sq[j] - sq[i] - s * s / w).max(0.0)
    };
    // best[j][b]: the least error of the first `b` steps in `j + 1` runs; from[j][b]: where its
    // last run starts.
    let mut prev: Vec<f64> = (0..=m).map(|b| cost(0, b)).collect();
    let mut from = vec![vec![0usize; m + 1]; k];
    for row in from.iter_mut().skip(1) {
        let mut cur = vec![f64::INFINITY; m + 1];
        // Each `b` takes its last run's start in `lo..=hi`, and the optimum is monotone in `b`.
        let mut stack = vec![(1usize, m, 0usize, m)];
        while let Some((b0, b1, lo, hi)) = stack.pop() {
            if b0 > b1 {
                continue;
            }
            let b = (b0 + b1) / 2;
            let (mut best, mut at) = (f64::INFINITY, lo);
            for t in lo..=hi.min(b - 1) {
                let c = prev[t] + cost(t, b);
                if c < best {
                    (best, at) = (c, t);
                }
            }
            cur[b] = best;
            row[b] = at;
            stack.push((b0, b - 1, lo, at));
            stack.push((b + 1, b1, at, hi));
        }
        cur[0] = 0.0;
        prev = cur;
    }
    // Walk back from all `m` steps in `k` runs.
    let mut cuts = vec![m];
    let mut b = m;
    for j in (1..k).rev() {
        b = from[j][b];
        cuts.push(b);
    }
    cuts.push(0);
    cuts.reverse();
    let mut book: Vec<f32> = cuts
        .windows(2)
        .filter(|c| c[1] > c[0] && sw[edge[c[1]]] > sw[edge[c[0]]])
        .map(|c| ((sv[edge[c[1]]] - sv[edge[c[0]]]) / (sw[edge[c[1]]] - sw[edge[c[0]]]) + mean) as f32)
        .collect();
    book.dedup();
    let error = assign(values, &book)
        .iter()
        .zip(values.iter().zip(weight))
        .map(|(&j, (&x, &w))| w * (f64::from(x) - f64::from(book[usize::from(j)])).powi(2))
        .sum();
    (book, error)
}

/// Run boundaries the codebook search considers per centroid (see [`kmeans`]).
pub const BINS_PER: usize = 32;

/// Each value's nearest codebook entry (`codebook` ascending).
pub fn assign(values: &[f32], codebook: &[f32]) -> Vec<u8> {
    values
        .iter()
        .map(|&x| {
            let j = codebook.partition_point(|&c| c < x);
            let best = match (j.checked_sub(1), codebook.get(j)) {
                (Some(lo), Some(&hi)) if (hi - x) < (x - codebook[lo]) => j,
                (Some(lo), _) => lo,
                (None, _) => 0,
            };
            best as u8
        })
        .collect()
}

/// The squared norm of each output channel of `values`.
fn channel_energy(values: &[f32], channel: &dyn Fn(usize) -> usize) -> Vec<f64> {
    let mut energy: Vec<f64> = Vec::new();
    for (i, &x) in values.iter().enumerate() {
        let c = channel(i);
        if c >= energy.len() {
            energy.resize(c + 1, 0.0);
        }
        energy[c] += f64::from(x) * f64::from(x);
    }
    energy
}

/// Clusters the weights of every convolution, transposed convolution and dense layer of
/// `graph` (unfused, float) in place: each becomes its codebook lookup. Returns the codebooks
/// by tensor name (`NODE.weight`, as the graph file names them) and what each layer got.
pub fn cluster(graph: &mut Graph, centroids: Centroids) -> Result<(HashMap<String, Clustered>, Vec<Layer>)> {
    match centroids {
        Centroids::Fixed(k) if !(2..=256).contains(&k) => {
            return Err(Error::Input(format!("--centroids {k}: a codebook holds 2 to 256 values")))
        }
        Centroids::ByError(e) if !(e > 0.0 && e < 1.0) => {
            return Err(Error::Input(format!("--max-error {e}: the relative error bound is above 0 and below 1")))
        }
        _ => {}
    }
    if let Some(n) = graph.nodes.iter().find(|n| matches!(&n.op, Op::Conv(c) if c.quant.is_some())) {
        return Err(Error::Unsupported {
            node: n.name.clone(),
            op: n.op.name().into(),
            reason: "an int8 convolution: cluster the float model".into(),
        });
    }
    let mut books = HashMap::new();
    let mut layers = Vec::new();
    for node in &mut graph.nodes {
        let Some((raw, channel, scalable)) = layer_weights(&node.op) else { continue };
        let energy = channel_energy(raw, &*channel);
        let (channels, per) = (energy.len(), raw.len() / energy.len().max(1));
        // Per-channel RMS scales where the file can hold them: the k-means then sees normalised
        // values, each weighing 1/n of its channel. Otherwise raw values, each weighing its
        // channel's `1 / ‖w_c‖²` (a zero channel as the mean channel does).
        let (scales, values, weight): (Vec<f32>, Vec<f32>, Vec<f64>) = if scalable {
            let scales: Vec<f32> = energy.iter().map(|&e| (e / per.max(1) as f64).sqrt() as f32).collect();
            let values = raw
                .iter()
                .enumerate()
                .map(|(i, &x)| if scales[channel(i)] > 0.0 { x / scales[channel(i)] } else { 0.0 })
                .collect();
            (scales, values, vec![1.0 / per.max(1) as f64; raw.len()])
        } else {
            let live: Vec<f64> = energy.iter().copied().filter(|&e| e > 0.0).collect();
            let mean = if live.is_empty() { 1.0 } else { live.iter().sum::<f64>() / live.len() as f64 };
            let e = |i: usize| Some(energy[channel(i)]).filter(|&e| e > 0.0).unwrap_or(mean);
            (Vec::new(), raw.to_vec(), (0..raw.len()).map(|i| 1.0 / e(i)).collect())
        };
        let values = &values[..];
        let relative = |sq: f64| (sq / channels.max(1) as f64).sqrt();
        let len = values.len();
        let chosen = match centroids {
            Centroids::Fixed(k) if k >= len => {
                return Err(Error::Input(format!(
                    "--centroids {k}: node '{}' has only {len} weights (a codebook must be smaller)",
                    node.name
                )))
            }
            Centroids::Fixed(k) => {
                let (book, sq) = kmeans(values, &weight, k);
                Some((book, relative(sq)))
            }
            Centroids::ByError(bound) => {
                let mut last = None;
                for &k in SIZES.iter().filter(|&&k| k < len) {
                    let (book, sq) = kmeans(values, &weight, k);
                    let fits = relative(sq) <= bound;
                    last = Some((book, relative(sq)));
                    if fits {
                        break;
                    }
                }
                last
            }
        };
        let (book, error) = match chosen {
            Some((book, error)) => (Some(book), error),
            None => (None, f64::NAN),
        };
        layers.push(Layer { node: node.name.clone(), len, centroids: book.as_ref().map(Vec::len), error });
        let Some(codebook) = book else { continue };
        let indices = assign(values, &codebook);
        let clustered = Clustered { codebook, indices, scales };
        let looked_up = clustered.values();
        drop(channel);
        match &mut node.op {
            Op::Conv(c) => c.weights = looked_up,
            Op::ConvTranspose(c) => c.weights = looked_up,
            Op::Dense(d) => d.weights = looked_up,
            _ => unreachable!("layer_weights names only these"),
        }
        books.insert(format!("{}.weight", node.name), clustered);
    }
    Ok((books, layers))
}

/// Bias correction: for each clustered layer of `clustered` (from [`cluster`] of `original`),
/// adds to each output channel's bias the mean of what the clustering took from its output,
/// `Σ (W − Ŵ) · E[x]`, where `input_mean(node)` gives the mean of each channel of the layer's
/// input over real frames (of the float model), so that every channel's mean output is the
/// float model's again. Borders (zero padding) are counted as the interior. Transposed
/// convolutions are left as they are. Returns the layers corrected.
pub fn correct_biases(
    original: &Graph,
    clustered: &mut Graph,
    mut input_mean: impl FnMut(usize) -> Option<Vec<f64>>,
) -> Result<usize> {
    if original.nodes.len() != clustered.nodes.len() {
        return Err(Error::Input("the clustered graph is not the original's".into()));
    }
    let mut corrected = 0;
    for (i, (a, b)) in original.nodes.iter().zip(&mut clustered.nodes).enumerate() {
        let (w, bias, delta) = match (&a.op, &mut b.op) {
            (Op::Conv(x), Op::Conv(y)) if x.weights != y.weights => {
                let Some(mu) = input_mean(i).filter(|m| m.len() == x.cin) else { continue };
                let mut d = vec![0.0f64; x.cout];
                for (k, (p, q)) in x.weights.iter().zip(&y.weights).enumerate() {
                    let (ci, co) = x.weight_channels(k);
                    d[co] += f64::from(p - q) * mu[ci];
                }
                (&mut y.packed, &mut y.bias, d)
            }
            (Op::Dense(x), Op::Dense(y)) if x.weights != y.weights => {
                let Some(mu) = input_mean(i).filter(|m| m.len() == x.cin) else { continue };
                let mut d = vec![0.0f64; x.cout];
                for (k, (p, q)) in x.weights.iter().zip(&y.weights).enumerate() {
                    d[k % x.cout] += f64::from(p - q) * mu[k / x.cout];
                }
                (&mut y.packed, &mut y.bias, d)
            }
            _ => continue,
        };
        for (b, d) in bias.iter_mut().zip(delta) {
            *b = (f64::from(*b) + d) as f32;
        }
        w.clear();
        corrected += 1;
    }
    Ok(corrected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_distinct_values_cluster_exactly() {
        let v = [0.5f32, -1.0, 0.5, 2.0, -1.0, 2.0, 0.5];
        let (book, err) = kmeans(&v, &[1.0; 7], 4);
        assert_eq!(book, vec![-1.0, 0.5, 2.0]);
        assert_eq!(err, 0.0);
        let idx = assign(&v, &book);
        let back: Vec<f32> = idx.iter().map(|&i| book[i as usize]).collect();
        assert_eq!(back, v);
    }

    #[test]
    fn two_clumps_get_their_means() {
        let v = [0.0f32, 0.1, 0.2, 10.0, 10.2, 10.4];
        let (book, err) = kmeans(&v, &[1.0; 6], 2);
        assert!((book[0] - 0.1).abs() < 1e-6 && (book[1] - 10.2).abs() < 1e-6, "{book:?}");
        assert!((err - 0.1).abs() < 1e-5, "{err}");
    }

    /// On Gaussian values the codebook reaches the optimum quantizer's error: Max's 4-bit
    /// table (relative RMS 0.0975), and the Panter–Dite high-resolution value
    /// `√(√3·π/2 · 4^-b)` at 6 and 8 bits.
    #[test]
    fn gaussian_values_reach_the_optimal_quantizer() {
        let mut x = 12345u64;
        let mut uniform = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let v: Vec<f32> = (0..50_000)
            .map(|_| {
                let (a, b) = (uniform().max(1e-12), uniform());
                ((-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
            })
            .collect();
        let energy = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
        let panter_dite = |bits: i32| (3f64.sqrt() * std::f64::consts::PI / 2.0 * 4f64.powi(-bits)).sqrt();
        for (k, optimum) in [(16, 0.0975), (64, panter_dite(6)), (256, panter_dite(8))] {
            let (book, err) = kmeans(&v, &vec![1.0; v.len()], k);
            let rel = (err / energy).sqrt();
            assert_eq!(book.len(), k);
            assert!(rel < 1.05 * optimum, "k {k}: relative error {rel}, the optimum {optimum}");
        }
    }

    #[test]
    fn error_falls_as_centroids_grow_and_matches_the_lookup() {
        // A skewed spread of values, as folded convolution weights are.
        let v: Vec<f32> = (0..4000).map(|i| ((i * 7919 % 4000) as f32 / 4000.0 - 0.3).powi(3)).collect();
        let w = vec![1.0; v.len()];
        let mut last = f64::INFINITY;
        for k in SIZES {
            let (book, err) = kmeans(&v, &w, k);
            assert!(book.len() <= k && book.windows(2).all(|p| p[0] < p[1]));
            let idx = assign(&v, &book);
            let direct: f64 =
                v.iter().zip(&idx).map(|(&x, &i)| (f64::from(x) - f64::from(book[i as usize])).powi(2)).sum();
            assert!((direct - err).abs() <= 1e-6 * direct.max(1e-12), "k {k}: {direct} vs {err}");
            assert!(err < last, "k {k}: {err} not below {last}");
            last = err;
        }
    }
}
