//! Three consensus cores in one process, driven the way the node runtime drives
//! them but with nothing else: messages go into a queue and are stepped into
//! their recipient by the harness, every `Ready` is carried out synchronously
//! with nothing to persist (storage is the WAL bench's business) and nothing to
//! apply (the apply bench's). What is left to measure is the cores themselves.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use keel_raft::{ConfState, Config, InitialState, Message, NodeId, Raft, Role};

/// The node that is elected at start and stays leader.
pub const LEADER: NodeId = 1;
/// Ids of the three members.
const MEMBERS: [NodeId; 3] = [1, 2, 3];
/// The runtime's tick, in the core's clock unit (nanoseconds): `tick_ms` = 10.
const TICK_NANOS: u64 = 10_000_000;
/// Snapshot every this many applied entries, keeping this many behind it, as
/// the server does by default (`snapshot_entries`, `snapshot_trailing_entries`):
/// it keeps the in-memory logs bounded however long criterion runs.
const SNAPSHOT_ENTRIES: u64 = 10_000;
const SNAPSHOT_TRAILING_ENTRIES: u64 = 1_000;

/// The core configuration `keel serve` builds from its defaults: 300 ms election
/// timeout and 50 ms heartbeats in 10 ms ticks, a 300 ms lease with 30 ms of
/// allowed drift (so every heartbeat is a numbered round).
fn config(id: NodeId) -> Config {
    Config {
        id,
        group: 1,
        election_ticks: 30,
        heartbeat_ticks: 5,
        lease_duration: 300_000_000,
        max_clock_drift: 30_000_000,
        ..Config::default()
    }
}

/// Runs `f`, adding its duration to `busy` when there is one.
fn timed<R>(busy: Option<&mut Duration>, f: impl FnOnce() -> R) -> R {
    match busy {
        Some(total) => {
            let start = Instant::now();
            let r = f();
            *total += start.elapsed();
            r
        }
        None => f(),
    }
}

/// Three cores with node 1 as leader, and the messages between them.
pub struct Cluster {
    /// `cores[id - 1]`.
    cores: Vec<Raft>,
    queue: VecDeque<Message>,
    /// The runtime clock handed to `set_clock`, in nanoseconds.
    now: u64,
    /// Time spent inside the leader's core (propose, step, tick, ready, advance,
    /// compact) while it is `Some`.
    leader_busy: Option<Duration>,
    /// Each node's applied index at its last log compaction.
    compacted_at: [u64; 3],
    /// Read states handed out so far, by any node.
    read_states: usize,
}

impl Cluster {
    /// Three fresh cores; node 1 campaigns and wins, and its first entry (the
    /// NO-OP of its term) is committed everywhere.
    pub fn new() -> Cluster {
        let cores = MEMBERS
            .iter()
            .map(|&id| {
                let init = InitialState {
                    conf: ConfState::with_voters(MEMBERS),
                    ..InitialState::default()
                };
                Raft::new(config(id), init, id).expect("valid config")
            })
            .collect();
        let mut cluster = Cluster {
            cores,
            queue: VecDeque::new(),
            now: 1,
            leader_busy: None,
            compacted_at: [0; 3],
            read_states: 0,
        };
        let now = cluster.now;
        for id in MEMBERS {
            cluster.core(id).set_clock(now);
        }
        cluster.core(LEADER).campaign();
        cluster.settle();
        assert_eq!(cluster.core(LEADER).role(), Role::Leader, "election failed");
        // Fresh cores assume a lease of an unknown earlier leader may still run
        // (as restarted nodes must): the new leader commits its NO-OP only once
        // that much clock time has passed. Heartbeat rounds advance the clock.
        for round in 0.. {
            if cluster.all_committed() {
                break;
            }
            assert!(round < 100, "the leader never commits its first entry");
            cluster.heartbeat_round();
        }
        // One more round carries the commit index to the followers.
        cluster.heartbeat_round();
        cluster
    }

    fn core(&mut self, id: NodeId) -> &mut Raft {
        &mut self.cores[(id - 1) as usize]
    }

    /// Starts (or stops, with `false`) adding up the leader's time.
    pub fn time_leader(&mut self, on: bool) {
        self.leader_busy = on.then_some(Duration::ZERO);
    }

