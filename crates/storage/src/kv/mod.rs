//! The key-value state machine, on redb.
//!
//! Raft entries are applied in batches, each in one redb write transaction that also
//! records the last applied index, so a restart replays only the log after it.
//! Those transactions commit without fsync ([`redb::Durability::None`]): the WAL
//! already holds every applied entry durably, so a crash merely rolls the state
//! machine back to its last [`KvStore::flush`] and the entries after it are applied
//! again. The runtime calls `flush` periodically and at shutdown.
//!
//! The state machine is deterministic: every replica reaches the same state from the
//! same log. It therefore enforces no configurable limits (they are checked before a
//! command is proposed) and never rejects a committed entry.
//!
//! Besides the keys it keeps what the group serves ([`slots`]: the slot table, a
//! slot index beside the keys, the revision offset) and client sessions
//! ([`sessions`]). The tables and their versions are in `schema.rs`.

mod add;
mod apply;
mod backend;
mod digest;
mod error;
pub(crate) mod install;
pub(crate) mod keyspace;
mod outcome;
mod schema;
mod served;
pub(crate) mod sessions;
pub mod slots;
mod txn;
pub(crate) mod value;
mod view;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use keel_placement::Slot;
use keel_raft::{Entry, Index};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::vfs::{Vfs, create_dir_all_durable};
use backend::VfsBackend;
pub use digest::KvDigest;
pub use error::KvError;
use error::engine;
pub use outcome::{ApplyOutcome, TxnOpResult, TxnOutcome};
pub(crate) use schema::init_tables;
pub use served::NotServed;
pub use sessions::{EVICTION_GRACE_MS, MAX_RESULTS_PER_SESSION, SessionRejection, SessionStats};
use sessions::{SessionBatch, SessionIndex};
use slots::ChangeIndex;
pub use slots::{SlotState, SlotTable};
pub use view::KvReadView;

/// User data: key → version (u64 LE) followed by the value.
pub(crate) const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
/// Bookkeeping: name → number.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Last applied log index.
pub(crate) const APPLIED_INDEX: &str = "applied_index";
/// Term of the entry at the applied index (0 if unknown: written by a build that did
/// not record it, or nothing applied yet). Snapshots need it for their metadata.
pub(crate) const APPLIED_TERM: &str = "applied_term";

/// State-machine settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvOptions {
    /// Memory redb may use to cache pages, in bytes. Default 64 MiB.
    pub cache_bytes: usize,
    /// Whether a store this open creates serves every slot (group 1, and any
    /// store that is not a data group of a sharded cluster) or none (a data
    /// group created later, which serves only slots moved to it). A store that
    /// exists keeps its own table. Default: every slot.
    pub new_store_serves_all_slots: bool,
}

impl Default for KvOptions {
    fn default() -> Self {
        KvOptions {
            cache_bytes: 64 << 20,
            new_store_serves_all_slots: true,
        }
    }
}

/// A key with its value and version, as returned by [`KvStore::scan`].
pub type KeyValue = (Bytes, Bytes, u64);

/// The key-value state machine of one Raft group.
///
/// All methods take `&self` and the store is `Send + Sync`: one thread applies while
/// any number of tasks read. Reads see the **applied** state (each read is a
/// consistent snapshot of some applied index); whether that is linearizable is up
/// to the caller (ReadIndex or a lease, then wait until applied).
///
/// Installing a snapshot ([`crate::snapshot::SnapshotStore::install`]) replaces the whole database
/// file; readers keep using the old one until the swap and the new one after it.
#[derive(Debug)]
pub struct KvStore {
    /// The database; swapped as a whole when a snapshot is installed. Readers clone
    /// the `Arc` under a short read lock and then work without any lock, so a swap
    /// never waits for a long scan and a scan never sees half of each.
    db: RwLock<Arc<Database>>,
    /// Cached copy of the applied index, updated after each commit.
    applied: AtomicU64,
    /// Serialises the writers of the state (apply, flush, install): an install must
    /// not race an apply that would land in the database being replaced.
    writer: Mutex<()>,
    /// The session table's in-memory index; locked only with `writer` held.
    sessions: Mutex<SessionIndex>,
    /// The slot table, as the database holds it; changed only with `writer`
    /// held. Every write consults it, so it is not read from the database.
    slots: Mutex<SlotTable>,
    /// Which keys of the slots being moved out changed (`slots/changes.rs`);
    /// changed only with `writer` held, asked alone.
    changes: Mutex<ChangeIndex>,
    /// True while every slot has been served in every state since the store
    /// was opened: reads then need not consult the slot table (`served.rs`).
    /// Cleared before the first commit that changes the table, never set again.
    all_serving: std::sync::atomic::AtomicBool,
    vfs: Arc<dyn Vfs>,
    path: PathBuf,
    opts: KvOptions,
}

