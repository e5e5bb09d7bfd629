//! Schema tests: a state file written by the previous build (schema 2) opens,
//! is upgraded to schema 3 and keeps working; upgrades index every key; a newer
//! schema is refused.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use keel_placement::slot_for_key;
use keel_raft::{Entry, EntryKind};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::keyspace::{SLOT_INDEX, key_of_index};
use super::schema::{SCHEMA, SCHEMA_VERSION};
use super::slots::{SLOT_TABLE, SlotState};
use super::*;
use crate::command::{Command, Envelope, Expect, MoveStep, SessionHeader, SlotCommand};
use crate::vfs::{MemVfs, StdVfs, Vfs};

/// A state file written by the build before this schema (commit 4bb7fe9 of
/// branch `shard`, schema 2): a NO-OP at 1; `key00`..`key39` set to `value0`..
/// `value39` at 2..41; `key07` deleted at 42; `session-key` put by client
/// session 0xABCD, write 1, at 43; `{user:1}:name` and `{user:1}:mail` at 44
/// and 45; flushed.
const SCHEMA_2_FILE: &[u8] = include_bytes!("../../tests/fixtures/state-schema2.redb");

/// What that build's `KvStore::digest` said of the file.
const SCHEMA_2_DIGEST: u128 = 0x91d5_ec29_b394_21f0_64ce_6bd5_5759_6e20;

fn entry(index: u64, session: Option<SessionHeader>, command: Command) -> Entry {
    Entry {
        term: 3,
        index,
        kind: EntryKind::Normal,
        data: Envelope { session, command }.encode(),
    }
}

fn put(key: &str, value: &str) -> Command {
    Command::Put {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        expect: Expect::Any,
    }
}

fn schema_of(kv: &KvStore) -> Option<u64> {
    let txn = kv.db().begin_read().expect("read");
    let meta = txn.open_table(META).expect("meta");
    meta.get(SCHEMA).expect("get").map(|g| g.value())
}

/// Every row of the slot index, checked to name an existing key of its slot.
fn index_rows(kv: &KvStore) -> u64 {
    let txn = kv.db().begin_read().expect("read");
    let index = txn.open_table(SLOT_INDEX).expect("index");
    let data = txn.open_table(DATA).expect("data");
    let mut rows = 0;
    for row in index.iter().expect("iter") {
        let (row, _) = row.expect("row");
        let row = row.value();
        let key = key_of_index(row);
        assert_eq!(&row[..2], &slot_for_key(key).get().to_be_bytes());
        assert!(data.get(key).expect("get").is_some());
        rows += 1;
    }
    assert_eq!(rows, data.len().expect("len"));
    rows
}

#[test]
fn a_state_file_of_the_previous_schema_opens_and_keeps_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.redb");
    std::fs::write(&path, SCHEMA_2_FILE).expect("copy the fixture");
    let user = slot_for_key(b"{user:1}:name");
    {
        let kv = KvStore::open(Arc::new(StdVfs), &path).expect("open");
        assert_eq!(schema_of(&kv), Some(SCHEMA_VERSION));
        // Nothing replicated changed: the digest is what the old build said.
        let digest = kv.digest().expect("digest");
        assert_eq!(digest.hash, SCHEMA_2_DIGEST);
        assert_eq!((digest.keys, digest.sessions), (42, 1));
        assert_eq!(kv.applied_index(), 45);
        assert!(kv.slot_table().is_all_serving());
        assert_eq!(kv.read_view().expect("view").revision_offset(), 0);
        assert_eq!(index_rows(&kv), 42);
        let mut in_slot = Vec::new();
        kv.read_view()
            .expect("view")
            .for_each_in_slot(user, None, |k, _, _| {
                in_slot.push(String::from_utf8_lossy(k).into_owned());
                Ok(true)
            })
            .expect("walk");
        assert_eq!(in_slot, ["{user:1}:mail", "{user:1}:name"]);

        // It keeps working: a retried session write gets its original result,
        // new writes get their index as revision.
        let session = SessionHeader {
            client_id: 0xABCD,
            seq: 1,
            first_unacked: 1,
            now_ms: 1_700_000_000_000,
            idle_timeout_ms: 3_600_000,
            max_sessions: 1000,
        };
        let outcomes = kv
            .apply(&[
                entry(46, Some(session), put("session-key", "s")),
                entry(47, None, put("key07", "back")),
            ])
            .expect("apply");
        assert_eq!(
            outcomes,
            [
                ApplyOutcome::Put { revision: 43 },
                ApplyOutcome::Put { revision: 47 }
            ]
        );
        kv.flush().expect("flush");
    }
    // Opened again, it is schema 3 already; moving the slot out finds exactly
    // its keys through the index built by the upgrade.
    let kv = KvStore::open(Arc::new(StdVfs), &path).expect("reopen");
    assert_eq!(kv.get(b"key07").expect("get").map(|(_, v)| v), Some(47));
    let slot_step = |index, step| {
        entry(
            index,
            None,
            Command::Slot(SlotCommand {
                slot: user,
                epoch: 2,
                step,
            }),
        )
    };
    let outcomes = kv
        .apply(&[
            slot_step(48, MoveStep::Fence),
            slot_step(49, MoveStep::Drop { map_version: 3 }),
        ])
        .expect("apply");
    assert_eq!(
        outcomes[1],
        ApplyOutcome::SlotStep {
            state: SlotState::Absent,
            keys_removed: 2
        }
    );
    assert_eq!(kv.digest().expect("digest").keys, 41);
    assert_eq!(index_rows(&kv), 41);
}

