//! [`Mask`]: which output positions of a node must be recomputed.

/// A boolean map over a node's output positions: `true` = must be recomputed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    pub h: usize,
    pub w: usize,
    bits: Vec<bool>,
}

impl Mask {
    pub fn new(h: usize, w: usize) -> Self {
        Self { h, w, bits: vec![false; h * w] }
    }
    pub fn full(h: usize, w: usize) -> Self {
        Self { h, w, bits: vec![true; h * w] }
    }
    pub fn get(&self, y: usize, x: usize) -> bool {
        self.bits[y * self.w + x]
    }
    pub fn set(&mut self, y: usize, x: usize, v: bool) {
        self.bits[y * self.w + x] = v;
    }
    pub fn fill(&mut self, v: bool) {
        self.bits.fill(v);
    }
    pub fn row(&self, y: usize) -> &[bool] {
        &self.bits[y * self.w..(y + 1) * self.w]
    }
    pub fn count(&self) -> usize {
        self.bits.iter().filter(|&&b| b).count()
    }
    pub fn any(&self) -> bool {
        self.bits.iter().any(|&b| b)
    }
    /// Fraction of positions set.
    pub fn fraction(&self) -> f64 {
        if self.bits.is_empty() {
            0.0
        } else {
            self.count() as f64 / self.bits.len() as f64
        }
    }
    /// Adds every position set in `other` (same size).
    pub fn union_with(&mut self, other: &Mask) {
        debug_assert_eq!((self.h, self.w), (other.h, other.w));
        for (a, &b) in self.bits.iter_mut().zip(&other.bits) {
            *a |= b;
        }
    }
    /// Sets every position of the rectangle `y0..y1, x0..x1` (clipped).
    pub fn set_rect(&mut self, y0: usize, y1: usize, x0: usize, x1: usize) {
        for y in y0..y1.min(self.h) {
            self.bits[y * self.w + x0.min(self.w)..y * self.w + x1.min(self.w)].fill(true);
        }
    }
}
