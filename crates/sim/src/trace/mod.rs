//! The run's trace: what happened, in order, for failure reports, `--verbose`, and a
//! fingerprint that proves two runs of one seed were identical.
//!
//! Only the last [`RING`] events are kept (a report shows the tail for the nodes
//! involved); every event, kept or not, is folded into the fingerprint.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};

use keel_raft::{Index, NodeId, Role, Term};

use crate::config::{TICK, Time};
use crate::hash::StableHasher;

mod message;
mod read;

pub use message::{BodySummary, MsgSummary};
pub use read::ReadStep;

/// Events kept for reports.
const RING: usize = 4096;

/// Something that happened in the run.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TraceEvent {
    /// A phase of the run began.
    Phase(&'static str),
    /// A node's clock ticked.
    Tick(NodeId),
    /// A message was handed to the network; `copies` is 0 if it was dropped at once
    /// and 2 if it was duplicated.
    Send {
        /// The message.
        msg: MsgSummary,
        /// Copies scheduled for delivery.
        copies: u8,
    },
    /// A message reached its recipient.
    Deliver(MsgSummary),
    /// A message in flight was lost because of a cut link or a down recipient.
    Lost {
        /// The message.
        msg: MsgSummary,
        /// Why.
        why: &'static str,
    },
    /// A client proposal reached a node.
    Propose {
        /// The node asked.
        node: NodeId,
        /// The proposal's id.
        proposal: u64,
        /// `(index, term)` if accepted.
        accepted: Option<(Index, Term)>,
    },
    /// An operator's request (membership change or leadership transfer) reached
    /// a node.
    Admin {
        /// The node asked.
        node: NodeId,
        /// What was asked.
        what: String,
        /// The answer: `Ok` or the refusal.
        outcome: String,
    },
    /// A client was told "ok".
    Ack {
        /// The node that answered.
        node: NodeId,
        /// The proposal.
        proposal: u64,
        /// Where it committed.
        index: Index,
    },
    /// A node's role, term or known leader changed.
    Role {
        /// The node.
        node: NodeId,
        /// Its new role.
        role: Role,
        /// Its term.
        term: Term,
        /// The leader it knows of (0 if none).
        leader: NodeId,
    },
    /// A node's storage was given entries and/or its hard state (not yet durable).
    Write {
        /// The node.
        node: NodeId,
        /// First and last entry index written, if any.
        entries: Option<(Index, Index)>,
        /// `(term, vote, commit)` written, if any.
        hard_state: Option<(Term, NodeId, Index)>,
    },
    /// A node's fsync completed.
    Synced {
        /// The node.
        node: NodeId,
        /// How many `Ready`s it covered (more than one: group commit).
        readys: usize,
    },
    /// An asynchronous node's core was told that its log is durable up to an entry.
    Persisted {
        /// The node.
        node: NodeId,
        /// The entry's index.
        index: Index,
        /// The entry's term.
        term: Term,
    },
    /// A node applied committed entries `first..=last`.
    Apply {
        /// The node.
        node: NodeId,
        /// First applied index.
        first: Index,
        /// Last applied index.
        last: Index,
    },
    /// A node lost power.
    Crash {
        /// The node.
        node: NodeId,
        /// Whether an fsync was in flight.
        mid_sync: bool,
    },
    /// A node restarted from its disk.
    Restart {
        /// The node.
        node: NodeId,
        /// The form of the `Ready` contract this incarnation uses.
        driver: &'static str,
        /// Recovered term.
        term: Term,
        /// Recovered vote.
        vote: NodeId,
        /// Index of the snapshot the recovered log starts after (0 if none).
        snapshot: Index,
        /// Recovered last log index.
        last_index: Index,
        /// State machine's applied index.
        applied: Index,
    },
    /// Snapshot activity of a node; `peer` is the other end of a transfer (0 if
    /// none).
    Snapshot {
        /// The node.
        node: NodeId,
        /// The other end of a transfer, or 0.
        peer: NodeId,
        /// The snapshot's index.
        index: Index,
        /// The snapshot's term.
        term: Term,
        /// What happened.
        step: SnapshotStep,
    },
    /// A client read's progress at a node.
    Read {
        /// The node.
        node: NodeId,
        /// The read's id.
        read: u64,
        /// What happened.
        step: ReadStep,
    },
    /// A node's clock, as drawn for the run.
    Clock {
        /// The node.
        node: NodeId,
        /// Its rate, in clock units per million units of simulated time.
        rate_ppm: u64,
    },
    /// A new leader holds back commits until leases it inherited ran out.
    LeaseWait {
        /// The node.
        node: NodeId,
        /// Its term.
        term: Term,
        /// How long, on its clock.
        remaining: u64,
    },
    /// A paused node resumed; `held` events that arrived meanwhile are due now.
    Resumed {
        /// The node.
        node: NodeId,
        /// How many events it held.
        held: usize,
    },
    /// A replica went quiet or woke (runs with quiescence on).
    Quiet {
        /// The replica.
        node: NodeId,
        /// What happened: "quiesced" (a leader sent its last heartbeat), or the
        /// reason a follower was woken from outside the core.
        what: &'static str,
    },
    /// A fault began.
    FaultOn(String),
    /// A fault ended.
    FaultOff(String),
}

