//! Snapshot tests of format 3: the slot table and the revision offset travel
//! with the keys, files of format 2 still install (every slot served), and a
//! missing or damaged slot table is refused.

use std::path::Path;

use bytes::Bytes;

use super::format::{
    CHUNK_MAGIC, FOOTER_LEN, STATE_CHUNK_MAGIC, STATE_REVISION_OFFSET, STATE_SESSION_CLOCK,
    STATE_SLOT_TABLE, SnapshotHeader, chunk_header, encode_record, encode_state_record,
    footer_body,
};
use super::session_tests::{file_of, store};
use super::*;
use crate::command::MoveStep;
use crate::kv::slots::tests::{Replica, key_in, page, put, slot, step};
use crate::kv::{ApplyOutcome, SlotTable};
use crate::vfs::{MemVfs, Vfs};

const SNAP: &str = "/node/snap/1";

/// A replica on its own disk.
fn replica() -> Replica {
    Replica::new(&MemVfs::new())
}

#[test]
fn the_slot_table_and_the_revision_offset_travel_in_snapshots() {
    let mut source = replica();
    let (fenced, staged, absent) = (slot(3), slot(4), slot(5));
    source.run(put(&key_in(fenced, "f"), "x"));
    source.run(step(fenced, 6, MoveStep::Fence));
    source.release(staged, 2);
    source.release(absent, 2);
    let copied = key_in(staged, "s");
    source.run(step(
        staged,
        7,
        page(0, 0, &[(&copied, 900, "copied")], &[]),
    ));
    let offset = source.kv.read_view().expect("view").revision_offset();
    assert!(offset > 0);

    let vfs = MemVfs::new();
    let info = store(&vfs)
        .write(&source.kv.read_view().expect("view"), Bytes::new())
        .expect("write");
    assert_eq!(store(&vfs).validate(&file_of(&info)).expect("valid"), info);
    let mut target = replica();
    target.run(put(&key_in(slot(9), "gone"), "replaced"));
    store(&vfs)
        .install(&target.kv, &file_of(&info))
        .expect("install");
    target.next = source.next;

    assert_eq!(target.kv.slot_table(), source.kv.slot_table());
    assert_eq!(
        target
            .kv
            .read_view()
            .expect("view")
            .slot_table()
            .expect("table"),
        source.kv.slot_table()
    );
    assert_eq!(
        target.kv.read_view().expect("view").revision_offset(),
        offset
    );
    assert_eq!(
        target.kv.digest().expect("d"),
        source.kv.digest().expect("d")
    );
    // Both replicas go on alike: the fence holds, revisions include the offset.
    let refused = target.run(put(&key_in(fenced, "f"), "y"));
    assert!(
        matches!(refused, ApplyOutcome::SlotUnavailable(_)),
        "{refused:?}"
    );
    assert_eq!(source.run(put(&key_in(fenced, "f"), "y")), refused);
    let written = target.run(put(&key_in(slot(9), "n"), "z"));
    assert_eq!(
        written,
        ApplyOutcome::Put {
            revision: source.next + offset
        }
    );
    assert_eq!(source.run(put(&key_in(slot(9), "n"), "z")), written);
    assert_eq!(
        target.kv.digest().expect("d"),
        source.kv.digest().expect("d")
    );
}

