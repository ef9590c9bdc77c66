//! Rectangle cover of a mask: disjoint rectangles whose union is exactly the set positions.
//!
//! Algorithm: split every row into runs of set positions, then extend a rectangle from the
//! row above when it has exactly the same column span. Masks propagated from square tiles
//! are blocky, so this yields few, tall rectangles, which keeps GEMM calls large.

use super::Mask;
use crate::graph::Shape;

/// A half-open rectangle of output positions: rows `y0..y1`, columns `x0..x1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rect {
    pub y0: usize,
    pub y1: usize,
    pub x0: usize,
    pub x1: usize,
}

impl Rect {
    pub fn full(s: Shape) -> Self {
        Self { y0: 0, y1: s.h, x0: 0, x1: s.w }
    }
    pub fn area(&self) -> usize {
        (self.y1 - self.y0) * (self.x1 - self.x0)
    }
    pub fn is_empty(&self) -> bool {
        self.y0 >= self.y1 || self.x0 >= self.x1
    }
}

/// Covers the set positions of `mask` with disjoint rectangles.
pub fn cover(mask: &Mask) -> Vec<Rect> {
    let mut done = Vec::new();
    let (mut open, mut next_open): (Vec<Rect>, Vec<Rect>) = (Vec::new(), Vec::new());
    for y in 0..mask.h {
        for (x0, x) in mask.runs(y) {
            match open.iter().position(|r| r.x0 == x0 && r.x1 == x) {
                Some(i) => {
                    let mut r = open.swap_remove(i);
                    r.y1 = y + 1;
                    next_open.push(r);
                }
                None => next_open.push(Rect { y0: y, y1: y + 1, x0, x1: x }),
            }
        }
        // `open` keeps the rectangles that did not continue; both buffers are reused.
        done.append(&mut open);
        std::mem::swap(&mut open, &mut next_open);
    }
    done.append(&mut open);
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn cover_is_exact_and_disjoint(h in 1usize..20, w in 1usize..20, seed in any::<u64>()) {
            let mut m = Mask::new(h, w);
            let mut s = seed;
            for y in 0..h { for x in 0..w {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                m.set(y, x, (s >> 40) % 3 == 0);
            }}
            let rects = cover(&m);
            let mut hit = vec![0u8; h * w];
            for r in &rects {
                prop_assert!(!r.is_empty());
                for y in r.y0..r.y1 { for x in r.x0..r.x1 { hit[y * w + x] += 1; } }
            }
            for y in 0..h { for x in 0..w {
                prop_assert_eq!(hit[y * w + x], u8::from(m.get(y, x)));
            }}
        }
    }

    #[test]
    fn blocky_mask_gives_one_rect_per_block() {
        let mut m = Mask::new(8, 8);
        m.set_rect(2, 6, 1, 4);
        assert_eq!(cover(&m), vec![Rect { y0: 2, y1: 6, x0: 1, x1: 4 }]);
    }
}
