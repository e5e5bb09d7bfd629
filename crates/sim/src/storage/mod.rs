//! A simulated node's durable state: its disk, and the storage opened on it.
//!
//! The [`Disk`] outlives the node's process (it is what survives a crash); a
//! [`NodeStorage`] is what one incarnation of the process opened on it, and is
//! dropped at a crash. Two implementations:
//!
//! - [`real`]: `keel-storage`'s WAL, KV state machine and snapshot files on a
//!   crash-simulating `MemVfs` — the code a real node runs;
//! - [`model`]: an idealised model of the same contract, with no encoding and no
//!   torn writes. A seed that fails on the real storage but passes on the model points
//!   at storage; one that fails on both points at consensus.
//!
//! Both hold snapshots of the state machine and a log that may start after one.
//! Opening a disk reconciles the three as the server does at start-up
//! ([`reconcile`]): the newest durable snapshot is loaded into the state machine if
//! the state machine is behind it, and the log is made to continue it.

pub mod model;
pub mod real;

use std::rc::Rc;

use bytes::Bytes;
use keel_raft::{Entry, GroupId, HardState, Index, SnapshotMeta};
use keel_storage::kv::KvReadView;
use keel_storage::wal::{LogStart, LogStartKind};

use crate::config::StorageKind;
use crate::hash::StateDigest;

/// The first Raft group of every simulated node (a run with `groups = 1` runs it
/// alone); groups are numbered `1..=groups`.
pub const GROUP: GroupId = 1;

/// Snapshots a node keeps (the newest ones), as the server does: a damaged newest
/// one would still leave one to fall back to.
///
/// Only snapshots the state machine has reached count: one beyond its applied index
/// was received from a leader, and the core may still take it — the `InstallSnapshot`
/// waits in a busy node's inbox, or the install in its storage thread's queue — so
/// it is never deleted. (Keeping just the newest files by name, as
/// `SnapshotStore::purge` does, deletes such a snapshot when three or more arrive
/// while the node is busy, and the install then fails: the simulator found it.)
pub const KEEP_SNAPSHOTS: usize = 2;

