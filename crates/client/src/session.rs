//! The client's session: the id and sequence numbers that make its writes
//! exactly-once.
//!
//! Sessions are per Raft group (each group's state machine keeps its own
//! session table), so the one client id has one sequence per group: a group
//! sees the numbers of the writes sent to it, 1, 2, 3, …, and nothing else
//! (docs/sharding.md, *Sessions across moves*).
//!
//! Every write takes a [`Ticket`] for the group it goes to: the next sequence
//! number of that group's session. While the ticket lives, the write may still
//! be retried, so that group's `first_unacked` (its lowest live ticket) stays
//! at or below it and the group keeps its result; dropping the ticket
//! acknowledges the write. The cluster remembers at most [`MAX_IN_FLIGHT`]
//! results per session, so at most that many tickets exist at once, over all
//! groups (more writes wait for one).
//!
//! A session the cluster no longer knows (idle for longer than its idle timeout,
//! or evicted) is replaced: [`Session::renew`] picks a new random id and starts
//! every group again at sequence number 1. See `docs/sessions.md` for the whole
//! protocol.

use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use keel_placement::GroupId;
use keel_proto::v1::ClientSession;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Most writes of one session in flight: the number of results a keel node
/// remembers per session (`keel_storage::kv::MAX_RESULTS_PER_SESSION`).
pub(crate) const MAX_IN_FLIGHT: usize = 1024;

/// How long after its first attempt a write that may have been applied is still
/// retried. Nodes keep an idle session for at least a minute (their eviction grace
/// and shortest idle timeout), so retries within half of that are answered from
/// the session even across leader changes with some clock skew between leaders.
pub(crate) const RETRY_WINDOW: Duration = Duration::from_secs(30);

/// One client's session, shared by its clones.
#[derive(Debug)]
pub(crate) struct Session {
    state: Mutex<State>,
    in_flight: Arc<Semaphore>,
}

#[derive(Debug)]
struct State {
    id: u128,
    /// Each group's numbers under `id`; a group is added on its first write
    /// (at most the cluster's groups, 1024).
    groups: HashMap<GroupId, Numbers>,
}

/// One group's sequence under the session id.
#[derive(Debug)]
struct Numbers {
    next_seq: u64,
    /// Sequence numbers of this group's live tickets.
    live: BTreeSet<u64>,
}

impl Default for Numbers {
    fn default() -> Self {
        Numbers {
            next_seq: 1,
            live: BTreeSet::new(),
        }
    }
}

impl Default for Session {
    fn default() -> Self {
        Session {
            state: Mutex::new(State::fresh()),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }
}

impl State {
    fn fresh() -> State {
        State {
            id: random_id(),
            groups: HashMap::new(),
        }
    }
}

impl Session {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent, so poison is harmless.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next sequence number of `group`'s session, waiting while
    /// [`MAX_IN_FLIGHT`] writes are.
    pub(crate) async fn ticket(self: &Arc<Self>, group: GroupId) -> Ticket {
        let permit = Arc::clone(&self.in_flight)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let mut state = self.lock();
        let id = state.id;
        let numbers = state.groups.entry(group).or_default();
        let seq = numbers.next_seq;
        numbers.next_seq += 1;
        numbers.live.insert(seq);
        Ticket {
            session: Arc::clone(self),
            id,
            group,
            seq,
            _permit: permit,
        }
    }

    /// Replaces session `expired` (which the cluster no longer knows) with a new
    /// one, unless another write did so already.
    pub(crate) fn renew(&self, expired: u128) {
        let mut state = self.lock();
        if state.id == expired {
            *state = State::fresh();
        }
    }
}

/// One write's place in one group's session; acknowledges the write when
/// dropped. Its group never changes: every attempt of the write goes to that
/// group with this number.
#[derive(Debug)]
pub(crate) struct Ticket {
    session: Arc<Session>,
    id: u128,
    group: GroupId,
    seq: u64,
    _permit: OwnedSemaphorePermit,
}

impl Ticket {
    /// The session id this ticket belongs to.
    pub(crate) fn id(&self) -> u128 {
        self.id
    }

    /// The group whose session numbered this write.
    pub(crate) fn group(&self) -> GroupId {
        self.group
    }

