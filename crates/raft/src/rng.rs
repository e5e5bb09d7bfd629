//! A tiny seeded pseudo-random generator (SplitMix64).
//!
//! The core needs randomness only to spread election timeouts; taking the seed from
//! the caller keeps every run reproducible in the simulator. keel's other
//! deterministic components (the crash-simulating disk, the simulator's seed
//! expansion) use the same generator rather than copies of it.

/// SplitMix64 (Steele, Lea, Flood 2014): one word of state, full period, and a
/// stream wholly determined by its seed.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `[0, n)` (`n > 0`). The modulo bias is irrelevant for election
    /// timeouts of a few dozen ticks and for choosing simulated faults.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0, "below(0) has no valid result");
        self.next_u64() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn below_stays_in_range_and_varies() {
        let mut r = SplitMix64::new(7);
        let draws: Vec<u64> = (0..1000).map(|_| r.below(10)).collect();
        assert!(draws.iter().all(|&d| d < 10));
        for v in 0..10 {
            assert!(draws.contains(&v), "value {v} never drawn");
        }
    }
}