/// Which of the snapshots at `indexes` (oldest first) to delete when the state
/// machine is at `applied`: all but the newest [`KEEP_SNAPSHOTS`] at or below it.
pub(crate) fn snapshots_to_delete(indexes: &[Index], applied: Index) -> usize {
    let reached = indexes.iter().take_while(|&&i| i <= applied).count();
    reached.saturating_sub(KEEP_SNAPSHOTS)
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The write-ahead log failed.
    #[error("WAL: {0}")]
    Wal(#[from] keel_storage::wal::WalError),
    /// The state machine failed.
    #[error("state machine: {0}")]
    Kv(#[from] keel_storage::kv::KvError),
    /// A snapshot file, transfer or install failed.
    #[error("snapshot: {0}")]
    Snapshot(#[from] keel_storage::snapshot::SnapshotError),
    /// Another filesystem operation failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The state machine did something other than what the command asked for, or
    /// the model storage detected misuse.
    #[error("state machine: {0}")]
    StateMachine(String),
    /// The disk holds no consistent state to start from: the log was cut where no
    /// durable snapshot covers it, or the state machine is ahead of the log. The
    /// runtime broke a durability rule (a log must not be dropped before the
    /// snapshot covering it is durable).
    #[error("unrecoverable: {0}")]
    Unrecoverable(String),
    /// The simulated process died in the middle of the operation (an injected
    /// crash): expected, never a bug.
    #[error("the process died (simulated power failure)")]
    Died,
}

/// What storage hands back when a node (re)starts, reconciled as the server does.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// The last durable hard state, its commit index within the log.
    pub hard_state: HardState,
    /// The snapshot the log starts after, if any.
    pub snapshot: Option<SnapshotMeta>,
    /// The durable log after the snapshot (from index 1 without one), contiguous.
    pub entries: Vec<Entry>,
    /// The state machine's applied index (at least the snapshot's).
    pub applied: Index,
    /// Whether recovery discarded a torn write at the end of the log (expected after
    /// a crash in the middle of a write; counted to show the runs exercise it).
    pub torn_tail: bool,
    /// Whether the state machine was behind the newest snapshot and was replaced by
    /// it at start-up.
    pub loaded_snapshot: bool,
}

/// What a disk holds, as its storage opened it, before [`reconcile`].
#[derive(Clone, Debug, Default)]
pub struct Found {
    /// The last durable hard state.
    pub hard_state: HardState,
    /// Where the durable log starts, if it was compacted or a snapshot installed.
    pub log_start: Option<LogStart>,
    /// The durable log after the log start.
    pub entries: Vec<Entry>,
    /// The newest durable snapshot.
    pub snapshot: Option<SnapshotMeta>,
    /// See [`Recovered::torn_tail`].
    pub torn_tail: bool,
}

/// A consistent view of the state machine at its applied index, from which a
/// snapshot is written in the background while applies go on.
#[derive(Debug)]
pub enum StateView {
    /// A redb read transaction of the real state machine.
    Real(Box<KvReadView>),
    /// A copy of the model state machine.
    Model(model::KvModel),
}

/// A snapshot on its way between nodes: what the receiver stores before its core
/// takes the `InstallSnapshot` message.
#[derive(Clone, Debug)]
pub enum SnapshotData {
    /// The bytes of a snapshot file of the real storage.
    File(Bytes),
    /// A snapshot of the model storage.
    Model(Rc<model::ModelSnapshot>),
}

impl SnapshotData {
    /// Size in bytes, for the transfer time.
    pub fn len(&self) -> u64 {
        match self {
            SnapshotData::File(b) => b.len() as u64,
            SnapshotData::Model(s) => s.size(),
        }
    }

    /// Whether there is nothing to send (never, for a real snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The storage one incarnation of a node's process has open.
pub trait NodeStorage {
    /// Buffers entries (the first one replaces the stored entry at its index and all
    /// after it) and the hard state, to be made durable by [`NodeStorage::sync`].
    fn write(
        &mut self,
        entries: &[Entry],
        hard_state: Option<HardState>,
    ) -> Result<(), StorageError>;

    /// Makes everything written so far durable (one fsync).
    fn sync(&mut self) -> Result<(), StorageError>;

    /// Applies committed entries to the state machine, in order. Applies need not
    /// be durable: a crash may roll the state machine back to its last flush, and
    /// the runtime applies the entries again from the log.
    fn apply(&mut self, entries: &[Entry]) -> Result<(), StorageError>;

    /// Makes the state machine's applies so far durable (the server does this
    /// periodically).
    fn flush(&mut self) -> Result<(), StorageError>;

    /// The state machine's applied index.
    fn applied_index(&self) -> Index;

    /// Reads a key from the state machine.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError>;

    /// The digest of the state machine's whole contents, to compare replicas with
    /// each other and with the checker's reference state machine.
    fn digest(&self) -> Result<StateDigest, StorageError>;

    /// A view of the state machine as it is now, to write a snapshot from.
    fn view(&self) -> Result<StateView, StorageError>;

    /// Writes a snapshot of `view` described by `meta` (the view's applied index),
    /// durably and atomically, and deletes old snapshots (see [`KEEP_SNAPSHOTS`]).
    fn write_snapshot(&mut self, view: StateView, meta: &SnapshotMeta) -> Result<(), StorageError>;

    /// The stored snapshot `meta` describes, to send to a peer; `None` if it is gone.
    fn snapshot_data(&self, meta: &SnapshotMeta) -> Result<Option<SnapshotData>, StorageError>;

    /// Stores a snapshot received from a peer, verified and durable, beside this
    /// node's own (the core takes the `InstallSnapshot` message only after this).
    fn receive_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        data: &SnapshotData,
    ) -> Result<(), StorageError>;

    /// Replaces the state machine by the stored snapshot `meta`, atomically and
    /// durably.
    fn install_state(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError>;

    /// Buffers a record that the log now starts after `meta` (every stored entry
    /// is discarded), to be made durable by the next [`NodeStorage::sync`].
    fn start_log_after(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError>;

    /// Log compaction behind a durable snapshot: the log now starts after `start`
    /// (entries after it stay), and stored entries up to `up_to` (at most `start`)
    /// may be deleted. Durable when it returns; does nothing if the log already
    /// starts there or later.
    fn compact_log(
        &mut self,
        start: (Index, keel_raft::Term),
        up_to: Index,
    ) -> Result<(), StorageError>;
}

/// One group's storage as a starting process opened it, and what it recovered.
pub type OpenedGroup = (Box<dyn NodeStorage>, Recovered);

/// A node's disk, which survives crashes. A clone is the same disk (the
/// replicas of the groups a node hosts share it).
#[derive(Clone, Debug)]
pub enum Disk {
    /// A `MemVfs` for the real storage.
    Real(real::RealDisk),
    /// The idealised model.
    Model(model::ModelDisk),
}

impl Disk {
    /// An empty disk of the given kind.
    pub fn new(kind: StorageKind) -> Self {
        match kind {
            StorageKind::Real => Disk::Real(real::RealDisk::default()),
            StorageKind::Model => Disk::Model(model::ModelDisk::default()),
        }
    }

    /// Opens storage on the disk (recovering it) for a starting process hosting
    /// `groups` — one WAL shared by them all — and reconciles each group's
    /// snapshot, log and state machine ([`reconcile`]). The model storage holds
    /// one group only.
    pub fn open(&self, groups: &[GroupId]) -> Result<Vec<OpenedGroup>, StorageError> {
        let opened = match self {
            Disk::Real(d) => d.open(groups)?,
            Disk::Model(d) if groups == [GROUP] => vec![d.open()?],
            Disk::Model(_) => {
                return Err(StorageError::StateMachine(
                    "the model storage holds one group only".into(),
                ));
            }
        };
        opened
            .into_iter()
            .map(|(mut storage, found)| {
                let recovered = reconcile(&mut *storage, found)?;
                Ok((storage, recovered))
            })
            .collect()
    }

    /// A power failure: un-synced writes are lost, kept, or torn as decided by
    /// `seed`. The storage opened before must be dropped first.
    pub fn crash(&self, seed: u64) {
        match self {
            Disk::Real(d) => d.crash(seed),
            Disk::Model(d) => d.crash(seed),
        }
    }

    /// Makes the process die after `ops` more disk operations: used to crash a node
    /// in the middle of an fsync.
    pub fn die_after(&self, ops: u64) {
        match self {
            Disk::Real(d) => d.die_after(ops),
            Disk::Model(d) => d.die_after(ops),
        }
    }
}

/// Start-up, as the server's: with a snapshot, the state machine must be at least
/// at its index (it is loaded if it is behind), and the log must continue it — hold
/// its last entry, or start right after it. A log that does not (a crash between
/// installing a leader's snapshot and recording where the log starts, or a received
/// snapshot beyond the log) is made to start after the snapshot.
///
/// The disk is unrecoverable if its log was cut where no durable snapshot covers
/// the entries before it, or if the state machine applied entries the log no
/// longer has.
pub fn reconcile(storage: &mut dyn NodeStorage, found: Found) -> Result<Recovered, StorageError> {
    let Found {
        mut hard_state,
        log_start,
        mut entries,
        snapshot,
        torn_tail,
    } = found;
    let mut loaded_snapshot = false;
    match (&snapshot, log_start) {
        (None, None) => {}
        (None, Some(ls)) => {
            return Err(StorageError::Unrecoverable(format!(
                "the log starts after index {} but no durable snapshot covers the entries \
                 before it",
                ls.index
            )));
        }
        (Some(meta), _) => {
            if let Some(ls) = log_start
                && ls.index > meta.index
            {
                return Err(StorageError::Unrecoverable(format!(
                    "the newest durable snapshot ends at index {} but the log starts after \
                     index {}: entries {}..={} are nowhere",
                    meta.index,
                    ls.index,
                    meta.index + 1,
                    ls.index
                )));
            }
            if storage.applied_index() < meta.index {
                storage.install_state(meta)?;
                loaded_snapshot = true;
            }
            let holds = |index, term| {
                log_start.is_some_and(|ls| (ls.index, ls.term) == (index, term))
                    || entries.iter().any(|e| (e.index, e.term) == (index, term))
            };
            if holds(meta.index, meta.term) {
                entries.retain(|e| e.index > meta.index);
            } else {
                entries.clear();
                storage.start_log_after(meta)?;
                storage.sync()?;
            }
        }
    }
    let base = snapshot.as_ref().map_or(0, |s| s.index);
    let last = entries.last().map_or(base, |e| e.index);
    let applied = storage.applied_index();
    if applied > last {
        return Err(StorageError::Unrecoverable(format!(
            "the state machine has applied index {applied} but the log ends at {last}"
        )));
    }
    hard_state.commit = hard_state.commit.max(applied).min(last);
    Ok(Recovered {
        hard_state,
        snapshot,
        entries,
        applied,
        torn_tail,
        loaded_snapshot,
    })
}

/// The log start a snapshot install records.
pub(crate) fn installed(meta: &SnapshotMeta) -> LogStart {
    LogStart {
        index: meta.index,
        term: meta.term,
        kind: LogStartKind::Installed,
    }
}