impl KvStore {
    /// Opens or creates the state machine at `path` with default options.
    pub fn open(vfs: Arc<dyn Vfs>, path: &Path) -> Result<KvStore, KvError> {
        Self::open_with(vfs, path, KvOptions::default())
    }

    /// Opens or creates the state machine at `path`.
    ///
    /// A new database is built under a temporary name and renamed into place once
    /// durable, so a crash during creation never leaves a half-written file that
    /// redb would refuse to open.
    pub fn open_with(vfs: Arc<dyn Vfs>, path: &Path, opts: KvOptions) -> Result<KvStore, KvError> {
        let io = |source| KvError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !vfs.exists(path) {
            create_dir_all_durable(&*vfs, dir).map_err(io)?;
            create(&*vfs, path, dir, &opts)?;
        }
        // An install interrupted by a crash left its half-built database behind; the
        // live file was never replaced, so it is simply discarded.
        install::remove_leftover(&*vfs, path, dir)?;
        let file = vfs.open(path, false).map_err(io)?;
        let db = open_db(file, &opts)?;
        let applied = init_tables(&db)?;
        let sessions = SessionIndex::load(&db)?;
        let slots = schema::load_slot_table(&db)?;
        Ok(KvStore {
            db: RwLock::new(Arc::new(db)),
            applied: AtomicU64::new(applied),
            writer: Mutex::new(()),
            sessions: Mutex::new(sessions),
            all_serving: std::sync::atomic::AtomicBool::new(slots.is_all_serving()),
            slots: Mutex::new(slots),
            changes: Mutex::new(ChangeIndex::new(applied)),
            vfs,
            path: path.to_path_buf(),
            opts,
        })
    }

    /// The current database. The lock is held only to clone the `Arc`.
    pub(crate) fn db(&self) -> Arc<Database> {
        let guard = self
            .db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(&guard)
    }

