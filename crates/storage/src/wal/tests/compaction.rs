//! Log starts, compaction (deleting covered segments) and crashes during it.

use std::sync::Arc;

use keel_raft::{HardState, SplitMix64};

use super::*;
use crate::wal::{InspectedItem, LogStart, LogStartKind, Verdict, WalError, inspect, inspect_all};

const SEG: u64 = 1024;

/// Two groups with `n` entries each (group 2 only every other batch), small
/// segments, a hard state per group.
fn build(vfs: &MemVfs, n: u64) -> Wal {
    let (mut wal, _) = open(vfs, SEG);
    let mut next2 = 1;
    for i in 1..=n {
        wal.append_entries(1, &[entry(1 + i / 50, i, &[i as u8; 60])])
            .expect("append");
        if i % 2 == 0 {
            wal.append_entries(2, &[entry(1, next2, b"g2")])
                .expect("append");
            next2 += 1;
        }
        wal.sync().expect("sync");
    }
    for g in [1, 2] {
        wal.set_hard_state(
            g,
            HardState {
                term: 7,
                vote: g,
                commit: 3,
            },
        )
        .expect("hs");
    }
    wal.sync().expect("sync");
    wal
}

fn reopen(vfs: &MemVfs) -> (Wal, Recovery) {
    Wal::open(Arc::new(vfs.clone()), dir(), opts(SEG)).expect("reopen")
}

#[test]
fn compaction_deletes_covered_segments_and_recovery_starts_after_the_log_start() {
    let vfs = MemVfs::new();
    let mut wal = build(&vfs, 200);
    let before = segment_names(&vfs).len();
    wal.set_log_start(1, compacted(150, 4)).expect("start 1");
    wal.set_log_start(2, compacted(80, 1)).expect("start 2");
    wal.sync().expect("sync");
    // Keep a trailing window of 30 entries of group 1.
    let done = wal
        .compact(|g| if g == 1 { 120 } else { 80 })
        .expect("compact");
    assert!(!done.removed.is_empty());
    assert!(done.first_segment > 1);
    let after = segment_names(&vfs);
    assert_eq!(after.len(), before - done.removed.len());
    assert!(!after.contains(&"0000000000000001.wal".to_string()));
    assert_eq!(wal.log_start(1), Some(compacted(150, 4)));
    // Nothing of the window was deleted: every entry of group 1 after 120 is in a
    // kept segment (checked through a reopen below, where entries ≤ 150 are gone).
    wal.append_entries(1, &[entry(9, 201, b"new")])
        .expect("append");
    assert!(matches!(
        wal.append_entries(1, &[entry(9, 150, b"old")]),
        Err(WalError::BeforeLogStart {
            start: 150,
            index: 150,
            ..
        })
    ));
    wal.sync().expect("sync");
    drop(wal);

    let (wal, rec) = reopen(&vfs);
    let g1 = &rec.groups[&1];
    assert_eq!(g1.log_start, Some(compacted(150, 4)));
    assert_eq!(g1.first_index(), 151);
    assert_eq!(g1.last_index(), 201);
    assert_eq!(g1.entries.len(), 51);
    assert_eq!(
        g1.hard_state,
        HardState {
            term: 7,
            vote: 1,
            commit: 3
        }
    );
    let g2 = &rec.groups[&2];
    assert_eq!(g2.first_index(), 81);
    assert_eq!(g2.last_index(), 100);
    assert_eq!(wal.last_index(1), 201);
    drop(wal);

    // wal check / dump still work on the compacted log, and see the log starts.
    let mut starts = 0;
    let verdict = inspect_all(&vfs, dir(), |item| {
        if let InspectedItem::LogStart { .. } = item {
            starts += 1;
        }
    })
    .expect("inspect");
    assert_eq!(verdict, Verdict::Ok);
    assert!(starts >= 2);
    let mut records = 0;
    assert_eq!(
        inspect(&vfs, dir(), |_| records += 1).expect("inspect"),
        Verdict::Ok
    );
    assert!(records > 0);
}

#[test]
fn nothing_is_deleted_beyond_what_a_log_start_covers() {
    let vfs = MemVfs::new();
    let mut wal = build(&vfs, 120);
    let before = segment_names(&vfs);
    // No log start at all: the caller's index alone deletes nothing.
    let done = wal.compact(|_| 1000).expect("compact");
    assert!(done.removed.is_empty());
    // Group 2 has no log start and entries in every segment: still nothing.
    wal.set_log_start(1, compacted(100, 3)).expect("start");
    wal.sync().expect("sync");
    assert!(wal.compact(|_| 1000).expect("compact").removed.is_empty());
    assert_eq!(segment_names(&vfs), before);
}

