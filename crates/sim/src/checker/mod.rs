//! The safety checker: observes every write, fsync, commit, role change, apply and
//! restart of every node, and reports the first broken invariant.
//!
//! It keeps two views of each node's log. The *core's* log — what the core handed
//! out in `Ready::entries` — is what elections, commits and log matching are about.
//! The *stored* log — what storage was given, and up to where it was fsynced — is
//! what survives a crash. Under the synchronous contract the two move together;
//! under the asynchronous one the core's log runs ahead while the storage thread
//! catches up, and the checker requires that the core never counts (applies, or
//! reports as persisted) anything the stored log does not durably hold.
//!
//! Every check is incremental — a comparison or two per observed change, against
//! structures that remember the whole run — so checking after every step costs no
//! more than the step. See the submodules for the invariants and why each check is
//! sound.
//!
//! Reads (the `reads` module): every read the client was answered is checked when
//! it is served, against the acknowledged writes, the reads completed before it, the
//! committed log and the commit index known when it began.
//!
//! Snapshots and log compaction: a log that starts after a snapshot is shadowed as
//! the committed log up to the snapshot (which must end at a committed entry), so
//! log matching, leader completeness and the committed prefix reason about
//! compacted logs unchanged; a state machine that skipped ahead (it took a
//! snapshot, or restarted) must hold the digest of the reference state machine at
//! its applied index.

mod apply;
mod commit;
mod durability;
mod logs;
mod reads;

use std::collections::BTreeMap;
use std::fmt;

use keel_raft::{Entry, HardState, Index, NodeId, Role, SnapshotMeta, Term};

use crate::hash::StateDigest;
use apply::ApplyHistory;
use commit::CommitHistory;
use durability::DurableState;
use logs::{LogRegistry, LogShadow};
use reads::ReadHistory;

pub use reads::{Moment, ReadRecord};

/// The properties the simulator checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invariant {
    /// At most one leader per term (Raft §5.2).
    ElectionSafety,
    /// Same index and term ⇒ same log prefix (Raft §5.3).
    LogMatching,
    /// Committed entries are in every later leader's log (Raft §5.4).
    LeaderCompleteness,
    /// No two different entries applied at one index (Raft §5.4.3).
    StateMachineSafety,
    /// A running node's commit index never decreases.
    MonotonicCommit,
    /// A node's term never decreases while it runs, and never restarts below its
    /// last fsynced term (Raft Figure 2).
    MonotonicTerm,
    /// The globally committed prefix never changes.
    CommittedPrefix,
    /// Storage gives back everything fsynced before a crash.
    Durability,
    /// A node applies, or its core counts as persisted, only entries durable in its
    /// own storage (the `Ready` contract's promise, in both of its forms).
    LocalDurability,
    /// A write the client was told "ok" for is missing from a replica after healing.
    LostAcknowledgedWrite,
    /// Replicas that applied the same log hold different data after healing.
    ReplicaDivergence,
    /// A read in a mode other than `stale` returned a state that no linearization
    /// of the history allows (see the `reads` module).
    LinearizableRead,
    /// A read in a mode other than `stale` returned a state older than the commit
    /// index known when it was invoked: stronger than linearizability, and what
    /// ReadIndex and leases promise (see the `reads` module).
    FreshRead,
    /// The core's own `validate()` (or another assertion in it) failed.
    CoreInvariant,
}

