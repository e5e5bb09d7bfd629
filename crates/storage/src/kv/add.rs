//! Executing an add ([`crate::command::Command::Add`]) inside the apply step's
//! write transaction: read the key's value as an integer, add, store the sum as
//! decimal text. Whatever the stored bytes, every replica reaches the same verdict
//! (the rules are [`parse_integer`]'s), and a refused add writes nothing.

use bytes::Bytes;
use keel_raft::Index;
use redb::{ReadableTable, Table};

use super::error::{KvError, engine};
use super::outcome::ApplyOutcome;
use super::value;
use crate::command::{AddError, parse_integer};

/// Adds `delta` to `key`'s integer (absent: 0), committed at `index`.
pub(super) fn execute(
    data: &mut Table<&[u8], &[u8]>,
    index: Index,
    key: &Bytes,
    delta: i64,
) -> Result<ApplyOutcome, KvError> {
    let current = match data.get(key.as_ref()).map_err(engine)? {
        Some(stored) => match parse_integer(value::decode(stored.value())?.1) {
            Some(n) => n,
            None => return Ok(ApplyOutcome::AddRefused(AddError::NotAnInteger)),
        },
        None => 0,
    };
    let Some(sum) = current.checked_add(delta) else {
        return Ok(ApplyOutcome::AddRefused(AddError::Overflow));
    };
    let text = sum.to_string();
    data.insert(
        key.as_ref(),
        value::encode(index, text.as_bytes()).as_slice(),
    )
    .map_err(engine)?;
    Ok(ApplyOutcome::Added {
        revision: index,
        value: sum,
    })
}
