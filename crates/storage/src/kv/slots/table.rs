//! The slot table: the state of every one of the [`SLOT_COUNT`] slots, and its
//! stored form (the same bytes in the database, in snapshots and in the digest).

use keel_placement::{SLOT_COUNT, Slot};
use redb::{ReadableTable, Table};

use super::state::{STATE_LEN, SlotState};
use super::{SLOT_TABLE, SLOT_TABLE_ROW};
use crate::kv::error::{KvError, engine};

/// Bytes of an encoded slot table: one state per slot, in slot order.
pub const SLOT_TABLE_BYTES: usize = SLOT_COUNT as usize * STATE_LEN;

/// The state of every slot in one group. Kept in memory by the store (every write
/// consults it) and stored whole: it changes only with slot-move commands, which
/// are rare, so rewriting 36 KiB then costs less than a row per slot would on
/// every load.
#[derive(Clone, PartialEq, Eq)]
pub struct SlotTable {
    /// Indexed by slot number; always [`SLOT_COUNT`] long.
    states: Box<[SlotState]>,
}

impl std::fmt::Debug for SlotTable {
    /// Runs of equal states (`0-4095: serving`), not 4096 lines.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        let mut start = 0;
        for i in 1..=self.states.len() {
            if i == self.states.len() || self.states[i] != self.states[start] {
                list.entry(&format_args!("{}-{}: {}", start, i - 1, self.states[start]));
                start = i;
            }
        }
        list.finish()
    }
}

/// Why bytes are not a slot table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlotTableError {
    /// Not [`SLOT_TABLE_BYTES`] long.
    #[error("a slot table of {0} bytes, it must be {SLOT_TABLE_BYTES}")]
    Length(usize),
    /// A slot's state has an unknown tag, or an epoch where none belongs (or
    /// none where one does).
    #[error("slot {slot} has an invalid state (tag {tag:#04x}, epoch {epoch})")]
    BadState {
        /// The slot.
        slot: u16,
        /// The stored tag.
        tag: u8,
        /// The stored epoch.
        epoch: u64,
    },
}

impl SlotTable {
    /// Every slot served: group 1's table, and what every store held before
    /// sharding (so an existing cluster behaves exactly as before).
    pub fn all_serving() -> SlotTable {
        SlotTable::filled(SlotState::Serving)
    }

    /// No slot held: a group that has not been given any yet.
    pub fn empty() -> SlotTable {
        SlotTable::filled(SlotState::Absent)
    }

    fn filled(state: SlotState) -> SlotTable {
        SlotTable {
            states: vec![state; usize::from(SLOT_COUNT)].into_boxed_slice(),
        }
    }

    /// The state of `slot`.
    pub fn get(&self, slot: Slot) -> SlotState {
        self.states[usize::from(slot.get())]
    }

    /// Sets the state of `slot` in this table. A store's own table changes
    /// only by applying slot-move commands; this is for copies (and tests).
    pub fn set(&mut self, slot: Slot, state: SlotState) {
        self.states[usize::from(slot.get())] = state;
    }

    /// Whether every slot is served (the table of a store from before sharding).
    pub fn is_all_serving(&self) -> bool {
        self.states.iter().all(|s| *s == SlotState::Serving)
    }

