//! Naive reference implementations: one straightforward loop nest per op, computing the whole
//! output with no rectangles, no GEMM and no SIMD. The fast kernels are tested against these.

use crate::graph::{BinaryKind, Conv, Graph, Node, Op, PoolKind, Shape};

fn at(s: Shape, y: usize, x: usize, c: usize) -> usize {
    (y * s.w + x) * s.c + c
}

/// Evaluates `node` on its inputs (`bufs[i]` is the buffer of `node.inputs[i]`).
pub fn eval(node: &Node, graph: &Graph, bufs: &[&[f32]]) -> Vec<f32> {
    let shapes: Vec<Shape> = node.inputs.iter().map(|&i| graph.nodes[i].shape).collect();
    let os = node.shape;
    let mut out = vec![0.0f32; os.len()];
    let act = node.op.activation();
    match &node.op {
        Op::Input => {}
        Op::Conv(conv) => out = conv_ref(conv, shapes[0], os, bufs[0]),
        Op::Bottleneck(b) => {
            let (is, e) = (shapes[0], b.expanded());
            let es = Shape::new(is.h, is.w, e);
            let expanded = b.expand.as_ref().map(|ex| conv_ref(ex, is, es, bufs[0]));
            let d = Shape::new(os.h, os.w, e);
            let dw = conv_ref(&b.depthwise, es, d, expanded.as_deref().unwrap_or(bufs[0]));
            out = conv_ref(&b.project, d, os, &dw);
        }
        Op::ConvTranspose(ct) => {
            // Scatter formulation: each input pixel adds its kernel footprint to the output.
            let (is, w) = (shapes[0], &ct.window);
            let mut acc = vec![0.0f32; os.len()];
            for iy in 0..is.h {
                for ix in 0..is.w {
                    for ky in 0..w.kh {
                        for kx in 0..w.kw {
                            let oy = (iy * w.sh + ky * w.dh) as isize - w.pad[0] as isize;
                            let ox = (ix * w.sw + kx * w.dw) as isize - w.pad[1] as isize;
                            if oy < 0 || ox < 0 || oy >= os.h as isize || ox >= os.w as isize {
                                continue;
                            }
                            for ci in 0..ct.cin {
                                for co in 0..ct.cout {
                                    acc[at(os, oy as usize, ox as usize, co)] += bufs[0][at(is, iy, ix, ci)]
                                        * ct.weights[((ky * w.kw + kx) * ct.cin + ci) * ct.cout + co];
                                }
                            }
                        }
                    }
                }
            }
            for (i, o) in out.iter_mut().enumerate() {
                *o = act.apply(acc[i] + ct.bias[i % os.c]);
            }
        }
        Op::Pool { .. } if node.averages_whole_input(shapes[0]) => whole_mean(bufs[0], shapes[0], &mut out),
        Op::Pool { kind, window: w } => {
            let is = shapes[0];
            for oy in 0..os.h {
                for ox in 0..os.w {
                    for c in 0..os.c {
                        let (mut m, mut s, mut n) = (f32::NEG_INFINITY, 0.0f32, 0usize);
                        for ky in 0..w.kh {
                            for kx in 0..w.kw {
                                let iy = (oy * w.sh + ky * w.dh) as isize - w.pad[0] as isize;
                                let ix = (ox * w.sw + kx * w.dw) as isize - w.pad[1] as isize;
                                if iy >= 0 && ix >= 0 && iy < is.h as isize && ix < is.w as isize {
                                    let v = bufs[0][at(is, iy as usize, ix as usize, c)];
                                    m = m.max(v);
                                    s += v;
                                    n += 1;
                                } else if iy < (is.h + w.pad[2]) as isize
                                    && ix < (is.w + w.pad[3]) as isize
                                    && matches!(kind, PoolKind::Avg { count_include_pad: true })
                                {
                                    n += 1;
                                }
                            }
                        }
                        out[at(os, oy, ox, c)] = match kind {
                            PoolKind::Max => m,
                            PoolKind::Avg { .. } => s / n.max(1) as f32,
                        };
                    }
                }
            }
        }
        Op::GlobalAvgPool => whole_mean(bufs[0], shapes[0], &mut out),
        Op::Resize { mode, coord } => {
            let is = shapes[0];
            let src = |o: usize, n_in: usize, n_out: usize| -> (usize, usize, f32) {
                let x = crate::graph::geometry_source(*coord, o, n_in, n_out);
                match mode {
                    crate::graph::ResizeMode::Linear => {
                        let x = x.clamp(0.0, n_in as f32 - 1.0);
                        let i0 = x.floor() as usize;
                        (i0, (i0 + 1).min(n_in - 1), x - i0 as f32)
                    }
                    crate::graph::ResizeMode::Nearest { floor } => {
                        let i = if *floor { x.floor() } else { (x - 0.5).ceil() };
                        let i = i.clamp(0.0, n_in as f32 - 1.0) as usize;
                        (i, i, 0.0)
                    }
                }
            };
            for oy in 0..os.h {
                let (y0, y1, fy) = src(oy, is.h, os.h);
                for ox in 0..os.w {
                    let (x0, x1, fx) = src(ox, is.w, os.w);
                    for c in 0..os.c {
                        let g = |y, x| bufs[0][at(is, y, x, c)];
                        let v = (1.0 - fy) * ((1.0 - fx) * g(y0, x0) + fx * g(y0, x1))
                            + fy * ((1.0 - fx) * g(y1, x0) + fx * g(y1, x1));
                        out[at(os, oy, ox, c)] = v;
                    }
                }
            }
        }
        Op::Unary(a) => {
            for (o, &i) in out.iter_mut().zip(bufs[0]) {
                *o = a.apply(i);
            }
        }
        Op::ChannelAffine { scale, bias } => {
            for (i, o) in out.iter_mut().enumerate() {
                let c = i % os.c;
                *o = bufs[0][i] * scale[c] + bias[c];
            }
        }
        Op::PRelu { slope } => {
            for (i, o) in out.iter_mut().enumerate() {
                let x = bufs[0][i];
                *o = if x >= 0.0 { x } else { x * slope[i % os.c] };
            }
        }
        Op::Softmax => {
            for (o, x) in out.chunks_exact_mut(os.c).zip(bufs[0].chunks_exact(os.c)) {
                let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let mut sum = 0.0;
                for (o, &v) in o.iter_mut().zip(x) {
                    *o = (v - max).exp();
                    sum += *o;
                }
                o.iter_mut().for_each(|o| *o /= sum);
            }
        }
        Op::Binary { kind, activation, .. } => {
            let get = |k: usize, y: usize, x: usize, c: usize| {
                let s = shapes[k];
                bufs[k][at(s, y.min(s.h - 1), x.min(s.w - 1), c.min(s.c - 1))]
            };
            for y in 0..os.h {
                for x in 0..os.w {
                    for c in 0..os.c {
                        let (a, b) = (get(0, y, x, c), get(1, y, x, c));
                        out[at(os, y, x, c)] = activation.apply(match kind {
                            BinaryKind::Add => a + b,
                            BinaryKind::Mul => a * b,
                        });
                    }
                }
            }
        }
        Op::Concat => {
            for y in 0..os.h {
                for x in 0..os.w {
                    let mut off = 0;
                    for (k, s) in shapes.iter().enumerate() {
                        for c in 0..s.c {
                            out[at(os, y, x, off + c)] = bufs[k][at(*s, y, x, c)];
                        }
                        off += s.c;
                    }
                }
            }
        }
        Op::PadChannels { before, .. } => {
            let s = shapes[0];
            for y in 0..os.h {
                for x in 0..os.w {
                    for c in 0..s.c {
                        out[at(os, y, x, before + c)] = bufs[0][at(s, y, x, c)];
                    }
                }
            }
        }
        Op::Permute { perm } => {
            // Scatter each source value to its row-major place in the permuted dims.
            let s = shapes[0];
            let dims = [1, s.c, s.h, s.w];
            let pd = perm.map(|p| dims[p]);
            for h in 0..s.h {
                for w in 0..s.w {
                    for c in 0..s.c {
                        let src = [0, c, h, w];
                        let o = perm.map(|p| src[p]);
                        out[((o[0] * pd[1] + o[1]) * pd[2] + o[2]) * pd[3] + o[3]] = bufs[0][at(s, h, w, c)];
                    }
                }
            }
        }
        Op::FlatConcat => {
            let mut i = 0;
            for b in bufs {
                for &v in b.iter() {
                    out[i] = v;
                    i += 1;
                }
            }
        }
        Op::Dense(d) => {
            for n in 0..d.cout {
                let s: f32 = (0..d.cin).map(|k| bufs[0][k] * d.weights[k * d.cout + n]).sum();
                out[n] = act.apply(s + d.bias[n]);
            }
        }
    }
    // A fused residual add: the second input, then the last activation.
    if node.op.residual().is_some() {
        for (o, r) in out.iter_mut().zip(bufs[bufs.len() - 1]) {
            *o = act.apply(*o + r);
        }
    }
    out
}

