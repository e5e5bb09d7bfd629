//! Executing commands inside a write transaction.

use keel_raft::{Entry, EntryKind, Index};

use super::error::KvError;
use super::keyspace::KeySpace;
use super::outcome::ApplyOutcome;
use super::sessions::SessionBatch;
use super::slots::{self, ChangeIndex, SlotTable};
use crate::command::{Command, Envelope, Expect};

/// The replicated state one apply batch works on, besides client sessions.
pub(crate) struct Machine<'a, 'txn> {
    /// User data and its slot index.
    pub(crate) space: KeySpace<'txn>,
    /// The slot table (the store's in-memory copy; reloaded if the batch fails).
    pub(crate) slots: &'a mut SlotTable,
    /// Whether the batch changed `slots` (then it is written back).
    pub(crate) slots_changed: bool,
    /// Added to an entry's index to make its revision.
    pub(crate) revision_offset: u64,
    /// This replica's change index (not replicated state): told each entry's
    /// writes of the slots it tracks.
    pub(crate) changes: &'a mut ChangeIndex,
}

impl Machine<'_, '_> {
    /// The revision of the entry at `index`: what its writes get as version.
    /// The offset is at most [`slots::MAX_REVISION`], so this cannot overflow
    /// in practice; saturating keeps it total regardless.
    pub(crate) fn revision(&self, index: Index) -> u64 {
        index.saturating_add(self.revision_offset)
    }
}

/// Applies `entries` on top of `applied`; returns the outcomes and the new applied
/// index. Writes of client sessions go through `sessions` (exactly-once).
pub(super) fn apply_entries(
    m: &mut Machine<'_, '_>,
    sessions: &mut SessionBatch<'_>,
    mut applied: Index,
    entries: &[Entry],
) -> Result<(Vec<ApplyOutcome>, Index), KvError> {
    let mut outcomes = Vec::with_capacity(entries.len());
    for entry in entries {
        if entry.index <= applied {
            outcomes.push(ApplyOutcome::AlreadyApplied);
            continue;
        }
        if entry.index != applied + 1 {
            return Err(KvError::Gap {
                applied,
                index: entry.index,
            });
        }
        let outcome = match entry.kind {
            // Membership changes are the runtime's business; for the key space they
            // only advance the index.
            EntryKind::NoOp | EntryKind::ConfChange => ApplyOutcome::NoOp,
            EntryKind::Normal => {
                let Envelope { session, command } =
                    Envelope::decode_bytes(&entry.data).map_err(|source| KvError::BadCommand {
                        index: entry.index,
                        source,
                    })?;
                match session {
                    None => execute(m, entry.index, &command)?,
                    Some(h) => sessions.apply(&h, || execute(m, entry.index, &command))?,
                }
            }
        };
        let written = m.space.take_written();
        m.changes.after_entry(entry.index, &written, m.slots);
        outcomes.push(outcome);
        applied = entry.index;
    }
    Ok((outcomes, applied))
}

/// Whether `expect` holds for a key whose version is `current`.
fn holds(expect: Expect, current: Option<u64>) -> bool {
    match expect {
        Expect::Any => true,
        Expect::Absent => current.is_none(),
        Expect::Version(v) => current == Some(v),
    }
}

fn execute(
    m: &mut Machine<'_, '_>,
    index: Index,
    command: &Command,
) -> Result<ApplyOutcome, KvError> {
    if let Some(refused) = slots::check_served(m.slots, command) {
        return Ok(ApplyOutcome::SlotUnavailable(refused));
    }
    let revision = m.revision(index);
    // `value` is `None` for a delete.
    let (key, value, expect) = match command {
        Command::Put { key, value, expect } => (key, Some(value), *expect),
        Command::Delete { key, expect } => (key, None, *expect),
        Command::Txn(txn) => return super::txn::execute(&mut m.space, revision, txn),
        Command::Add { key, delta } => {
            return super::add::execute(&mut m.space, revision, key, *delta);
        }
        Command::Slot(cmd) => return slots::execute(m, index, cmd),
    };
    let current = m.space.version(key)?;
    if !holds(expect, current) {
        return Ok(ApplyOutcome::Conflict {
            current_version: current,
        });
    }
    Ok(match value {
        Some(value) => {
            m.space.put(key, revision, value)?;
            ApplyOutcome::Put { revision }
        }
        None => ApplyOutcome::Deleted {
            revision,
            existed: m.space.remove(key)?,
        },
    })
}
