//! The wavelet input: a one-level Haar transform of the input image, and the model's first
//! convolution rewritten to read the four half-resolution subbands instead of the image.
//!
//! A convolution of stride 2 reads input row `2y + ky − pad_top` for output row `y`. Written
//! as `2(y + q) + a` (the row parity `a` and the half-resolution offset `q`), it is a stride-1
//! convolution over the four polyphase images `x_ab[p][r] = x[2p + a][2r + b]`, with a kernel
//! of `⌈(k + 1) / 2⌉` taps. The Haar subbands are an orthonormal mix of those four images
//!
//! ```text
//! LL = (x00 + x01 + x10 + x11) / 2      LH = (x00 + x01 − x10 − x11) / 2
//! HL = (x00 − x01 + x10 − x11) / 2      HH = (x00 − x01 − x10 + x11) / 2
//! ```
//!
//! so the convolution over the subbands takes the weights `W'[band] = Σ_ab H[band][ab] ·
//! W[ab]` and computes the same values (to rounding). Both parts are ordinary nodes of the
//! IR: the transform is a fixed 2x2 stride-2 convolution, so every engine path runs the result.
//!
//! Keeping fewer bands drops their channels from both; [`fit_stem`] then refits the rewritten
//! convolution's weights on real frames (least squares against the original convolution's
//! output), which recovers part of what the dropped bands carried.

use framecache::graph::{Activation, Conv, Graph, Node, Op, Shape, Window};

use crate::lsq::Normal;
use crate::{Error, Result};

/// One Haar subband.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Band {
    /// The 2x2 block mean (times 2): a half-resolution image.
    Ll,
    /// Top rows minus bottom rows: horizontal edges.
    Lh,
    /// Left columns minus right columns: vertical edges.
    Hl,
    /// The diagonal detail.
    Hh,
}

impl Band {
    pub const ALL: [Band; 4] = [Band::Ll, Band::Lh, Band::Hl, Band::Hh];

    /// The band's coefficient of the polyphase image `x_ab` (row parity `a`, column parity `b`).
    pub fn coefficient(self, a: usize, b: usize) -> f32 {
        let (sa, sb) = (if a == 0 { 1.0 } else { -1.0 }, if b == 0 { 1.0 } else { -1.0 });
        0.5 * match self {
            Band::Ll => 1.0,
            Band::Lh => sa,
            Band::Hl => sb,
            Band::Hh => sa * sb,
        }
    }
}

impl std::str::FromStr for Band {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "LL" => Ok(Band::Ll),
            "LH" => Ok(Band::Lh),
            "HL" => Ok(Band::Hl),
            "HH" => Ok(Band::Hh),
            _ => Err(format!("'{s}' is not a Haar band (LL, LH, HL or HH)")),
        }
    }
}

/// Node names of the rewrite.
pub const HAAR_NODE: &str = "wavelet.haar";

/// The node the rewrite replaces: the only reader of the input, a float convolution of stride
/// 2 in both directions, dilation 1, one group, on an input of even height and width.
fn stem(graph: &Graph) -> Result<usize> {
    let bad = |node: &Node, reason: &str| Error::Unsupported {
        node: node.name.clone(),
        op: node.op.name().into(),
        reason: format!("the wavelet input rewrites the first convolution: {reason}"),
    };
    if graph.inputs() != 1 {
        return Err(Error::Input("the wavelet input needs a model with one input".into()));
    }
    let readers: Vec<usize> = (1..graph.nodes.len()).filter(|&i| graph.nodes[i].inputs.contains(&0)).collect();
    let &[i] = readers.as_slice() else {
        return Err(Error::Input(format!(
            "the input is read by {} nodes; the wavelet input rewrites one",
            readers.len()
        )));
    };
    let node = &graph.nodes[i];
    let Op::Conv(c) = &node.op else { return Err(bad(node, "it is not a convolution")) };
    let w = c.window;
    if c.quant.is_some() || c.residual.is_some() {
        return Err(bad(node, "it is int8 or fused (rewrite the float, unfused model)"));
    }
    if (w.sh, w.sw, w.dh, w.dw) != (2, 2, 1, 1) || c.groups != 1 {
        return Err(bad(node, "it needs stride 2, dilation 1 and one group"));
    }
    let s = graph.input_shape();
    if !s.h.is_multiple_of(2) || !s.w.is_multiple_of(2) {
        return Err(bad(node, &format!("the input is {}x{}; both sides must be even", s.w, s.h)));
    }
    Ok(i)
}