impl Invariant {
    /// Human-readable name, as printed in reports.
    pub fn name(self) -> &'static str {
        match self {
            Invariant::ElectionSafety => "election safety",
            Invariant::LogMatching => "log matching",
            Invariant::LeaderCompleteness => "leader completeness",
            Invariant::StateMachineSafety => "state machine safety",
            Invariant::MonotonicCommit => "monotonic commit",
            Invariant::MonotonicTerm => "monotonic term",
            Invariant::CommittedPrefix => "committed prefix never changes",
            Invariant::Durability => "durability of fsynced state",
            Invariant::LocalDurability => "nothing counted durable before its fsync",
            Invariant::LostAcknowledgedWrite => "no lost acknowledged write",
            Invariant::ReplicaDivergence => "replica convergence",
            Invariant::LinearizableRead => "linearizable reads",
            Invariant::FreshRead => "fresh reads (every commit before the read)",
            Invariant::CoreInvariant => "core invariant (validate / assertion)",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which one.
    pub invariant: Invariant,
    /// The nodes involved, most relevant first (for the report's trace excerpt).
    pub nodes: Vec<NodeId>,
    /// What exactly was seen.
    pub detail: String,
}

impl Violation {
    /// A violation of `invariant` involving `nodes`.
    pub fn new(invariant: Invariant, nodes: Vec<NodeId>, detail: String) -> Self {
        Violation {
            invariant,
            nodes,
            detail,
        }
    }
}

/// What the checker tracks for one node.
#[derive(Debug, Default)]
struct NodeState {
    /// The core's log, as handed out.
    log: LogShadow,
    /// What storage holds, and how much of it is durable.
    durable: DurableState,
    /// Last commit index observed while running; `None` before the first
    /// observation after a (re)start.
    commit: Option<Index>,
    last_applied: Index,
    /// Last (role, term) observed, to look at leadership only when it changes.
    role: Option<(Role, Term)>,
    /// Highest term observed while running; after a crash, the last synced term
    /// (an unsynced term bump may legitimately be lost with the process).
    max_term: Term,
}

/// The checker of one run.
#[derive(Debug, Default)]
pub struct Checker {
    nodes: BTreeMap<NodeId, NodeState>,
    registry: LogRegistry,
    history: CommitHistory,
    applied: ApplyHistory,
    reads: ReadHistory,
}

impl Checker {
    /// A checker for a cluster of nodes `1..=n`, all starting empty.
    pub fn new(n: usize) -> Self {
        Checker::for_nodes(1..=n as NodeId)
    }

    /// A checker for one group whose replicas have the ids `ids`, all starting
    /// empty. Every invariant is about one group: a run with several keeps one
    /// checker per group.
    pub fn for_nodes(ids: impl IntoIterator<Item = NodeId>) -> Self {
        Checker {
            nodes: ids
                .into_iter()
                .map(|id| (id, NodeState::default()))
                .collect(),
            ..Checker::default()
        }
    }

    fn node(&mut self, id: NodeId) -> &mut NodeState {
        self.nodes.entry(id).or_default()
    }

    /// `node`'s core handed out `entries` to persist: its log now holds them (the
    /// first one replaces the entry at its index and everything after it). Checks
    /// log matching.
    pub fn on_log(&mut self, node: NodeId, entries: &[Entry]) -> Result<(), Violation> {
        let st = self.nodes.entry(node).or_default();
        self.registry.write(node, &mut st.log, entries)
    }

    /// `node`'s storage was given `entries` and/or `hs` (not yet durable). They were
    /// handed out by the core before, in the same order.
    pub fn on_write(&mut self, node: NodeId, entries: &[Entry], hs: Option<HardState>) {
        self.node(node).durable.on_write(entries, hs);
    }

    /// `node`'s fsync completed: everything its storage was given is durable.
    pub fn on_sync(&mut self, node: NodeId) {
        self.node(node).durable.on_sync();
    }

    /// Checks that `node`'s core, which counts its log as durable up to `persisted`,
    /// is right: its storage durably holds that prefix of the core's log.
    pub fn check_persisted(&self, node: NodeId, persisted: Index) -> Result<(), Violation> {
        let Some(st) = self.nodes.get(&node) else {
            return Ok(());
        };
        if st
            .durable
            .holds_prefix(persisted, st.log.hash_at(persisted))
        {
            return Ok(());
        }
        Err(Violation::new(
            Invariant::LocalDurability,
            vec![node],
            format!(
                "node {node}'s core counts its log as durable up to index {persisted}, but \
                 its storage does not durably hold that prefix (a crash now could lose it)"
            ),
        ))
    }

