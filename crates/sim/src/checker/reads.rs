//! Reads: every read served in a mode other than `stale` must be consistent with a
//! linearization of the history.
//!
//! A read is served from one node's state machine, which holds the committed log
//! up to its applied index: the read returns the state *at* that index (its
//! *served index*). It is linearizable only if some moment between its invocation
//! and its completion saw exactly that state as the current one. Since the
//! committed log only grows, that needs:
//!
//! - (a) **no acknowledged write missed**: the served index is at least the index
//!   of every write acknowledged before the read was invoked (that write is in
//!   every state from its acknowledgement on);
//! - (b) **no going back**: the served index is at least that of every non-stale
//!   read completed before this one was invoked (that read saw its state as
//!   current, so every later moment's state contains it);
//! - (c) **the value is the state at the served index**: the value returned for
//!   the key is the committed one at the served index — the key's value if a
//!   committed entry up to there wrote it, nothing otherwise.
//!
//! The served index is never beyond the committed log (state machine safety
//! already checks what a node applies), so together these say there is a point
//! in the read's interval whose state is the one returned.
//!
//! keel promises more than that, and the checker holds it to it:
//!
//! - (d) **fresh reads** ([`Invariant::FreshRead`]): the served index is at least
//!   the commit index any node knew of when the read was invoked. ReadIndex serves
//!   at least the leader's commit index when the read reached it (thesis §6.4),
//!   which is at least every commit before (a leader whose heartbeat round a
//!   quorum confirmed afterwards leads the newest term); a lease read serves at
//!   least its leader's commit index, and while a lease holds no other leader
//!   commits anything. Linearizability alone would let a read miss a write that
//!   is committed but not yet acknowledged (it may be ordered after the read);
//!   this catches a deposed leader as soon as its successor commits anything, even
//!   its first no-op, without waiting for an acknowledgement or a read to expose
//!   it.
//!
//! Stale reads are held to (c) only — as state machine safety: a node's state
//! machine must hold what its applied index says.
//!
//! "Before" is by scheduler step: the simulation is sequential, so an event of an
//! earlier step happened before one of a later step; events of the same step are
//! taken as concurrent, which can only make the check more lenient.

use std::collections::HashMap;

use bytes::Bytes;
use keel_raft::{Entry, Index, NodeId};

use super::{Invariant, Violation};
use crate::config::{TICK, Time};
use crate::reads::{ReadMode, ReadPath};
use crate::workload;

/// A point in the run: the scheduler step and simulated time it happened at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Moment {
    /// Scheduler step (what orders events).
    pub step: u64,
    /// Simulated time (for the report).
    pub time: Time,
}

impl std::fmt::Display for Moment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "t={}.{:02} (step {})",
            self.time / TICK,
            self.time % TICK,
            self.step
        )
    }
}

/// A served read, as the checker sees it.
#[derive(Clone, Debug)]
pub struct ReadRecord {
    /// The client's id for it.
    pub id: u64,
    /// The node that served it.
    pub node: NodeId,
    /// The mode the client asked for.
    pub mode: ReadMode,
    /// How the node served it.
    pub path: ReadPath,
    /// The key read.
    pub key: Bytes,
    /// When the client issued it.
    pub invoked: Moment,
    /// The committed index any node knew of when it was issued.
    pub committed: Index,
    /// When the node answered.
    pub completed: Moment,
    /// The node's applied index when it read its state machine.
    pub index: Index,
    /// The value it found.
    pub value: Option<Bytes>,
}

impl ReadRecord {
    fn describe(&self) -> String {
        format!(
            "{} read #{} of {:?} at node {}, served {}, invoked at {} and completed at {}, \
             returned the state at index {} ({:?} for the key)",
            self.mode,
            self.id,
            String::from_utf8_lossy(&self.key),
            self.node,
            self.path,
            self.invoked,
            self.completed,
            self.index,
            self.value
                .as_ref()
                .map(|v| String::from_utf8_lossy(v).into_owned())
        )
    }
}

