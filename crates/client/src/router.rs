//! Which member to try next: the last known leader of the call's group, else a
//! member of that group from the client's map, else the configured endpoints in
//! turn.
//!
//! Every group has its own leader (docs/sharding.md, *Routing*). Cluster calls
//! and keys of group 1 share group 1's leader, which is all a client without a
//! cluster map ever uses. A key of another group goes to that group's leader,
//! learned from a member's NOT_LEADER hint (which names the group it is about)
//! or from a write it accepted; until one is known, to a member of the group as
//! the map lists it, which either is the leader or names it. After a failure
//! the configured endpoints are tried in turn, as for group 1: any node serves
//! a key (a node forwards a key of a group it does not host, one hop later),
//! and the endpoints are the addresses this client is known to reach — the
//! map's are the ones the nodes advertise.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use keel_placement::{FIRST_DATA_GROUP, GroupId};

use crate::address::Address;

/// Most groups whose leader is remembered: far more than a cluster has (a
/// hint's group is a number from the wire; a runaway set is dropped whole).
const MAX_GROUPS: usize = 4096;

/// Shared by all calls of a client (and its clones), so that one call's discovery of
/// a leader speeds up every other call.
pub(crate) struct Router {
    endpoints: Vec<Address>,
    leaders: Mutex<HashMap<GroupId, Address>>,
    /// Next endpoint (or group member) to try when there is no leader to try.
    cursor: AtomicUsize,
}

impl Router {
    /// A router over a non-empty endpoint list.
    pub(crate) fn new(endpoints: Vec<Address>) -> Self {
        debug_assert!(!endpoints.is_empty(), "validated by ClientConfig::validate");
        Router {
            endpoints,
            leaders: Mutex::new(HashMap::new()),
            cursor: AtomicUsize::new(0),
        }
    }

    /// Where a call for `group` should start: its last known leader, else one
    /// of `members` (the group's members by the client's map, possibly none),
    /// else the next endpoint.
    pub(crate) fn first(&self, group: GroupId, members: &[Address]) -> Address {
        if let Some(leader) = self.lock().get(&group).cloned() {
            return leader;
        }
        self.next_of(members, None)
    }

    /// Records where `group`'s leader is (a hint from a member, or a member
    /// that accepted a write).
    pub(crate) fn set_leader(&self, group: GroupId, leader: &Address) {
        let mut leaders = self.lock();
        if leaders.len() >= MAX_GROUPS && !leaders.contains_key(&group) {
            leaders.clear();
        }
        leaders.insert(group, leader.clone());
    }

    /// Where to go after `failed` did not serve a call for `group`: it is
    /// forgotten as that group's leader (if it was), and the next endpoint
    /// other than it is chosen.
    pub(crate) fn after_failure(&self, group: GroupId, failed: &Address) -> Address {
        {
            let mut leaders = self.lock();
            if leaders.get(&group) == Some(failed) {
                leaders.remove(&group);
            }
        }
        self.next_of(&[], Some(failed))
    }

    /// `failed` did not answer a call that cannot be retried: the next call must not
    /// start there (as any group's known leader, or as the next endpoint in turn).
    pub(crate) fn forget(&self, failed: &Address) {
        self.lock().retain(|_, leader| leader != failed);
        let n = self.endpoints.len();
        if n > 1 && &self.endpoints[self.cursor.load(Ordering::Relaxed) % n] == failed {
            self.cursor.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The next of `members` (the endpoints when empty) in round-robin order,
    /// skipping `avoid` when there is any other choice.
    fn next_of(&self, members: &[Address], avoid: Option<&Address>) -> Address {
        let pool = if members.is_empty() {
            &self.endpoints[..]
        } else {
            members
        };
        let n = pool.len();
        let mut i = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
        if n > 1 && Some(&pool[i]) == avoid {
            i = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
        }
        pool[i].clone()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<GroupId, Address>> {
        // Held only for a lookup or an assignment: a poisoned lock still holds a
        // consistent value.
        self.leaders.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The group of cluster calls (membership, status, map) and of every key
/// without a map.
pub(crate) const CLUSTER_GROUP: GroupId = FIRST_DATA_GROUP;

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
        assert_eq!(r.first(1, &[]), eps[0]);
        assert_eq!(r.after_failure(1, &eps[0]), eps[1]);
        assert_eq!(r.after_failure(1, &eps[1]), eps[2]);
        assert_eq!(r.after_failure(1, &eps[2]), eps[0]);

        let outsider = addrs(&[9]).remove(0);
        r.set_leader(1, &outsider);
        assert_eq!(r.first(1, &[]), outsider);
        // A failed leader is forgotten; the next call starts from the endpoints.
        let next = r.after_failure(1, &outsider);
        assert!(eps.contains(&next));
        assert_ne!(r.first(1, &[]), outsider);
    }

    #[test]
    fn does_not_pick_the_member_that_just_failed() {
        let eps = addrs(&[1, 2]);
        let r = Router::new(eps.clone());
        for _ in 0..10 {
            let first = r.first(1, &[]);
            assert_ne!(r.after_failure(1, &first), first);
        }
        // Another call moved the cursor onto the member that just failed: skip it.
        assert_eq!(r.first(1, &[]), eps[0]);
        assert_eq!(r.after_failure(1, &eps[1]), eps[0]);
        // With one endpoint there is no choice.
        let single = Router::new(addrs(&[5]));
        let only = single.first(1, &[]);
        assert_eq!(single.after_failure(1, &only), only);
    }

    #[test]
    fn each_group_has_its_own_leader_and_members() {
        let eps = addrs(&[1, 2, 3]);
        let r = Router::new(eps.clone());
        r.set_leader(1, &eps[0]);
        r.set_leader(2, &eps[1]);
        assert_eq!(r.first(1, &[]), eps[0]);
        assert_eq!(r.first(2, &[]), eps[1]);
        // A group with no known leader starts at one of its members.
        let members = addrs(&[7, 8]);
        for _ in 0..4 {
            assert!(members.contains(&r.first(3, &members)));
        }
        // One group's leader failing leaves the others' alone; the next try
        // is an endpoint (the addresses the client is known to reach).
        assert!(eps.contains(&r.after_failure(2, &eps[1])));
        assert_eq!(r.first(1, &[]), eps[0]);
        assert!(eps.contains(&r.first(2, &[])));
        // A member that did not answer is forgotten as every group's leader.
        r.set_leader(2, &eps[0]);
        r.forget(&eps[0]);
        assert_ne!(r.first(1, &[]), eps[0]);
        assert_ne!(r.first(2, &[]), eps[0]);
    }

    #[test]
    fn a_runaway_set_of_groups_is_bounded() {
        let eps = addrs(&[1]);
        let r = Router::new(eps.clone());
        for g in 0..(MAX_GROUPS as u64 + 10) {
            r.set_leader(g, &eps[0]);
        }
        assert!(r.lock().len() <= MAX_GROUPS);
    }
}