    /// `node` lost power: forget what only its process knew.
    pub fn on_crash(&mut self, node: NodeId) {
        let st = self.node(node);
        st.commit = None;
        st.role = None;
        st.max_term = st.durable.synced_term();
    }

    /// `node`'s storage recovered `hs`, the snapshot its log starts after, the
    /// `entries` after it, and a state machine at `applied` with `digest` (before the
    /// runtime hands them to the core). Checks durability, log matching, and that
    /// the snapshot and the state machine are the committed state.
    pub fn on_recover(
        &mut self,
        node: NodeId,
        hs: &HardState,
        snapshot: Option<&SnapshotMeta>,
        entries: &[Entry],
        (applied, digest): (Index, StateDigest),
    ) -> Result<(), Violation> {
        let (index, term) = snapshot.map_or((0, 0), |s| (s.index, s.term));
        let mut log = self.history.committed_prefix(node, index, term)?;
        let written = log.write(entries);
        let st = self.nodes.entry(node).or_default();
        st.durable.check_recovery(node, hs, &log, index)?;
        self.registry.check_all(node, written)?;
        self.applied
            .check_state(node, applied, digest, "restarted")?;
        st.log = log;
        st.durable = DurableState::recovered(*hs, &st.log);
        st.last_applied = applied;
        Ok(())
    }

    /// `node`'s core took a leader's snapshot (`Ready::snapshot`): its log is now
    /// the committed log up to the snapshot, and its state machine skips there.
    pub fn on_restore(&mut self, node: NodeId, meta: &SnapshotMeta) -> Result<(), Violation> {
        let log = self.history.committed_prefix(node, meta.index, meta.term)?;
        let st = self.node(node);
        st.log = log;
        st.last_applied = meta.index;
        Ok(())
    }

    /// `node`'s storage installed the snapshot `meta`, and its state machine now has
    /// `digest`: the log it stores is replaced (durable at the next fsync).
    pub fn on_install(
        &mut self,
        node: NodeId,
        meta: &SnapshotMeta,
        digest: StateDigest,
    ) -> Result<(), Violation> {
        let base = self.history.committed_prefix(node, meta.index, meta.term)?;
        self.applied
            .check_state(node, meta.index, digest, "installed a leader's snapshot")?;
        self.node(node).durable.on_install(&base);
        Ok(())
    }

    /// `node` is writing a snapshot `meta` of its state machine: it must end at a
    /// committed entry. (Its contents are checked wherever it is installed or
    /// loaded.)
    pub fn on_snapshot(&self, node: NodeId, meta: &SnapshotMeta) -> Result<(), Violation> {
        self.history.check_snapshot(node, meta.index, meta.term)
    }

    /// Observes a running core's role, term and commit index. Call after every
    /// interaction with the core, once its new entries have been written.
    pub fn observe(
        &mut self,
        node: NodeId,
        role: Role,
        term: Term,
        commit: Index,
    ) -> Result<(), Violation> {
        let st = self.nodes.entry(node).or_default();
        if term < st.max_term {
            // Also what makes the leader-completeness reasoning sound: a node that
            // learns a commit in term T learned it from a leader of a term <= T.
            return Err(Violation::new(
                Invariant::MonotonicTerm,
                vec![node],
                format!(
                    "node {node}'s term went back from {} to {term}",
                    st.max_term
                ),
            ));
        }
        st.max_term = term;
        if role == Role::Leader && st.role != Some((role, term)) {
            self.history.observe_leader(node, term, &st.log)?;
        }
        st.role = Some((role, term));
        // The commit index came from a leader of a term no later than the node's,
        // or of its log's last entry: a node that restarts may hold a leader's
        // snapshot its runtime stored while the newer term it had heard of was not
        // durable yet (a crash before the fsync), so it comes back in an older
        // term than the snapshot's, knowing what that snapshot covers committed.
        let learned_in = term.max(st.log.term(st.log.last_index()).unwrap_or(0));
        self.history
            .observe_commit(node, learned_in, commit, st.commit, &st.log)?;
        st.commit = Some(commit);
        Ok(())
    }

