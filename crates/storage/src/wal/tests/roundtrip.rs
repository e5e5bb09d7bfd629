//! Writing, reopening and continuing.

use std::sync::Arc;

use keel_raft::HardState;

use super::*;
use crate::vfs::StdVfs;
use crate::wal::{MAX_ENTRY_BYTES, WalError};

/// Deterministic filler so entries differ in content and size.
fn payload(group: u64, index: u64, term: u64) -> Vec<u8> {
    let len = ((group * 31 + index * 17 + term) % 200) as usize;
    (0..len).map(|i| (i as u64 ^ index ^ group) as u8).collect()
}

#[test]
fn wal_can_move_between_threads() {
    fn check<T: Send + Sync>() {}
    check::<Wal>();
}

#[test]
fn many_groups_and_batches_survive_reopen_across_segment_rollovers() {
    let vfs = MemVfs::new();
    let (mut wal, rec) = open(&vfs, 1024);
    assert!(rec.groups.is_empty());
    assert_eq!(rec.torn_tail, None);
    let mut model = Model::default();
    for batch in 0..200u64 {
        for group in 1..=3u64 {
            if (batch + group) % 4 == 0 {
                continue;
            }
            let next = model.last_index(group) + 1;
            let entries: Vec<_> = (next..next + 1 + batch % 3)
                .map(|i| entry(batch / 10 + 1, i, &payload(group, i, batch)))
                .collect();
            wal.append_entries(group, &entries).expect("append");
            model.append(group, &entries);
            let hs = HardState {
                term: batch / 10 + 1,
                vote: group,
                commit: next,
            };
            wal.set_hard_state(group, hs).expect("hard state");
            model.hard_state(group, hs);
        }
        wal.sync().expect("sync");
    }
    drop(wal);
    assert!(segment_names(&vfs).len() > 10, "expected many rollovers");

    let (_wal, rec) = open(&vfs, 1024);
    assert_eq!(rec.torn_tail, None);
    assert_eq!(rec.groups, model.groups);
}

#[test]
fn overwrites_truncate_the_log_within_and_across_batches() {
    let vfs = MemVfs::new();
    let (mut wal, _) = open(&vfs, 4096);
    let mut model = Model::default();
    let first: Vec<_> = (1..=10).map(|i| entry(1, i, b"a")).collect();
    wal.append_entries(7, &first).expect("append");
    model.append(7, &first);
    wal.sync().expect("sync");

    // A new leader's entries replace 6.. in a later batch.
    let second = [entry(2, 6, b"b"), entry(2, 7, b"b")];
    wal.append_entries(7, &second).expect("overwrite");
    model.append(7, &second);
    // And within one batch: append 8, then replace from 5 on.
    let third = [entry(2, 8, b"c"), entry(3, 5, b"d")];
    wal.append_entries(7, &third).expect("overwrite in batch");
    model.append(7, &third);
    assert_eq!(wal.last_index(7), 5);
    wal.sync().expect("sync");
    drop(wal);

    let (wal, rec) = open(&vfs, 4096);
    assert_eq!(rec.groups, model.groups);
    let log = &rec.groups[&7].entries;
    assert_eq!(log.len(), 5);
    assert_eq!(log[4].term, 3);
    assert_eq!(log[3].term, 1);
    assert_eq!(wal.last_index(7), 5);
}

#[test]
fn gaps_and_index_zero_are_refused_without_changing_the_batch() {
    let vfs = MemVfs::new();
    let (mut wal, _) = open(&vfs, 4096);
    wal.append_entries(1, &[entry(1, 1, b"x")]).expect("append");
    let err = wal
        .append_entries(1, &[entry(1, 2, b"y"), entry(1, 4, b"z")])
        .expect_err("gap");
    assert!(
        matches!(
            err,
            WalError::Gap {
                group: 1,
                last: 2,
                index: 4
            }
        ),
        "{err}"
    );
    assert!(matches!(
        wal.append_entries(1, &[entry(1, 0, b"")]),
        Err(WalError::Gap { index: 0, .. })
    ));
    assert!(matches!(
        wal.append_entries(2, &[entry(1, 2, b"")]),
        Err(WalError::Gap { last: 0, .. })
    ));
    assert_eq!(wal.last_index(1), 1);
    wal.sync().expect("sync");
    drop(wal);
    let (_, rec) = open(&vfs, 4096);
    assert_eq!(rec.groups[&1].entries, vec![entry(1, 1, b"x")]);
}

#[test]
fn oversized_entries_are_refused_and_large_frames_get_their_own_segment() {
    let vfs = MemVfs::new();
    let (mut wal, _) = open(&vfs, 1024);
    let huge = keel_raft::Entry {
        data: bytes::Bytes::from(vec![0u8; MAX_ENTRY_BYTES as usize + 1]),
        ..entry(1, 1, b"")
    };
    assert!(matches!(
        wal.append_entries(1, &[huge]),
        Err(WalError::EntryTooLarge { .. })
    ));
    let small = [entry(1, 1, b"small")];
    wal.append_entries(1, &small).expect("small");
    wal.sync().expect("sync");
    let big = [entry(1, 2, &[9u8; 5000])];
    wal.append_entries(1, &big).expect("big");
    wal.sync().expect("sync big");
    let after = [entry(1, 3, b"after")];
    wal.append_entries(1, &after).expect("after");
    wal.sync().expect("sync after");
    drop(wal);

    // The big frame got a segment of its own, sized for it (the next frame fitted in
    // its leftover space).
    let names = segment_names(&vfs);
    assert_eq!(names.len(), 2);
    let second = vfs.read_file(&dir().join(&names[1])).expect("read");
    assert!(second.len() > 5000, "{}", second.len());
    let (_, rec) = open(&vfs, 1024);
    let log = &rec.groups[&1].entries;
    assert_eq!(log.len(), 3);
    assert_eq!(log[1].data.len(), 5000);
}