    /// The request field, with the group's current `first_unacked` (it only
    /// grows, so each attempt sends the latest).
    pub(crate) fn to_proto(&self) -> ClientSession {
        let state = self.session.lock();
        let lowest = match state.groups.get(&self.group) {
            Some(numbers) if state.id == self.id => {
                numbers.live.first().copied().unwrap_or(self.seq)
            }
            // The session was renewed; the old one only serves this retry.
            _ => self.seq,
        };
        ClientSession {
            client_id: Bytes::copy_from_slice(&self.id.to_be_bytes()),
            seq: self.seq,
            first_unacked: lowest.min(self.seq),
            group: self.group,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.session.lock();
        if state.id == self.id
            && let Some(numbers) = state.groups.get_mut(&self.group)
        {
            numbers.live.remove(&self.seq);
        }
    }
}

/// A random 128-bit session id from the operating system; if that fails (no
/// entropy source at all), from the standard library's randomly keyed hasher,
/// which is seeded from the same source once per thread and still differs per
/// call.
fn random_id() -> u128 {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_ok() {
        return u128::from_be_bytes(bytes);
    }
    let keys = std::collections::hash_map::RandomState::new();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let high = u128::from(keys.hash_one((nanos, 0u8)));
    let low = u128::from(keys.hash_one((nanos, 1u8)));
    (high << 64) | low
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tickets_count_up_and_first_unacked_is_the_lowest_live_one() {
        let s = Arc::new(Session::default());
        let t1 = s.ticket(1).await;
        let t2 = s.ticket(1).await;
        let t3 = s.ticket(1).await;
        assert_eq!((t1.seq, t2.seq, t3.seq), (1, 2, 3));
        assert_eq!(t3.to_proto().first_unacked, 1);
        drop(t1);
        assert_eq!(t3.to_proto().first_unacked, 2);
        drop(t2);
        let p = t3.to_proto();
        assert_eq!((p.seq, p.first_unacked), (3, 3));
        assert_eq!(p.client_id.len(), 16);
    }

    #[tokio::test]
    async fn renewing_starts_a_new_session_once() {
        let s = Arc::new(Session::default());
        let old = s.ticket(1).await;
        let old_id = old.id();
        s.renew(old_id);
        s.renew(old_id);
        let new = s.ticket(1).await;
        assert_ne!(new.id(), old_id);
        assert_eq!(new.to_proto().seq, 1);
        // The old ticket still retries under its own id, acknowledging nothing.
        let p = old.to_proto();
        assert_eq!(&p.client_id[..], &old_id.to_be_bytes());
        assert_eq!((p.seq, p.first_unacked), (1, 1));
        let second = s.ticket(1).await;
        drop(old);
        assert_eq!(second.to_proto().first_unacked, 1, "new session unaffected");
    }

    #[tokio::test]
    async fn at_most_max_in_flight_tickets_exist() {
        let s = Arc::new(Session::default());
        let mut held = Vec::new();
        for _ in 0..MAX_IN_FLIGHT {
            held.push(s.ticket(1).await);
        }
        let waiting = tokio::spawn({
            let s = Arc::clone(&s);
            async move { s.ticket(1).await.seq }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        held.pop();
        assert_eq!(waiting.await.expect("task"), MAX_IN_FLIGHT as u64 + 1);
    }

    #[tokio::test]
    async fn each_group_has_its_own_dense_sequence_under_one_id() {
        let s = Arc::new(Session::default());
        let a1 = s.ticket(1).await;
        let a2 = s.ticket(1).await;
        // Group 2's first write is its session's first: seq 1, first_unacked 1,
        // whatever group 1 has done (a group that never saw the session opens it
        // only for first_unacked 1).
        let b1 = s.ticket(2).await;
        let p = b1.to_proto();
        assert_eq!((p.seq, p.first_unacked, p.group), (1, 1, 2));
        assert_eq!(p.client_id, a1.to_proto().client_id, "one client id");
        assert_eq!((a2.to_proto().seq, a2.to_proto().group), (2, 1));
        // Acknowledging in one group moves only that group's first_unacked.
        let b2 = s.ticket(2).await;
        drop(b1);
        assert_eq!(b2.to_proto().first_unacked, 2);
        assert_eq!(a2.to_proto().first_unacked, 1, "group 1 untouched");
        drop(a1);
        assert_eq!(a2.to_proto().first_unacked, 2);
        assert_eq!((b2.group(), a2.group()), (2, 1));
        // Numbers never restart within a group while the id lives.
        drop((a2, b2));
        let a3 = s.ticket(1).await;
        let b3 = s.ticket(2).await;
        assert_eq!((a3.to_proto().seq, b3.to_proto().seq), (3, 3));
        assert_eq!(
            (a3.to_proto().first_unacked, b3.to_proto().first_unacked),
            (3, 3)
        );
    }

    #[tokio::test]
    async fn renewing_restarts_every_group() {
        let s = Arc::new(Session::default());
        let old_1 = s.ticket(1).await;
        let _old_2 = s.ticket(2).await;
        let _old_2b = s.ticket(2).await;
        s.renew(old_1.id());
        let new_2 = s.ticket(2).await;
        assert_ne!(new_2.id(), old_1.id());
        let p = new_2.to_proto();
        assert_eq!((p.seq, p.first_unacked, p.group), (1, 1, 2));
        assert_eq!(s.ticket(1).await.to_proto().seq, 1);
    }

    #[test]
    fn ids_differ() {
        assert_ne!(random_id(), random_id());
    }
}