#[test]
fn an_installed_snapshot_discards_the_log_and_appends_continue_after_it() {
    let vfs = MemVfs::new();
    let mut wal = build(&vfs, 40);
    let ls = LogStart {
        index: 500,
        term: 6,
        kind: LogStartKind::Installed,
    };
    wal.set_log_start(1, ls).expect("install");
    assert_eq!(wal.last_index(1), 500);
    assert!(matches!(
        wal.append_entries(1, &[entry(6, 502, b"gap")]),
        Err(WalError::Gap { .. })
    ));
    wal.append_entries(1, &[entry(6, 501, b"next")])
        .expect("append");
    wal.sync().expect("sync");
    assert!(matches!(
        wal.set_log_start(1, compacted(400, 6)),
        Err(WalError::LogStartBackwards { .. })
    ));
    assert!(matches!(
        wal.set_log_start(1, compacted(500, 5)),
        Err(WalError::LogStartBackwards { .. })
    ));
    let done = wal.compact(|_| u64::MAX).expect("compact");
    // Group 2 still pins every segment with its uncovered entries.
    assert!(done.removed.is_empty());
    drop(wal);
    let (_, rec) = reopen(&vfs);
    let g1 = &rec.groups[&1];
    assert_eq!(g1.log_start, Some(ls));
    assert_eq!(g1.entries.len(), 1);
    assert_eq!(g1.entries[0].index, 501);
}

#[test]
fn a_lost_segment_is_still_detected_after_compaction() {
    let vfs = MemVfs::new();
    let mut wal = build(&vfs, 200);
    wal.set_log_start(1, compacted(150, 4)).expect("start");
    wal.set_log_start(2, compacted(100, 1)).expect("start");
    wal.sync().expect("sync");
    let done = wal.compact(|_| 100).expect("compact");
    assert!(!done.removed.is_empty());
    drop(wal);
    let names = segment_names(&vfs);
    assert!(names.len() >= 3, "{names:?}");
    // The oldest kept segment disappears: recovery refuses (it is named in FIRST).
    let first = dir().join(&names[0]);
    let data = vfs.read_file(&first).expect("read");
    vfs.remove_file(&first).expect("remove");
    vfs.sync_dir(dir()).expect("sync dir");
    let err = Wal::open(Arc::new(vfs.clone()), dir(), opts(SEG)).expect_err("missing");
    assert!(matches!(err, WalError::Corrupt { .. }), "{err}");
    assert!(matches!(
        inspect(&vfs, dir(), |_| {}).expect("inspect"),
        Verdict::Corrupt { .. }
    ));
    let f = vfs.open(&first, true).expect("recreate");
    f.write_all_at(0, &data).expect("write");
    f.sync_data().expect("sync");
    vfs.sync_dir(dir()).expect("sync dir");
    drop(f);
    reopen(&vfs);
}

