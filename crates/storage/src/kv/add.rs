//! Executing an add ([`crate::command::Command::Add`]) inside the apply step's
//! write transaction: read the key's value as an integer, add, store the sum as
//! decimal text. Whatever the stored bytes, every replica reaches the same verdict
//! (the rules are [`parse_integer`]'s), and a refused add writes nothing.

use bytes::Bytes;

use super::error::KvError;
use super::keyspace::KeySpace;
use super::outcome::ApplyOutcome;
use crate::command::{AddError, parse_integer};

/// Adds `delta` to `key`'s integer (absent: 0), committed at `revision`.
pub(super) fn execute(
    space: &mut KeySpace<'_>,
    revision: u64,
    key: &Bytes,
    delta: i64,
) -> Result<ApplyOutcome, KvError> {
    let current = match space.lookup(key)? {
        Some((value, _)) => match parse_integer(&value) {
            Some(n) => n,
            None => return Ok(ApplyOutcome::AddRefused(AddError::NotAnInteger)),
        },
        None => 0,
    };
    let Some(sum) = current.checked_add(delta) else {
        return Ok(ApplyOutcome::AddRefused(AddError::Overflow));
    };
    let text = sum.to_string();
    space.put(key, revision, text.as_bytes())?;
    Ok(ApplyOutcome::Added {
        revision,
        value: sum,
    })
}
