//! A rate limit for warnings that a remote party can cause at will (refused
//! handshakes, tokens, peers), so that a misconfigured client retrying in a loop
//! cannot flood the log. Lines over the limit are counted and the next line
//! written says how many were left out.

use std::sync::Mutex;
use std::time::Instant;

/// A token bucket: bursts of up to `BURST` lines, then `PER_SECOND` a second.
#[derive(Debug)]
pub(crate) struct LogLimit {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    last: Instant,
    suppressed: u64,
}

const BURST: f64 = 50.0;
const PER_SECOND: f64 = 5.0;

impl Default for LogLimit {
    fn default() -> Self {
        LogLimit {
            state: Mutex::new(State {
                tokens: BURST,
                last: Instant::now(),
                suppressed: 0,
            }),
        }
    }
}

impl LogLimit {
    /// Whether a line may be written now: `Some(n)` with the number of lines left
    /// out since the last one written, or `None` (count it and stay quiet).
    pub(crate) fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
        s.last = now;
        s.tokens = (s.tokens + elapsed * PER_SECOND).min(BURST);
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            Some(std::mem::take(&mut s.suppressed))
        } else {
            s.suppressed += 1;
            None
        }
    }
}

/// " (N similar lines left out)" when N > 0, for the end of a line.
pub(crate) fn left_out(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} similar lines left out)")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bursts_then_limits_then_reports_what_was_left_out() {
        let limit = LogLimit::default();
        let t0 = Instant::now();
        for _ in 0..50 {
            assert_eq!(limit.admit_at(t0), Some(0));
        }
        assert_eq!(limit.admit_at(t0), None);
        assert_eq!(limit.admit_at(t0), None);
        // A second later, five more lines; the first says two were left out.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(limit.admit_at(t1), Some(2));
        assert_eq!(left_out(2), " (2 similar lines left out)");
        assert_eq!(left_out(0), "");
    }
}