/// Turns a current store back into what the previous build left: no slot
/// index or slot table, schema 2.
fn downgrade(kv: &KvStore, junk_index_row: bool) {
    let txn = kv.db().begin_write().expect("write");
    txn.delete_table(SLOT_TABLE).expect("drop the table");
    txn.delete_table(SLOT_INDEX).expect("drop the index");
    if junk_index_row {
        // As an earlier, interrupted upgrade might have left.
        let mut index = txn.open_table(SLOT_INDEX).expect("index");
        index.insert(&b"\x00\x01gone"[..], ()).expect("insert");
    }
    txn.open_table(META)
        .expect("meta")
        .insert(SCHEMA, 2)
        .expect("schema");
    txn.commit().expect("commit");
}

#[test]
fn an_upgrade_indexes_every_key_in_batches_and_starts_from_an_empty_index() {
    let vfs = MemVfs::new();
    let path = Path::new("/node/state.redb");
    let keys = 20_000u64;
    {
        let kv = KvStore::open(Arc::new(vfs.clone()), path).expect("open");
        let entries: Vec<Entry> = (1..=keys)
            .map(|i| entry(i, None, put(&format!("key{i:06}"), "v")))
            .collect();
        for batch in entries.chunks(1000) {
            kv.apply(batch).expect("apply");
        }
        downgrade(&kv, true);
        kv.flush().expect("flush");
    }
    let kv = KvStore::open(Arc::new(vfs), path).expect("upgrade");
    assert_eq!(index_rows(&kv), keys);
    assert!(kv.slot_table().is_all_serving());
}

#[test]
fn a_newer_schema_is_refused_and_left_as_it_is() {
    let vfs = MemVfs::new();
    let path = Path::new("/node/state.redb");
    {
        let kv = KvStore::open(Arc::new(vfs.clone()), path).expect("open");
        let txn = kv.db().begin_write().expect("write");
        txn.open_table(META)
            .expect("meta")
            .insert(SCHEMA, SCHEMA_VERSION + 1)
            .expect("schema");
        txn.commit().expect("commit");
    }
    let err = KvStore::open(Arc::new(vfs.clone()), path).expect_err("refused");
    assert!(
        err.to_string()
            .contains("schema version 4, this build knows up to 3"),
        "{err}"
    );
    let file = vfs.open(path, false).expect("file");
    let db = open_db(file, &KvOptions::default()).expect("db");
    let txn = db.begin_read().expect("read");
    let meta = txn.open_table(META).expect("meta");
    assert_eq!(meta.get(SCHEMA).expect("get").map(|g| g.value()), Some(4));
}

#[test]
fn a_damaged_slot_table_stops_the_open() {
    let vfs = MemVfs::new();
    let path = Path::new("/node/state.redb");
    {
        let kv = KvStore::open(Arc::new(vfs.clone()), path).expect("open");
        let txn = kv.db().begin_write().expect("write");
        txn.open_table(SLOT_TABLE)
            .expect("table")
            .insert("slots", &b"short"[..])
            .expect("insert");
        txn.commit().expect("commit");
    }
    let err = KvStore::open(Arc::new(vfs), path).expect_err("refused");
    assert!(err.to_string().contains("slot table of 5 bytes"), "{err}");
}