/// Along one axis: the polyphase offsets `q` of a kernel of `k` taps with `pad` before, as
/// `(q_min, taps)`, and each original tap's `(q − q_min, parity)`.
fn polyphase(k: usize, pad: usize) -> (isize, usize, Vec<(usize, usize)>) {
    let q = |t: usize| (t as isize - pad as isize).div_euclid(2);
    let (lo, hi) = (q(0), q(k - 1));
    let taps = (0..k).map(|t| ((q(t) - lo) as usize, (t as isize - pad as isize).rem_euclid(2) as usize)).collect();
    (lo, (hi - lo + 1) as usize, taps)
}

/// `graph` with its input transformed into the Haar subbands `bands` (in this order, each
/// band's channels together) and its first convolution rewritten to read them. With all four
/// bands it computes what `graph` does, to rounding.
pub fn rewrite(graph: &Graph, bands: &[Band]) -> Result<Graph> {
    if bands.is_empty() || (1..bands.len()).any(|i| bands[..i].contains(&bands[i])) {
        return Err(Error::Input(format!("bands {bands:?}: give each of LL, LH, HL, HH at most once, at least one")));
    }
    let i = stem(graph)?;
    let s = graph.input_shape();
    let Op::Conv(c) = &graph.nodes[i].op else { unreachable!("stem() checked it") };
    let (w, cin, cout) = (c.window, s.c, c.cout);
    let (qy0, ky2, rows) = polyphase(w.kh, w.pad[0]);
    let (qx0, kx2, cols) = polyphase(w.kw, w.pad[1]);
    let (h2, w2) = (s.h / 2, s.w / 2);
    let out = graph.nodes[i].shape;
    // Padding of the half-resolution convolution: before is −q_min; after makes the output size.
    let after = |n_out: usize, n: usize, before: isize, k: usize| -> Option<usize> {
        usize::try_from(n_out as isize - n as isize - before + k as isize - 1).ok()
    };
    let (pt, pl) = (usize::try_from(-qy0).ok(), usize::try_from(-qx0).ok());
    let (pb, pr) = (after(out.h, h2, -qy0, ky2), after(out.w, w2, -qx0, kx2));
    let (Some(pt), Some(pl), Some(pb), Some(pr)) = (pt, pl, pb, pr) else {
        return Err(Error::Unsupported {
            node: graph.nodes[i].name.clone(),
            op: "Conv".into(),
            reason: format!("its padding {:?} has no half-resolution equivalent", w.pad),
        });
    };
    let cb = cin * bands.len();
    // The subband convolution, `[ky][kx][band·cin + ci][co]`.
    let mut weights = vec![0.0f32; ky2 * kx2 * cb * cout];
    for (ky, &(qy, a)) in rows.iter().enumerate() {
        for (kx, &(qx, b)) in cols.iter().enumerate() {
            for (bi, band) in bands.iter().enumerate() {
                let h = band.coefficient(a, b);
                for ci in 0..cin {
                    let src = ((ky * w.kw + kx) * cin + ci) * cout;
                    let dst = ((qy * kx2 + qx) * cb + bi * cin + ci) * cout;
                    for co in 0..cout {
                        weights[dst + co] += h * c.weights[src + co];
                    }
                }
            }
        }
    }
    // The transform: 2x2 stride 2, `[a][b][ci][band·cin + ci]`.
    let mut haar = vec![0.0f32; 4 * cin * cb];
    for a in 0..2 {
        for b in 0..2 {
            for (bi, band) in bands.iter().enumerate() {
                for ci in 0..cin {
                    haar[((a * 2 + b) * cin + ci) * cb + bi * cin + ci] = band.coefficient(a, b);
                }
            }
        }
    }
    let haar = Node {
        name: HAAR_NODE.into(),
        op: Op::Conv(Conv {
            window: Window { kh: 2, kw: 2, sh: 2, sw: 2, dh: 1, dw: 1, pad: [0; 4] },
            groups: 1,
            cin,
            cout: cb,
            weights: haar,
            bias: vec![0.0; cb],
            activation: Activation::Identity,
            residual: None,
            quant: None,
            packed: Vec::new(),
        }),
        inputs: vec![0],
        shape: Shape::new(h2, w2, cb),
    };
    let mut g = graph.clone();
    // Insert the transform after the input: every later index moves by one.
    for n in &mut g.nodes {
        for j in &mut n.inputs {
            *j += usize::from(*j >= 1);
        }
    }
    for o in &mut g.outputs {
        o.node += 1;
    }
    for v in g.tensors.values_mut() {
        *v += usize::from(*v >= 1);
    }
    g.nodes.insert(1, haar);
    let node = &mut g.nodes[i + 1];
    node.inputs = vec![1];
    let Op::Conv(stem) = &mut node.op else { unreachable!() };
    stem.window = Window { kh: ky2, kw: kx2, sh: 1, sw: 1, dh: 1, dw: 1, pad: [pt, pl, pb, pr] };
    stem.cin = cb;
    stem.weights = weights;
    stem.packed.clear();
    for (k, n) in g.nodes.iter().enumerate() {
        framecache::graph::check_node(&g.nodes[..k], n).map_err(|reason| Error::Unsupported {
            node: n.name.clone(),
            op: n.op.name().into(),
            reason: format!("after the wavelet rewrite: {reason}"),
        })?;
    }
    Ok(g)
}