/// Calls `f(x, i)` for every input value that output `(oy, ox, co)` of `conv` reads, in
/// kernel order (padding skipped): `x` from `src`, an `is` map, and `i` the index of its weight
/// in `conv.weights` (the same layout as an int8 form's weights).
fn taps(conv: &Conv, is: Shape, src: &[f32], (oy, ox, co): (usize, usize, usize), mut f: impl FnMut(f32, usize)) {
    let w = &conv.window;
    let (cin_g, cout_g) = (conv.cin / conv.groups, conv.cout / conv.groups);
    let g = co / cout_g;
    for ky in 0..w.kh {
        for kx in 0..w.kw {
            let iy = (oy * w.sh + ky * w.dh) as isize - w.pad[0] as isize;
            let ix = (ox * w.sw + kx * w.dw) as isize - w.pad[1] as isize;
            if iy < 0 || ix < 0 || iy >= is.h as isize || ix >= is.w as isize {
                continue;
            }
            for ci in 0..cin_g {
                let i = if conv.is_depthwise() {
                    (ky * w.kw + kx) * conv.cout + co
                } else {
                    (((g * w.kh + ky) * w.kw + kx) * cin_g + ci) * cout_g + co % cout_g
                };
                f(src[at(is, iy as usize, ix as usize, g * cin_g + ci)], i);
            }
        }
    }
}

