//! The fuzz targets in CI, on the stable toolchain: every committed corpus input of every
//! target (`fuzz/corpus/<target>/`), then deterministic byte mutations of each (flips, edge
//! values, truncations, repeats). A panic fails the test; an abort or a crash fails the
//! binary. The coverage-guided runs themselves (`cargo +nightly fuzz run`) are offline; their
//! counts are in docs/robustness.md.

use framecache_tests::fuzz::TARGETS;

/// Mutations per corpus input. Inputs are run as they are, then mutated this many times each.
const MUTATIONS: usize = 64;

/// A small deterministic generator (xorshift), so that a failure names a reproducible case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len());
        match rng.below(6) {
            0 if !b.is_empty() => b[at] ^= 1 << rng.below(8),
            1 if !b.is_empty() => b[at] = [0, 0xff, 0x7f, 0x80][rng.below(4)],
            2 => b.truncate(at),
            3 if !b.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(b.len());
                let chunk = b[at..end].to_vec();
                b.splice(at..at, chunk);
            }
            4 if b.len() >= at + 8 => b[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes()[..]),
            _ => b.insert(at.min(b.len()), rng.next() as u8),
        }
    }
    b
}

#[test]
fn fuzz_corpora_and_their_mutations_are_handled() {
    let corpus = framecache_tests::project_root().join("fuzz/corpus");
    for (name, target) in TARGETS {
        let dir = corpus.join(name);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (the corpus is committed)", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "{}: empty corpus", dir.display());
        let mut runs = 0;
        for path in &inputs {
            let bytes = std::fs::read(path).unwrap();
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ bytes.len() as u64);
            let seed_cases = std::iter::once(bytes.clone()).chain((0..MUTATIONS).map(|_| mutate(&bytes, &mut rng)));
            for (k, case) in seed_cases.enumerate() {
                let outcome = std::panic::catch_unwind(|| target(&case));
                assert!(outcome.is_ok(), "{name}: {} mutation {k} panicked", path.display());
                runs += 1;
            }
        }
        eprintln!("{name}: {} corpus inputs, {runs} runs", inputs.len());
    }
}