    /// Every slot with its state, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (Slot, SlotState)> + '_ {
        Slot::all().zip(self.states.iter().copied())
    }

    /// The stored form: each slot's state ([`SlotState::encode`]) in slot order.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SLOT_TABLE_BYTES);
        for state in self.states.iter() {
            out.extend_from_slice(&state.encode());
        }
        out
    }

    /// The state of `slot` in [`SlotTable::encode`]'s bytes, decoding only
    /// that slot's part.
    pub(crate) fn decode_one(bytes: &[u8], slot: Slot) -> Result<SlotState, SlotTableError> {
        if bytes.len() != SLOT_TABLE_BYTES {
            return Err(SlotTableError::Length(bytes.len()));
        }
        let at = usize::from(slot.get()) * STATE_LEN;
        let raw: [u8; STATE_LEN] = bytes[at..at + STATE_LEN]
            .try_into()
            .expect("a slot's part of a table of the right length");
        SlotState::decode(raw).map_err(|(tag, epoch)| SlotTableError::BadState {
            slot: slot.get(),
            tag,
            epoch,
        })
    }

    /// Parses [`SlotTable::encode`]'s bytes, refusing any non-canonical state.
    pub(crate) fn decode(bytes: &[u8]) -> Result<SlotTable, SlotTableError> {
        if bytes.len() != SLOT_TABLE_BYTES {
            return Err(SlotTableError::Length(bytes.len()));
        }
        let mut states = Vec::with_capacity(usize::from(SLOT_COUNT));
        for (slot, chunk) in (0u16..).zip(bytes.chunks_exact(STATE_LEN)) {
            let raw: [u8; STATE_LEN] = chunk.try_into().expect("chunks of STATE_LEN");
            let state = SlotState::decode(raw)
                .map_err(|(tag, epoch)| SlotTableError::BadState { slot, tag, epoch })?;
            states.push(state);
        }
        Ok(SlotTable {
            states: states.into_boxed_slice(),
        })
    }

    /// Reads the table a database holds.
    pub(crate) fn load<T>(table: &T) -> Result<SlotTable, KvError>
    where
        T: ReadableTable<&'static str, &'static [u8]>,
    {
        let stored = table
            .get(SLOT_TABLE_ROW)
            .map_err(engine)?
            .ok_or_else(|| KvError::Corrupt("the slot table is missing".into()))?;
        SlotTable::decode(stored.value()).map_err(|e| KvError::Corrupt(e.to_string()))
    }

    /// Writes the table into a database.
    pub(crate) fn store(&self, table: &mut Table<'_, &str, &[u8]>) -> Result<(), KvError> {
        table
            .insert(SLOT_TABLE_ROW, self.encode().as_slice())
            .map_err(engine)?;
        Ok(())
    }
}

/// Opens the slot-table table of a write transaction.
pub(crate) fn open(
    txn: &redb::WriteTransaction,
) -> Result<Table<'_, &'static str, &'static [u8]>, KvError> {
    txn.open_table(SLOT_TABLE).map_err(engine)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(n: u16) -> Slot {
        Slot::new(n).expect("slot")
    }

    #[test]
    fn tables_round_trip_and_print_as_runs() {
        let mut table = SlotTable::all_serving();
        assert!(table.is_all_serving());
        table.set(slot(7), SlotState::Fenced { epoch: 9 });
        table.set(slot(4095), SlotState::Absent);
        assert!(!table.is_all_serving());
        assert_eq!(table.get(slot(7)), SlotState::Fenced { epoch: 9 });
        let bytes = table.encode();
        assert_eq!(bytes.len(), SLOT_TABLE_BYTES);
        assert_eq!(SlotTable::decode(&bytes), Ok(table.clone()));
        assert_eq!(
            format!("{table:?}"),
            "[0-6: serving, 7-7: fenced(9), 8-4094: serving, 4095-4095: absent]"
        );
        assert_eq!(table.iter().count(), usize::from(SLOT_COUNT));
    }

    #[test]
    fn damaged_tables_are_refused() {
        let bytes = SlotTable::empty().encode();
        assert_eq!(
            SlotTable::decode(&bytes[1..]),
            Err(SlotTableError::Length(SLOT_TABLE_BYTES - 1))
        );
        let mut bad = bytes.clone();
        bad[9 * 5] = 0x2A;
        assert_eq!(
            SlotTable::decode(&bad),
            Err(SlotTableError::BadState {
                slot: 5,
                tag: 0x2A,
                epoch: 0
            })
        );
    }
}