impl TraceEvent {
    /// Whether the event concerns `node` (faults and phases concern everyone).
    pub fn involves(&self, node: NodeId) -> bool {
        match self {
            TraceEvent::Phase(_) | TraceEvent::FaultOn(_) | TraceEvent::FaultOff(_) => true,
            TraceEvent::Tick(n) => *n == node,
            TraceEvent::Send { msg, .. } | TraceEvent::Lost { msg, .. } => {
                msg.from == node || msg.to == node
            }
            TraceEvent::Deliver(msg) => msg.from == node || msg.to == node,
            TraceEvent::Propose { node: n, .. }
            | TraceEvent::Admin { node: n, .. }
            | TraceEvent::Ack { node: n, .. }
            | TraceEvent::Role { node: n, .. }
            | TraceEvent::Write { node: n, .. }
            | TraceEvent::Synced { node: n, .. }
            | TraceEvent::Persisted { node: n, .. }
            | TraceEvent::Apply { node: n, .. }
            | TraceEvent::Crash { node: n, .. }
            | TraceEvent::Restart { node: n, .. }
            | TraceEvent::Read { node: n, .. }
            | TraceEvent::LeaseWait { node: n, .. }
            | TraceEvent::Clock { node: n, .. }
            | TraceEvent::Resumed { node: n, .. }
            | TraceEvent::Quiet { node: n, .. } => *n == node,
            TraceEvent::Snapshot { node: n, peer, .. } => *n == node || *peer == node,
        }
    }
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceEvent::Phase(name) => write!(f, "=== {name} ==="),
            TraceEvent::Tick(n) => write!(f, "tick {n}"),
            TraceEvent::Send { msg, copies } => match copies {
                0 => write!(f, "send {msg} [dropped]"),
                1 => write!(f, "send {msg}"),
                c => write!(f, "send {msg} [x{c}]"),
            },
            TraceEvent::Deliver(msg) => write!(f, "deliver {msg}"),
            TraceEvent::Lost { msg, why } => write!(f, "lost {msg} ({why})"),
            TraceEvent::Propose {
                node,
                proposal,
                accepted,
            } => match accepted {
                Some((i, t)) => write!(f, "propose #{proposal} at {node}: accepted {i}@{t}"),
                None => write!(f, "propose #{proposal} at {node}: refused"),
            },
            TraceEvent::Ack {
                node,
                proposal,
                index,
            } => write!(f, "ack #{proposal} by {node} at index {index}"),
            TraceEvent::Admin {
                node,
                what,
                outcome,
            } => write!(f, "admin at {node}: {what}: {outcome}"),
            TraceEvent::Role {
                node,
                role,
                term,
                leader,
            } => write!(
                f,
                "node {node} is {} in term {term} (leader {leader})",
                role.as_str()
            ),
            TraceEvent::Write {
                node,
                entries,
                hard_state,
            } => {
                write!(f, "node {node} writes")?;
                if let Some((a, b)) = entries {
                    write!(f, " entries {a}..={b}")?;
                }
                if let Some((t, v, c)) = hard_state {
                    write!(f, " hard state (term {t}, vote {v}, commit {c})")?;
                }
                Ok(())
            }
            TraceEvent::Synced { node, readys } => match readys {
                1 => write!(f, "node {node} fsync done"),
                n => write!(f, "node {node} fsync done ({n} Readys)"),
            },
            TraceEvent::Persisted { node, index, term } => {
                write!(f, "node {node} told: durable through {index}@{term}")
            }
            TraceEvent::Apply { node, first, last } => {
                write!(f, "node {node} applies {first}..={last}")
            }
            TraceEvent::Crash { node, mid_sync } => {
                let during = if *mid_sync { " during an fsync" } else { "" };
                write!(f, "node {node} CRASHES{during}")
            }
            TraceEvent::Restart {
                node,
                driver,
                term,
                vote,
                snapshot,
                last_index,
                applied,
            } => write!(
                f,
                "node {node} RESTARTS ({driver}): term {term}, vote {vote}, snapshot {snapshot}, \
                 last index {last_index}, applied {applied}"
            ),
            TraceEvent::Snapshot {
                node,
                peer,
                index,
                term,
                step,
            } => {
                write!(f, "node {node} snapshot {index}@{term}")?;
                if *peer != 0 {
                    write!(f, " (peer {peer})")?;
                }
                write!(f, ": {step}")
            }
            TraceEvent::Read { node, read, step } => write!(f, "read #{read} at {node}: {step}"),
            TraceEvent::Clock { node, rate_ppm } => write!(
                f,
                "node {node}'s clock runs at {:+.2}% of the nominal rate",
                (*rate_ppm as f64 - 1e6) / 1e4
            ),
            TraceEvent::LeaseWait {
                node,
                term,
                remaining,
            } => write!(
                f,
                "node {node} leads term {term} but commits nothing for {remaining} more clock \
                 units (an old leader's lease)"
            ),
            TraceEvent::Resumed { node, held } => {
                write!(f, "node {node} RESUMES ({held} events held)")
            }
            TraceEvent::Quiet { node, what } => write!(f, "node {node} {what}"),
            TraceEvent::FaultOn(what) => write!(f, "FAULT {what}"),
            TraceEvent::FaultOff(what) => write!(f, "HEAL {what}"),
        }
    }
}

