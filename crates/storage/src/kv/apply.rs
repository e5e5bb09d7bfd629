//! Executing commands inside a write transaction.

use bytes::Bytes;
use keel_raft::{Entry, EntryKind, Index};
use redb::{ReadableTable, Table};

use super::error::{KvError, engine};
use super::outcome::ApplyOutcome;
use super::sessions::SessionBatch;
use super::value;
use crate::command::{Command, Envelope, Expect};

/// Applies `entries` on top of `applied`; returns the outcomes and the new applied
/// index. Writes of client sessions go through `sessions` (exactly-once).
pub(super) fn apply_entries(
    data: &mut Table<&[u8], &[u8]>,
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
                    None => execute(data, entry.index, &command)?,
                    Some(h) => sessions.apply(&h, || execute(data, entry.index, &command))?,
                }
            }
        };
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

pub(super) fn current_version(
    data: &Table<&[u8], &[u8]>,
    key: &Bytes,
) -> Result<Option<u64>, KvError> {
    match data.get(key.as_ref()).map_err(engine)? {
        Some(stored) => Ok(Some(value::decode(stored.value())?.0)),
        None => Ok(None),
    }
}

fn execute(
    data: &mut Table<&[u8], &[u8]>,
    index: Index,
    command: &Command,
) -> Result<ApplyOutcome, KvError> {
    // `value` is `None` for a delete.
    let (key, value, expect) = match command {
        Command::Put { key, value, expect } => (key, Some(value), *expect),
        Command::Delete { key, expect } => (key, None, *expect),
        Command::Txn(txn) => return super::txn::execute(data, index, txn),
        Command::Add { key, delta } => return super::add::execute(data, index, key, *delta),
    };
    let current = current_version(data, key)?;
    if !holds(expect, current) {
        return Ok(ApplyOutcome::Conflict {
            current_version: current,
        });
    }
    Ok(match value {
        Some(value) => {
            data.insert(key.as_ref(), value::encode(index, value).as_slice())
                .map_err(engine)?;
            ApplyOutcome::Put { revision: index }
        }
        None => {
            if current.is_some() {
                data.remove(key.as_ref()).map_err(engine)?;
            }
            ApplyOutcome::Deleted {
                revision: index,
                existed: current.is_some(),
            }
        }
    })
}
