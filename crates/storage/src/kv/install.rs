//! Replacing the whole state machine with a snapshot's contents, atomically and in
//! bounded memory.
//!
//! A fresh database is built beside the live one (`<name>.installing`) in a series
//! of non-durable transactions, finished with one durable commit, then renamed over
//! the live file and the directory fsynced; only then does the store switch to it.
//! A crash before the rename is durable leaves the old database untouched under the
//! live name (and the half-built one is removed at the next open); a crash after
//! leaves the complete new one. Nothing ever mixes the two.
//!
//! # Memory
//!
//! redb keeps a write transaction's dirty pages in a write buffer capped at half its
//! cache size and writes the excess to the file (unsynced) as it goes, so even a
//! huge transaction does not hold its pages in memory. What a transaction does hold
//! is bookkeeping per allocated page; committing (non-durably) every
//! [`INSTALL_TXN_BYTES`] keeps that small too. The staging database gets its own
//! small cache ([`INSTALL_CACHE_BYTES`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_raft::{Index, Term};
use redb::{Database, Durability, WriteTransaction};

use super::error::{KvError, engine};
use super::keyspace::KeySpace;
use super::schema::load_slot_table;
use super::sessions::{SESSION_CLOCK, SESSIONS, SessionRow};
use super::slots::{REVISION_OFFSET, SlotTable, open_slot_table};
use super::{APPLIED_INDEX, APPLIED_TERM, KvOptions, KvStore, META, init_tables, open_db};
use crate::vfs::Vfs;

/// Suffix of the database being built from a snapshot.
const INSTALLING_SUFFIX: &str = ".installing";
/// Key and value bytes per non-durable transaction while building.
pub(crate) const INSTALL_TXN_BYTES: u64 = 16 << 20;
/// Page cache of the staging database.
pub(crate) const INSTALL_CACHE_BYTES: usize = 16 << 20;

fn staging_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(INSTALLING_SUFFIX);
    path.with_file_name(name)
}

/// Removes a staging database left by an install that a crash interrupted.
pub(crate) fn remove_leftover(vfs: &dyn Vfs, path: &Path, dir: &Path) -> Result<(), KvError> {
    let staging = staging_path(path);
    if vfs.exists(&staging) {
        let io = |source| KvError::Io {
            path: staging.clone(),
            source,
        };
        vfs.remove_file(&staging).map_err(io)?;
        vfs.sync_dir(dir).map_err(io)?;
    }
    Ok(())
}

/// A database being filled from a snapshot, beside the live one.
pub(crate) struct Staging {
    db: Database,
    path: PathBuf,
    txn: Option<WriteTransaction>,
    bytes_in_txn: u64,
    session_clock_ms: u64,
    revision_offset: u64,
    /// The snapshot's slot table; `None` keeps the new database's own (every
    /// slot served), which is right for snapshots from before sharding.
    slot_table: Option<SlotTable>,
}

impl KvStore {
    fn dir(&self) -> &Path {
        self.path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }

    /// Creates an empty staging database (replacing any leftover).
    pub(crate) fn begin_install(&self) -> Result<Staging, KvError> {
        remove_leftover(&*self.vfs, &self.path, self.dir())?;
        let path = staging_path(&self.path);
        let io = |source| KvError::Io {
            path: path.clone(),
            source,
        };
        let file = self.vfs.open(&path, true).map_err(io)?;
        let opts = KvOptions {
            cache_bytes: INSTALL_CACHE_BYTES,
            ..KvOptions::default()
        };
        let db = open_db(file, &opts)?;
        init_tables(&db)?;
        Ok(Staging {
            db,
            path,
            txn: None,
            bytes_in_txn: 0,
            session_clock_ms: 0,
            revision_offset: 0,
            slot_table: None,
        })
    }

    /// Makes the finished staging database the live one; see the module docs for the
    /// order of steps. On error the store keeps serving the old state, but the disk
    /// may already hold the new one: the caller must treat it as fatal and restart.
    pub(crate) fn swap_in(&self, staging: Database, staging_path: &Path) -> Result<(), KvError> {
        // Close it so the file can be reopened with the store's own options (cache).
        drop(staging);
        let dir = self.dir().to_path_buf();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KvError::Io { path, source }
        };
        self.vfs
            .rename(staging_path, &self.path)
            .map_err(io(staging_path))?;
        self.vfs.sync_dir(&dir).map_err(io(&dir))?;
        let file = self.vfs.open(&self.path, false).map_err(io(&self.path))?;
        let db = open_db(file, &self.opts)?;
        let applied = init_tables(&db)?;
        // Applies are held off (the caller holds the writer lock), so the
        // in-memory copies can switch to the new contents before the database does.
        self.lock_sessions().reload(&db)?;
        let slots = load_slot_table(&db)?;
        if !slots.is_all_serving() {
            self.all_serving
                .store(false, std::sync::atomic::Ordering::SeqCst);
        }
        *self.lock_slots() = slots;
        // Whatever was tracked described the replaced state.
        self.lock_changes().reset(applied);
        let mut guard = self
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Readers holding the old database finish on it (its file is unlinked but
        // stays readable through their handles); new reads see the new one.
        let old = std::mem::replace(&mut *guard, Arc::new(db));
        self.applied
            .store(applied, std::sync::atomic::Ordering::Release);
        drop(guard);
        drop(old);
        Ok(())
    }
}

