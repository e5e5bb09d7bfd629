//! Property tests: random writes and move commands, and whole moves between two
//! stores.

use std::collections::BTreeMap;

use bytes::Bytes;
use keel_placement::{Slot, slot_for_key};
use keel_raft::Entry;
use proptest::prelude::*;

use super::tests::{Replica, key_in, page, put, slot, step};
use super::*;
use crate::command::{Command, Compare, CompareOp, CompareTarget, Expect, MoveStep, Txn, TxnOp};
use crate::kv::ApplyOutcome;
use crate::vfs::MemVfs;

/// Slots the random sequences use: the first two are moved about, the last
/// never is.
const SLOTS: [u16; 3] = [10, 20, 40];
/// Keys per slot.
const NAMES: [&str; 3] = ["a", "b", "c"];

fn keys() -> Vec<Bytes> {
    SLOTS
        .iter()
        .flat_map(|&n| NAMES.iter().map(move |name| key_in(slot(n), name)))
        .collect()
}

/// One step of a random sequence; indexes pick from [`keys`] and [`SLOTS`].
#[derive(Clone, Debug)]
enum Op {
    Put(usize, u8),
    Delete(usize),
    Add(usize),
    /// If the first key exists, put the second; else read the first.
    Txn(usize, usize),
    Move {
        slot: usize,
        epoch: u64,
        kind: Kind,
    },
}

#[derive(Clone, Debug)]
enum Kind {
    Fence,
    Unfence,
    Ingest {
        round: u64,
        page: u64,
        /// Names within the slot, with versions.
        puts: Vec<(usize, u64)>,
        deletes: Vec<usize>,
        /// Adds a key of another slot, which must be refused.
        foreign: bool,
    },
    Ingested(u64),
    Own,
    Drop,
}

