//! Power failures at random points and fsync failures (a full disk: `full.rs`).

use std::sync::Arc;

use keel_raft::HardState;

use super::*;
use crate::wal::WalError;
use keel_raft::SplitMix64;

/// One simulated process lifetime: random appends (with overwrites), group removals,
/// recreations and syncs until the planned death. Returns the state of the last successful sync and, if a sync
/// was cut short, the state it was trying to make durable.
fn run_until_death(
    wal: &mut Wal,
    rng: &mut SplitMix64,
    mut model: Model,
) -> (Model, Option<Model>) {
    for _ in 0..1 + rng.below(30) {
        let mut pending = model.clone();
        for _ in 0..1 + rng.below(3) {
            // Three groups live at a time; a removed one is sometimes created
            // again (the node was added back to it), otherwise replaced by a new id.
            let mut group = 1 + rng.below(3);
            while pending.removed.contains_key(&group) {
                if rng.below(4) == 0 {
                    let Ok(hs) = wal.recreate_group(group) else {
                        return (model, None);
                    };
                    assert_eq!(hs, pending.recreate(group));
                    break;
                }
                group += 3;
            }
            if rng.below(12) == 0 {
                if wal.remove_group(group).is_err() {
                    return (model, None);
                }
                pending.remove(group);
                continue;
            }
            let last = pending.last_index(group);
            // Mostly appends; sometimes a new leader overwrites a suffix.
            let first = if last > 0 && rng.below(5) == 0 {
                1 + rng.below(last)
            } else {
                last + 1
            };
            let term = 1 + rng.below(9);
            let es: Vec<_> = (first..first + 1 + rng.below(4))
                .map(|i| entry(term, i, &vec![i as u8; rng.below(300) as usize]))
                .collect();
            if wal.append_entries(group, &es).is_err() {
                return (model, None);
            }
            pending.append(group, &es);
            if rng.below(2) == 0 {
                let hs = HardState {
                    term,
                    vote: rng.below(4),
                    commit: rng.below(first),
                };
                if wal.set_hard_state(group, hs).is_err() {
                    return (model, None);
                }
                pending.hard_state(group, hs);
            }
        }
        match wal.sync() {
            Ok(()) => model = pending,
            Err(_) => return (model, Some(pending)),
        }
    }
    (model, None)
}

#[test]
fn random_crashes_never_lose_synced_data_and_never_fail_recovery() {
    // How often each interesting outcome happened, to prove the loop exercises them.
    let (mut torn, mut kept_inflight, mut lost_inflight) = (0, 0, 0);
    for seed in 0..300u64 {
        let mut rng = SplitMix64::new(seed);
        let vfs = MemVfs::new();
        let segment_bytes = [1024, 2048, 8192][rng.below(3) as usize];
        let mut model = Model::default();
        for life in 0..4 {
            let what = format!("seed {seed} life {life}");
            let (mut wal, rec) = Wal::open(Arc::new(vfs.clone()), dir(), opts(segment_bytes))
                .unwrap_or_else(|e| panic!("{what}: recovery failed after a pure crash: {e}"));
            assert!(
                model.matches(&rec),
                "{what}\nrecovered {:?} removed {:?}\nmodel {:?}",
                rec.groups,
                rec.removed,
                model
            );
            // The process dies after a random number of disk operations, or by an
            // fsync failure, or (rarely) not at all before the power goes.
            match rng.below(4) {
                0 | 1 => vfs.halt_after(Some(rng.below(60))),
                2 => {
                    if let Some(seg) = segment_names(&vfs).last() {
                        vfs.fail_next_sync(&dir().join(seg)).expect("inject");
                    }
                }
                _ => {}
            }
            let (synced, inflight) = run_until_death(&mut wal, &mut rng, model.clone());
            drop(wal);
            vfs.crash(rng.next_u64());
            let (wal, rec) = Wal::open(Arc::new(vfs.clone()), dir(), opts(segment_bytes))
                .unwrap_or_else(|e| panic!("{what}: recovery failed after a pure crash: {e}"));
            // Everything synced survives; the interrupted batch is all or nothing.
            torn += usize::from(rec.torn_tail.is_some());
            model = if synced.matches(&rec) {
                lost_inflight += usize::from(inflight.is_some());
                synced
            } else if inflight.as_ref().is_some_and(|m| m.matches(&rec)) {
                kept_inflight += 1;
                inflight.expect("checked")
            } else {
                panic!(
                    "{what}: recovered state is neither the synced one nor the in-flight one\n\
                     recovered {:?}\nsynced {:?}",
                    rec.groups, synced.groups
                );
            };
            drop(wal);
        }
    }
    assert!(
        torn > 20 && kept_inflight > 20 && lost_inflight > 20,
        "too few interesting crashes: {torn} torn tails, {kept_inflight} interrupted \
         batches kept, {lost_inflight} lost"
    );
}

#[test]
fn a_failed_fsync_poisons_the_wal_for_good() {
    let vfs = MemVfs::new();
    let (mut wal, _) = open(&vfs, 4096);
    wal.append_entries(1, &[entry(1, 1, b"a")]).expect("append");
    wal.sync().expect("sync");
    let seg = dir().join(&segment_names(&vfs)[0]);
    vfs.fail_next_sync(&seg).expect("inject");
    wal.append_entries(1, &[entry(1, 2, b"b")]).expect("append");
    let first = wal.sync().expect_err("fsync fails");
    assert!(matches!(first, WalError::Io { op: "sync", .. }), "{first}");
    assert!(wal.is_poisoned());
    // The next fsync would succeed on the device, but the WAL must not trust it.
    assert!(matches!(wal.sync(), Err(WalError::Poisoned)));
    assert!(matches!(
        wal.append_entries(1, &[entry(1, 3, b"c")]),
        Err(WalError::Poisoned)
    ));
    assert!(matches!(
        wal.set_hard_state(1, HardState::default()),
        Err(WalError::Poisoned)
    ));
}