/// What happened to a snapshot (see [`TraceEvent::Snapshot`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SnapshotStep {
    /// The node started writing a snapshot of its state machine in the background.
    Writing {
        /// Log entries the core will keep before it.
        trailing: u64,
    },
    /// The write completed: the snapshot is durable.
    Written,
    /// The core dropped its log before `first`.
    Compacted {
        /// The core's first log index now.
        first: Index,
    },
    /// The WAL now starts after the snapshot; segments up to `up_to` may go.
    WalCompacted {
        /// Highest index whose segments may be deleted.
        up_to: Index,
    },
    /// A transfer to the peer started.
    Sending {
        /// Size of the snapshot.
        bytes: u64,
    },
    /// A transfer to the peer was not started: one is running already.
    AlreadySending,
    /// The transfer to the peer never arrived.
    Lost {
        /// Why.
        why: &'static str,
    },
    /// The node received, verified and stored the peer's snapshot.
    Received,
    /// The node learned how its transfer to the peer ended.
    Reported {
        /// Whether the peer received it.
        success: bool,
    },
    /// The node's core took the (leader's) snapshot: its log starts after it.
    Restored,
    /// The node installed the snapshot into its state machine.
    Installed,
}

impl fmt::Display for SnapshotStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotStep::Writing { trailing } => {
                write!(
                    f,
                    "writing (the core will keep {trailing} entries before it)"
                )
            }
            SnapshotStep::Written => f.write_str("durable"),
            SnapshotStep::Compacted { first } => write!(f, "core log now starts at {first}"),
            SnapshotStep::WalCompacted { up_to } => {
                write!(f, "WAL now starts after it (segments up to {up_to} may go)")
            }
            SnapshotStep::Sending { bytes } => write!(f, "sending ({bytes} bytes)"),
            SnapshotStep::AlreadySending => f.write_str("not sent: a transfer is running"),
            SnapshotStep::Lost { why } => write!(f, "transfer lost ({why})"),
            SnapshotStep::Received => f.write_str("received and stored"),
            SnapshotStep::Reported { success: true } => f.write_str("transfer reported done"),
            SnapshotStep::Reported { success: false } => f.write_str("transfer reported failed"),
            SnapshotStep::Restored => f.write_str("taken by the core"),
            SnapshotStep::Installed => f.write_str("installed into the state machine"),
        }
    }
}