#[test]
fn reopen_continues_appending_in_place_and_frame_numbers_keep_rising() {
    let vfs = MemVfs::new();
    let mut model = Model::default();
    for round in 0..5u64 {
        let (mut wal, rec) = open(&vfs, 2048);
        assert_eq!(rec.groups, model.groups, "round {round}");
        assert_eq!(rec.torn_tail, None);
        for _ in 0..7 {
            let next = model.last_index(1) + 1;
            let es = [entry(round + 1, next, &[round as u8; 100])];
            wal.append_entries(1, &es).expect("append");
            model.append(1, &es);
            wal.sync().expect("sync");
        }
    }
    let seqs: Vec<u64> = {
        let mut seen = Vec::new();
        crate::wal::inspect(&vfs, dir(), |r| seen.push(r.frame_seq)).expect("inspect");
        seen
    };
    assert_eq!(seqs, (1..=35).collect::<Vec<_>>());
}

#[test]
fn empty_sync_and_hard_state_only_groups() {
    let vfs = MemVfs::new();
    let (mut wal, _) = open(&vfs, 4096);
    wal.sync().expect("empty sync is a no-op");
    assert!(segment_names(&vfs).is_empty(), "nothing written yet");
    let hs = HardState {
        term: 5,
        vote: 2,
        commit: 0,
    };
    wal.set_hard_state(9, hs).expect("hs");
    assert!(wal.has_pending());
    wal.sync().expect("sync");
    drop(wal);
    let (_, rec) = open(&vfs, 4096);
    assert_eq!(rec.groups[&9].hard_state, hs);
    assert!(rec.groups[&9].entries.is_empty());
}

#[test]
fn a_second_open_of_a_locked_directory_is_refused() {
    let vfs = MemVfs::new();
    let (wal, _) = open(&vfs, 4096);
    let err = Wal::open(Arc::new(vfs.clone()), dir(), opts(4096)).expect_err("locked");
    assert!(matches!(err, WalError::Locked { .. }), "{err}");
    drop(wal);
    open(&vfs, 4096);
}

#[test]
fn invalid_options_are_refused() {
    let err = Wal::open(Arc::new(MemVfs::new()), dir(), opts(100)).expect_err("tiny");
    assert!(matches!(err, WalError::InvalidOptions(_)), "{err}");
}

#[test]
fn real_filesystem_round_trip_lock_and_reopen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let vfs: Arc<dyn Vfs> = Arc::new(StdVfs::new());
    let (mut wal, rec) = Wal::open(Arc::clone(&vfs), &dir, opts(8192)).expect("open");
    assert!(rec.groups.is_empty());
    let mut model = Model::default();
    for i in 1..=100 {
        let es = [entry(1, i, &payload(1, i, 1))];
        wal.append_entries(1, &es).expect("append");
        model.append(1, &es);
        wal.sync().expect("sync");
    }
    let second = Wal::open(Arc::clone(&vfs), &dir, opts(8192)).expect_err("locked");
    assert!(matches!(second, WalError::Locked { .. }), "{second}");
    drop(wal);
    let (_, rec) = Wal::open(vfs, &dir, opts(8192)).expect("reopen");
    assert_eq!(rec.groups, model.groups);
    assert_eq!(rec.torn_tail, None);
}

mod prop {
    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        /// Append `count` entries to `group`, starting `back` entries before its end.
        Append {
            group: u64,
            back: u64,
            count: u64,
            len: usize,
        },
        HardState {
            group: u64,
            term: u64,
        },
        Sync,
        /// Drop the WAL (losing anything un-synced) and open it again.
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (1..4u64, 0..4u64, 1..5u64, 0..400usize)
                .prop_map(|(group, back, count, len)| Op::Append { group, back, count, len }),
            2 => (1..4u64, 1..100u64).prop_map(|(group, term)| Op::HardState { group, term }),
            3 => Just(Op::Sync),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn recovery_matches_the_model_of_synced_operations(ops in proptest::collection::vec(op(), 1..60)) {
            let vfs = MemVfs::new();
            let (mut wal, _) = open(&vfs, 1024);
            let mut synced = Model::default();
            let mut pending = Model::default();
            for op in ops {
                match op {
                    Op::Append { group, back, count, len } => {
                        let first = pending.last_index(group).saturating_sub(back) + 1;
                        let es: Vec<_> = (first..first + count)
                            .map(|i| entry(group, i, &vec![i as u8; len]))
                            .collect();
                        wal.append_entries(group, &es).expect("append");
                        pending.append(group, &es);
                    }
                    Op::HardState { group, term } => {
                        let hs = HardState { term, vote: group, commit: 0 };
                        wal.set_hard_state(group, hs).expect("hs");
                        pending.hard_state(group, hs);
                    }
                    Op::Sync => {
                        wal.sync().expect("sync");
                        synced = pending.clone();
                    }
                    Op::Reopen => {
                        drop(wal);
                        let (w, rec) = open(&vfs, 1024);
                        prop_assert_eq!(&rec.groups, &synced.groups);
                        prop_assert_eq!(rec.torn_tail, None);
                        wal = w;
                        pending = synced.clone();
                    }
                }
            }
            wal.sync().expect("final sync");
            drop(wal);
            let (_, rec) = open(&vfs, 1024);
            prop_assert_eq!(rec.groups, pending.groups);
        }
    }
}