#[test]
fn losing_segment_one_of_an_uncompacted_log_is_corruption() {
    let vfs = MemVfs::new();
    drop(build(&vfs, 100));
    let names = segment_names(&vfs);
    vfs.remove_file(&dir().join(&names[0])).expect("remove");
    let err = Wal::open(Arc::new(vfs.clone()), dir(), opts(SEG)).expect_err("missing");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn a_crash_at_any_point_of_a_compaction_recovers_the_same_logs() {
    let mut completed = false;
    let mut halt = 0;
    while !completed {
        for seed in 0..3 {
            let vfs = MemVfs::new();
            let mut wal = build(&vfs, 160);
            wal.set_log_start(1, compacted(120, 3)).expect("start");
            wal.set_log_start(2, compacted(70, 1)).expect("start");
            wal.sync().expect("sync");
            drop(wal);
            let (mut wal, expected) = reopen(&vfs);
            vfs.halt_after(Some(halt));
            let result = wal.compact(|_| u64::MAX);
            completed |= result.is_ok();
            drop(wal);
            vfs.crash(seed);
            let what = format!("halt {halt} seed {seed}");
            let (mut wal, rec) = Wal::open(Arc::new(vfs.clone()), dir(), opts(SEG))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(rec.groups, expected.groups, "{what}");
            assert!(
                matches!(inspect(&vfs, dir(), |_| {}).expect("inspect"), Verdict::Ok),
                "{what}"
            );
            // The interrupted compaction can be finished, and appends go on.
            wal.compact(|_| u64::MAX)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            wal.append_entries(1, &[entry(9, 161, b"x")])
                .expect("append");
            wal.sync().expect("sync");
            drop(wal);
            let (_, rec) = reopen(&vfs);
            assert_eq!(rec.groups[&1].last_index(), 161, "{what}");
            assert_eq!(rec.groups[&1].first_index(), 121, "{what}");
        }
        halt += 1;
    }
    assert!(halt > 5);
}

#[test]
fn random_appends_log_starts_removals_recreations_compactions_and_crashes_match_the_model() {
    // Evidence that the interesting paths ran: segments deleted while a tombstone
    // was in effect (so it had to be restated), and new lives started.
    let (mut deleted_while_removed, mut recreated) = (0, 0);
    for seed in 0..60u64 {
        let mut rng = SplitMix64::new(seed);
        let vfs = MemVfs::new();
        let mut model: BTreeMap<u64, (u64, Vec<u64>)> = BTreeMap::new(); // group -> (start, indexes)
        // Each live group's last term and vote, and each removed group's.
        let mut term_vote: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        let mut removed: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        for life in 0..4 {
            let what = format!("seed {seed} life {life}");
            let (mut wal, rec) = Wal::open(Arc::new(vfs.clone()), dir(), opts(SEG))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            for (g, (start, idx)) in &model {
                let expected_tv = term_vote.get(g).copied().unwrap_or_default();
                let Some(got) = rec.groups.get(g) else {
                    // Only a group that never wrote anything may be missing.
                    assert_eq!(
                        (*start, idx.len(), expected_tv),
                        (0, 0, (0, 0)),
                        "{what} group {g}"
                    );
                    continue;
                };
                let got_idx: Vec<u64> = got.entries.iter().map(|e| e.index).collect();
                assert_eq!(&got_idx, idx, "{what} group {g}");
                assert_eq!(got.log_start.map_or(0, |s| s.index), *start, "{what}");
                let hs = got.hard_state;
                assert_eq!((hs.term, hs.vote), expected_tv, "{what} group {g}");
            }
            // A removed group is gone, and its tombstone is kept however many
            // segments compaction deleted, with the replica's last term and vote.
            assert!(rec.groups.keys().all(|g| model.contains_key(g)), "{what}");
            let got_removed: BTreeMap<u64, (u64, u64)> = rec
                .removed
                .iter()
                .map(|(&g, r)| (g, (r.term, r.vote)))
                .collect();
            assert_eq!(got_removed, removed, "{what}");
            for _ in 0..40 {
                // Two groups live at a time; a removed one is sometimes created
                // again (the node was added back), otherwise replaced by a new id.
                let mut g = 1 + rng.below(2);
                while let Some(&tv) = removed.get(&g) {
                    if rng.below(3) == 0 {
                        let hs = wal.recreate_group(g).expect("recreate");
                        assert_eq!((hs.term, hs.vote, hs.commit), (tv.0, tv.1, 0), "{what}");
                        wal.sync().expect("sync");
                        removed.remove(&g);
                        term_vote.insert(g, tv);
                        model.insert(g, (0, Vec::new()));
                        recreated += 1;
                        break;
                    }
                    g += 2;
                }
                match rng.below(16) {
                    0 => {
                        // The replica's last hard state, then its tombstone.
                        let tv = (1 + rng.below(50), rng.below(4));
                        let hs = HardState {
                            term: tv.0,
                            vote: tv.1,
                            commit: 0,
                        };
                        wal.set_hard_state(g, hs).expect("hard state");
                        wal.remove_group(g).expect("remove");
                        wal.sync().expect("sync");
                        model.remove(&g);
                        term_vote.remove(&g);
                        removed.insert(g, tv);
                        continue;
                    }
                    1 if !removed.is_empty() => {
                        // Writing to a removed group stays refused.
                        let (&r, _) = removed.iter().next().expect("one");
                        assert!(matches!(
                            wal.append_entries(r, &[entry(1, 1, b"x")]),
                            Err(WalError::GroupRemoved { .. })
                        ));
                    }
                    _ => {}
                }
                let (start, idx) = model.entry(g).or_default();
                match rng.below(10) {
                    0 if !idx.is_empty() => {
                        // Compact up to a random entry, keeping the rest.
                        let at = idx[rng.below(idx.len() as u64) as usize];
                        wal.set_log_start(g, compacted(at, 1)).expect("start");
                        wal.sync().expect("sync");
                        *start = at;
                        idx.retain(|&i| i > at);
                    }
                    1 => {
                        let window = rng.below(10);
                        let done = wal
                            .compact(|g| model_start(&model, g).saturating_sub(window))
                            .expect("compact");
                        if !removed.is_empty() {
                            deleted_while_removed += done.removed.len();
                        }
                    }
                    _ => {
                        let last = idx.last().copied().unwrap_or(*start);
                        let n = 1 + rng.below(4);
                        let es: Vec<_> = (last + 1..=last + n)
                            .map(|i| entry(1, i, &vec![i as u8; rng.below(200) as usize]))
                            .collect();
                        wal.append_entries(g, &es).expect("append");
                        wal.sync().expect("sync");
                        idx.extend(last + 1..=last + n);
                    }
                }
            }
            // A removed group never keeps a segment.
            let pressure = wal.pressure(|g| model_start(&model, g));
            assert!(
                pressure
                    .pinned_by
                    .iter()
                    .all(|p| !removed.contains_key(&p.group)),
                "{what}: {pressure:?}"
            );
            drop(wal);
            vfs.crash(rng.next_u64());
        }
        assert_eq!(
            inspect(&vfs, dir(), |_| {}).expect("inspect"),
            Verdict::Ok,
            "seed {seed}"
        );
    }
    assert!(
        deleted_while_removed > 20 && recreated > 20,
        "{deleted_while_removed} segments deleted while a group was removed, {recreated} \
         groups created again"
    );
}

fn model_start(model: &BTreeMap<u64, (u64, Vec<u64>)>, g: u64) -> u64 {
    model.get(&g).map_or(0, |m| m.0)
}
