//! The leader lease as API handlers see it, and the clock it is measured on.
//!
//! The consensus thread publishes the core's lease (`keel_raft::Raft::lease`) and
//! commit index here after every turn, and before any message of a `Ready` goes
//! out: a lease that a leadership transfer ended is withdrawn before the
//! `TimeoutNow` leaves. Handlers read it without talking to the consensus thread.
//!
//! A lease read ([`LeaseCell::begin`] then [`LeaseRead::still_valid`]) checks the
//! lease *after* reading the state machine: if the lease of the same term is still
//! valid then, it was valid at the moment of the read, however long the process
//! was paused in between.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use keel_raft::{Index, Lease, Term};

/// The monotonic clock the core's leases are measured on: nanoseconds since the
/// node started. Never goes backwards, keeps running while the process is paused.
#[derive(Clone, Copy, Debug)]
pub struct LeaseClock {
    origin: Instant,
}

impl LeaseClock {
    /// A clock starting now.
    pub fn new() -> LeaseClock {
        LeaseClock {
            origin: Instant::now(),
        }
    }

    /// Nanoseconds since the clock started (+1, so that 0 never means "now").
    pub fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }
}

impl Default for LeaseClock {
    fn default() -> Self {
        LeaseClock::new()
    }
}

/// The published lease. `valid_until == 0` means none.
#[derive(Debug, Default)]
pub struct LeaseCell {
    term: AtomicU64,
    valid_until: AtomicU64,
    commit: AtomicU64,
}

/// A lease read in progress: what it started under.
#[derive(Clone, Copy, Debug)]
pub struct LeaseRead {
    term: Term,
    /// The state machine must have applied this before the read is served.
    pub commit: Index,
}

impl LeaseCell {
    /// Consensus thread: publishes the core's current lease and commit index.
    pub(crate) fn publish(&self, lease: Option<Lease>, commit: Index) {
        // The commit index first: a reader that sees the new lease sees it too.
        self.commit.store(commit, Ordering::SeqCst);
        match lease {
            Some(l) => {
                if self.term.load(Ordering::SeqCst) != l.term {
                    // Withdraw the old term's lease before naming the new term, so a
                    // reader never pairs one term with the other's expiry.
                    self.valid_until.store(0, Ordering::SeqCst);
                    self.term.store(l.term, Ordering::SeqCst);
                }
                self.valid_until.store(l.valid_until, Ordering::SeqCst);
            }
            None => self.valid_until.store(0, Ordering::SeqCst),
        }
    }

    /// Starts a lease read at clock reading `now`, if a lease holds.
    pub fn begin(&self, now: u64) -> Option<LeaseRead> {
        let term = self.term.load(Ordering::SeqCst);
        let valid_until = self.valid_until.load(Ordering::SeqCst);
        let commit = self.commit.load(Ordering::SeqCst);
        (now < valid_until).then_some(LeaseRead { term, commit })
    }

    /// Whether the lease the read started under still holds at clock reading
    /// `now`, which must be taken *after* the state machine was read.
    pub fn still_valid(&self, read: &LeaseRead, now: u64) -> bool {
        let valid_until = self.valid_until.load(Ordering::SeqCst);
        let term = self.term.load(Ordering::SeqCst);
        term == read.term && now < valid_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(term: Term, valid_until: u64) -> Option<Lease> {
        Some(Lease { term, valid_until })
    }

    #[test]
    fn a_read_holds_only_under_the_lease_of_the_term_it_began_in() {
        let cell = LeaseCell::default();
        assert!(cell.begin(1).is_none(), "no lease published");
        cell.publish(lease(3, 100), 7);
        let read = cell.begin(50).expect("valid");
        assert_eq!(read.commit, 7);
        assert!(cell.still_valid(&read, 99));
        assert!(!cell.still_valid(&read, 100), "expired at valid_until");
        // Renewed in the same term: still the same leadership.
        cell.publish(lease(3, 200), 9);
        assert!(cell.still_valid(&read, 150));
        // Lost and won again (another term): the state read may have been stale.
        cell.publish(None, 9);
        assert!(!cell.still_valid(&read, 150));
        cell.publish(lease(5, 300), 12);
        assert!(!cell.still_valid(&read, 150));
        assert!(cell.begin(150).is_some());
    }

    #[test]
    fn the_clock_starts_above_zero_and_never_goes_back() {
        let clock = LeaseClock::new();
        let a = clock.now();
        let b = clock.now();
        assert!(a >= 1 && b >= a);
    }
}
