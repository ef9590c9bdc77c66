//! Linear least squares by the normal equations: the closed-form refits of one layer
//! ([`crate::wavelet::fit_stem`], [`crate::prune::refit`]).

use framecache::graph::Conv;

use crate::{Error, Result};

/// Refits `conv`'s weights and bias (its weights `d x m`, as a pointwise convolution's or any
/// convolution's im2col matrix, one group) to the rows added to `normal`. Returns the relative
/// RMS error before and after.
pub fn refit(conv: &mut Conv, normal: &Normal) -> Result<(f64, f64)> {
    let current: Vec<f64> = conv.weights.iter().chain(&conv.bias).map(|&v| f64::from(v)).collect();
    if current.len() != (normal.d + 1) * normal.m || conv.groups != 1 {
        return Err(Error::Input("the convolution's weights are not the fit's shape".into()));
    }
    let before = normal.error(&current);
    let w = normal.solve()?;
    let after = normal.error(&w);
    let split = normal.d * normal.m;
    for (i, v) in w.into_iter().enumerate() {
        if i < split {
            conv.weights[i] = v as f32;
        } else {
            conv.bias[i - split] = v as f32;
        }
    }
    conv.packed.clear();
    Ok((before, after))
}

/// The normal equations of `t ≈ [x, 1] · W` over rows added one at a time: `x` has `d` values,
/// `t` has `m`, and `W` is `(d + 1) x m` (its last row the bias).
pub struct Normal {
    d: usize,
    m: usize,
    /// `[x, 1]ᵀ [x, 1]`, `(d + 1)²`.
    ata: Vec<f64>,
    /// `[x, 1]ᵀ t`, `(d + 1) x m`.
    atb: Vec<f64>,
    /// `Σ ‖t‖²`.
    tt: f64,
}

impl Normal {
    pub fn new(d: usize, m: usize) -> Self {
        Self { d, m, ata: vec![0.0; (d + 1) * (d + 1)], atb: vec![0.0; (d + 1) * m], tt: 0.0 }
    }

    /// Adds one row.
    pub fn add(&mut self, x: &[f64], t: &[f64]) {
        let n = self.d + 1;
        debug_assert!(x.len() == self.d && t.len() == self.m);
        let at = |a: usize| if a < self.d { x[a] } else { 1.0 };
        for a in 0..n {
            let xa = at(a);
            if xa == 0.0 {
                continue;
            }
            for b in 0..n {
                self.ata[a * n + b] += xa * at(b);
            }
            for (o, &v) in t.iter().enumerate() {
                self.atb[a * self.m + o] += xa * v;
            }
        }
        self.tt += t.iter().map(|v| v * v).sum::<f64>();
    }

    /// The relative RMS error `‖t − [x, 1] W‖ / ‖t‖` of `w` over the rows added.
    pub fn error(&self, w: &[f64]) -> f64 {
        let (n, m) = (self.d + 1, self.m);
        let mut e = self.tt;
        for o in 0..m {
            for a in 0..n {
                e -= 2.0 * w[a * m + o] * self.atb[a * m + o];
                e += w[a * m + o] * (0..n).map(|b| self.ata[a * n + b] * w[b * m + o]).sum::<f64>();
            }
        }
        (e.max(0.0) / self.tt.max(f64::MIN_POSITIVE)).sqrt()
    }

    /// The least-squares `W`, with a ridge of 1e-6 of the mean diagonal (so that a channel that
    /// never varies does not make the system singular).
    pub fn solve(&self) -> Result<Vec<f64>> {
        let (n, m) = (self.d + 1, self.m);
        if self.tt == 0.0 && self.ata[n * n - 1] == 0.0 {
            return Err(Error::Input("no rows to fit on".into()));
        }
        let ridge = 1e-6 * (0..n).map(|a| self.ata[a * n + a]).sum::<f64>() / n as f64;
        let mut a = self.ata.clone();
        for i in 0..n {
            a[i * n + i] += ridge;
        }
        // Cholesky: a = L Lᵀ.
        let mut l = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let s = a[i * n + j] - (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum::<f64>();
                if i == j {
                    if s <= 0.0 {
                        return Err(Error::Input("the rows do not determine the fit".into()));
                    }
                    l[i * n + i] = s.sqrt();
                } else {
                    l[i * n + j] = s / l[j * n + j];
                }
            }
        }
        let mut w = vec![0.0; n * m];
        for o in 0..m {
            let mut y = vec![0.0; n];
            for i in 0..n {
                y[i] = (self.atb[i * m + o] - (0..i).map(|k| l[i * n + k] * y[k]).sum::<f64>()) / l[i * n + i];
            }
            for i in (0..n).rev() {
                let x = (y[i] - (i + 1..n).map(|k| l[k * n + i] * w[k * m + o]).sum::<f64>()) / l[i * n + i];
                w[i * m + o] = x;
            }
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_an_exact_linear_map_and_reports_its_error() {
        // t = [2x0 − x1 + 3, x1 + 0.5] on a grid of points.
        let mut n = Normal::new(2, 2);
        for i in 0..20 {
            let x = [f64::from(i % 5), f64::from(i / 5) * 0.7];
            n.add(&x, &[2.0 * x[0] - x[1] + 3.0, x[1] + 0.5]);
        }
        let w = n.solve().unwrap();
        let want = [2.0, 0.0, -1.0, 1.0, 3.0, 0.5];
        for (a, b) in w.iter().zip(want) {
            assert!((a - b).abs() < 1e-4, "{w:?}");
        }
        assert!(n.error(&w) < 1e-5);
        assert!((n.error(&[0.0; 6]) - 1.0).abs() < 1e-12);
    }
}
