//! Group tombstones and new lives: a removed group's records are void, its
//! tombstone (with the replica's last term and vote) survives crashes and every
//! compaction, and nothing of the group but a group-created record may follow it.

use std::sync::Arc;

use keel_raft::HardState;

use super::*;
use crate::wal::record::{
    encode_entry, encode_group_created, encode_group_removed, encode_hard_state, encode_log_start,
};
use crate::wal::{InspectedItem, RemovedGroup, Verdict, WalError, inspect, inspect_all};

const SEG: u64 = 1024;

fn hs(term: u64) -> HardState {
    HardState {
        term,
        vote: 1,
        commit: 1,
    }
}

/// Groups 1, 2 and 3 with `n` batches of one entry each and a hard state, synced.
fn build(vfs: &MemVfs, segment_bytes: u64, n: u64) -> (Wal, Model) {
    let (mut wal, _) = open(vfs, segment_bytes);
    let mut model = Model::default();
    for i in 1..=n {
        for g in 1..=3 {
            let es = [entry(1, i, &[g as u8; 40])];
            wal.append_entries(g, &es).expect("append");
            model.append(g, &es);
        }
        for g in 1..=3 {
            wal.set_hard_state(g, hs(i)).expect("hs");
            model.hard_state(g, hs(i));
        }
        wal.sync().expect("sync");
    }
    (wal, model)
}

fn reopen(vfs: &MemVfs, segment_bytes: u64) -> (Wal, Recovery) {
    Wal::open(Arc::new(vfs.clone()), dir(), opts(segment_bytes)).expect("reopen")
}

#[test]
fn a_synced_tombstone_survives_a_crash_and_the_group_stays_removed() {
    for seed in 0..8 {
        let vfs = MemVfs::new();
        let (mut wal, mut model) = build(&vfs, SEG, 30);
        wal.remove_group(2).expect("remove");
        assert!(wal.is_removed(2));
        assert_eq!(wal.last_index(2), 0);
        wal.sync().expect("sync");
        model.remove(2);
        // A tombstone buffered but never synced is lost with the crash.
        wal.remove_group(3).expect("remove");
        drop(wal);
        vfs.crash(seed);

        let (mut wal, rec) = reopen(&vfs, SEG);
        assert!(model.matches(&rec), "seed {seed}: {:?}", rec.removed);
        assert!(rec.groups.contains_key(&3) && !rec.groups.contains_key(&2));
        assert!(wal.is_removed(2) && !wal.is_removed(3));
        // Writing to the removed group is refused, and buffers nothing.
        assert!(matches!(
            wal.append_entries(2, &[entry(1, 31, b"x")]),
            Err(WalError::GroupRemoved { group: 2 })
        ));
        assert!(matches!(
            wal.append_entries(2, &[entry(1, 1, b"x")]),
            Err(WalError::GroupRemoved { group: 2 })
        ));
        assert!(matches!(
            wal.set_hard_state(2, hs(99)),
            Err(WalError::GroupRemoved { group: 2 })
        ));
        assert!(matches!(
            wal.set_log_start(2, compacted(10, 1)),
            Err(WalError::GroupRemoved { group: 2 })
        ));
        // Removing it again changes nothing.
        wal.remove_group(2).expect("remove again");
        assert!(!wal.has_pending());
        wal.append_entries(1, &[entry(1, 31, b"g1")])
            .expect("other groups go on");
        wal.sync().expect("sync");
        model.append(1, &[entry(1, 31, b"g1")]);
        drop(wal);
        let (_, rec) = reopen(&vfs, SEG);
        assert!(model.matches(&rec), "seed {seed}");
        assert_eq!(inspect(&vfs, dir(), |_| {}).expect("inspect"), Verdict::Ok);
    }
}

#[test]
fn a_torn_tombstone_is_truncated_and_the_group_is_still_there() {
    let build_torn = |vfs: &MemVfs| {
        let (mut wal, model) = build(vfs, 4096, 5);
        wal.remove_group(2).expect("remove");
        wal.sync().expect("sync");
        model
    };
    let len = {
        let vfs = MemVfs::new();
        build_torn(&vfs);
        frames(&vfs).pop().expect("frame").len
    };
    let mut torn_seen = 0;
    for cut in 0..=len {
        let vfs = MemVfs::new();
        let before = build_torn(&vfs);
        // Only the first `cut` bytes of the tombstone's frame reached the disk.
        let (f, whole) = tear_last_frame(&vfs, cut);
        let what = format!("prefix of {cut} bytes kept");
        let (mut wal, rec) = reopen(&vfs, 4096);
        if whole {
            // Only zeros are missing: the tombstone is whole.
            let mut after = before.clone();
            after.remove(2);
            assert!(after.matches(&rec), "{what}");
            continue;
        }
        assert!(before.matches(&rec), "{what}: {:?}", rec.removed);
        assert_eq!(
            rec.torn_tail.as_ref().map(|t| (t.file.clone(), t.offset)),
            (cut > 0).then(|| (f.file.clone(), f.offset)),
            "{what}"
        );
        torn_seen += usize::from(cut > 0);
        // The group lives on: it can be written and removed again.
        assert!(!wal.is_removed(2), "{what}");
        wal.append_entries(2, &[entry(2, 6, b"after")])
            .expect("append");
        wal.remove_group(2).expect("remove");
        wal.sync().expect("sync");
        drop(wal);
        let (_, rec) = reopen(&vfs, 4096);
        let mut after = before.clone();
        after.remove(2);
        assert!(after.matches(&rec), "{what}: after writing again");
    }
    assert!(torn_seen > 10, "{torn_seen}");
}