/// One trace line: when, and what.
#[derive(Clone, Debug)]
pub struct Record {
    /// Scheduler step.
    pub step: u64,
    /// Simulated time.
    pub time: Time,
    /// What happened.
    pub event: TraceEvent,
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[step {:>6} t={:>5}.{:02}] {}",
            self.step,
            self.time / TICK,
            self.time % TICK,
            self.event
        )
    }
}

/// The trace of one run.
#[derive(Debug)]
pub struct Trace {
    ring: VecDeque<Record>,
    fingerprint: StableHasher,
    verbose: bool,
    events: u64,
}

impl Trace {
    /// An empty trace; with `verbose`, every event is printed as it is recorded.
    pub fn new(verbose: bool) -> Self {
        Trace {
            ring: VecDeque::with_capacity(RING),
            fingerprint: StableHasher::default(),
            verbose,
            events: 0,
        }
    }

    /// Records an event.
    pub fn record(&mut self, step: u64, time: Time, event: TraceEvent) {
        step.hash(&mut self.fingerprint);
        time.hash(&mut self.fingerprint);
        event.hash(&mut self.fingerprint);
        self.events += 1;
        let rec = Record { step, time, event };
        // Ticks would be most of the output and say little; the fingerprint has them.
        if self.verbose && !matches!(rec.event, TraceEvent::Tick(_)) {
            println!("{rec}");
        }
        if self.ring.len() == RING {
            self.ring.pop_front();
        }
        self.ring.push_back(rec);
    }

    /// A fingerprint of every event recorded so far: equal for two runs iff (up to
    /// hash collisions) they did the same things in the same order.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint.finish()
    }

    /// Events recorded so far.
    pub fn len(&self) -> u64 {
        self.events
    }

    /// Whether nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// The last `n` kept events that involve any of `nodes` (all events if `nodes`
    /// is empty), oldest first. Ticks are left out: they would crowd out the
    /// interesting lines.
    pub fn tail_for(&self, nodes: &[NodeId], n: usize) -> Vec<&Record> {
        let mut out: Vec<&Record> = self
            .ring
            .iter()
            .rev()
            .filter(|r| !matches!(r.event, TraceEvent::Tick(_)))
            .filter(|r| nodes.is_empty() || nodes.iter().any(|&id| r.event.involves(id)))
            .take(n)
            .collect();
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_covers_every_event_and_tail_filters_by_node() {
        let mut a = Trace::new(false);
        let mut b = Trace::new(false);
        for t in [&mut a, &mut b] {
            t.record(1, 10, TraceEvent::Tick(1));
            t.record(2, 20, TraceEvent::Synced { node: 2, readys: 1 });
        }
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.record(3, 30, TraceEvent::Synced { node: 3, readys: 2 });
        assert_ne!(a.fingerprint(), b.fingerprint());

        let tail = b.tail_for(&[3], 10);
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].event, TraceEvent::Synced { node: 3, readys: 2 });
        assert_eq!(tail[0].event.to_string(), "node 3 fsync done (2 Readys)");
        assert_eq!(b.tail_for(&[], 10).len(), 2, "ticks are left out of tails");
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn records_render_readably() {
        let rec = Record {
            step: 7,
            time: 1234,
            event: TraceEvent::Crash {
                node: 2,
                mid_sync: true,
            },
        };
        assert_eq!(
            rec.to_string(),
            "[step      7 t=   12.34] node 2 CRASHES during an fsync"
        );
    }
}
