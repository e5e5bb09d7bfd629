//! Change index tests: what it records while a slot is tracked, when it
//! refuses to answer (overflow, restart, snapshot install, an old view), and
//! that tracking ends with the move.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use keel_placement::Slot;
use keel_raft::Index;

use super::copy::fetch_changes;
use super::tests::{Replica, key_in, put, slot, step};
use super::*;
use crate::command::{Command, Expect, MoveStep};
use crate::kv::KvStore;
use crate::snapshot::{SnapshotFile, SnapshotOptions, SnapshotStore};
use crate::vfs::MemVfs;

const EPOCH: u64 = 4;

/// What `r`'s change index says about slot `s` since `since`, read as the
/// source answers it: view first, then the index.
fn ask(r: &Replica, s: Slot, since: Option<Index>) -> Changes {
    let view = r.kv.read_view().expect("view");
    fetch_changes(&r.kv, &view, s, EPOCH, since)
        .expect("the source's answer")
        .changes
}

/// Starts tracking `s` on `r`; the index it runs from.
fn track(r: &Replica, s: Slot) -> Index {
    match ask(r, s, None) {
        Changes::Unknown { from } => from,
        listed => panic!("a fresh start listed {listed:?}"),
    }
}

fn delete(key: &Bytes) -> Command {
    Command::Delete {
        key: key.clone(),
        expect: Expect::Any,
    }
}

#[test]
fn puts_and_deletes_of_the_tracked_slot_are_listed_since_a_baseline() {
    let mut r = Replica::new(&MemVfs::new());
    let (s, other) = (slot(40), slot(41));
    let (a, b, c) = (key_in(s, "a"), key_in(s, "b"), key_in(s, "c"));
    r.run(put(&a, "before"));
    let from = track(&r, s);
    assert_eq!(
        from,
        r.next - 1,
        "tracking starts at the last applied entry"
    );
    r.run(put(&b, "1"));
    r.run(put(&key_in(other, "x"), "not tracked"));
    let baseline = r.next - 1;
    r.run(delete(&a));
    r.run(Command::Add {
        key: c.clone(),
        delta: 2,
    });
    assert_eq!(
        ask(&r, s, Some(from)),
        Changes::Listed(vec![a.clone(), b.clone(), c.clone()])
    );
    // Asking since a later baseline leaves out what was written before it.
    assert_eq!(ask(&r, s, Some(baseline)), Changes::Listed(vec![a, c]));
    assert_eq!(ask(&r, s, Some(r.next - 1)), Changes::Listed(vec![]));
}

#[test]
fn a_baseline_before_tracking_or_past_the_view_is_unknown_and_restarts_it() {
    let mut r = Replica::new(&MemVfs::new());
    let s = slot(42);
    r.run(put(&key_in(s, "a"), "1"));
    let from = track(&r, s);
    r.run(put(&key_in(s, "b"), "2"));
    // Before tracking began: writes in between were not recorded.
    let now = r.next - 1;
    assert_eq!(ask(&r, s, Some(from - 1)), Changes::Unknown { from: now });
    // Past the view: the view cannot answer for a baseline it has not reached.
    assert_eq!(ask(&r, s, Some(now + 5)), Changes::Unknown { from: now });
    // Another epoch's tracking proves nothing for this one.
    let view = r.kv.read_view().expect("view");
    let other = fetch_changes(&r.kv, &view, s, EPOCH + 1, Some(now)).expect("answer");
    assert_eq!(other.changes, Changes::Unknown { from: now });
}

#[test]
fn an_untracked_slot_and_a_replica_that_restarted_answer_unknown() {
    let vfs = MemVfs::new();
    let mut r = Replica::new(&vfs);
    let s = slot(43);
    assert!(matches!(ask(&r, s, Some(0)), Changes::Unknown { .. }));
    let from = track(&r, s);
    r.run(put(&key_in(s, "a"), "1"));
    r.kv.flush().expect("flush");
    let next = r.next;
    drop(r);
    let reopened = KvStore::open(Arc::new(vfs), Path::new("/node/state/kv.redb")).expect("open");
    let r = Replica { kv: reopened, next };
    assert_eq!(ask(&r, s, Some(from)), Changes::Unknown { from: next - 1 });
}