/// The Haar subbands of `x` (NHWC `[h][w][c]`, `h` and `w` even) at half resolution:
/// `[h/2][w/2][4·c]`, all four bands in [`Band::ALL`] order, each band's channels together.
pub fn subbands(x: &[f32], s: Shape) -> Vec<f32> {
    let (h2, w2, c) = (s.h / 2, s.w / 2, s.c);
    let mut out = vec![0.0; h2 * w2 * 4 * c];
    for p in 0..h2 {
        for r in 0..w2 {
            for (bi, band) in Band::ALL.iter().enumerate() {
                for ci in 0..c {
                    let v: f32 = (0..4)
                        .map(|ab| {
                            band.coefficient(ab / 2, ab % 2) * x[((2 * p + ab / 2) * s.w + 2 * r + ab % 2) * c + ci]
                        })
                        .sum();
                    out[((p * w2 + r) * 4 + bi) * c + ci] = v;
                }
            }
        }
    }
    out
}

/// Refits the subband convolution of `rewritten` (from [`rewrite`] of `original` with
/// `bands`) by least squares on real inputs (`inputs`: the model's input tensors, NHWC):
/// its weights and bias become those that best reproduce the original first convolution's
/// output (before its activation) from the kept bands alone. With every band kept, the
/// rewrite is already exact and this changes nothing but rounding. Returns the relative RMS
/// error of that output on `inputs` before and after the fit.
pub fn fit_stem(original: &Graph, rewritten: &mut Graph, bands: &[Band], inputs: &[Vec<f32>]) -> Result<(f64, f64)> {
    let i = stem(original)?;
    let full = rewrite(original, &Band::ALL)?;
    let s = original.input_shape();
    let (Op::Conv(all), Some(Op::Conv(kept))) = (&full.nodes[i + 1].op, rewritten.nodes.get(i + 1).map(|n| &n.op))
    else {
        return Err(Error::Input("the rewritten graph is not this model's wavelet rewrite".into()));
    };
    let (win, cout, cin) = (all.window, all.cout, s.c);
    if kept.window != win || kept.cin != cin * bands.len() || kept.cout != cout {
        return Err(Error::Input("the rewritten graph is not this model's wavelet rewrite with these bands".into()));
    }
    if inputs.is_empty() {
        return Err(Error::Input("no input to fit the first convolution on".into()));
    }
    let (h2, w2) = (s.h / 2, s.w / 2);
    let out = original.nodes[i].shape;
    // Rows: the kept bands' values under each tap; targets: the exact rewrite's output.
    let taps = win.kh * win.kw;
    let d = taps * bands.len() * cin;
    let band_at: Vec<usize> = bands.iter().map(|b| Band::ALL.iter().position(|x| x == b).unwrap_or(0)).collect();
    let mut normal = Normal::new(d, cout);
    let mut f_all = vec![0.0f32; taps * 4 * cin];
    let (mut f, mut t) = (vec![0.0f64; d], vec![0.0f64; cout]);
    for x in inputs {
        if x.len() != s.len() {
            return Err(Error::Input(format!("an input of {} values for a model input of {}", x.len(), s.len())));
        }
        let sb = subbands(x, s);
        for y in 0..out.h {
            for xo in 0..out.w {
                for ky in 0..win.kh {
                    for kx in 0..win.kw {
                        let (p, r) =
                            ((y + ky) as isize - win.pad[0] as isize, (xo + kx) as isize - win.pad[1] as isize);
                        let inside = p >= 0 && r >= 0 && (p as usize) < h2 && (r as usize) < w2;
                        let at = (ky * win.kw + kx) * 4 * cin;
                        for k in 0..4 * cin {
                            f_all[at + k] =
                                if inside { sb[((p as usize) * w2 + r as usize) * 4 * cin + k] } else { 0.0 };
                        }
                    }
                }
                for tap in 0..taps {
                    for (bi, &b) in band_at.iter().enumerate() {
                        for ci in 0..cin {
                            f[(tap * bands.len() + bi) * cin + ci] = f64::from(f_all[(tap * 4 + b) * cin + ci]);
                        }
                    }
                }
                for (o, v) in t.iter_mut().enumerate() {
                    *v = f64::from(all.bias[o])
                        + f_all
                            .iter()
                            .enumerate()
                            .map(|(k, &x)| f64::from(x) * f64::from(all.weights[k * cout + o]))
                            .sum::<f64>();
                }
                normal.add(&f, &t);
            }
        }
    }
    let Some(Op::Conv(kept)) = rewritten.nodes.get_mut(i + 1).map(|n| &mut n.op) else { unreachable!() };
    crate::lsq::refit(kept, &normal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_haar_bands_are_orthonormal() {
        for x in Band::ALL {
            for y in Band::ALL {
                let dot: f32 = (0..4).map(|ab| x.coefficient(ab / 2, ab % 2) * y.coefficient(ab / 2, ab % 2)).sum();
                assert_eq!(dot, if x == y { 1.0 } else { 0.0 }, "{x:?}·{y:?}");
            }
        }
    }

    #[test]
    fn polyphase_offsets_of_common_stems() {
        // 3x3, pad 1 (MobileNetV2): taps at offsets -1, 0, 0 of parities 1, 0, 1.
        assert_eq!(polyphase(3, 1), (-1, 2, vec![(0, 1), (1, 0), (1, 1)]));
        // 3x3, pad 0 before (TensorFlow SAME at stride 2 on an even side).
        assert_eq!(polyphase(3, 0), (0, 2, vec![(0, 0), (0, 1), (1, 0)]));
        // 2x2 stride 2, no pad: one tap.
        assert_eq!(polyphase(2, 0), (0, 1, vec![(0, 0), (0, 1)]));
    }
}