    /// Takes the writer lock (see the field docs). A panic while holding it cannot
    /// leave the database inconsistent (redb aborts the transaction), so poison is
    /// ignored.
    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, ()> {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The last applied log index (0 before anything was applied).
    pub fn applied_index(&self) -> Index {
        self.applied.load(Ordering::Acquire)
    }

    /// Applies committed entries in log order, in one transaction that also records
    /// the new applied index. Returns one outcome per entry.
    ///
    /// Entries at or below the applied index are skipped (idempotent replay after a
    /// restart). A gap, or a `Normal` entry that is not a valid command, is an error
    /// and nothing of the batch is applied; both mean the node cannot go on.
    pub fn apply(&self, entries: &[Entry]) -> Result<Vec<ApplyOutcome>, KvError> {
        let _writer = self.lock_writer();
        let db = self.db();
        let mut sessions = self.lock_sessions();
        let mut slots = self.lock_slots();
        let mut changes = self.lock_changes();
        let result = self.apply_in(&db, &mut sessions, &mut slots, &mut changes, entries);
        if result.is_err() {
            // The transaction was dropped, but the copies may have moved on.
            sessions.reload(&db)?;
            *slots = schema::load_slot_table(&db)?;
            // It may have recorded entries that did not commit as seen.
            changes.reset(self.applied_index());
        }
        result
    }

    fn apply_in(
        &self,
        db: &Database,
        sessions: &mut SessionIndex,
        slots: &mut SlotTable,
        changes: &mut ChangeIndex,
        entries: &[Entry],
    ) -> Result<Vec<ApplyOutcome>, KvError> {
        let mut txn = db.begin_write().map_err(engine)?;
        // The WAL holds these entries durably; see the module docs.
        txn.set_durability(Durability::None).map_err(engine)?;
        let (outcomes, applied, changed) = {
            let mut meta = txn.open_table(META).map_err(engine)?;
            let read = |name| -> Result<u64, KvError> {
                Ok(meta.get(name).map_err(engine)?.map_or(0, |g| g.value()))
            };
            let start = read(APPLIED_INDEX)?;
            let offset = read(slots::REVISION_OFFSET)?;
            let mut machine = apply::Machine {
                space: keyspace::KeySpace::watching(&txn, changes.watched())?,
                slots,
                slots_changed: false,
                revision_offset: offset,
                changes,
            };
            let mut batch = SessionBatch::new(&txn, sessions);
            let (outcomes, applied) =
                apply::apply_entries(&mut machine, &mut batch, start, entries)?;
            batch.finish(&mut meta)?;
            if machine.slots_changed {
                machine.slots.store(&mut slots::open_slot_table(&txn)?)?;
                // Before the commit: a reader that still sees the flag set
                // opened its transaction before this one committed.
                self.all_serving.store(false, Ordering::SeqCst);
            }
            if machine.revision_offset != offset {
                meta.insert(slots::REVISION_OFFSET, machine.revision_offset)
                    .map_err(engine)?;
            }
            if applied != start {
                meta.insert(APPLIED_INDEX, applied).map_err(engine)?;
                let term = entries
                    .iter()
                    .find(|e| e.index == applied)
                    .map_or(0, |e| e.term);
                meta.insert(APPLIED_TERM, term).map_err(engine)?;
            }
            (outcomes, applied, applied != start)
        };
        if changed {
            txn.commit().map_err(engine)?;
            self.applied.store(applied, Ordering::Release);
        } else {
            txn.abort().map_err(engine)?;
        }
        Ok(outcomes)
    }

    /// The change index. Whoever also holds the writer lock took it, and the
    /// session and slot locks, first.
    pub(crate) fn lock_changes(&self) -> MutexGuard<'_, ChangeIndex> {
        self.changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The session index. Whoever also holds the writer lock took that first.
    pub(crate) fn lock_sessions(&self) -> MutexGuard<'_, SessionIndex> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The slot table. Locked only with `writer` held, or alone.
    pub(crate) fn lock_slots(&self) -> MutexGuard<'_, SlotTable> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The state of `slot` as of the last applied batch. Waits for a batch being
    /// applied; a read that must agree with the data it returns takes both from
    /// one [`KvReadView`] (`slot_table`) instead.
    pub fn slot_state(&self, slot: Slot) -> SlotState {
        self.lock_slots().get(slot)
    }

    /// A copy of the whole slot table as of the last applied entry.
    pub fn slot_table(&self) -> SlotTable {
        self.lock_slots().clone()
    }

    /// The slots held in a move's state (fenced, staging, ingested,
    /// releasing) with their states, in slot order, as of the last applied
    /// entry: what a slot mover looks at, without copying the whole table.
    pub fn slots_in_moves(&self) -> Vec<(Slot, SlotState)> {
        self.lock_slots()
            .iter()
            .filter(|(_, state)| state.epoch().is_some())
            .collect()
    }

    /// Whether any slot is held in a move's state (see
    /// [`KvStore::slots_in_moves`]), without collecting them.
    pub fn has_slot_in_move(&self) -> bool {
        self.lock_slots()
            .iter()
            .any(|(_, state)| state.epoch().is_some())
    }

    /// Counters of the client-session table (for metrics).
    pub fn session_stats(&self) -> SessionStats {
        self.lock_sessions().stats()
    }

    /// Makes everything applied so far durable (a redb commit with fsync).
    pub fn flush(&self) -> Result<(), KvError> {
        let _writer = self.lock_writer();
        let db = self.db();
        let mut txn = db.begin_write().map_err(engine)?;
        txn.set_durability(Durability::Immediate).map_err(engine)?;
        txn.commit().map_err(engine)
    }

    /// The value and version of `key`, if present.
    pub fn get(&self, key: &[u8]) -> Result<Option<(Bytes, u64)>, KvError> {
        // Hold the database for the whole read: an install may swap it meanwhile.
        let db = self.db();
        let txn = db.begin_read().map_err(engine)?;
        let table = txn.open_table(DATA).map_err(engine)?;
        value::lookup(&table, key)
    }

    /// Up to `limit` keys starting with `prefix`, in key order, strictly after
    /// `start_after` if given (for paging: pass the last key of the previous page).
    /// The flag says whether more matching keys follow.
    pub fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<KeyValue>, bool), KvError> {
        let mut out = Vec::with_capacity(limit.min(1024));
        let more = self.walk_prefix(prefix, start_after, |key, stored| {
            if out.len() == limit {
                return Ok(false);
            }
            out.push(owned_item(key, stored)?);
            Ok(true)
        })?;
        Ok((out, more))
    }

