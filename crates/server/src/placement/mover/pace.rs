//! Pacing a slot copy: at most so many bytes a second go from the source into
//! the target's log, so that copying a large slot does not take the CPU and
//! disk its groups' clients need (`--slot-copy-bytes-per-sec`; BENCHMARKS.md,
//! "Moving a slot"). The final delta after the fence is never paced: writes to
//! the slot wait for it.

use std::time::{Duration, Instant};

use keel_storage::command::IngestPut;

/// Keeps a copy at or below its rate, averaged from its first byte.
#[derive(Debug)]
pub(crate) struct Pacer {
    /// Bytes a second; `None` copies as fast as it can.
    rate: Option<u64>,
    started: Instant,
    bytes: u64,
}

impl Pacer {
    /// A pacer starting now.
    pub(crate) fn new(rate: Option<u64>) -> Self {
        Pacer {
            rate: rate.filter(|&r| r > 0),
            started: Instant::now(),
            bytes: 0,
        }
    }

    /// How long to wait, `now`, before copying more after `bytes` more.
    fn delay(&mut self, bytes: u64, now: Instant) -> Duration {
        self.bytes = self.bytes.saturating_add(bytes);
        let Some(rate) = self.rate else {
            return Duration::ZERO;
        };
        let due = self.started + Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        due.saturating_duration_since(now)
    }

    /// Counts `puts` as copied and waits until the rate allows more.
    pub(crate) async fn after(&mut self, puts: &[IngestPut]) {
        let bytes = puts
            .iter()
            .map(|p| (p.key.len() + p.value.len()) as u64)
            .sum();
        let wait = self.delay(bytes, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_copy_waits_for_its_rate_and_an_unpaced_one_never() {
        let mut p = Pacer::new(Some(1_000));
        let t0 = p.started;
        // 500 bytes at 1,000 B/s are due half a second in.
        assert_eq!(p.delay(500, t0), Duration::from_millis(500));
        // Already late: no wait.
        assert_eq!(p.delay(500, t0 + Duration::from_secs(2)), Duration::ZERO);
        // 1,500 bytes in all, asked at 1 s: half a second more.
        assert_eq!(
            p.delay(500, t0 + Duration::from_secs(1)),
            Duration::from_millis(500)
        );
        let mut free = Pacer::new(None);
        assert_eq!(free.delay(u64::MAX, free.started), Duration::ZERO);
        let mut zero = Pacer::new(Some(0));
        assert_eq!(zero.delay(10, zero.started), Duration::ZERO);
    }
}