#[test]
fn compaction_frees_what_a_removed_group_pinned_and_restates_only_its_tombstone() {
    let vfs = MemVfs::new();
    let (mut wal, mut model) = build(&vfs, SEG, 60);
    for g in [1, 3] {
        wal.set_log_start(g, compacted(60, 1)).expect("start");
        model
            .groups
            .get_mut(&g)
            .expect("group")
            .start(compacted(60, 1))
            .expect("model");
    }
    wal.sync().expect("sync");
    // Group 2 has no snapshot: it pins every segment.
    assert!(compact_all(&mut wal).is_empty());
    wal.remove_group(2).expect("remove");
    model.remove(2);
    assert!(
        !compact_all(&mut wal).is_empty(),
        "the removed group pins nothing"
    );
    let tombstone_segment = dir().join(segment_names(&vfs).last().expect("a segment"));
    drop(wal);

    // The tombstone is in the newest segment, which was kept; the restatement
    // frame after it has group 2's tombstone again, and nothing else of it.
    let (wal, rec) = reopen(&vfs, SEG);
    assert!(model.matches(&rec), "{:?}", rec.removed);
    drop(wal);
    let mut after_tombstone = Vec::new();
    let mut tombstone_seen = false;
    let mut tombstones = 0;
    let verdict = inspect_all(&vfs, dir(), |item| match item {
        InspectedItem::GroupRemoved { group: 2, last, .. } => {
            assert_eq!(*last, RemovedGroup { term: 60, vote: 1 });
            tombstones += 1;
            tombstone_seen = true;
        }
        InspectedItem::Record(r) if tombstone_seen => after_tombstone.push(r.record.clone()),
        InspectedItem::LogStart { group, .. } if tombstone_seen => {
            assert_ne!(*group, 2, "log start of a removed group restated");
        }
        _ => {}
    })
    .expect("inspect");
    assert_eq!(verdict, Verdict::Ok);
    assert_eq!(tombstones, 2, "the tombstone and its restatement");
    assert!(
        !after_tombstone.is_empty(),
        "restatements of groups 1 and 3"
    );
    for r in &after_tombstone {
        assert!(
            !matches!(r, crate::wal::WalRecord::HardState { group: 2, .. }),
            "hard state of a removed group restated"
        );
    }

    // Once the tombstone's segment goes too, group 2 is still removed, with its
    // last term and vote: a replica created again must not start from term 0.
    let (mut wal, _) = reopen(&vfs, SEG);
    let mut next = 61;
    while vfs.read_file(&tombstone_segment).is_ok() {
        for g in [1, 3] {
            wal.append_entries(g, &[entry(1, next, &[0; 60])])
                .expect("append");
            wal.set_log_start(g, compacted(next, 1)).expect("start");
            model
                .groups
                .get_mut(&g)
                .expect("group")
                .push(entry(1, next, &[0; 60]))
                .expect("model");
        }
        wal.sync().expect("sync");
        for g in [1, 3] {
            let m = model.groups.get_mut(&g).expect("group");
            m.start(compacted(next, 1)).expect("model");
        }
        compact_all(&mut wal);
        next += 1;
        assert!(next < 200, "the tombstone's segment never went");
    }
    drop(wal);
    let (mut wal, rec) = reopen(&vfs, SEG);
    assert!(model.matches(&rec), "{:?}", rec.removed);
    assert_eq!(rec.removed[&2], RemovedGroup { term: 60, vote: 1 });
    assert_eq!(
        wal.recreate_group(2).expect("recreate"),
        HardState {
            term: 60,
            vote: 1,
            commit: 0
        }
    );
}

