//! The storage thread of an asynchronous runtime, as plain bookkeeping: which
//! `Ready`s were handed over, which the fsync in flight covers, and in which order
//! they are reported durable. The simulation decides when an fsync starts and ends.
//!
//! It models a WAL thread fed by a channel: handed-over writes wait in the channel
//! (`queue`) while an fsync runs; when the thread is free it takes *everything*
//! queued, hands it to the WAL as one batch and fsyncs once (group commit). So an
//! fsync covers exactly the writes handed over before it started, and writes handed
//! over during it wait for the next one. Reports go out strictly in hand-over order:
//! a `Ready`'s persisted messages may leave only once it and every earlier `Ready`
//! are durable.

use std::collections::VecDeque;

use keel_raft::{Entry, HardState, Index, Message, Ready, SnapshotMeta, Term};

/// One `Ready`'s storage work, as handed to the storage thread.
#[derive(Debug, Default)]
pub struct Handover {
    /// A leader's snapshot to install before the entries (moved out with them).
    snapshot: Option<SnapshotMeta>,
    /// Entries to append (moved out to storage when the fsync covering them starts).
    entries: Vec<Entry>,
    /// Hard state to store (moved out with the entries).
    hard_state: Option<HardState>,
    /// Whether the `Ready` wrote anything (it needs an fsync of its own).
    writes: bool,
    /// Sent once this and every earlier handover is durable.
    pub persisted_messages: Vec<Message>,
    /// The `Ready`'s number, reported with `on_persisted` once durable.
    pub number: u64,
    /// The `Ready`'s last entry (for the trace).
    pub last: Option<(Index, Term)>,
}

impl Handover {
    /// Takes `rd`'s writes and persisted messages (the runtime keeps the rest).
    pub fn take_from(rd: &mut Ready) -> Self {
        Handover {
            writes: rd.must_sync(),
            number: rd.number,
            last: rd.entries.last().map(|e| (e.index, e.term)),
            snapshot: rd.snapshot.take(),
            entries: std::mem::take(&mut rd.entries),
            hard_state: rd.hard_state,
            persisted_messages: std::mem::take(&mut rd.persisted_messages),
        }
    }

    /// Whether there is nothing to write and nothing to send.
    pub fn is_empty(&self) -> bool {
        !self.writes && self.persisted_messages.is_empty()
    }
}

/// The writes of one handover, in the order storage takes them: install the
/// snapshot, then append the entries and store the hard state.
#[derive(Debug, Default)]
pub struct Write {
    /// A leader's snapshot to install first.
    pub snapshot: Option<SnapshotMeta>,
    /// Entries to append.
    pub entries: Vec<Entry>,
    /// Hard state to store.
    pub hard_state: Option<HardState>,
}

/// The storage thread's state.
#[derive(Debug, Default)]
pub struct StorageThread {
    /// Handed over, waiting for the next fsync.
    queue: VecDeque<Handover>,
    /// Covered by the fsync in flight (empty: none in flight).
    in_flight: Vec<Handover>,
}