    /// The leader's time since [`Cluster::time_leader`] was turned on.
    pub fn leader_busy(&self) -> Duration {
        self.leader_busy.unwrap_or_default()
    }

    /// Whether the leader has committed everything it appended (checked after a
    /// bench, so that it measured commits and not a pile of proposals).
    pub fn all_committed(&self) -> bool {
        let leader = &self.cores[(LEADER - 1) as usize];
        leader.commit_index() == leader.last_index()
    }

    /// Read states handed out so far.
    pub fn read_states(&self) -> usize {
        self.read_states
    }

    /// Proposes `count` entries carrying `payload` on the leader (not settled).
    pub fn propose(&mut self, payload: &Bytes, count: usize) {
        let leader = &mut self.cores[(LEADER - 1) as usize];
        timed(self.leader_busy.as_mut(), || {
            for _ in 0..count {
                leader
                    .propose(payload.clone())
                    .expect("the leader accepts proposals");
            }
        });
    }

    /// Asks node `on` for a linearizable read tagged `ctx` (not settled).
    pub fn read_index(&mut self, on: NodeId, ctx: u64) {
        self.core(on).read_index(ctx).expect("a leader is known");
    }

    /// Ticks the leader until it sends a heartbeat, then settles: one heartbeat
    /// round, as every `heartbeat_ticks` on a live node.
    pub fn heartbeat_round(&mut self) {
        for _ in 0..config(LEADER).heartbeat_ticks {
            self.now += TICK_NANOS;
            let now = self.now;
            let leader = &mut self.cores[(LEADER - 1) as usize];
            timed(self.leader_busy.as_mut(), || {
                leader.set_clock(now);
                leader.tick();
            });
        }
        self.settle();
    }

    /// Carries out every node's Readys and delivers messages until none is left
    /// in flight, then compacts logs that grew by a snapshot interval.
    pub fn settle(&mut self) {
        for id in MEMBERS {
            self.process(id);
        }
        while let Some(m) = self.queue.pop_front() {
            let to = m.to;
            let now = self.now;
            let core = &mut self.cores[(to - 1) as usize];
            let busy = self.leader_busy.as_mut().filter(|_| to == LEADER);
            timed(busy, || {
                // As the runtime does: a lease heard in a message is measured
                // from no earlier than its arrival.
                core.set_clock(now);
                core.step(m).expect("well-formed message");
            });
            self.process(to);
        }
        for id in MEMBERS {
            self.compact_if_due(id);
        }
    }

    /// Carries out `id`'s Readys per the contract (synchronously).
    fn process(&mut self, id: NodeId) {
        let core = &mut self.cores[(id - 1) as usize];
        let mut busy = self.leader_busy.as_mut().filter(|_| id == LEADER);
        loop {
            let ready = timed(busy.as_deref_mut(), || {
                core.has_ready().then(|| core.ready())
            });
            let Some(mut rd) = ready else { break };
            self.queue.extend(rd.messages.drain(..));
            // Step 2 (persist) has nothing to do; persisted messages follow.
            self.queue.extend(rd.persisted_messages.drain(..));
            self.read_states += rd.read_states.len();
            timed(busy.as_deref_mut(), || core.advance(rd));
        }
    }

    /// Takes a snapshot (metadata only) and compacts `id`'s log once it applied
    /// [`SNAPSHOT_ENTRIES`] since the last time.
    fn compact_if_due(&mut self, id: NodeId) {
        let i = (id - 1) as usize;
        let core = &mut self.cores[i];
        let applied = core.applied_index();
        if applied < self.compacted_at[i] + SNAPSHOT_ENTRIES {
            return;
        }
        let busy = self.leader_busy.as_mut().filter(|_| id == LEADER);
        timed(busy, || {
            let meta = core.snapshot_meta(applied).expect("applied and in the log");
            let keep_from = applied.saturating_sub(SNAPSHOT_TRAILING_ENTRIES) + 1;
            core.compact(meta, keep_from)
                .expect("compaction of applied entries");
        });
        self.compacted_at[i] = applied;
    }
}
