//! The seeded random choices of a run (the consensus core's SplitMix64 with the
//! helpers the harness needs): a seed names the schedule of faults and
//! operations, though thread timing still varies from run to run.

use keel_raft::SplitMix64;

/// A seeded generator.
#[derive(Clone, Debug)]
pub struct Rng {
    seed: u64,
    inner: SplitMix64,
}

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng {
            seed,
            inner: SplitMix64::new(seed),
        }
    }

    /// An independent generator for stream `n` of this seed.
    pub fn fork(&self, n: u64) -> Rng {
        Rng::new(SplitMix64::new(self.seed ^ n.wrapping_mul(0xA076_1D64_78BD_642F)).next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform in `lo..=hi` (`lo` if `hi < lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.inner.below(hi - lo + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }

    /// A random element.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.range(0, items.len() as u64 - 1) as usize])
    }

    /// Shuffles in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.range(0, i as u64) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_in_range() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(a.fork(1).next_u64(), a.fork(2).next_u64());
        for _ in 0..1000 {
            let x = a.range(3, 5);
            assert!((3..=5).contains(&x));
        }
        assert!(!a.chance(0.0));
        assert!(a.chance(1.0));
        let mut v = vec![1, 2, 3, 4];
        a.shuffle(&mut v);
        v.sort();
        assert_eq!(v, [1, 2, 3, 4]);
    }
}