    /// Like [`KvStore::scan`] but keys only, and it also stops once the keys
    /// returned take `max_bytes` or more together (so at least one key comes back
    /// when any matches): for listings that must not copy values (SCAN).
    pub fn scan_keys(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Bytes>, bool), KvError> {
        let mut out = Vec::with_capacity(limit.min(1024));
        let mut bytes = 0usize;
        let more = self.walk_prefix(prefix, start_after, |key, _| {
            if out.len() == limit || bytes >= max_bytes {
                return Ok(false);
            }
            bytes += key.len();
            out.push(Bytes::copy_from_slice(key));
            Ok(true)
        })?;
        Ok((out, more))
    }

    /// Calls `take` with each key starting with `prefix` (strictly after
    /// `start_after` if given) and its stored bytes, in key order, until it
    /// returns `false`; returns whether it stopped at a matching key (more follow).
    fn walk_prefix(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        take: impl FnMut(&[u8], &[u8]) -> Result<bool, KvError>,
    ) -> Result<bool, KvError> {
        // Hold the database for the whole read: an install may swap it meanwhile.
        let db = self.db();
        let txn = db.begin_read().map_err(engine)?;
        let table = txn.open_table(DATA).map_err(engine)?;
        walk_range(&table, prefix, start_after, take)
    }
}

/// A stored key and value as a [`KeyValue`] the caller owns.
pub(crate) fn owned_item(key: &[u8], stored: &[u8]) -> Result<KeyValue, KvError> {
    let (version, value) = value::decode(stored)?;
    Ok((
        Bytes::copy_from_slice(key),
        Bytes::copy_from_slice(value),
        version,
    ))
}

/// Calls `take` with each key starting with `prefix` (strictly after
/// `start_after`, if given) and its stored bytes, in key order, until it
/// returns `false`. Returns whether it stopped early (more may follow).
pub(crate) fn walk_range(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &[u8],
    start_after: Option<&[u8]>,
    mut take: impl FnMut(&[u8], &[u8]) -> Result<bool, KvError>,
) -> Result<bool, KvError> {
    use std::ops::Bound;
    let lower = match start_after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    };
    let range = table
        .range::<&[u8]>((lower, Bound::Unbounded))
        .map_err(engine)?;
    for item in range {
        let (key, stored) = item.map_err(engine)?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        if !take(key, stored.value())? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Builds an empty database at `path`, atomically: in a temporary file that is
/// renamed into place only after its first commit is durable.
fn create(vfs: &dyn Vfs, path: &Path, dir: &Path, opts: &KvOptions) -> Result<(), KvError> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".creating");
    let tmp = path.with_file_name(tmp_name);
    let io = |source| KvError::Io {
        path: tmp.clone(),
        source,
    };
    if vfs.exists(&tmp) {
        // Left over from a crash during an earlier creation.
        vfs.remove_file(&tmp).map_err(io)?;
    }
    let file = vfs.open(&tmp, true).map_err(io)?;
    let db = open_db(file, opts)?;
    init_tables(&db)?;
    if !opts.new_store_serves_all_slots {
        schema::serve_no_slot(&db)?;
    }
    drop(db);
    vfs.rename(&tmp, path).map_err(io)?;
    vfs.sync_dir(dir).map_err(io)
}

pub(crate) fn open_db(
    file: Arc<dyn crate::vfs::VfsFile>,
    opts: &KvOptions,
) -> Result<Database, KvError> {
    Database::builder()
        .set_cache_size(opts.cache_bytes)
        .create_with_backend(VfsBackend::new(file))
        .map_err(engine)
}

#[cfg(test)]
mod add_tests;
#[cfg(test)]
mod schema_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod txn_tests;