    /// `node` applied `entry` to its state machine.
    pub fn on_apply(&mut self, node: NodeId, entry: &Entry) -> Result<(), Violation> {
        let st = self.nodes.entry(node).or_default();
        if !st.durable.holds(entry) {
            // The state machine may be flushed at any time: an entry applied before
            // it is durable in the log can outlive it in a crash.
            return Err(Violation::new(
                Invariant::LocalDurability,
                vec![node],
                format!(
                    "node {node} applied entry {}@{} before its own storage durably held it",
                    entry.index, entry.term
                ),
            ));
        }
        if st.commit.is_none_or(|c| entry.index > c) {
            return Err(Violation::new(
                Invariant::StateMachineSafety,
                vec![node],
                format!(
                    "node {node} applied index {} beyond its commit index {:?}",
                    entry.index, st.commit
                ),
            ));
        }
        self.applied.apply(node, &mut st.last_applied, entry)?;
        self.reads.on_apply(entry);
        Ok(())
    }

    /// The client was told "ok" for proposal `attempt`, committed at `index`.
    pub fn on_ack(&mut self, at: Moment, attempt: u64, index: Index) {
        self.reads.on_ack(at, attempt, index);
    }

    /// A node served a read: checks it against the history (see the `reads`
    /// module).
    pub fn on_read(&mut self, read: &ReadRecord) -> Result<(), Violation> {
        self.reads.on_read(read)
    }

    /// The node's last log index as the checker saw it written (for cross-checking
    /// the shadow against the core).
    pub fn last_index(&self, node: NodeId) -> Index {
        self.nodes.get(&node).map_or(0, |s| s.log.last_index())
    }

    /// Term of `node`'s last entry as the checker saw it written (0 if none).
    pub fn last_term(&self, node: NodeId) -> Term {
        self.nodes.get(&node).map_or(0, |s| {
            let last = s.log.last_index();
            s.log.term(last).unwrap_or(0)
        })
    }

    /// Length of the globally committed log.
    pub fn committed_len(&self) -> Index {
        self.history.committed_len()
    }

    /// Number of terms in which a leader was seen.
    pub fn leader_terms(&self) -> usize {
        self.history.leader_terms()
    }

    /// The leader observed for `term`, if any.
    pub fn leader_of(&self, term: Term) -> Option<NodeId> {
        self.history.leader_of(term)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use keel_raft::EntryKind;

    fn entries(first: Index, terms: &[Term]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, &term)| Entry {
                term,
                index: first + i as Index,
                kind: EntryKind::Normal,
                data: Bytes::new(),
            })
            .collect()
    }

    /// Found by seed 629 of 3 nodes (first campaign with pauses): a node that heard
    /// of term 2, stored the term-2 leader's snapshot, and crashed before its new
    /// term was durable restarts in term 1 knowing entries of term 2 committed. The
    /// term-2 leader wrote those entries itself, so it did not have them when
    /// elected — no violation — but a later leader must have them.
    #[test]
    fn a_restart_behind_its_snapshots_term_is_judged_by_the_snapshots_term() {
        let mut c = Checker::new(3);
        c.on_log(3, &entries(1, &[1])).expect("log");
        c.observe(3, Role::Leader, 2, 1).expect("leader of term 2");
        c.on_log(3, &entries(2, &[2, 2])).expect("log");
        c.observe(3, Role::Leader, 2, 3).expect("commits");
        c.on_log(1, &entries(1, &[1, 2, 2])).expect("log");
        c.observe(1, Role::Follower, 1, 3)
            .expect("committed in term 2, by the leader that wrote it");
        c.on_log(2, &entries(1, &[1])).expect("log");
        let err = c
            .observe(2, Role::Leader, 3, 0)
            .expect_err("a leader of term 3 without the entries committed in term 2");
        assert_eq!(err.invariant, Invariant::LeaderCompleteness);
    }
}
