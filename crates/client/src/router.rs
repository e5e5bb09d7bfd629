//! Which member to try next: the last known leader, else the configured endpoints in
//! turn.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::address::Address;

/// Shared by all calls of a client (and its clones), so that one call's discovery of
/// the leader speeds up every other call.
pub(crate) struct Router {
    endpoints: Vec<Address>,
    leader: Mutex<Option<Address>>,
    /// Next endpoint to try when there is no leader to try.
    cursor: AtomicUsize,
}

impl Router {
    /// A router over a non-empty endpoint list.
    pub(crate) fn new(endpoints: Vec<Address>) -> Self {
        debug_assert!(!endpoints.is_empty(), "validated by ClientConfig::validate");
        Router {
            endpoints,
            leader: Mutex::new(None),
            cursor: AtomicUsize::new(0),
        }
    }

    /// Where a call should start: the last known leader, else the next endpoint.
    pub(crate) fn first(&self) -> Address {
        if let Some(leader) = self.lock().clone() {
            return leader;
        }
        self.next_endpoint(None)
    }

    /// Records where the leader is (a hint from a member, or a member that accepted a
    /// write).
    pub(crate) fn set_leader(&self, leader: &Address) {
        *self.lock() = Some(leader.clone());
    }

    /// Where to go after `failed` did not serve the call: it is forgotten as leader
    /// (if it was one), and the next endpoint other than it is chosen.
    pub(crate) fn after_failure(&self, failed: &Address) -> Address {
        {
            let mut leader = self.lock();
            if leader.as_ref() == Some(failed) {
                *leader = None;
            }
        }
        self.next_endpoint(Some(failed))
    }

    /// `failed` did not answer a call that cannot be retried: the next call must not
    /// start there (neither as the known leader nor as the next endpoint in turn).
    pub(crate) fn forget(&self, failed: &Address) {
        {
            let mut leader = self.lock();
            if leader.as_ref() == Some(failed) {
                *leader = None;
            }
        }
        let n = self.endpoints.len();
        if n > 1 && &self.endpoints[self.cursor.load(Ordering::Relaxed) % n] == failed {
            self.cursor.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The next endpoint in round-robin order, skipping `avoid` when there is any
    /// other choice.
    fn next_endpoint(&self, avoid: Option<&Address>) -> Address {
        let n = self.endpoints.len();
        let mut i = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
        if n > 1 && Some(&self.endpoints[i]) == avoid {
            i = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
        }
        self.endpoints[i].clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Address>> {
        // Held only for a clone or an assignment: a poisoned lock still holds a
        // consistent value.
        self.leader.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(ports: &[u16]) -> Vec<Address> {
        ports
            .iter()
            .map(|p| Address::parse(&format!("127.0.0.1:{p}")).expect("valid"))
            .collect()
    }

    #[test]
    fn rotates_and_prefers_the_leader() {
        let eps = addrs(&[1, 2, 3]);
        let r = Router::new(eps.clone());
        assert_eq!(r.first(), eps[0]);
        assert_eq!(r.after_failure(&eps[0]), eps[1]);
        assert_eq!(r.after_failure(&eps[1]), eps[2]);
        assert_eq!(r.after_failure(&eps[2]), eps[0]);

        let outsider = addrs(&[9]).remove(0);
        r.set_leader(&outsider);
        assert_eq!(r.first(), outsider);
        // A failed leader is forgotten; the next call starts from the endpoints.
        let next = r.after_failure(&outsider);
        assert!(eps.contains(&next));
        assert_ne!(r.first(), outsider);
    }

    #[test]
    fn does_not_pick_the_member_that_just_failed() {
        let eps = addrs(&[1, 2]);
        let r = Router::new(eps.clone());
        for _ in 0..10 {
            let first = r.first();
            assert_ne!(r.after_failure(&first), first);
        }
        // Another call moved the cursor onto the member that just failed: skip it.
        assert_eq!(r.first(), eps[0]);
        assert_eq!(r.after_failure(&eps[1]), eps[0]);
        // With one endpoint there is no choice.
        let single = Router::new(addrs(&[5]));
        let only = single.first();
        assert_eq!(single.after_failure(&only), only);
    }
}