/// The highest index among events up to a step, and which event it came from.
#[derive(Clone, Copy, Debug)]
struct Mark {
    /// The event's step.
    step: u64,
    /// Highest index among this event and every earlier one.
    max: Index,
    /// Which event reached `max` (a proposal or read id), and when.
    by: u64,
    at: Moment,
}

/// Events in step order with a running maximum, to ask "the highest index among
/// events strictly before step `s`" by binary search.
#[derive(Debug, Default)]
struct RunningMax {
    marks: Vec<Mark>,
}

impl RunningMax {
    fn push(&mut self, at: Moment, index: Index, by: u64) {
        let mark = match self.marks.last() {
            Some(last) if last.max >= index => Mark {
                step: at.step,
                ..*last
            },
            _ => Mark {
                step: at.step,
                max: index,
                by,
                at,
            },
        };
        self.marks.push(mark);
    }

    fn before(&self, step: u64) -> Option<&Mark> {
        let n = self.marks.partition_point(|m| m.step < step);
        n.checked_sub(1).map(|i| &self.marks[i])
    }
}

/// Says why a read older than `Mark` breaks linearizability.
type Explain = fn(&Mark) -> String;

/// What the read checker remembers of the run.
#[derive(Debug, Default)]
pub struct ReadHistory {
    /// For each key written, the first committed index that wrote it, and the
    /// value (every write of a key writes the same value: retries repeat it).
    writes: HashMap<Bytes, (Index, Bytes)>,
    /// Highest index applied anywhere so far (the committed entries seen).
    applied: Index,
    /// Acknowledged writes, by step.
    acks: RunningMax,
    /// Completed non-stale reads, by step of completion.
    reads: RunningMax,
}

impl ReadHistory {
    /// A node applied `e` (nodes apply committed entries in order, so every new
    /// index shows up here in order).
    pub fn on_apply(&mut self, e: &Entry) {
        if e.index <= self.applied {
            return;
        }
        self.applied = e.index;
        if let Some((key, value)) = workload::decode_put(&e.data) {
            self.writes.entry(key).or_insert((e.index, value));
        }
    }

    /// The client was told "ok" for proposal `attempt`, committed at `index`.
    pub fn on_ack(&mut self, at: Moment, attempt: u64, index: Index) {
        self.acks.push(at, index, attempt);
    }

