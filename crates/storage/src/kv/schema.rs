//! The database's tables, their layout version, and upgrading older layouts.
//!
//! | table | holds |
//! |---|---|
//! | `kv` | key → version (u64 LE) and value |
//! | `meta` | name → number: applied index and term, session clock, revision offset, schema version |
//! | `sessions` | client id → session row (`sessions/row.rs`) |
//! | `slot_index` | slot (u16 BE) and key → nothing (`keyspace.rs`) |
//! | `slot_table` | `"slots"` → the slot table (`slots/table.rs`) |
//!
//! Versions: 1 had `kv` and `meta`; 2 added `sessions`; 3 added `slot_index`,
//! `slot_table` and the revision offset. An older database is upgraded at open;
//! a newer one is refused (this build would ignore what it added), and so an
//! older build refuses a version-3 database.

use keel_raft::Index;
use redb::{Database, Durability, ReadableDatabase, ReadableTable};

use super::error::{KvError, engine};
use super::keyspace::{SLOT_INDEX, index_key};
use super::sessions::SESSIONS;
use super::slots::{SLOT_TABLE, SlotTable, open_slot_table};
use super::{APPLIED_INDEX, DATA, META};

/// Meta key of the layout version.
pub(crate) const SCHEMA: &str = "schema_version";
/// The layout this build writes.
pub(crate) const SCHEMA_VERSION: u64 = 3;
/// Keys indexed per transaction while upgrading to version 3: bounds the
/// transaction's bookkeeping whatever the number of keys.
const INDEX_BATCH_KEYS: usize = 16_384;

/// Creates the tables if missing, upgrades an older layout, checks the version,
/// and returns the applied index. Commits durably (only at open, so the cost
/// does not matter).
pub(crate) fn init_tables(db: &Database) -> Result<Index, KvError> {
    let schema = {
        let txn = db.begin_read().map_err(engine)?;
        match txn.open_table(META) {
            Ok(meta) => meta.get(SCHEMA).map_err(engine)?.map(|g| g.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(engine(e)),
        }
    };
    match schema {
        // A new database: group 1's, which serves every slot.
        None => {}
        // Written by an earlier build: every key is group 1's, served as before.
        Some(1 | 2) => build_slot_index(db)?,
        Some(SCHEMA_VERSION) => {}
        Some(other) => {
            return Err(KvError::Corrupt(format!(
                "schema version {other}, this build knows up to {SCHEMA_VERSION}"
            )));
        }
    }
    let txn = db.begin_write().map_err(engine)?;
    let applied = {
        txn.open_table(DATA).map_err(engine)?;
        txn.open_table(SESSIONS).map_err(engine)?;
        txn.open_table(SLOT_INDEX).map_err(engine)?;
        let mut slots = open_slot_table(&txn)?;
        if schema != Some(SCHEMA_VERSION) {
            SlotTable::all_serving().store(&mut slots)?;
        }
        let mut meta = txn.open_table(META).map_err(engine)?;
        meta.insert(SCHEMA, SCHEMA_VERSION).map_err(engine)?;
        let applied = meta.get(APPLIED_INDEX).map_err(engine)?;
        applied.map_or(0, |g| g.value())
    };
    // Durable: the version and the table it promises land together.
    txn.commit().map_err(engine)?;
    Ok(applied)
}

/// Makes a new, empty store serve no slot (a data group created after the
/// cluster: slots reach it only by moves). Durable, before the store is
/// renamed into place.
pub(crate) fn serve_no_slot(db: &Database) -> Result<(), KvError> {
    let txn = db.begin_write().map_err(engine)?;
    SlotTable::empty().store(&mut open_slot_table(&txn)?)?;
    txn.commit().map_err(engine)
}

/// Builds the slot index from every key, in batches of non-durable transactions
/// (the final durable commit in [`init_tables`] covers them). Starts from an
/// empty index, so an upgrade interrupted by a crash is simply done again.
fn build_slot_index(db: &Database) -> Result<(), KvError> {
    {
        let mut txn = db.begin_write().map_err(engine)?;
        txn.set_durability(Durability::None).map_err(engine)?;
        match txn.delete_table(SLOT_INDEX) {
            Ok(_) => {}
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(engine(e)),
        }
        txn.commit().map_err(engine)?;
    }
    let mut after: Option<Vec<u8>> = None;
    loop {
        let mut txn = db.begin_write().map_err(engine)?;
        txn.set_durability(Durability::None).map_err(engine)?;
        let done = {
            let data = txn.open_table(DATA).map_err(engine)?;
            let mut index = txn.open_table(SLOT_INDEX).map_err(engine)?;
            let lower = match &after {
                Some(key) => std::ops::Bound::Excluded(key.as_slice()),
                None => std::ops::Bound::Unbounded,
            };
            let mut count = 0;
            for row in data
                .range::<&[u8]>((lower, std::ops::Bound::Unbounded))
                .map_err(engine)?
            {
                if count == INDEX_BATCH_KEYS {
                    break;
                }
                let (key, _) = row.map_err(engine)?;
                index
                    .insert(index_key(key.value()).as_slice(), ())
                    .map_err(engine)?;
                after = Some(key.value().to_vec());
                count += 1;
            }
            count < INDEX_BATCH_KEYS
        };
        txn.commit().map_err(engine)?;
        if done {
            return Ok(());
        }
    }
}

/// Reads the slot table of `db` (opened by [`init_tables`], so it is there).
pub(crate) fn load_slot_table(db: &Database) -> Result<SlotTable, KvError> {
    let txn = db.begin_read().map_err(engine)?;
    let table = txn.open_table(SLOT_TABLE).map_err(engine)?;
    SlotTable::load(&table)
}
