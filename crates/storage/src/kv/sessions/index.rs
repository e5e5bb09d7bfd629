//! The in-memory index of the session table: which sessions exist, in least
//! recently used order, and the session clock.
//!
//! Expiry and eviction need the oldest session at once on every session write;
//! keeping that order in memory costs ~100 bytes per session and saves a second
//! redb table (and its writes) on the hot path. The index is rebuilt from the
//! database whenever the database changes other than through an apply batch: at
//! open, after a snapshot install, and after a failed apply.

use std::collections::{BTreeSet, HashMap};

use redb::{Database, ReadableDatabase, ReadableTable};

use super::{SESSION_CLOCK, SESSIONS, SessionRow, SessionStats};
use crate::kv::META;
use crate::kv::error::{KvError, engine};

/// Sessions by last use, mirroring the session table.
#[derive(Debug, Default)]
pub(crate) struct SessionIndex {
    /// (last seen, client id), oldest first; the id breaks ties deterministically.
    by_age: BTreeSet<(u64, u128)>,
    /// Client id → last seen.
    last_seen: HashMap<u128, u64>,
    /// The session clock: the largest `now_ms` of any applied session entry.
    pub(crate) clock_ms: u64,
    /// Counters for [`SessionStats`]; they survive reloads.
    pub(crate) duplicates: u64,
    pub(crate) rejected: u64,
}

impl SessionIndex {
    /// Reads the session table and clock of `db` into a fresh index.
    pub(crate) fn load(db: &Database) -> Result<SessionIndex, KvError> {
        let txn = db.begin_read().map_err(engine)?;
        let meta = txn.open_table(META).map_err(engine)?;
        let table = txn.open_table(SESSIONS).map_err(engine)?;
        let mut index = SessionIndex {
            clock_ms: meta
                .get(SESSION_CLOCK)
                .map_err(engine)?
                .map_or(0, |g| g.value()),
            ..SessionIndex::default()
        };
        for item in table.iter().map_err(engine)? {
            let (id, row) = item.map_err(engine)?;
            let row = SessionRow::decode(row.value())?;
            index.touch(id.value(), row.last_seen_ms);
        }
        Ok(index)
    }

    /// Replaces the contents with `db`'s, keeping the counters.
    pub(crate) fn reload(&mut self, db: &Database) -> Result<(), KvError> {
        let fresh = SessionIndex::load(db)?;
        *self = SessionIndex {
            duplicates: self.duplicates,
            rejected: self.rejected,
            ..fresh
        };
        Ok(())
    }

    /// Number of sessions.
    pub(crate) fn len(&self) -> usize {
        self.last_seen.len()
    }

    /// Whether the session exists.
    pub(crate) fn contains(&self, id: u128) -> bool {
        self.last_seen.contains_key(&id)
    }

    /// The least recently used session and when it was last seen.
    pub(crate) fn oldest(&self) -> Option<(u64, u128)> {
        self.by_age.first().copied()
    }

    /// Adds the session, or moves it to `now_ms` in the order.
    pub(crate) fn touch(&mut self, id: u128, now_ms: u64) {
        if let Some(old) = self.last_seen.insert(id, now_ms) {
            self.by_age.remove(&(old, id));
        }
        self.by_age.insert((now_ms, id));
    }

    /// Drops the session.
    pub(crate) fn remove(&mut self, id: u128) {
        if let Some(old) = self.last_seen.remove(&id) {
            self.by_age.remove(&(old, id));
        }
    }

    /// The counters.
    pub(crate) fn stats(&self) -> SessionStats {
        SessionStats {
            sessions: self.len() as u64,
            duplicates: self.duplicates,
            rejected: self.rejected,
        }
    }
}
