//! Where one attempt of a move spent its time, for the log line a finished
//! move leaves: how long the bulk copy and each catch-up round took and how
//! many keys each moved, and how long the slot's writes were paused (from the
//! source's fence until this group served the slot). A slow move, or a
//! latency spike during one, is then read off the log instead of guessed.

use std::fmt;
use std::time::{Duration, Instant};

/// Most catch-up rounds listed one by one (the rest are summed).
const LISTED_ROUNDS: usize = 10;

/// One phase: keys it changed at the target, and its duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Phase {
    pub(crate) keys: usize,
    pub(crate) took: Duration,
    /// Whether a round listed the whole slot (the source's change index could
    /// not name what changed): a slow round's usual reason.
    pub(crate) listed: bool,
}

impl Phase {
    /// A phase that began at `began` and changed `keys`.
    pub(crate) fn since(began: Instant, keys: usize) -> Phase {
        Phase {
            keys,
            took: began.elapsed(),
            listed: false,
        }
    }

    /// The same phase, marked as listing the slot or not.
    pub(crate) fn listed(self, listed: bool) -> Phase {
        Phase { listed, ..self }
    }

    /// `5000 keys/400 ms`, and ` listed` if it listed the slot.
    fn brief(&self) -> String {
        let listed = if self.listed { " listed" } else { "" };
        format!("{} keys/{} ms{listed}", self.keys, self.took.as_millis())
    }
}

/// The phases of one attempt, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Timeline {
    /// The bulk copy (absent when the attempt resumed a copy).
    pub(crate) bulk: Option<Phase>,
    /// The catch-up rounds before the fence.
    pub(crate) rounds: Vec<Phase>,
    /// The final delta, copied from fenced views.
    pub(crate) last: Option<Phase>,
    /// From the fence until the slot was served here.
    pub(crate) paused: Option<Duration>,
}

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_millis();
        match self.bulk {
            Some(p) => write!(f, "bulk copy {} keys in {} ms", p.keys, ms(p.took))?,
            None => write!(f, "resumed a copy")?,
        }
        write!(f, "; {} catch-up rounds", self.rounds.len())?;
        if !self.rounds.is_empty() {
            let listed: Vec<String> = self
                .rounds
                .iter()
                .take(LISTED_ROUNDS)
                .map(Phase::brief)
                .collect();
            write!(f, " ({}", listed.join(", "))?;
            if self.rounds.len() > LISTED_ROUNDS {
                write!(f, ", …")?;
            }
            write!(f, ")")?;
        }
        if let Some(p) = self.last {
            write!(f, "; final delta {} keys in {} ms", p.keys, ms(p.took))?;
            if p.listed {
                write!(f, " (listed)")?;
            }
        }
        if let Some(d) = self.paused {
            write!(f, "; writes to the slot paused {} ms", ms(d))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(keys: usize, ms: u64) -> Phase {
        Phase {
            keys,
            took: Duration::from_millis(ms),
            listed: false,
        }
    }

    #[test]
    fn a_timeline_reads_as_one_line() {
        let t = Timeline {
            bulk: Some(phase(100_000, 1800)),
            rounds: vec![phase(5000, 400).listed(true), phase(900, 120)],
            last: Some(phase(40, 15)),
            paused: Some(Duration::from_millis(60)),
        };
        assert_eq!(
            t.to_string(),
            "bulk copy 100000 keys in 1800 ms; 2 catch-up rounds (5000 keys/400 ms listed, \
             900 keys/120 ms); final delta 40 keys in 15 ms; writes to the slot paused 60 ms"
        );
        let listed_last = Timeline {
            last: Some(phase(40, 15).listed(true)),
            ..Timeline::default()
        };
        assert!(
            listed_last
                .to_string()
                .ends_with("final delta 40 keys in 15 ms (listed)"),
            "{listed_last}"
        );
        let resumed = Timeline::default();
        assert_eq!(resumed.to_string(), "resumed a copy; 0 catch-up rounds");
        let many = Timeline {
            rounds: vec![phase(1, 1); 12],
            ..Timeline::default()
        };
        assert!(many.to_string().ends_with("1 keys/1 ms, …)"), "{many}");
    }
}