impl StorageThread {
    /// Whether an fsync is in flight.
    pub fn is_syncing(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Handovers not yet reported durable.
    pub fn pending(&self) -> usize {
        self.queue.len() + self.in_flight.len()
    }

    /// Hands a `Ready`'s storage work over. Returns it right back if it can be
    /// reported at once: it writes nothing, and nothing handed over before it is
    /// still pending (its persisted messages promise only what is already durable).
    pub fn hand_over(&mut self, h: Handover) -> Option<Handover> {
        if !h.writes && self.pending() == 0 {
            return Some(h);
        }
        self.queue.push_back(h);
        None
    }

    /// Starts an fsync if none is in flight and something is queued: everything
    /// queued joins it. Returns the writes to hand to storage, in order, and how
    /// many handovers the fsync covers.
    pub fn start_fsync(&mut self) -> Option<(Vec<Write>, usize)> {
        if self.is_syncing() || self.queue.is_empty() {
            return None;
        }
        self.in_flight.extend(self.queue.drain(..));
        let writes = self
            .in_flight
            .iter_mut()
            .filter(|h| h.writes)
            .map(|h| Write {
                snapshot: h.snapshot.take(),
                entries: std::mem::take(&mut h.entries),
                hard_state: h.hard_state.take(),
            })
            .collect();
        Some((writes, self.in_flight.len()))
    }

    /// The fsync in flight completed. Returns, in hand-over order, the handovers it
    /// covered, then the queued ones at the front that write nothing (they waited
    /// only for those writes).
    pub fn complete_fsync(&mut self) -> Vec<Handover> {
        let mut done = std::mem::take(&mut self.in_flight);
        while self.queue.front().is_some_and(|h| !h.writes) {
            done.extend(self.queue.pop_front());
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use keel_raft::{EntryKind, MessageBody};

    fn ready(first: Index, n: u64, term: Term, acks: u64) -> Ready {
        Ready {
            entries: (first..first + n)
                .map(|index| Entry {
                    term,
                    index,
                    kind: EntryKind::Normal,
                    data: Bytes::new(),
                })
                .collect(),
            persisted_messages: (0..acks)
                .map(|i| keel_raft::Message {
                    group: 1,
                    from: 2,
                    to: 1,
                    term,
                    body: MessageBody::AppendEntriesResponse {
                        index: first + i,
                        reject: false,
                        hint_index: 0,
                        hint_term: 0,
                    },
                })
                .collect(),
            ..Ready::default()
        }
    }

    fn lasts(hs: &[Handover]) -> Vec<Option<(Index, Term)>> {
        hs.iter().map(|h| h.last).collect()
    }

    #[test]
    fn one_fsync_covers_everything_queued_before_it_started() {
        let mut t = StorageThread::default();
        assert!(
            t.hand_over(Handover::take_from(&mut ready(1, 2, 1, 1)))
                .is_none()
        );
        let (writes, covered) = t.start_fsync().expect("idle with work queued");
        assert_eq!((writes.len(), covered), (1, 1));
        assert!(t.start_fsync().is_none(), "one fsync at a time");
        // Two more Readys arrive during the fsync: both wait for the next one.
        t.hand_over(Handover::take_from(&mut ready(3, 1, 1, 1)));
        t.hand_over(Handover::take_from(&mut ready(4, 3, 1, 0)));
        assert_eq!(t.pending(), 3);
        assert_eq!(lasts(&t.complete_fsync()), vec![Some((2, 1))]);
        let (writes, covered) = t.start_fsync().expect("group commit");
        assert_eq!(covered, 2);
        assert_eq!(
            writes[1].entries.len(),
            3,
            "the writes themselves go to storage"
        );
        assert_eq!(lasts(&t.complete_fsync()), vec![Some((3, 1)), Some((6, 1))]);
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn messages_without_writes_wait_only_for_earlier_writes() {
        let mut t = StorageThread::default();
        let ack_only = || Handover::take_from(&mut ready(1, 0, 1, 1));
        assert!(
            t.hand_over(ack_only()).is_some(),
            "nothing pending: it may go out at once"
        );
        t.hand_over(Handover::take_from(&mut ready(1, 1, 1, 0)));
        t.start_fsync().expect("started");
        assert!(t.hand_over(ack_only()).is_none(), "must wait for entry 1");
        t.hand_over(Handover::take_from(&mut ready(2, 1, 1, 0)));
        t.hand_over(ack_only());
        let done = t.complete_fsync();
        assert_eq!(lasts(&done), vec![Some((1, 1)), None]);
        assert_eq!(done[1].persisted_messages.len(), 1);
        // The last ack-only handover waits behind entry 2's write.
        assert_eq!(t.pending(), 2);
        let (_, covered) = t.start_fsync().expect("entry 2");
        assert_eq!(covered, 2);
        assert_eq!(lasts(&t.complete_fsync()), vec![Some((2, 1)), None]);
    }
}
