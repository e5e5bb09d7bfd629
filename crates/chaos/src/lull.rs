//! A write lull: a spell during which the workload's clients only read.
//!
//! The `failover` nemesis starts one, waits for the writes in flight to finish,
//! and cuts the leader off; the repair ends it. So the first requests a new
//! leader gets are reads, about keys written just before the cut. That is the
//! case a leader's NO-OP at the start of its term exists for (Raft thesis §6.4):
//! a new leader does not know which of the entries it inherited are committed
//! until it commits one of its own term, and when writes keep coming in, the
//! first of them does that job anyway (a write still in flight at the cut is
//! retried at the new leader by the client).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct State {
    active: bool,
    writes_in_flight: usize,
}

/// Shared between the nemesis (which starts and ends lulls) and the workload's
/// workers (which start a write only through [`WriteLull::begin_write`]).
/// Clones share the state.
#[derive(Clone, Debug, Default)]
pub struct WriteLull(Arc<Mutex<State>>);

/// A write in flight; dropping it ends it.
#[derive(Debug)]
pub struct WriteInFlight(WriteLull);

impl Drop for WriteInFlight {
    fn drop(&mut self) {
        self.0.state().writes_in_flight -= 1;
    }
}

impl WriteLull {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Clients read only from now on (writes already in flight go on).
    pub fn start(&self) {
        self.state().active = true;
    }

    /// Clients write again.
    pub fn end(&self) {
        self.state().active = false;
    }

    /// Whether a lull is on.
    pub fn active(&self) -> bool {
        self.state().active
    }

    /// Leave to start a write, held until it ends; `None` during a lull (the
    /// client reads instead).
    pub fn begin_write(&self) -> Option<WriteInFlight> {
        let mut state = self.state();
        if state.active {
            return None;
        }
        state.writes_in_flight += 1;
        Some(WriteInFlight(self.clone()))
    }

    /// Writes begun and not yet ended.
    pub fn writes_in_flight(&self) -> usize {
        self.state().writes_in_flight
    }

    /// Waits until no write is in flight, polling every millisecond, for at most
    /// `timeout`; whether none is.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.writes_in_flight() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lull_refuses_new_writes_and_lets_those_in_flight_finish() {
        let lull = WriteLull::default();
        let worker = lull.clone();
        let first = worker.begin_write().expect("no lull yet");
        let second = worker.begin_write().expect("no lull yet");
        assert_eq!(lull.writes_in_flight(), 2);
        lull.start();
        assert!(worker.active());
        assert!(worker.begin_write().is_none());
        drop(first);
        assert_eq!(lull.writes_in_flight(), 1);
        drop(second);
        assert_eq!(lull.writes_in_flight(), 0);
        lull.end();
        assert!(worker.begin_write().is_some());
        assert_eq!(lull.writes_in_flight(), 0, "the write ended when dropped");
    }

    #[tokio::test]
    async fn draining_waits_for_the_last_write() {
        let lull = WriteLull::default();
        let write = lull.begin_write().expect("no lull");
        lull.start();
        assert!(!lull.drained(Duration::from_millis(5)).await);
        let finisher = tokio::spawn(async move {
            tokio::task::yield_now().await;
            drop(write);
        });
        assert!(lull.drained(Duration::from_secs(10)).await);
        finisher.await.expect("finisher");
    }
}
