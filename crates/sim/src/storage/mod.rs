//! A simulated node's durable state: its disk, and the storage opened on it.
//!
//! The [`Disk`] outlives the node's process (it is what survives a crash); a
//! [`NodeStorage`] is what one incarnation of the process opened on it, and is
//! dropped at a crash. Two implementations:
//!
//! - [`real`]: `keel-storage`'s WAL and KV state machine on a crash-simulating
//!   `MemVfs` — the code a real node runs;
//! - [`model`]: an idealised model of the same contract, with no encoding and no
//!   torn writes. A seed that fails on the real storage but passes on the model points
//!   at storage; one that fails on both points at consensus.

pub mod model;
pub mod real;

use bytes::Bytes;
use keel_raft::{Entry, GroupId, HardState, Index};

use crate::config::StorageKind;

/// The one Raft group every simulated node runs.
pub const GROUP: GroupId = 1;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The write-ahead log failed.
    #[error("WAL: {0}")]
    Wal(#[from] keel_storage::wal::WalError),
    /// The state machine failed.
    #[error("state machine: {0}")]
    Kv(#[from] keel_storage::kv::KvError),
    /// The state machine did something other than what the command asked for, or
    /// the model storage detected misuse.
    #[error("state machine: {0}")]
    StateMachine(String),
    /// The simulated process died in the middle of the operation (an injected
    /// crash): expected, never a bug.
    #[error("the process died (simulated power failure)")]
    Died,
}

/// What storage hands back when a node (re)starts.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// The last durable hard state.
    pub hard_state: HardState,
    /// The durable log, contiguous from index 1.
    pub entries: Vec<Entry>,
    /// The state machine's applied index.
    pub applied: Index,
    /// Whether recovery discarded a torn write at the end of the log (expected after
    /// a crash in the middle of a write; counted to show the runs exercise it).
    pub torn_tail: bool,
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

    /// A fingerprint of the state machine's whole contents (equal contents ⇒ equal
    /// fingerprints), to compare replicas after healing.
    fn fingerprint(&self) -> Result<u64, StorageError>;
}

/// A node's disk, which survives crashes.
#[derive(Debug)]
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

    /// Opens storage on the disk (recovering it) for a starting process.
    pub fn open(&self) -> Result<(Box<dyn NodeStorage>, Recovered), StorageError> {
        match self {
            Disk::Real(d) => d.open(),
            Disk::Model(d) => d.open(),
        }
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
