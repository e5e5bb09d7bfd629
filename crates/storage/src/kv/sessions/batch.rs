//! Running session writes inside one apply transaction.
//!
//! Rows touched by the batch are decoded once, kept here, and written back once
//! when the batch ends: a client with many writes in one batch costs one row
//! write, not one per write. Sessions the batch drops are deleted then too.

use std::collections::BTreeMap;

use redb::{ReadableTable, Table, WriteTransaction};

use super::{
    EVICTION_GRACE_MS, SESSION_CLOCK, SESSIONS, SessionIndex, SessionRejection, SessionRow,
};
use crate::command::SessionHeader;
use crate::kv::error::{KvError, engine};
use crate::kv::outcome::ApplyOutcome;

/// A session as the batch left it.
enum Slot {
    /// Still there; `dirty` if it must be written back.
    Live { row: SessionRow, dirty: bool },
    /// Expired or evicted: delete its row.
    Removed,
}

/// The session side of one apply transaction.
pub(crate) struct SessionBatch<'a> {
    txn: &'a WriteTransaction,
    index: &'a mut SessionIndex,
    /// Opened at the first session write, so batches without any cost nothing.
    table: Option<Table<'a, u128, &'static [u8]>>,
    slots: BTreeMap<u128, Slot>,
    clock_at_start: u64,
}

impl<'a> SessionBatch<'a> {
    /// A batch over `txn`, keeping `index` in step.
    pub(crate) fn new(txn: &'a WriteTransaction, index: &'a mut SessionIndex) -> Self {
        let clock_at_start = index.clock_ms;
        SessionBatch {
            txn,
            index,
            table: None,
            slots: BTreeMap::new(),
            clock_at_start,
        }
    }

    /// Runs a write of session `h`: answers a repeated sequence number from memory,
    /// refuses what must not run, and otherwise calls `execute` and remembers its
    /// outcome. Rules in the module docs of [`super`].
    pub(crate) fn apply(
        &mut self,
        h: &SessionHeader,
        execute: impl FnOnce() -> Result<ApplyOutcome, KvError>,
    ) -> Result<ApplyOutcome, KvError> {
        let now = self.index.clock_ms.max(h.now_ms);
        self.index.clock_ms = now;
        self.expire(now, h.idle_timeout_ms);
        let id = h.client_id;
        let mut row = match self.take(id)? {
            Some((row, dirty)) if h.seq < row.floor => {
                let lowest_known = row.floor;
                self.slots.insert(id, Slot::Live { row, dirty });
                return Ok(self.reject(SessionRejection::Forgotten { lowest_known }));
            }
            Some((row, _)) => row,
            // A client still waiting for its session's first write has acknowledged
            // nothing: this is a new session (its writes may arrive in any order).
            None if h.first_unacked.min(h.seq) == 1 => {
                if !self.make_room(now, h.max_sessions) {
                    return Ok(self.reject(SessionRejection::TooManySessions));
                }
                SessionRow::new(now)
            }
            None => return Ok(self.reject(SessionRejection::UnknownSession)),
        };
        // A client cannot have acknowledged the write it is sending.
        row.acknowledge(h.first_unacked.min(h.seq));
        let outcome = match row.result(h.seq) {
            Some(first) => {
                self.index.duplicates += 1;
                first
            }
            None => {
                let outcome = execute()?;
                row.record(h.seq, outcome.clone());
                outcome
            }
        };
        row.last_seen_ms = now;
        self.index.touch(id, now);
        self.slots.insert(id, Slot::Live { row, dirty: true });
        Ok(outcome)
    }

    /// Writes back what the batch changed: rows, deletions, the clock.
    pub(crate) fn finish(mut self, meta: &mut Table<'_, &str, u64>) -> Result<(), KvError> {
        if self.index.clock_ms != self.clock_at_start {
            meta.insert(SESSION_CLOCK, self.index.clock_ms)
                .map_err(engine)?;
        }
        if self.slots.is_empty() {
            return Ok(());
        }
        let slots = std::mem::take(&mut self.slots);
        let table = self.table()?;
        for (id, slot) in slots {
            match slot {
                Slot::Live { row, dirty: true } => {
                    table.insert(id, &row.encode()[..]).map_err(engine)?;
                }
                Slot::Live { dirty: false, .. } => {}
                Slot::Removed => {
                    table.remove(id).map_err(engine)?;
                }
            }
        }
        Ok(())
    }

    fn table(&mut self) -> Result<&mut Table<'a, u128, &'static [u8]>, KvError> {
        if self.table.is_none() {
            self.table = Some(self.txn.open_table(SESSIONS).map_err(engine)?);
        }
        Ok(self.table.as_mut().expect("just opened"))
    }

    /// The session's row and whether the batch changed it, moved out of the batch
    /// (the caller puts it back).
    fn take(&mut self, id: u128) -> Result<Option<(SessionRow, bool)>, KvError> {
        match self.slots.remove(&id) {
            Some(Slot::Live { row, dirty }) => return Ok(Some((row, dirty))),
            Some(Slot::Removed) => {
                self.slots.insert(id, Slot::Removed);
                return Ok(None);
            }
            None => {}
        }
        // The index knows every session, so a new client costs no table read.
        if !self.index.contains(id) {
            return Ok(None);
        }
        let table = self.table()?;
        let stored = table.get(id).map_err(engine)?.ok_or_else(|| {
            KvError::Corrupt(format!(
                "client session {id:032x} is indexed but has no row"
            ))
        })?;
        Ok(Some((SessionRow::decode(stored.value())?, false)))
    }

    /// Drops every session idle for longer than `idle_ms` at `now`.
    fn expire(&mut self, now: u64, idle_ms: u64) {
        while let Some((seen, id)) = self.index.oldest() {
            if now.saturating_sub(seen) <= idle_ms {
                break;
            }
            self.drop_session(id);
        }
    }

    /// Evicts least recently used sessions until a new one fits under `max`;
    /// `false` if one in the way was used within the eviction grace.
    fn make_room(&mut self, now: u64, max: u64) -> bool {
        while self.index.len() as u64 >= max {
            match self.index.oldest() {
                Some((seen, id)) if now.saturating_sub(seen) >= EVICTION_GRACE_MS => {
                    self.drop_session(id);
                }
                _ => return false,
            }
        }
        true
    }

    fn drop_session(&mut self, id: u128) {
        self.index.remove(id);
        self.slots.insert(id, Slot::Removed);
    }

    fn reject(&mut self, why: SessionRejection) -> ApplyOutcome {
        self.index.rejected += 1;
        ApplyOutcome::SessionRejected(why)
    }
}
