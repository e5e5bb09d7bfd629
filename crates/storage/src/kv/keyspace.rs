//! The user data of one apply transaction: keys with their versions and values,
//! and the slot index beside them.
//!
//! The slot index holds `(slot, key)` for every key, so copying or dropping one
//! slot is a range scan of the index rather than a scan of every key. Every
//! write of user data goes through [`KeySpace`], which keeps the two in step; an
//! overwrite leaves the index alone (the key's slot cannot change), so the index
//! costs a write only when a key appears or disappears.

use std::ops::Bound;

use bytes::Bytes;
use keel_placement::{Slot, slot_for_key};
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use super::error::{KvError, engine};
use super::{DATA, value};

/// The slot index: the slot (big-endian `u16`, so a slot's keys are one range)
/// followed by the key; no value.
pub(crate) const SLOT_INDEX: TableDefinition<&[u8], ()> = TableDefinition::new("slot_index");

/// Bytes of the slot number in front of an index key.
const SLOT_PREFIX_LEN: usize = 2;

/// The index row of `key`.
pub(crate) fn index_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SLOT_PREFIX_LEN + key.len());
    out.extend_from_slice(&slot_for_key(key).get().to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// The index rows of `slot`, after `start_after` (a key of the slot) if given.
pub(crate) fn slot_range(
    slot: Slot,
    start_after: Option<&[u8]>,
) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let prefix = slot.get().to_be_bytes();
    let lower = match start_after {
        Some(key) => {
            let mut after = prefix.to_vec();
            after.extend_from_slice(key);
            Bound::Excluded(after)
        }
        None => Bound::Included(prefix.to_vec()),
    };
    // Slot numbers are below 4096, so the next slot's prefix always exists.
    let upper = Bound::Excluded((slot.get() + 1).to_be_bytes().to_vec());
    (lower, upper)
}

/// The key of an index row.
pub(crate) fn key_of_index(row: &[u8]) -> &[u8] {
    &row[SLOT_PREFIX_LEN..]
}

/// The user data and slot index, opened in one write transaction.
pub(crate) struct KeySpace<'txn> {
    data: Table<'txn, &'static [u8], &'static [u8]>,
    index: Table<'txn, &'static [u8], ()>,
    /// Slots whose written keys are collected in `written` (the change
    /// index's tracked slots; usually none, which costs nothing).
    watch: Vec<Slot>,
    /// Keys of watched slots put or removed since the last
    /// [`KeySpace::take_written`].
    written: Vec<Bytes>,
}

impl<'txn> KeySpace<'txn> {
    /// Opens both tables in `txn`.
    pub(crate) fn open(txn: &'txn WriteTransaction) -> Result<KeySpace<'txn>, KvError> {
        Self::watching(txn, Vec::new())
    }

    /// Opens both tables in `txn`, collecting the keys of `watch` written.
    pub(crate) fn watching(
        txn: &'txn WriteTransaction,
        watch: Vec<Slot>,
    ) -> Result<KeySpace<'txn>, KvError> {
        Ok(KeySpace {
            data: txn.open_table(DATA).map_err(engine)?,
            index: txn.open_table(SLOT_INDEX).map_err(engine)?,
            watch,
            written: Vec::new(),
        })
    }

    /// The keys of watched slots written since the last call.
    pub(crate) fn take_written(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.written)
    }

    fn note(&mut self, key: &[u8]) {
        if !self.watch.is_empty() && self.watch.contains(&slot_for_key(key)) {
            self.written.push(Bytes::copy_from_slice(key));
        }
    }

    /// The version of `key`, if present.
    pub(crate) fn version(&self, key: &[u8]) -> Result<Option<u64>, KvError> {
        match self.data.get(key).map_err(engine)? {
            Some(stored) => Ok(Some(value::decode(stored.value())?.0)),
            None => Ok(None),
        }
    }

    /// The value and version of `key`, if present.
    pub(crate) fn lookup(&self, key: &[u8]) -> Result<Option<(Bytes, u64)>, KvError> {
        value::lookup(&self.data, key)
    }

    /// Sets `key` to `value` at `version`.
    pub(crate) fn put(&mut self, key: &[u8], version: u64, value: &[u8]) -> Result<(), KvError> {
        self.note(key);
        let stored = value::encode(version, value);
        let existed = self
            .data
            .insert(key, stored.as_slice())
            .map_err(engine)?
            .is_some();
        if !existed {
            self.index
                .insert(index_key(key).as_slice(), ())
                .map_err(engine)?;
        }
        Ok(())
    }

    /// Removes `key`; whether it existed.
    pub(crate) fn remove(&mut self, key: &[u8]) -> Result<bool, KvError> {
        self.note(key);
        let existed = self.data.remove(key).map_err(engine)?.is_some();
        if existed {
            self.index
                .remove(index_key(key).as_slice())
                .map_err(engine)?;
        }
        Ok(existed)
    }

    /// Up to `limit` keys of `slot`, in key order.
    pub(crate) fn keys_in_slot(&self, slot: Slot, limit: usize) -> Result<Vec<Bytes>, KvError> {
        let (lower, upper) = slot_range(slot, None);
        let bounds = (as_slice(&lower), as_slice(&upper));
        let mut keys = Vec::new();
        for row in self.index.range::<&[u8]>(bounds).map_err(engine)? {
            if keys.len() == limit {
                break;
            }
            let (row, _) = row.map_err(engine)?;
            keys.push(Bytes::copy_from_slice(key_of_index(row.value())));
        }
        Ok(keys)
    }
}

/// Borrows an owned bound as redb's range takes it.
pub(crate) fn as_slice(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(b) => Bound::Included(b.as_slice()),
        Bound::Excluded(b) => Bound::Excluded(b.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_rows_sort_by_slot_then_key() {
        let slot = slot_for_key(b"a");
        let row = index_key(b"a");
        assert_eq!(&row[..2], &slot.get().to_be_bytes());
        assert_eq!(key_of_index(&row), b"a");
        let (lower, upper) = slot_range(slot, None);
        let inside = |r: &Vec<u8>| {
            (match &lower {
                Bound::Included(l) => r >= l,
                Bound::Excluded(l) => r > l,
                Bound::Unbounded => true,
            }) && matches!(&upper, Bound::Excluded(u) if r < u)
        };
        assert!(inside(&row));
        assert!(!inside(&index_key(b"b")) || slot_for_key(b"b") == slot);
        let (after, _) = slot_range(slot, Some(b"a"));
        assert_eq!(after, Bound::Excluded(row));
        // The last slot's range ends before a prefix no key has.
        let last = Slot::new(4095).expect("slot");
        assert_eq!(slot_range(last, None).1, Bound::Excluded(vec![0x10, 0x00]));
    }
}
