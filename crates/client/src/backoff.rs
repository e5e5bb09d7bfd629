//! Exponential backoff with jitter between retries.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

/// The delays of one call's retries: the nominal delay starts at `initial` and doubles
/// after each use up to `max`; each delay actually returned is drawn uniformly from
/// `[nominal / 2, nominal]` ("equal jitter"), so that clients that failed together do
/// not retry together, while every delay stays at least half the nominal one.
#[derive(Debug)]
pub(crate) struct Backoff {
    nominal: Duration,
    max: Duration,
    rng: u64,
}

impl Backoff {
    /// A backoff seeded from the process's random hasher keys: good enough for
    /// spreading retries, and no dependency on an RNG crate.
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        let seed = RandomState::new().hash_one(0u64);
        Backoff::with_seed(initial, max, seed)
    }

    /// A backoff with a fixed seed, for tests.
    pub(crate) fn with_seed(initial: Duration, max: Duration, seed: u64) -> Self {
        Backoff {
            nominal: initial.min(max),
            max,
            // xorshift must not start at zero.
            rng: seed | 1,
        }
    }

    /// The next delay to wait before retrying.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let nominal = self.nominal;
        self.nominal = (self.nominal * 2).min(self.max);
        let half = nominal / 2;
        let span = u64::try_from((nominal - half).as_nanos()).unwrap_or(u64::MAX);
        let jitter = if span == 0 {
            0
        } else {
            self.next_random() % (span + 1)
        };
        half + Duration::from_nanos(jitter)
    }

    /// xorshift64: tiny, fast, and plenty for jitter.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_and_stays_within_jitter_bounds() {
        let initial = Duration::from_millis(10);
        let max = Duration::from_millis(100);
        for seed in 0..50 {
            let mut b = Backoff::with_seed(initial, max, seed);
            let mut nominal = initial;
            for _ in 0..10 {
                let d = b.next_delay();
                assert!(
                    d >= nominal / 2 && d <= nominal,
                    "{d:?} vs nominal {nominal:?}"
                );
                nominal = (nominal * 2).min(max);
            }
        }
    }

    #[test]
    fn jitter_varies() {
        let mut b = Backoff::with_seed(Duration::from_secs(1), Duration::from_secs(1), 42);
        let delays: std::collections::HashSet<_> = (0..20).map(|_| b.next_delay()).collect();
        assert!(delays.len() > 10, "delays barely vary: {delays:?}");
    }
}