/// A snapshot file written by hand: `version`, the given keys (one chunk, if
/// any), and one state chunk holding `state` records (if any).
pub(super) fn write_file(
    vfs: &MemVfs,
    version: u32,
    index: u64,
    keys: &[(&[u8], u64, &str)],
    state: &[(u8, Vec<u8>)],
) -> SnapshotFile {
    let header = SnapshotHeader {
        group: 1,
        index,
        term: 1,
        conf: Bytes::new(),
    };
    let mut file = header.encode();
    file[8..12].copy_from_slice(&version.to_le_bytes());
    let crc_at = file.len() - 4;
    let crc = crc32c::crc32c(&file[..crc_at]);
    file[crc_at..].copy_from_slice(&crc.to_le_bytes());
    let mut payload = Vec::new();
    for (key, version, value) in keys {
        encode_record(&mut payload, key, *version, value.as_bytes());
    }
    if !keys.is_empty() {
        file.extend_from_slice(&chunk_header(CHUNK_MAGIC, &payload, keys.len() as u32));
        file.extend_from_slice(&payload);
    }
    let mut payload = Vec::new();
    for (kind, body) in state {
        encode_state_record(&mut payload, *kind, &[body]);
    }
    if !state.is_empty() {
        let records = state.len() as u32;
        file.extend_from_slice(&chunk_header(STATE_CHUNK_MAGIC, &payload, records));
        file.extend_from_slice(&payload);
    }
    let len = file.len() as u64 + FOOTER_LEN;
    let records = (keys.len() + state.len()) as u64;
    file.extend_from_slice(&footer_body(records, len));
    let crc = crc32c::crc32c(&file);
    file.extend_from_slice(&crc.to_le_bytes());
    let path = Path::new(SNAP).join(super::format::file_name(1, index));
    let f = vfs.open(&path, true).expect("create");
    f.write_all_at(0, &file).expect("write");
    SnapshotFile {
        path,
        term: 1,
        index,
    }
}

fn clock() -> (u8, Vec<u8>) {
    (STATE_SESSION_CLOCK, 0u64.to_le_bytes().to_vec())
}

#[test]
fn a_format_2_snapshot_installs_with_every_slot_served() {
    let vfs = MemVfs::new();
    let s = store(&vfs);
    let key = key_in(slot(12), "k");
    let file = write_file(&vfs, 2, 50, &[(&key[..], 40, "old")], &[clock()]);
    s.validate(&file).expect("valid");
    // The target had moved a slot away and raised its offset; the snapshot,
    // from before sharding, serves everything at offset 0.
    let mut target = replica();
    target.release(slot(12), 1);
    target.run(step(slot(12), 2, page(0, 0, &[(&key, 30, "x")], &[])));
    s.install(&target.kv, &file).expect("install");
    assert!(target.kv.slot_table().is_all_serving());
    assert_eq!(target.kv.read_view().expect("view").revision_offset(), 0);
    assert_eq!(
        target.kv.get(&key).expect("get"),
        Some((Bytes::from_static(b"old"), 40))
    );
    target.next = 51;
    assert_eq!(
        target.run(put(&key, "new")),
        ApplyOutcome::Put { revision: 51 }
    );
}

#[test]
fn a_missing_or_damaged_slot_section_is_refused() {
    let vfs = MemVfs::new();
    let s = store(&vfs);
    let offset = || (STATE_REVISION_OFFSET, 0u64.to_le_bytes().to_vec());
    let table = || (STATE_SLOT_TABLE, SlotTable::all_serving().encode());
    let refused = |version, index, state: &[(u8, Vec<u8>)], why: &str| {
        let file = write_file(&vfs, version, index, &[], state);
        let err = s.validate(&file).expect_err("refused");
        assert!(err.to_string().contains(why), "{err}");
        let target = replica();
        let before = target.kv.digest().expect("d");
        assert!(s.install(&target.kv, &file).is_err());
        assert_eq!(target.kv.digest().expect("d"), before);
    };
    refused(3, 60, &[clock()], "slot table is missing");
    refused(3, 61, &[clock(), offset()], "slot table is missing");
    refused(3, 62, &[clock(), table()], "unexpected state record");
    refused(
        3,
        63,
        &[clock(), offset(), table(), table()],
        "unexpected state record",
    );
    // Format 2 has no slot records.
    refused(
        2,
        64,
        &[clock(), offset(), table()],
        "unexpected state record",
    );
    let mut bad = SlotTable::all_serving().encode();
    bad[9 * 100] = 0x2A;
    refused(
        3,
        65,
        &[clock(), offset(), (STATE_SLOT_TABLE, bad)],
        "slot table: slot 100 has an invalid state",
    );
    let whole = write_file(&vfs, 3, 66, &[], &[clock(), offset(), table()]);
    s.validate(&whole).expect("the complete form verifies");
}