fn arb_op() -> impl Strategy<Value = Op> {
    let key = 0..SLOTS.len() * NAMES.len();
    let name = 0..NAMES.len();
    // Weighted so that sequences often get through a whole move.
    let kind = prop_oneof![
        2 => Just(Kind::Fence),
        1 => Just(Kind::Unfence),
        4 => (
            0..2u64,
            prop_oneof![3 => Just(0u64), 1 => Just(1u64)],
            proptest::collection::vec((name.clone(), 1..3_000u64), 0..3),
            proptest::collection::vec(name, 0..2),
            proptest::bool::weighted(0.1),
        )
            .prop_map(|(round, page, puts, deletes, foreign)| Kind::Ingest {
                round,
                page,
                puts,
                deletes,
                foreign,
            }),
        2 => (0..3_000u64).prop_map(Kind::Ingested),
        2 => Just(Kind::Own),
        3 => Just(Kind::Drop),
    ];
    prop_oneof![
        3 => (key.clone(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => key.clone().prop_map(Op::Delete),
        1 => key.clone().prop_map(Op::Add),
        1 => (key.clone(), key).prop_map(|(a, b)| Op::Txn(a, b)),
        4 => (0..SLOTS.len() - 1, 1..=2u64, kind)
            .prop_map(|(slot, epoch, kind)| Op::Move { slot, epoch, kind }),
    ]
}

/// A move of one slot through this group as the protocol runs it (fence, drop,
/// copy in, seal, own), cut short at a random step, with writes between its
/// steps coming from the sequence around it: random steps alone rarely get
/// far.
fn arb_move_script() -> impl Strategy<Value = Vec<Op>> {
    let name = 0..NAMES.len();
    let puts = proptest::collection::vec((name.clone(), 1..3_000u64), 0..3);
    (
        0..SLOTS.len() - 1,
        1..=2u64,
        puts.clone(),
        puts,
        proptest::collection::vec(name, 0..2),
        0..3_000u64,
        1..=6usize,
    )
        .prop_map(|(slot, epoch, first, second, deletes, revision, len)| {
            let ingest = |round, puts, deletes| Kind::Ingest {
                round,
                page: 0,
                puts,
                deletes,
                foreign: false,
            };
            let kinds = [
                Kind::Fence,
                Kind::Drop,
                ingest(0, first, vec![]),
                ingest(1, second, deletes),
                Kind::Ingested(revision),
                Kind::Own,
            ];
            kinds
                .into_iter()
                .take(len)
                .map(|kind| Op::Move { slot, epoch, kind })
                .collect()
        })
}

/// Random single steps and move scripts, flattened.
fn arb_ops() -> impl Strategy<Value = Vec<Op>> {
    let chunk = prop_oneof![
        6 => arb_op().prop_map(|op| vec![op]),
        1 => arb_move_script(),
    ];
    proptest::collection::vec(chunk, 1..60).prop_map(|chunks| chunks.concat())
}

fn command(op: &Op, keys: &[Bytes]) -> Command {
    match op {
        Op::Put(k, v) => put(&keys[*k], &v.to_string()),
        Op::Delete(k) => Command::Delete {
            key: keys[*k].clone(),
            expect: Expect::Any,
        },
        Op::Add(k) => Command::Add {
            key: keys[*k].clone(),
            delta: 1,
        },
        Op::Txn(a, b) => Command::Txn(Txn {
            compares: vec![Compare {
                key: keys[*a].clone(),
                target: CompareTarget::Version(CompareOp::Greater, 0),
            }],
            success: vec![TxnOp::Put {
                key: keys[*b].clone(),
                value: Bytes::from_static(b"t"),
            }],
            failure: vec![TxnOp::Get {
                key: keys[*a].clone(),
            }],
            read_limit: 1 << 20,
        }),
        Op::Move {
            slot: i,
            epoch,
            kind,
        } => {
            let s = slot(SLOTS[*i]);
            let of = |name: usize| &keys[i * NAMES.len() + name];
            let step_of = match kind {
                Kind::Fence => MoveStep::Fence,
                Kind::Unfence => MoveStep::Unfence,
                Kind::Ingest {
                    round,
                    page: number,
                    puts,
                    deletes,
                    foreign,
                } => {
                    let mut puts: BTreeMap<&Bytes, u64> =
                        puts.iter().map(|&(n, v)| (of(n), v)).collect();
                    if *foreign {
                        puts.insert(&keys[keys.len() - 1], 1);
                    }
                    let deletes: Vec<&Bytes> = deletes
                        .iter()
                        .map(|&n| of(n))
                        .filter(|k| !puts.contains_key(k))
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    let puts: Vec<(&Bytes, u64, &str)> =
                        puts.into_iter().map(|(k, v)| (k, v, "copied")).collect();
                    page(*round, *number, &puts, &deletes)
                }
                Kind::Ingested(revision) => MoveStep::Ingested {
                    fence_index: 1,
                    revision: *revision,
                },
                Kind::Own => MoveStep::Own { map_version: 9 },
                Kind::Drop => MoveStep::Drop { map_version: 9 },
            };
            step(s, *epoch, step_of)
        }
    }
}

/// Every key with its value and version.
fn contents(r: &Replica) -> BTreeMap<Bytes, (Bytes, u64)> {
    let mut out = BTreeMap::new();
    let view = r.kv.read_view().expect("view");
    view.for_each(None, |k, version, v| {
        out.insert(
            Bytes::copy_from_slice(k),
            (Bytes::copy_from_slice(v), version),
        );
        Ok(true)
    })
    .expect("walk");
    out
}

/// The keys of `slot` as the slot index finds them.
fn indexed(r: &Replica, slot: Slot) -> Vec<Bytes> {
    let mut out = Vec::new();
    let view = r.kv.read_view().expect("view");
    view.for_each_in_slot(slot, None, |k, _, _| {
        out.push(Bytes::copy_from_slice(k));
        Ok(true)
    })
    .expect("walk");
    out
}

fn revision_of(outcome: &ApplyOutcome) -> Option<u64> {
    match outcome {
        ApplyOutcome::Put { revision }
        | ApplyOutcome::Deleted { revision, .. }
        | ApplyOutcome::Added { revision, .. } => Some(*revision),
        ApplyOutcome::Txn(t) => Some(t.revision),
        _ => None,
    }
}

/// Applies `ops` one entry at a time, checking the rules after each; returns
/// the entries and their outcomes.
fn run_checked(r: &mut Replica, ops: &[Op], keys: &[Bytes]) -> (Vec<Entry>, Vec<ApplyOutcome>) {
    let mut entries = Vec::new();
    let mut outcomes = Vec::new();
    // Every version the store held or handed out: later revisions must exceed it.
    let mut floor = 0u64;
    for op in ops {
        let command = command(op, keys);
        let before = contents(r);
        let table_before = r.kv.slot_table();
        floor = floor.max(before.values().map(|(_, v)| *v).max().unwrap_or(0));
        let entry = r.entry(None, command.clone());
        let outcome = r.kv.apply(std::slice::from_ref(&entry)).expect("apply")[0].clone();
        let after = contents(r);
        if let Some(refused) = check_served(&table_before, &command) {
            // A slot the group does not serve takes no write, on any replica.
            assert_eq!(outcome, ApplyOutcome::SlotUnavailable(refused));
            assert_eq!(after, before, "a refused write changed the data");
        } else if let Some(revision) = revision_of(&outcome) {
            assert!(revision > floor, "revision {revision} not above {floor}");
            floor = revision;
        }
        match &outcome {
            ApplyOutcome::SlotStepRefused(_) => {
                assert_eq!(after, before, "a refused step changed the data");
                assert_eq!(r.kv.slot_table(), table_before);
            }
            ApplyOutcome::SlotStep { keys_removed, .. } => {
                let Command::Slot(cmd) = &command else {
                    unreachable!("only slot commands step")
                };
                if let MoveStep::Drop { .. } = cmd.step {
                    // Dropping removes exactly the slot's keys, nothing else.
                    let removed: Vec<&Bytes> =
                        before.keys().filter(|k| !after.contains_key(*k)).collect();
                    assert_eq!(removed.len() as u64, *keys_removed);
                    assert!(removed.iter().all(|k| slot_for_key(k) == cmd.slot));
                    assert!(after.keys().all(|k| slot_for_key(k) != cmd.slot));
                    let untouched = |m: &BTreeMap<Bytes, (Bytes, u64)>| {
                        m.iter()
                            .filter(|(k, _)| slot_for_key(k) != cmd.slot)
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect::<Vec<_>>()
                    };
                    assert_eq!(untouched(&after), untouched(&before));
                }
                if let MoveStep::Ingested { revision, .. } = cmd.step {
                    floor = floor.max(revision);
                }
            }
            _ => {}
        }
        entries.push(entry);
        outcomes.push(outcome);
    }
    // The slot index lists exactly each slot's keys.
    let all = contents(r);
    for &n in &SLOTS {
        let want: Vec<Bytes> = all
            .keys()
            .filter(|k| slot_for_key(k) == slot(n))
            .cloned()
            .collect();
        assert_eq!(indexed(r, slot(n)), want);
    }
    (entries, outcomes)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Writes and move commands in any order: every rule holds after every
    /// entry, and a second replica that applies the same log in other batches,
    /// with a restart in between, reaches the same outcomes and digest.
    #[test]
    fn replicas_agree_and_every_rule_holds(
        ops in arb_ops(),
        cuts in proptest::collection::vec(1usize..8, 1..20),
        restart_at in any::<prop::sample::Index>(),
    ) {
        let keys = keys();
        let mut a = Replica::new(&MemVfs::new());
        let (entries, outcomes) = run_checked(&mut a, &ops, &keys);

        let vfs = MemVfs::new();
        let mut b = Replica::new(&vfs);
        let restart = restart_at.index(entries.len());
        let mut got = Vec::new();
        let mut at = 0;
        for cut in cuts.iter().cycle() {
            if at == entries.len() {
                break;
            }
            let end = (at + cut).min(entries.len());
            if at <= restart && restart < end {
                b.kv.flush().expect("flush");
                drop(b);
                b = Replica::new(&vfs);
            }
            got.extend(b.kv.apply(&entries[at..end]).expect("apply"));
            at = end;
        }
        prop_assert_eq!(got, outcomes);
        prop_assert_eq!(b.kv.digest().expect("digest"), a.kv.digest().expect("digest"));
        prop_assert_eq!(b.kv.slot_table(), a.kv.slot_table());
    }

    /// A whole move from one store to another: the target serves exactly the
    /// source's data as of the fence, with the same versions, and its later
    /// writes get versions above every earlier one; the source keeps nothing.
    #[test]
    fn a_moved_slot_serves_the_same_values_and_versions_never_go_backwards(
        before_copy in proptest::collection::vec((0..6usize, any::<u8>(), any::<bool>()), 0..40),
        during_copy in proptest::collection::vec((0..6usize, any::<u8>(), any::<bool>()), 0..20),
        target_writes in 0..30u64,
        target_gap in 0..500u64,
        page_size in 1..4usize,
    ) {
        let moved = slot(777);
        let names: Vec<String> = (0..6).map(|i| format!("k{i}")).collect();
        let key = |i: usize| key_in(moved, &names[i]);
        let elsewhere = key_in(slot(778), "stays");
        let mut source = Replica::new(&MemVfs::new());
        let mut target = Replica::new(&MemVfs::new());
        let write = |r: &mut Replica, (i, v, del): (usize, u8, bool)| {
            if del {
                r.run(Command::Delete { key: key(i), expect: Expect::Any })
            } else {
                r.run(put(&key(i), &v.to_string()))
            }
        };
        for &w in &before_copy {
            write(&mut source, w);
        }
        source.run(put(&elsewhere, "source"));
        // The target is a group of its own: its log is longer or shorter, and
        // it does not hold the slot.
        target.skip(target_gap);
        for i in 0..target_writes {
            target.run(put(&key_in(slot(5), &i.to_string()), "t"));
        }
        target.release(moved, 1);
        let epoch = 2;

        // Copy rounds: the bulk copy, then the delta after more writes, then
        // the final delta after the fence.
        let mut staged: BTreeMap<Bytes, u64> = BTreeMap::new();
        let mut round = 0;
        let mut copy = |source: &Replica, target: &mut Replica, round: u64| {
            let mut now: BTreeMap<Bytes, (Bytes, u64)> = BTreeMap::new();
            source.kv.read_view().expect("view").for_each_in_slot(moved, None, |k, ver, v| {
                now.insert(Bytes::copy_from_slice(k), (Bytes::copy_from_slice(v), ver));
                Ok(true)
            }).expect("walk");
            let changed: Vec<(&Bytes, u64, String)> = now
                .iter()
                .filter(|(k, (_, ver))| staged.get(*k) != Some(ver))
                .map(|(k, (v, ver))| (k, *ver, String::from_utf8_lossy(v).into_owned()))
                .collect();
            let gone: Vec<&Bytes> = staged.keys().filter(|k| !now.contains_key(*k)).collect();
            let mut pages: Vec<MoveStep> = changed
                .chunks(page_size)
                .map(|c| {
                    let puts: Vec<(&Bytes, u64, &str)> =
                        c.iter().map(|(k, ver, v)| (*k, *ver, v.as_str())).collect();
                    page(round, 0, &puts, &[])
                })
                .collect();
            pages.push(page(round, 0, &[], &gone));
            for (number, mut p) in pages.into_iter().enumerate() {
                if let MoveStep::Ingest(inner) = &mut p {
                    inner.page = number as u64;
                }
                let outcome = target.run(step(moved, epoch, p));
                assert!(matches!(outcome, ApplyOutcome::SlotStep { .. }), "{outcome:?}");
            }
            staged = now.into_iter().map(|(k, (_, ver))| (k, ver)).collect();
        };
        copy(&source, &mut target, round);
        for &w in &during_copy {
            write(&mut source, w);
        }
        round += 1;
        copy(&source, &mut target, round);
        let fence_index = source.next;
        let fenced = source.run(step(moved, epoch, MoveStep::Fence));
        prop_assert!(matches!(fenced, ApplyOutcome::SlotStep { .. }), "{:?}", fenced);
        let refused = source.run(put(&key(0), "late"));
        let is_moving = matches!(refused, ApplyOutcome::SlotUnavailable(SlotUnavailable::Moving { .. }));
        prop_assert!(is_moving, "{:?}", refused);
        round += 1;
        copy(&source, &mut target, round);
        let at_fence: Vec<(Bytes, (Bytes, u64))> = (0..6)
            .filter_map(|i| source.get(&key(i)).map(|v| (key(i), v)))
            .collect();
        // The source's revision at the fence (its offset is 0).
        let revision = fence_index;
        target.run(step(moved, epoch, MoveStep::Ingested { fence_index, revision }));
        prop_assert_eq!(
            target.run(step(moved, epoch, MoveStep::Own { map_version: 3 })),
            ApplyOutcome::SlotStep { state: SlotState::Serving, keys_removed: 0 }
        );
        while source.kv.slot_state(moved) != SlotState::Absent {
            source.run(step(moved, epoch, MoveStep::Drop { map_version: 3 }));
        }

        let served: Vec<(Bytes, (Bytes, u64))> = (0..6)
            .filter_map(|i| target.get(&key(i)).map(|v| (key(i), v)))
            .collect();
        prop_assert_eq!(&served, &at_fence);
        prop_assert_eq!(indexed(&source, moved), Vec::<Bytes>::new());
        prop_assert_eq!(source.get(&elsewhere).map(|(v, _)| v), Some(Bytes::from_static(b"source")));
        // Every version the slot ever had, at the source or the target, is
        // below the target's next writes; written keys move forward.
        for i in 0..6 {
            let old = target.get(&key(i)).map_or(0, |(_, ver)| ver);
            let ApplyOutcome::Put { revision: new } = target.run(put(&key(i), "after")) else {
                panic!("the target serves the slot");
            };
            prop_assert!(new > old && new > revision, "{new} after {old}, fence revision {revision}");
        }
    }
}