#[test]
fn a_crash_at_any_point_of_a_compaction_after_a_removal_recovers_the_same_logs() {
    let mut completed = false;
    let mut halt = 0;
    while !completed {
        for seed in 0..3 {
            let vfs = MemVfs::new();
            let (mut wal, _) = build(&vfs, SEG, 50);
            wal.set_log_start(1, compacted(40, 1)).expect("start");
            wal.set_log_start(3, compacted(40, 1)).expect("start");
            wal.remove_group(2).expect("remove");
            wal.sync().expect("sync");
            drop(wal);
            let (mut wal, expected) = reopen(&vfs, SEG);
            vfs.halt_after(Some(halt));
            completed |= wal.compact(|_| u64::MAX).is_ok();
            drop(wal);
            vfs.crash(seed);
            let what = format!("halt {halt} seed {seed}");
            let (mut wal, rec) = Wal::open(Arc::new(vfs.clone()), dir(), opts(SEG))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                (&rec.groups, &rec.removed),
                (&expected.groups, &expected.removed),
                "{what}"
            );
            assert!(rec.removed.contains_key(&2), "{what}");
            wal.compact(|_| u64::MAX)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(wal.is_removed(2), "{what}");
        }
        halt += 1;
    }
    assert!(halt > 5);
}

/// Opens, expecting corruption at `file:offset` whose reason mentions `words`;
/// inspection must agree.
fn assert_corrupt_at(vfs: &MemVfs, file: &Path, offset: u64, words: &str, what: &str) {
    match Wal::open(Arc::new(vfs.clone()), dir(), opts(4096)) {
        Err(WalError::Corrupt {
            file: f,
            offset: o,
            reason,
        }) => {
            assert_eq!((f.as_path(), o), (file, offset), "{what}: {reason}");
            assert!(reason.contains(words), "{what}: {reason}");
        }
        Err(e) => panic!("{what}: expected corruption, got {e}"),
        Ok(_) => panic!("{what}: opened a WAL with a record after a tombstone"),
    }
    match inspect(vfs, dir(), |_| {}).expect("inspect") {
        Verdict::Corrupt {
            file: f, offset: o, ..
        } => assert_eq!((f.as_path(), o), (file, offset), "{what}"),
        other => panic!("{what}: inspect says {other:?}"),
    }
}

#[test]
fn any_record_after_a_tombstone_is_corruption_at_that_record() {
    type Encode = fn(&mut Vec<u8>);
    let records: [(&str, Encode); 4] = [
        ("entry", |b| encode_entry(b, 2, &entry(1, 6, b"late"))),
        ("restarted entry", |b| {
            encode_entry(b, 2, &entry(1, 1, b"new life"))
        }),
        ("hard state", |b| encode_hard_state(b, 2, &hs(9))),
        ("log start", |b| encode_log_start(b, 2, &compacted(3, 1))),
    ];
    // build() leaves group 2 at term 5, vote 1: a tombstone saying otherwise
    // contradicts the one in effect.
    let second_tombstone: (&str, Encode) = ("contradicting tombstone", |b| {
        encode_group_removed(b, 2, RemovedGroup { term: 9, vote: 1 })
    });
    for (what, encode) in records.into_iter().chain([second_tombstone]) {
        for in_same_frame in [false, true] {
            let vfs = MemVfs::new();
            let (mut wal, _) = build(&vfs, 4096, 5);
            wal.remove_group(2).expect("remove");
            wal.sync().expect("sync");
            drop(wal);
            let mut buf = Vec::new();
            // Another group's record first, so the offset must name the bad record,
            // not the frame.
            if in_same_frame {
                encode_entry(&mut buf, 1, &entry(1, 6, b"fine"));
            }
            let before = buf.len() as u64;
            encode(&mut buf);
            let (file, payload_at) = append_raw_frame(&vfs, &buf);
            let what = format!("{what}, after another record: {in_same_frame}");
            assert_corrupt_at(&vfs, &file, payload_at + before, "tombstone", &what);
        }
    }
}

#[test]
fn a_record_type_this_build_does_not_know_refuses_to_start_and_is_not_truncated() {
    // What a keel without tombstones does with type 4, seen through a type this
    // build does not know: the frame checksums, so it is not a torn write.
    let vfs = MemVfs::new();
    drop(build(&vfs, 4096, 3));
    let mut buf = Vec::new();
    encode_group_removed(&mut buf, 2, RemovedGroup::default());
    buf[8] = 0x7f;
    let crc = crc32c::crc32c(&buf[8..]);
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    let (file, at) = append_raw_frame(&vfs, &buf);
    let before = vfs.read_file(&file).expect("read");
    assert_corrupt_at(&vfs, &file, at, "unknown record type 127", "type 127");
    assert_eq!(
        vfs.read_file(&file).expect("read"),
        before,
        "nothing truncated"
    );
}

