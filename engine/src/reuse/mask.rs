//! [`Mask`]: which output positions of a node must be recomputed, one bit per position.

/// A boolean map over a node's output positions (`true` = must be recomputed), stored as a
/// bitset: each row takes whole 64-bit words, and the bits past the row's end are always 0,
/// so that word operations (union, count, compare) need no masking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    pub h: usize,
    pub w: usize,
    /// Words per row.
    stride: usize,
    bits: Vec<u64>,
}

impl Mask {
    pub fn new(h: usize, w: usize) -> Self {
        let stride = w.div_ceil(64);
        Self { h, w, stride, bits: vec![0; h * stride] }
    }
    pub fn full(h: usize, w: usize) -> Self {
        let mut m = Self::new(h, w);
        m.fill(true);
        m
    }
    pub fn get(&self, y: usize, x: usize) -> bool {
        debug_assert!(x < self.w);
        self.bits[y * self.stride + x / 64] >> (x % 64) & 1 == 1
    }
    pub fn set(&mut self, y: usize, x: usize, v: bool) {
        assert!(x < self.w, "column {x} outside a mask {} wide", self.w);
        let word = &mut self.bits[y * self.stride + x / 64];
        let bit = 1u64 << (x % 64);
        if v {
            *word |= bit;
        } else {
            *word &= !bit;
        }
    }
    pub fn fill(&mut self, v: bool) {
        if v {
            for y in 0..self.h {
                self.set_run(y, 0, self.w);
            }
        } else {
            self.bits.fill(0);
        }
    }
    pub fn count(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }
    pub fn any(&self) -> bool {
        self.bits.iter().any(|&w| w != 0)
    }
    /// Whether row `y` has any position set.
    pub fn row_any(&self, y: usize) -> bool {
        self.words(y).iter().any(|&w| w != 0)
    }
    /// Fraction of positions set.
    pub fn fraction(&self) -> f64 {
        if self.h * self.w == 0 {
            0.0
        } else {
            self.count() as f64 / (self.h * self.w) as f64
        }
    }
    /// Adds every position set in `other` (same size).
    pub fn union_with(&mut self, other: &Mask) {
        assert_eq!((self.h, self.w), (other.h, other.w), "masks of different sizes");
        for (a, &b) in self.bits.iter_mut().zip(&other.bits) {
            *a |= b;
        }
    }
    /// Clears every position set in `other` (same size).
    pub fn subtract(&mut self, other: &Mask) {
        assert_eq!((self.h, self.w), (other.h, other.w), "masks of different sizes");
        for (a, &b) in self.bits.iter_mut().zip(&other.bits) {
            *a &= !b;
        }
    }
    /// Sets every position of the rectangle `y0..y1, x0..x1` (clipped).
    pub fn set_rect(&mut self, y0: usize, y1: usize, x0: usize, x1: usize) {
        for y in y0..y1.min(self.h) {
            self.set_run(y, x0, x1);
        }
    }
    /// Sets columns `x0..x1` (clipped) of row `y`.
    pub fn set_run(&mut self, y: usize, x0: usize, x1: usize) {
        let x1 = x1.min(self.w);
        if x0 >= x1 {
            return;
        }
        set_bits(&mut self.bits[y * self.stride..(y + 1) * self.stride], x0, x1);
    }
    /// The words of row `y` (bit `x % 64` of word `x / 64` is column `x`).
    pub(crate) fn words(&self, y: usize) -> &[u64] {
        &self.bits[y * self.stride..(y + 1) * self.stride]
    }
    /// ORs `words` (a row's worth, bits past the row's end 0) into row `y`.
    pub(crate) fn or_row(&mut self, y: usize, words: &[u64]) {
        for (a, &b) in self.bits[y * self.stride..(y + 1) * self.stride].iter_mut().zip(words) {
            *a |= b;
        }
    }
    /// The runs of set positions of row `y`, left to right, as half-open column ranges.
    pub fn runs(&self, y: usize) -> Runs<'_> {
        Runs { words: self.words(y), x: 0 }
    }
}

/// Sets bits `x0..x1` of a row of words.
pub(crate) fn set_bits(words: &mut [u64], x0: usize, x1: usize) {
    let (first, last) = (x0 / 64, (x1 - 1) / 64);
    let lo = u64::MAX << (x0 % 64);
    let hi = u64::MAX >> (63 - (x1 - 1) % 64);
    if first == last {
        words[first] |= lo & hi;
    } else {
        words[first] |= lo;
        words[first + 1..last].fill(u64::MAX);
        words[last] |= hi;
    }
}

/// Iterator over the runs of set bits of one row ([`Mask::runs`]).
pub struct Runs<'a> {
    words: &'a [u64],
    x: usize,
}

impl Runs<'_> {
    /// The first column at or after `self.x` whose bit equals `one`, or the end of the words.
    fn seek(&self, one: bool) -> usize {
        let mut i = self.x / 64;
        if i >= self.words.len() {
            return self.words.len() * 64;
        }
        let flip = |w: u64| if one { w } else { !w };
        let mut word = flip(self.words[i]) & (u64::MAX << (self.x % 64));
        loop {
            if word != 0 {
                return i * 64 + word.trailing_zeros() as usize;
            }
            i += 1;
            if i == self.words.len() {
                return i * 64;
            }
            word = flip(self.words[i]);
        }
    }
}

impl Iterator for Runs<'_> {
    type Item = (usize, usize);
    fn next(&mut self) -> Option<(usize, usize)> {
        self.x = self.seek(true);
        if self.x >= self.words.len() * 64 {
            return None;
        }
        let x0 = self.x;
        // Bits past the row's end are 0, so a run ends at the row's end at the latest.
        self.x = self.seek(false);
        Some((x0, self.x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Runs, counts and rectangles against a plain boolean grid, across word boundaries.
        #[test]
        fn bitset_matches_a_bool_grid(h in 1usize..5, w in 1usize..200, rects in proptest::collection::vec((0usize..5, 0usize..5, 0usize..200, 0usize..200), 0..6)) {
            let mut m = Mask::new(h, w);
            let mut want = vec![false; h * w];
            for (a, b, c, d) in rects {
                let (y0, y1, x0, x1) = (a.min(b), a.max(b) + 1, c.min(d), c.max(d) + 1);
                m.set_rect(y0, y1, x0, x1);
                for y in y0..y1.min(h) { for x in x0..x1.min(w) { want[y * w + x] = true; } }
            }
            prop_assert_eq!(m.count(), want.iter().filter(|&&b| b).count());
            prop_assert_eq!(m.any(), want.iter().any(|&b| b));
            for y in 0..h {
                let mut got = vec![false; w];
                for (x0, x1) in m.runs(y) {
                    prop_assert!(x0 < x1 && x1 <= w);
                    got[x0..x1].iter_mut().for_each(|b| *b = true);
                }
                prop_assert_eq!(&got[..], &want[y * w..(y + 1) * w]);
                for x in 0..w { prop_assert_eq!(m.get(y, x), want[y * w + x]); }
            }
            let mut full = Mask::new(h, w);
            full.fill(true);
            prop_assert_eq!(full.count(), h * w);
            full.union_with(&m);
            prop_assert_eq!(full, Mask::full(h, w));
        }
    }
}