    /// Checks a served read, and remembers it for later reads.
    pub fn on_read(&mut self, r: &ReadRecord) -> Result<(), Violation> {
        let expected = self
            .writes
            .get(&r.key)
            .filter(|(i, _)| *i <= r.index)
            .map(|(_, v)| v);
        if r.value.as_ref() != expected {
            let (invariant, why) = if r.mode == ReadMode::Stale {
                (Invariant::StateMachineSafety, "its state machine holds")
            } else {
                (Invariant::LinearizableRead, "the committed log holds")
            };
            return Err(Violation::new(
                invariant,
                vec![r.node],
                format!(
                    "{}, but at index {} {why} {:?} for the key",
                    r.describe(),
                    r.index,
                    expected.map(|v| String::from_utf8_lossy(v).into_owned())
                ),
            ));
        }
        if r.mode == ReadMode::Stale {
            return Ok(());
        }
        // (a) and (b): the highest index among the acknowledged writes, and among
        // the reads completed, before this read was invoked.
        let earlier: [(&RunningMax, Explain); 2] = [
            (&self.acks, |m| {
                format!(
                    "proposal #{} had been acknowledged at index {} at {}, before the read was \
                     invoked: the read missed an acknowledged write",
                    m.by, m.max, m.at
                )
            }),
            (&self.reads, |m| {
                format!(
                    "read #{} had returned the state at index {} at {}, before this read was \
                     invoked: the read went back in time",
                    m.by, m.max, m.at
                )
            }),
        ];
        for (events, why) in earlier {
            if let Some(m) = events.before(r.invoked.step)
                && m.max > r.index
            {
                return Err(Violation::new(
                    Invariant::LinearizableRead,
                    vec![r.node],
                    format!("{}, but {}", r.describe(), why(m)),
                ));
            }
        }
        if r.committed > r.index {
            return Err(Violation::new(
                Invariant::FreshRead,
                vec![r.node],
                format!(
                    "{}, but index {} was known committed when the read was invoked: the read \
                     is older than what ReadIndex and leases promise",
                    r.describe(),
                    r.committed
                ),
            ));
        }
        self.reads.push(r.completed, r.index, r.id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_raft::Term;

    fn put(index: Index, term: Term, id: u64) -> Entry {
        workload::put_entry(index, term, id, 1)
    }

    fn at(step: u64) -> Moment {
        Moment { step, time: step }
    }

    fn read(id: u64, key: u64, index: Index, value: Option<u64>, steps: (u64, u64)) -> ReadRecord {
        ReadRecord {
            id,
            node: 1,
            mode: ReadMode::Linearizable,
            path: ReadPath::LeaderReadIndex,
            key: workload::key_of(key),
            invoked: at(steps.0),
            committed: 0,
            completed: at(steps.1),
            index,
            value: value.map(|v| workload::value_of(v, 1)),
        }
    }

    /// History: index 1 writes key 7, index 2 writes key 8; 2 acknowledged at step 10.
    fn history() -> ReadHistory {
        let mut h = ReadHistory::default();
        h.on_apply(&put(1, 1, 7));
        h.on_apply(&put(2, 1, 8));
        h.on_apply(&put(1, 1, 7));
        h.on_ack(at(10), 42, 2);
        h
    }

    #[test]
    fn a_read_concurrent_with_the_ack_may_miss_the_write() {
        let mut h = history();
        h.on_read(&read(1, 8, 1, None, (10, 12)))
            .expect("invoked in the step of the ack: concurrent");
        h.on_read(&read(2, 8, 2, Some(8), (11, 12)))
            .expect("sees it");
    }

    #[test]
    fn a_read_missing_an_acknowledged_write_fails() {
        let mut h = history();
        let err = h
            .on_read(&read(1, 8, 1, None, (11, 12)))
            .expect_err("the write at 2 was acknowledged before");
        assert_eq!(err.invariant, Invariant::LinearizableRead);
        assert!(err.detail.contains("proposal #42"), "{}", err.detail);
    }

    #[test]
    fn a_read_older_than_a_completed_read_fails_but_not_a_concurrent_one() {
        let mut h = ReadHistory::default();
        h.on_apply(&put(1, 1, 7));
        h.on_apply(&put(2, 1, 8));
        h.on_read(&read(1, 8, 2, Some(8), (1, 5))).expect("fresh");
        h.on_read(&read(2, 8, 1, None, (4, 6)))
            .expect("invoked before read 1 completed");
        let err = h
            .on_read(&read(3, 8, 1, None, (6, 7)))
            .expect_err("invoked after read 1 completed at index 2");
        assert!(err.detail.contains("read #1"), "{}", err.detail);
    }

    #[test]
    fn a_read_older_than_the_commit_index_at_its_invocation_fails() {
        let mut h = history();
        let mut r = read(1, 7, 1, Some(7), (1, 2));
        r.committed = 2;
        let err = h.on_read(&r).expect_err("index 2 was committed before");
        assert_eq!(err.invariant, Invariant::FreshRead);
        r.index = 2;
        h.on_read(&r).expect("fresh enough");
    }

    #[test]
    fn the_value_must_be_the_committed_one_at_the_served_index() {
        let mut h = history();
        assert!(h.on_read(&read(1, 7, 2, None, (1, 2))).is_err(), "missing");
        assert!(
            h.on_read(&read(2, 8, 1, Some(8), (1, 2))).is_err(),
            "too new"
        );
        assert!(h.on_read(&read(3, 7, 1, Some(9), (1, 2))).is_err(), "other");
        let mut stale = read(4, 7, 2, None, (20, 21));
        stale.mode = ReadMode::Stale;
        let err = h.on_read(&stale).expect_err("checked for stale reads too");
        assert_eq!(err.invariant, Invariant::StateMachineSafety);
        let mut stale = read(5, 8, 1, None, (20, 21));
        stale.mode = ReadMode::Stale;
        h.on_read(&stale).expect("stale reads may miss writes");
    }
}
