//! A tiny seeded pseudo-random generator (SplitMix64).
//!
//! The core needs randomness only to spread election timeouts; taking the seed from
//! the caller keeps every run reproducible in the simulator.

/// SplitMix64: small, fast, and good enough to decorrelate election timeouts.
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `[0, n)`; `n` must be non-zero.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        // The modulo bias is irrelevant for election timeouts of a few dozen ticks.
        self.next_u64() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn below_stays_in_range_and_varies() {
        let mut r = Rng::new(7);
        let draws: Vec<u64> = (0..1000).map(|_| r.below(10)).collect();
        assert!(draws.iter().all(|&d| d < 10));
        for v in 0..10 {
            assert!(draws.contains(&v), "value {v} never drawn");
        }
    }
}