/// A convolution (its own activation applied) of an `is` input into an `os` output.
fn conv_ref(conv: &Conv, is: Shape, os: Shape, src: &[f32]) -> Vec<f32> {
    if let Some(q) = conv.quant.as_ref().filter(|_| crate::quant::takes_int8(conv)) {
        return int8_conv(conv, q, is, os, src);
    }
    let mut out = vec![0.0f32; os.len()];
    for oy in 0..os.h {
        for ox in 0..os.w {
            for co in 0..conv.cout {
                let mut acc = conv.bias[co];
                taps(conv, is, src, (oy, ox, co), |x, i| acc += x * conv.weights[i]);
                out[at(os, oy, ox, co)] = conv.activation.apply(acc);
            }
        }
    }
    out
}

/// An int8 convolution ([`crate::graph::ConvQuant`]): each input value quantized, `i32` sums of
/// integer products, then scaled, biased and activated in `f32`.
pub fn int8_conv(conv: &Conv, q: &crate::graph::ConvQuant, is: Shape, os: Shape, src: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; os.len()];
    let (inv, lo, hi) = (1.0 / q.input_scale, -f32::from(q.input_zero), 255.0 - f32::from(q.input_zero));
    for oy in 0..os.h {
        for ox in 0..os.w {
            for co in 0..conv.cout {
                let mut acc = 0i32;
                taps(conv, is, src, (oy, ox, co), |x, i| {
                    acc += i32::from(super::int8::quantize(x, inv, lo, hi)) * i32::from(q.weights[i]);
                });
                let y = acc as f32 * (q.input_scale * q.weight_scale[co]) + conv.bias[co];
                out[at(os, oy, ox, co)] = conv.activation.apply(y);
            }
        }
    }
    out
}

/// The per-channel mean of the whole map `x` into `out`, in the fast kernels' order
/// ([`super::MEAN_BLOCK_ROWS`] rows per partial sum, the partial sums added in row order): the
/// bits of a long sum depend on its order, which pixels it sums does not.
fn whole_mean(x: &[f32], shape: Shape, out: &mut [f32]) {
    let row = shape.w * shape.c;
    for (c, o) in out.iter_mut().enumerate().take(shape.c) {
        let mut total = 0.0f32;
        for block in x.chunks(super::MEAN_BLOCK_ROWS * row) {
            total += block.iter().skip(c).step_by(shape.c).fold(0.0f32, |s, &v| s + v);
        }
        *o = total * (1.0 / shape.pixels().max(1) as f32);
    }
}
