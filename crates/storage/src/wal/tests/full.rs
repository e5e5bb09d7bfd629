//! A full disk: the WAL refuses to grow, stays usable, keeps what did not fit,
//! and writes it once space returns.

use std::io;

use keel_raft::HardState;

use super::*;
use crate::wal::{LogStart, LogStartKind, WalError};

const SEG: u64 = 1024;

/// Appends one 100-byte entry per sync until a sync fails; returns the error and
/// the model of what was synced.
fn fill(vfs: &MemVfs, wal: &mut Wal) -> (WalError, Model, u64) {
    vfs.set_space_limit(Some(3 * SEG + 512));
    let mut model = Model::default();
    let mut index = 0;
    loop {
        index += 1;
        let es = [entry(1, index, &[7; 100])];
        wal.append_entries(1, &es).expect("append");
        match wal.sync() {
            Ok(()) => model.append(1, &es),
            Err(e) => return (e, model, index),
        }
    }
}

#[test]
fn a_full_disk_at_rollover_keeps_the_batch_and_a_retry_writes_it() {
    let vfs = MemVfs::new();
    let (mut wal, _) = open(&vfs, SEG);
    let (err, mut model, index) = fill(&vfs, &mut wal);
    let WalError::NoSpace { source, op, .. } = &err else {
        panic!("expected NoSpace, got {err}");
    };
    assert_eq!(source.kind(), io::ErrorKind::StorageFull);
    assert_eq!(*op, "preallocate segment");
    let msg = err.to_string();
    assert!(msg.starts_with("disk full:"), "{msg}");
    assert!(msg.contains(DIR), "names the directory to free: {msg}");
    assert!(!wal.is_poisoned());
    assert!(
        wal.has_pending(),
        "the entry that did not fit is still buffered"
    );
    let segments = segment_names(&vfs);
    // The half-made segment was given back.
    assert_eq!(segments.len(), 3, "{segments:?}");

    // Still full: the retry fails the same way; more records queue behind.
    assert!(wal.sync().expect_err("still full").is_no_space());
    let more = [entry(1, index + 1, b"later")];
    wal.append_entries(1, &more).expect("append while full");
    let hs = HardState {
        term: 2,
        vote: 1,
        commit: index,
    };
    wal.set_hard_state(1, hs).expect("hard state while full");

    // Space returns: everything buffered is written, in order.
    vfs.set_space_limit(None);
    wal.sync().expect("sync after space returned");
    model.append(1, &[entry(1, index, &[7; 100])]);
    model.append(1, &more);
    model.hard_state(1, hs);
    drop(wal);
    vfs.crash(3);
    let (_, rec) = open(&vfs, SEG);
    assert_eq!(rec.groups, model.groups);
}

#[test]
fn a_crash_while_full_recovers_exactly_what_was_synced() {
    let vfs = MemVfs::new();
    let (mut wal, _) = open(&vfs, SEG);
    let (err, model, _) = fill(&vfs, &mut wal);
    assert!(err.is_no_space(), "{err}");
    drop(wal);
    vfs.crash(7);
    vfs.set_space_limit(None);
    let (_, rec) = open(&vfs, SEG);
    assert_eq!(rec.groups, model.groups);
}

#[test]
fn a_compaction_that_finds_the_disk_full_changes_nothing_and_can_be_retried() {
    let vfs = MemVfs::new();
    let (mut wal, _) = open(&vfs, SEG);
    for i in 1..=40 {
        wal.append_entries(1, &[entry(1, i, &[i as u8; 60])])
            .expect("append");
        wal.sync().expect("sync");
    }
    let before = segment_names(&vfs);
    assert!(before.len() > 2, "{before:?}");
    let start = LogStart {
        index: 30,
        term: 1,
        kind: LogStartKind::Compacted,
    };
    wal.set_log_start(1, start).expect("log start");
    wal.sync().expect("sync");
    // Not a byte more: whichever step needs space first (a segment for the
    // restated records, or the FIRST file) finds the disk full.
    vfs.set_space_limit(Some(vfs.used_bytes()));
    let err = wal.compact(|_| 30).expect_err("no room to compact");
    assert!(err.is_no_space(), "{err}");
    assert!(!wal.is_poisoned());
    assert_eq!(segment_names(&vfs), before, "nothing deleted");
    vfs.set_space_limit(None);
    let done = wal.compact(|_| 30).expect("compact after space returned");
    assert!(!done.removed.is_empty());
    drop(wal);
    let (_, rec) = open(&vfs, SEG);
    let group = &rec.groups[&1];
    assert_eq!(group.log_start, Some(start));
    assert_eq!(group.last_index(), 40);
}
