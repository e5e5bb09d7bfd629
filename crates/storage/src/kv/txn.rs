//! Executing a transaction ([`Txn`]) inside the apply step's write transaction.
//!
//! The branch is planned before anything is written: operations run in order
//! against the table plus the branch's own earlier writes (so a get sees a put
//! before it), results are collected, and only when the whole branch is known to be
//! within its read limit are the writes applied. A transaction therefore either
//! happens entirely or not at all, without needing to undo anything.

use bytes::Bytes;

use super::error::KvError;
use super::keyspace::KeySpace;
use super::outcome::{ApplyOutcome, TxnOpResult, TxnOutcome};
use crate::command::{Compare, CompareTarget, Txn, TxnOp};

/// Runs `txn`, committed at `revision`.
pub(super) fn execute(
    space: &mut KeySpace<'_>,
    revision: u64,
    txn: &Txn,
) -> Result<ApplyOutcome, KvError> {
    let mut succeeded = true;
    for compare in &txn.compares {
        if !holds(space, compare)? {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    // The branch's writes so far: key and new value (`None`: deleted). A branch
    // writes each key at most once (the decoder guarantees it), so this stays small
    // and a key appears in it at most once.
    let mut writes: Vec<(&Bytes, Option<&Bytes>)> = Vec::new();
    let mut results = Vec::with_capacity(ops.len());
    let mut read_bytes = 0u64;
    for op in ops {
        let result = match op {
            TxnOp::Put { key, value } => {
                writes.push((key, Some(value)));
                TxnOpResult::Put
            }
            TxnOp::Delete { key } => {
                let existed = match written(&writes, key) {
                    Some(value) => value.is_some(),
                    None => space.version(key)?.is_some(),
                };
                writes.push((key, None));
                TxnOpResult::Delete { existed }
            }
            TxnOp::Get { key } => {
                let found = match written(&writes, key) {
                    Some(value) => value.map(|v| (v.clone(), revision)),
                    None => space.lookup(key)?,
                };
                if let Some((value, _)) = &found {
                    read_bytes = read_bytes.saturating_add((key.len() + value.len()) as u64);
                    if read_bytes > txn.read_limit {
                        return Ok(ApplyOutcome::TxnReadLimit {
                            limit: txn.read_limit,
                        });
                    }
                }
                TxnOpResult::Get(found)
            }
        };
        results.push(result);
    }
    for (key, value) in writes {
        match value {
            Some(value) => space.put(key, revision, value)?,
            None => {
                space.remove(key)?;
            }
        }
    }
    Ok(ApplyOutcome::Txn(TxnOutcome {
        revision,
        succeeded,
        results,
    }))
}

/// The branch's own write of `key`, if it made one: `Some(None)` for a delete.
fn written<'a>(writes: &[(&Bytes, Option<&'a Bytes>)], key: &Bytes) -> Option<Option<&'a Bytes>> {
    writes.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// Whether `compare` holds on the state before the transaction.
fn holds(space: &KeySpace<'_>, compare: &Compare) -> Result<bool, KvError> {
    match &compare.target {
        CompareTarget::Version(op, version) => {
            // Absent keys have version 0, which no write ever gets (revisions
            // start at 1), so `= 0` means "absent" and `> 0` "exists".
            let current = space.version(&compare.key)?.unwrap_or(0);
            Ok(op.holds(current, *version))
        }
        CompareTarget::Value(want) => match space.lookup(&compare.key)? {
            Some((value, _)) => Ok(value == want),
            None => Ok(false),
        },
    }
}