#[test]
fn a_snapshot_install_forgets_what_was_tracked() {
    let vfs = MemVfs::new();
    let s = slot(44);
    let mut ahead = Replica::new(&MemVfs::new());
    ahead.run(put(&key_in(s, "a"), "1"));
    ahead.skip(20);
    let snaps = SnapshotStore::open(
        Arc::new(vfs.clone()),
        Path::new("/node/snap/1"),
        1,
        SnapshotOptions::default(),
    )
    .expect("snapshot store")
    .0;
    let info = snaps
        .write(&ahead.kv.read_view().expect("view"), Bytes::new())
        .expect("snapshot");
    let mut r = Replica::new(&vfs);
    let from = track(&r, s);
    r.run(put(&key_in(s, "b"), "2"));
    let file = SnapshotFile {
        path: info.path.clone(),
        term: info.header.term,
        index: info.header.index,
    };
    snaps.install(&r.kv, &file).expect("install");
    r.next = info.header.index + 1;
    assert_eq!(
        ask(&r, s, Some(from)),
        Changes::Unknown {
            from: info.header.index
        }
    );
}

#[test]
fn tracking_ends_when_the_move_commits_or_aborts() {
    let mut r = Replica::new(&MemVfs::new());
    let (s, t) = (slot(45), slot(46));
    r.run(put(&key_in(s, "a"), "1"));
    track(&r, s);
    track(&r, t);
    // Fenced for the move: still tracked.
    r.run(step(s, EPOCH, MoveStep::Fence));
    r.run(step(t, EPOCH, MoveStep::Fence));
    assert_eq!(r.kv.lock_changes().watched(), [s, t]);
    // Committed (dropped at the source) and aborted (unfenced).
    r.run(step(s, EPOCH, MoveStep::Drop { map_version: 9 }));
    r.run(step(t, EPOCH, MoveStep::Unfence));
    assert!(r.kv.lock_changes().watched().is_empty());
}

#[test]
fn past_its_caps_a_slot_overflows_and_its_changes_are_unknown() {
    let s = slot(47);
    let table = SlotTable::all_serving();
    let mut index = ChangeIndex::new(10);
    let asked = index.since(s, EPOCH, None, 10, (usize::MAX, usize::MAX));
    assert_eq!(asked, Changes::Unknown { from: 10 });
    let keys: Vec<Bytes> = (0..=MAX_TRACKED_KEYS)
        .map(|i| key_in(s, &format!("k{i}")))
        .collect();
    index.after_entry(11, &keys[..MAX_TRACKED_KEYS], &table);
    let all = index.since(s, EPOCH, Some(10), 11, (usize::MAX, usize::MAX));
    assert!(matches!(all, Changes::Listed(listed) if listed.len() == MAX_TRACKED_KEYS));
    // The key past the cap overflows it: nothing since 10 is known any more.
    index.after_entry(12, &keys[MAX_TRACKED_KEYS..], &table);
    let over = index.since(s, EPOCH, Some(11), 12, (usize::MAX, usize::MAX));
    assert_eq!(over, Changes::Unknown { from: 12 });
    // An answer larger than the caller can take is unknown too.
    index.after_entry(13, &keys[..3], &table);
    let large = index.since(s, EPOCH, Some(12), 13, (2, usize::MAX));
    assert_eq!(large, Changes::Unknown { from: 13 });
}

#[test]
fn past_the_most_slots_the_one_asked_least_recently_is_forgotten() {
    let mut index = ChangeIndex::new(1);
    let caps = (usize::MAX, usize::MAX);
    for n in 0..=MAX_TRACKED_SLOTS {
        let s = slot(100 + u16::try_from(n).expect("small"));
        index.since(s, EPOCH, None, 1, caps);
    }
    let watched = index.watched();
    assert_eq!(watched.len(), MAX_TRACKED_SLOTS);
    assert!(!watched.contains(&slot(100)));
}

#[test]
fn one_answer_lists_more_keys_than_a_values_fetch_takes() {
    let mut r = Replica::new(&MemVfs::new());
    let s = slot(48);
    let from = track(&r, s);
    let n = super::copy::MAX_VERSION_KEYS + 100;
    let puts: Vec<_> = (0..n)
        .map(|i| {
            let command = put(&key_in(s, &format!("k{i:06}")), "v");
            r.entry(None, command)
        })
        .collect();
    r.kv.apply(&puts).expect("apply");
    match ask(&r, s, Some(from)) {
        Changes::Listed(keys) => assert_eq!(keys.len(), n),
        unknown => panic!("{unknown:?}"),
    }
}
