//! The placement leader's watch over moves in flight: a move that has been
//! in flight for [`WATCHDOG_TIMEOUT`] as this leader saw it is aborted, so a
//! move whose target group lost its quorum (and with it the one node that
//! would abort it) does not keep its slot paused for good.
//!
//! The target's leader aborts its own stalled moves much sooner
//! ([`super::MOVE_TIMEOUT`], [`super::HANDOFF_TIMEOUT`]); this is the backstop.
//! An abort racing a commit is harmless: the placement group applies at most
//! one of them to a move.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keel_placement::{ClusterMap, Slot};

/// How long a move may stay in flight, as one placement leader saw it,
/// before that leader aborts it.
pub(crate) const WATCHDOG_TIMEOUT: Duration = Duration::from_secs(120);

/// When this node first saw each move in flight while leading placement.
#[derive(Debug, Default)]
pub(crate) struct Watchdog {
    seen: BTreeMap<(Slot, u64), Instant>,
}

impl Watchdog {
    /// The moves of `map` in flight for at least `timeout` since this node
    /// first saw them (or last called them overdue), as of `now`; forgets
    /// moves no longer in flight.
    pub(crate) fn overdue(
        &mut self,
        map: &ClusterMap,
        now: Instant,
        timeout: Duration,
    ) -> Vec<(Slot, u64)> {
        let current: Vec<(Slot, u64)> = map.moves().iter().map(|(s, m)| (*s, m.epoch)).collect();
        self.seen.retain(|key, _| current.contains(key));
        // An overdue move's clock starts again: its abort is asked for once
        // per timeout, not at every look.
        current
            .into_iter()
            .filter(|key| {
                let first = self.seen.entry(*key).or_insert(now);
                let due = now.duration_since(*first) >= timeout;
                if due {
                    *first = now;
                }
                due
            })
            .collect()
    }

    /// Forgets every move: this node stopped leading placement, and a later
    /// term of leading starts its clocks afresh.
    pub(crate) fn reset(&mut self) {
        self.seen.clear();
    }
}

#[cfg(test)]
mod tests {
    use keel_placement::Command;

    use super::*;
    use crate::placement::test_maps::{slot, two_groups};

    #[test]
    fn a_move_is_overdue_only_after_the_timeout_since_first_seen() {
        let mut map = two_groups();
        map.apply(&Command::BeginSlotMove {
            slot: slot(7),
            to: 2,
        })
        .expect("begin");
        let epoch = map.version();
        let t0 = Instant::now();
        let timeout = Duration::from_secs(10);
        let mut dog = Watchdog::default();
        assert!(dog.overdue(&map, t0, timeout).is_empty());
        assert!(
            dog.overdue(&map, t0 + Duration::from_secs(9), timeout)
                .is_empty()
        );
        assert_eq!(
            dog.overdue(&map, t0 + timeout, timeout),
            vec![(slot(7), epoch)]
        );
        // Asked once; again only after another timeout.
        assert!(dog.overdue(&map, t0 + timeout, timeout).is_empty());
        assert_eq!(
            dog.overdue(&map, t0 + timeout * 2, timeout),
            vec![(slot(7), epoch)]
        );
        // A later leader term starts the clock again.
        dog.reset();
        assert!(dog.overdue(&map, t0 + timeout, timeout).is_empty());
    }

    #[test]
    fn a_move_that_ended_is_forgotten_and_a_new_one_gets_its_own_clock() {
        let mut map = two_groups();
        map.apply(&Command::BeginSlotMove {
            slot: slot(7),
            to: 2,
        })
        .expect("begin");
        let first = map.version();
        let t0 = Instant::now();
        let timeout = Duration::from_secs(10);
        let mut dog = Watchdog::default();
        assert!(dog.overdue(&map, t0, timeout).is_empty());
        map.apply(&Command::AbortSlotMove {
            slot: slot(7),
            epoch: first,
        })
        .expect("abort");
        map.apply(&Command::BeginSlotMove {
            slot: slot(7),
            to: 2,
        })
        .expect("begin again");
        let second = map.version();
        let later = t0 + Duration::from_secs(8);
        assert!(dog.overdue(&map, later, timeout).is_empty());
        assert!(dog.overdue(&map, t0 + timeout, timeout).is_empty());
        assert_eq!(
            dog.overdue(&map, later + timeout, timeout),
            vec![(slot(7), second)]
        );
    }
}