impl Staging {
    /// Adds one key; commits the running transaction non-durably every
    /// [`INSTALL_TXN_BYTES`] (a crash loses nothing of value: the file is not live).
    pub(crate) fn insert(&mut self, key: &[u8], version: u64, value: &[u8]) -> Result<(), KvError> {
        KeySpace::open(self.txn()?)?.put(key, version, value)?;
        self.added((key.len() + value.len()) as u64)
    }

    /// Adds one client session, given as its stored row (checked here: a snapshot
    /// verified by checksums can still come from a build that wrote nonsense).
    pub(crate) fn insert_session(&mut self, client_id: u128, row: &[u8]) -> Result<(), KvError> {
        SessionRow::decode(row)?;
        {
            let txn = self.txn()?;
            let mut table = txn.open_table(SESSIONS).map_err(engine)?;
            table.insert(client_id, row).map_err(engine)?;
        }
        self.added(16 + row.len() as u64)
    }

    /// Sets the session clock recorded by [`Staging::finish`].
    pub(crate) fn set_session_clock(&mut self, ms: u64) {
        self.session_clock_ms = ms;
    }

    /// Sets the revision offset recorded by [`Staging::finish`].
    pub(crate) fn set_revision_offset(&mut self, offset: u64) {
        self.revision_offset = offset;
    }

    /// Sets the slot table recorded by [`Staging::finish`].
    pub(crate) fn set_slot_table(&mut self, table: SlotTable) {
        self.slot_table = Some(table);
    }

    /// The running transaction, begun if there is none.
    fn txn(&mut self) -> Result<&WriteTransaction, KvError> {
        if self.txn.is_none() {
            let mut txn = self.db.begin_write().map_err(engine)?;
            txn.set_durability(Durability::None).map_err(engine)?;
            self.txn = Some(txn);
        }
        Ok(self.txn.as_ref().expect("just ensured"))
    }

    /// Counts `bytes` into the running transaction, committing it when full.
    fn added(&mut self, bytes: u64) -> Result<(), KvError> {
        self.bytes_in_txn += bytes;
        if self.bytes_in_txn >= INSTALL_TXN_BYTES {
            self.commit_batch()?;
        }
        Ok(())
    }

    fn commit_batch(&mut self) -> Result<(), KvError> {
        if let Some(txn) = self.txn.take() {
            txn.commit().map_err(engine)?;
        }
        self.bytes_in_txn = 0;
        Ok(())
    }

    /// Records the applied index and term and commits durably (fsync); returns the
    /// database and its path, ready for [`KvStore::swap_in`].
    pub(crate) fn finish(
        mut self,
        index: Index,
        term: Term,
    ) -> Result<(Database, PathBuf), KvError> {
        self.commit_batch()?;
        let mut txn = self.db.begin_write().map_err(engine)?;
        txn.set_durability(Durability::Immediate).map_err(engine)?;
        {
            let mut meta = txn.open_table(META).map_err(engine)?;
            meta.insert(APPLIED_INDEX, index).map_err(engine)?;
            meta.insert(APPLIED_TERM, term).map_err(engine)?;
            meta.insert(SESSION_CLOCK, self.session_clock_ms)
                .map_err(engine)?;
            meta.insert(REVISION_OFFSET, self.revision_offset)
                .map_err(engine)?;
            if let Some(table) = &self.slot_table {
                table.store(&mut open_slot_table(&txn)?)?;
            }
        }
        txn.commit().map_err(engine)?;
        Ok((self.db, self.path))
    }

    /// Gives up: closes and removes the staging file.
    pub(crate) fn discard(self, vfs: &dyn Vfs) {
        let path = self.path.clone();
        drop(self);
        // Best effort: a leftover is removed at the next open or install.
        let _ = vfs.remove_file(&path);
    }
}

impl KvStore {
    /// The filesystem the store lives on.
    pub(crate) fn vfs(&self) -> &Arc<dyn Vfs> {
        &self.vfs
    }
}