#[test]
fn a_group_created_again_starts_from_its_last_term_and_vote_and_lives_on() {
    for seed in 0..8 {
        let vfs = MemVfs::new();
        let (mut wal, mut model) = build(&vfs, SEG, 20);
        // A live group cannot be "created again".
        assert!(matches!(
            wal.recreate_group(2),
            Err(WalError::GroupNotRemoved { group: 2 })
        ));
        wal.remove_group(2).expect("remove");
        wal.sync().expect("sync");
        model.remove(2);
        assert_eq!(model.removed[&2], RemovedGroup { term: 20, vote: 1 });
        drop(wal);
        vfs.crash(seed);

        let (mut wal, rec) = reopen(&vfs, SEG);
        assert!(model.matches(&rec), "seed {seed}");
        let start = wal.recreate_group(2).expect("recreate");
        assert_eq!(start, model.recreate(2));
        assert_eq!((start.term, start.vote, start.commit), (20, 1, 0));
        assert!(!wal.is_removed(2));
        // The new life has an empty log: it starts again at index 1.
        assert_eq!(wal.last_index(2), 0);
        let es = [entry(21, 1, b"new life")];
        wal.append_entries(2, &es).expect("append");
        model.append(2, &es);
        wal.set_hard_state(2, hs(21)).expect("hard state");
        model.hard_state(2, hs(21));
        wal.sync().expect("sync");
        drop(wal);
        vfs.crash(seed);

        let (mut wal, rec) = reopen(&vfs, SEG);
        assert!(model.matches(&rec), "seed {seed}: {:?}", rec.groups.get(&2));
        assert_eq!(inspect(&vfs, dir(), |_| {}).expect("inspect"), Verdict::Ok);
        // And it can be removed again: the new tombstone keeps the new term.
        wal.remove_group(2).expect("remove again");
        wal.sync().expect("sync");
        model.remove(2);
        drop(wal);
        let (_, rec) = reopen(&vfs, SEG);
        assert!(model.matches(&rec), "seed {seed}");
        assert_eq!(rec.removed[&2], RemovedGroup { term: 21, vote: 1 });
    }
}

#[test]
fn a_recreated_group_unsynced_at_a_crash_is_still_removed() {
    let vfs = MemVfs::new();
    let (mut wal, mut model) = build(&vfs, SEG, 5);
    wal.remove_group(3).expect("remove");
    wal.sync().expect("sync");
    model.remove(3);
    wal.recreate_group(3).expect("recreate");
    wal.append_entries(3, &[entry(6, 1, b"lost")])
        .expect("append");
    drop(wal);
    vfs.crash(1);
    let (wal, rec) = reopen(&vfs, SEG);
    assert!(model.matches(&rec));
    assert!(wal.is_removed(3));
}

#[test]
fn a_second_group_created_record_is_corruption() {
    let vfs = MemVfs::new();
    let (mut wal, _) = build(&vfs, 4096, 5);
    wal.remove_group(2).expect("remove");
    wal.recreate_group(2).expect("recreate");
    wal.sync().expect("sync");
    drop(wal);
    let mut buf = Vec::new();
    encode_group_created(&mut buf, 2);
    let (file, payload_at) = append_raw_frame(&vfs, &buf);
    assert_corrupt_at(
        &vfs,
        &file,
        payload_at,
        "no tombstone ended it",
        "created twice",
    );
}

#[test]
fn a_group_created_record_for_a_live_replica_is_corruption() {
    // Group 2 has records and no tombstone: a created record cannot start a new
    // life over a live one.
    let vfs = MemVfs::new();
    drop(build(&vfs, 4096, 5));
    let mut buf = Vec::new();
    encode_entry(&mut buf, 1, &entry(1, 6, b"fine"));
    let before = buf.len() as u64;
    encode_group_created(&mut buf, 2);
    let (file, payload_at) = append_raw_frame(&vfs, &buf);
    assert_corrupt_at(
        &vfs,
        &file,
        payload_at + before,
        "no tombstone ended it",
        "created over a live group",
    );
}

#[test]
fn a_restated_tombstone_changes_nothing() {
    let vfs = MemVfs::new();
    let (mut wal, mut model) = build(&vfs, 4096, 5);
    wal.remove_group(2).expect("remove");
    wal.sync().expect("sync");
    model.remove(2);
    drop(wal);
    let mut buf = Vec::new();
    encode_group_removed(&mut buf, 2, RemovedGroup { term: 5, vote: 1 });
    append_raw_frame(&vfs, &buf);
    let (_, rec) = reopen(&vfs, 4096);
    assert!(model.matches(&rec), "{:?}", rec.removed);
    assert_eq!(inspect(&vfs, dir(), |_| {}).expect("inspect"), Verdict::Ok);
}
