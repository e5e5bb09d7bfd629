//! Slot tests: each move step's rules, the ownership check, the revision offset.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use keel_placement::{Slot, slot_for_key};
use keel_raft::{Entry, EntryKind};

use super::*;
use crate::command::{
    Command, Envelope, Expect, IngestPage, IngestPut, MoveStep, SessionHeader, SlotCommand,
};
use crate::kv::{ApplyOutcome, KvStore};
use crate::vfs::MemVfs;

const PATH: &str = "/node/state/kv.redb";

pub(crate) fn slot(n: u16) -> Slot {
    Slot::new(n).expect("slot in range")
}

/// A hash tag that sends keys to `slot`: `{tag}anything` hashes only `tag`.
fn tag_for(slot: Slot) -> String {
    (0u32..)
        .map(|i| format!("t{i}"))
        .find(|t| slot_for_key(t.as_bytes()) == slot)
        .expect("some tag hashes to every slot")
}

/// A key of `slot` named by `name`.
pub(crate) fn key_in(slot: Slot, name: &str) -> Bytes {
    let key = Bytes::from(format!("{{{}}}{name}", tag_for(slot)));
    debug_assert_eq!(slot_for_key(&key), slot);
    key
}

pub(crate) fn put(key: &Bytes, value: &str) -> Command {
    Command::Put {
        key: key.clone(),
        value: Bytes::copy_from_slice(value.as_bytes()),
        expect: Expect::Any,
    }
}

pub(crate) fn step(slot: Slot, epoch: u64, step: MoveStep) -> Command {
    Command::Slot(SlotCommand { slot, epoch, step })
}

pub(crate) fn page(
    round: u64,
    page: u64,
    puts: &[(&Bytes, u64, &str)],
    deletes: &[&Bytes],
) -> MoveStep {
    MoveStep::Ingest(IngestPage {
        round,
        page,
        puts: puts
            .iter()
            .map(|(key, version, value)| IngestPut {
                key: Bytes::clone(key),
                version: *version,
                value: Bytes::copy_from_slice(value.as_bytes()),
            })
            .collect(),
        deletes: deletes.iter().copied().cloned().collect(),
    })
}

/// A store and the index of its next entry.
pub(crate) struct Replica {
    pub(crate) kv: KvStore,
    pub(crate) next: u64,
}

impl Replica {
    pub(crate) fn new(vfs: &MemVfs) -> Replica {
        let kv = KvStore::open(Arc::new(vfs.clone()), Path::new(PATH)).expect("open");
        let next = kv.applied_index() + 1;
        Replica { kv, next }
    }

    pub(crate) fn entry(&mut self, session: Option<SessionHeader>, command: Command) -> Entry {
        let entry = Entry {
            term: 1,
            index: self.next,
            kind: EntryKind::Normal,
            data: Envelope { session, command }.encode(),
        };
        self.next += 1;
        entry
    }

    pub(crate) fn run(&mut self, command: Command) -> ApplyOutcome {
        self.run_in(None, command)
    }

    pub(crate) fn run_in(
        &mut self,
        session: Option<SessionHeader>,
        command: Command,
    ) -> ApplyOutcome {
        let entry = self.entry(session, command);
        let mut outcomes = self.kv.apply(&[entry]).expect("apply");
        outcomes.pop().expect("one outcome")
    }

    /// Skips `n` entries (NO-OPs), as a log longer than another's would.
    pub(crate) fn skip(&mut self, n: u64) {
        let entries: Vec<Entry> = (0..n)
            .map(|i| Entry {
                term: 1,
                index: self.next + i,
                kind: EntryKind::NoOp,
                data: Bytes::new(),
            })
            .collect();
        self.kv.apply(&entries).expect("apply");
        self.next += n;
    }

    pub(crate) fn get(&self, key: &Bytes) -> Option<(Bytes, u64)> {
        self.kv.get(key).expect("get")
    }

    /// Fences `slot` and drops it until it is absent (a store for a group that
    /// does not hold it).
    pub(crate) fn release(&mut self, slot: Slot, epoch: u64) {
        assert!(matches!(
            self.run(step(slot, epoch, MoveStep::Fence)),
            ApplyOutcome::SlotStep { .. }
        ));
        while self.kv.slot_state(slot) != SlotState::Absent {
            let dropped = self.run(step(slot, epoch, MoveStep::Drop { map_version: epoch }));
            assert!(
                matches!(dropped, ApplyOutcome::SlotStep { .. }),
                "{dropped:?}"
            );
        }
    }
}

fn done(state: SlotState) -> ApplyOutcome {
    ApplyOutcome::SlotStep {
        state,
        keys_removed: 0,
    }
}

fn wrong_state(outcome: &ApplyOutcome) -> bool {
    matches!(
        outcome,
        ApplyOutcome::SlotStepRefused(SlotCommandError::WrongState { .. })
    )
}

fn moving(slot: Slot, state: SlotState) -> ApplyOutcome {
    ApplyOutcome::SlotUnavailable(SlotUnavailable::Moving { slot, state })
}

#[test]
fn a_new_store_serves_every_slot_with_revisions_equal_to_indexes() {
    let mut r = Replica::new(&MemVfs::new());
    assert!(r.kv.slot_table().is_all_serving());
    let key = key_in(slot(9), "a");
    assert_eq!(r.run(put(&key, "x")), ApplyOutcome::Put { revision: 1 });
    assert_eq!(r.get(&key), Some((Bytes::from_static(b"x"), 1)));
    assert_eq!(r.kv.read_view().expect("view").revision_offset(), 0);
}

#[test]
fn only_slots_in_a_moves_state_are_listed_as_moving() {
    let mut r = Replica::new(&MemVfs::new());
    assert!(r.kv.slots_in_moves().is_empty());
    let fenced = SlotState::Fenced { epoch: 3 };
    assert_eq!(r.run(step(slot(5), 3, MoveStep::Fence)), done(fenced));
    assert_eq!(r.kv.slots_in_moves(), [(slot(5), fenced)]);
    assert_eq!(
        r.run(step(slot(5), 3, MoveStep::Unfence)),
        done(SlotState::Serving)
    );
    assert!(r.kv.slots_in_moves().is_empty());
}

#[test]
fn a_fenced_slot_refuses_every_client_command_and_unfencing_restores_it() {
    let mut r = Replica::new(&MemVfs::new());
    let (s, other) = (slot(5), slot(6));
    let key = key_in(s, "a");
    let free = key_in(other, "b");
    r.run(put(&key, "before"));
    let fenced = SlotState::Fenced { epoch: 3 };
    assert_eq!(r.run(step(s, 3, MoveStep::Fence)), done(fenced));
    let before = r.kv.digest().expect("digest");
    let refused = [
        put(&key, "after"),
        Command::Delete {
            key: key.clone(),
            expect: Expect::Any,
        },
        Command::Add {
            key: key.clone(),
            delta: 1,
        },
    ];
    for command in refused {
        assert_eq!(r.run(command), moving(s, fenced));
    }
    assert_eq!(r.kv.digest().expect("digest").hash, before.hash);
    // Other slots are untouched by the fence.
    assert!(matches!(r.run(put(&free, "y")), ApplyOutcome::Put { .. }));
    // Fencing again at the same epoch is already in effect; at another, refused.
    assert_eq!(r.run(step(s, 3, MoveStep::Fence)), done(fenced));
    assert!(wrong_state(&r.run(step(s, 4, MoveStep::Fence))));
    assert!(wrong_state(&r.run(step(s, 4, MoveStep::Unfence))));
    assert_eq!(r.kv.slot_state(s), fenced);
    assert_eq!(
        r.run(step(s, 3, MoveStep::Unfence)),
        done(SlotState::Serving)
    );
    assert_eq!(
        r.run(step(s, 3, MoveStep::Unfence)),
        done(SlotState::Serving)
    );
    assert!(matches!(
        r.run(put(&key, "after")),
        ApplyOutcome::Put { .. }
    ));
}

#[test]
fn a_write_proposed_before_the_fence_but_applied_after_it_is_refused() {
    let mut r = Replica::new(&MemVfs::new());
    let s = slot(77);
    let key = key_in(s, "k");
    // One batch, in log order: the fence, then a write that was proposed
    // before the fence reached the log.
    let fence = r.entry(None, step(s, 2, MoveStep::Fence));
    let write = r.entry(None, put(&key, "late"));
    let outcomes = r.kv.apply(&[fence, write]).expect("apply");
    assert_eq!(outcomes[1], moving(s, SlotState::Fenced { epoch: 2 }));
    assert_eq!(r.get(&key), None);
}

#[test]
fn session_writes_are_checked_after_deduplication_and_refusals_are_not_remembered() {
    let mut r = Replica::new(&MemVfs::new());
    let s = slot(100);
    let key = key_in(s, "k");
    let h = |seq| SessionHeader {
        client_id: 42,
        seq,
        first_unacked: 1,
        now_ms: 1_000,
        idle_timeout_ms: 3_600_000,
        max_sessions: 100,
    };
    let first = r.run_in(Some(h(1)), put(&key, "one"));
    assert_eq!(first, ApplyOutcome::Put { revision: 1 });
    r.run(step(s, 9, MoveStep::Fence));
    // A retry of a write applied before the fence gets its original result.
    assert_eq!(r.run_in(Some(h(1)), put(&key, "one")), first);
    // A new write is refused, and not remembered: once the slot is served
    // again, its retry runs.
    let fenced = moving(s, SlotState::Fenced { epoch: 9 });
    assert_eq!(r.run_in(Some(h(2)), put(&key, "two")), fenced);
    r.run(step(s, 9, MoveStep::Unfence));
    let revision = r.next;
    assert_eq!(
        r.run_in(Some(h(2)), put(&key, "two")),
        ApplyOutcome::Put { revision }
    );
    assert_eq!(r.get(&key), Some((Bytes::from_static(b"two"), revision)));
}

#[test]
fn a_copy_begins_only_on_an_absent_slot_and_pages_need_their_epoch() {
    let mut r = Replica::new(&MemVfs::new());
    let s = slot(40);
    let a = key_in(s, "a");
    // Serving: no copy may land on live data.
    assert!(wrong_state(&r.run(step(s, 5, page(0, 0, &[], &[])))));
    r.release(s, 2);
    assert_eq!(r.kv.slot_state(s), SlotState::Absent);
    // A later page cannot begin a copy.
    assert!(wrong_state(&r.run(step(
        s,
        5,
        page(0, 1, &[(&a, 3, "x")], &[])
    ))));
    let staging = SlotState::Staging { epoch: 5 };
    assert_eq!(
        r.run(step(s, 5, page(0, 0, &[(&a, 3, "x")], &[]))),
        done(staging)
    );
    // Staged data is stored with its source version and served by nobody.
    assert_eq!(r.get(&a), Some((Bytes::from_static(b"x"), 3)));
    assert_eq!(r.run(put(&a, "y")), moving(s, staging));
    // Beginning again needs the earlier copy dropped first; another epoch's
    // page is refused.
    assert!(wrong_state(&r.run(step(s, 5, page(0, 0, &[], &[])))));
    assert!(wrong_state(&r.run(step(s, 6, page(0, 1, &[], &[])))));
    assert_eq!(r.get(&a), Some((Bytes::from_static(b"x"), 3)));
}

#[test]
fn a_page_with_a_key_of_another_slot_changes_nothing() {
    let mut r = Replica::new(&MemVfs::new());
    let s = slot(41);
    r.release(s, 1);
    r.run(step(s, 2, page(0, 0, &[], &[])));
    let before = r.kv.digest().expect("digest");
    let mine = key_in(s, "a");
    let foreign = key_in(slot(42), "b");
    let (first, second) = if mine < foreign {
        (&mine, &foreign)
    } else {
        (&foreign, &mine)
    };
    let outcome = r.run(step(
        s,
        2,
        page(1, 0, &[(first, 1, "x"), (second, 1, "y")], &[]),
    ));
    assert_eq!(
        outcome,
        ApplyOutcome::SlotStepRefused(SlotCommandError::KeyOutsideSlot {
            slot: s,
            key: foreign.clone(),
            key_slot: slot(42),
        })
    );
    assert_eq!(r.kv.digest().expect("digest").hash, before.hash);
}

#[test]
fn catch_up_rounds_overwrite_and_delete_staged_keys() {
    let mut r = Replica::new(&MemVfs::new());
    let s = slot(300);
    let (a, b) = (key_in(s, "a"), key_in(s, "b"));
    r.release(s, 1);
    r.run(step(
        s,
        4,
        page(0, 0, &[(&a, 10, "a1"), (&b, 11, "b1")], &[]),
    ));
    r.run(step(s, 4, page(1, 0, &[(&a, 12, "a2")], &[&b])));
    assert_eq!(r.get(&a), Some((Bytes::from_static(b"a2"), 12)));
    assert_eq!(r.get(&b), None);
}

#[test]
fn ingest_seal_and_own_serve_the_copied_values_with_later_revisions_above_them() {
    let mut r = Replica::new(&MemVfs::new());
    let s = slot(1234);
    let a = key_in(s, "a");
    r.release(s, 1);
    r.run(step(s, 8, page(0, 0, &[(&a, 5_000, "copied")], &[])));
    // Owning before the copy is sealed is refused.
    assert!(wrong_state(&r.run(step(
        s,
        8,
        MoveStep::Own { map_version: 9 }
    ))));
    let sealed = MoveStep::Ingested {
        fence_index: 4_990,
        revision: 5_000,
    };
    let ingested = SlotState::Ingested { epoch: 8 };
    assert_eq!(r.run(step(s, 8, sealed.clone())), done(ingested));
    assert_eq!(r.run(step(s, 8, sealed)), done(ingested));
    // Sealed data takes no more pages, and is not served yet.
    assert!(wrong_state(&r.run(step(s, 8, page(1, 0, &[], &[])))));
    assert_eq!(r.run(put(&a, "x")), moving(s, ingested));
    assert_eq!(
        r.run(step(s, 8, MoveStep::Own { map_version: 9 })),
        done(SlotState::Serving)
    );
    assert_eq!(
        r.run(step(s, 8, MoveStep::Own { map_version: 9 })),
        done(SlotState::Serving)
    );
    assert_eq!(r.get(&a), Some((Bytes::from_static(b"copied"), 5_000)));
    // The next write's revision is above the source's revision at the fence,
    // in this slot and every other.
    let ApplyOutcome::Put { revision } = r.run(put(&a, "new")) else {
        panic!("the owned slot takes writes");
    };
    assert!(revision > 5_000, "{revision}");
    let other = key_in(slot(1), "z");
    let ApplyOutcome::Put { revision: later } = r.run(put(&other, "z")) else {
        panic!("other slots take writes");
    };
    assert_eq!(later, revision + 1);
    assert_eq!(
        r.kv.read_view().expect("view").revision_offset(),
        later - (r.next - 1)
    );
}

#[test]
fn the_offset_only_grows() {
    let mut r = Replica::new(&MemVfs::new());
    let s = slot(2);
    r.release(s, 1);
    r.skip(100);
    // A page raises the offset above the versions it brings.
    let copied = key_in(s, "c");
    r.run(step(s, 3, page(0, 0, &[(&copied, 1_000, "v")], &[])));
    let raised = r.kv.read_view().expect("view").revision_offset();
    assert_eq!(raised, 1_000 - (r.next - 1));
    // A revision below what the group already has leaves the offset alone.
    r.run(step(
        s,
        3,
        MoveStep::Ingested {
            fence_index: 1,
            revision: 7,
        },
    ));
    assert_eq!(r.kv.read_view().expect("view").revision_offset(), raised);
    let key = key_in(slot(3), "k");
    let index = r.next;
    assert_eq!(
        r.run(put(&key, "v")),
        ApplyOutcome::Put {
            revision: index + raised
        }
    );
}

#[test]
fn a_revision_over_the_limit_is_refused() {
    let mut r = Replica::new(&MemVfs::new());
    let s = slot(2);
    r.release(s, 1);
    r.run(step(s, 3, page(0, 0, &[], &[])));
    let too_big = MoveStep::Ingested {
        fence_index: 1,
        revision: MAX_REVISION + 1,
    };
    assert_eq!(
        r.run(step(s, 3, too_big)),
        ApplyOutcome::SlotStepRefused(SlotCommandError::RevisionTooLarge(MAX_REVISION + 1))
    );
    assert_eq!(r.kv.slot_state(s), SlotState::Staging { epoch: 3 });
    let key = key_in(s, "k");
    assert_eq!(
        r.run(step(
            s,
            3,
            page(1, 0, &[(&key, MAX_REVISION + 1, "v")], &[])
        )),
        ApplyOutcome::SlotStepRefused(SlotCommandError::RevisionTooLarge(MAX_REVISION + 1))
    );
    assert_eq!(r.get(&key), None);
    let at_limit = MoveStep::Ingested {
        fence_index: 1,
        revision: MAX_REVISION,
    };
    assert_eq!(
        r.run(step(s, 3, at_limit)),
        done(SlotState::Ingested { epoch: 3 })
    );
}

#[test]
fn dropping_removes_exactly_the_slots_keys_in_bounded_batches() {
    let mut r = Replica::new(&MemVfs::new());
    let s = slot(513);
    let total = MAX_DROP_KEYS as u64 + 6;
    let entries: Vec<Entry> = (0..total)
        .map(|i| r.entry(None, put(&key_in(s, &format!("{i:05}")), "v")))
        .collect();
    r.kv.apply(&entries).expect("apply");
    let neighbour = key_in(slot(514), "n");
    r.run(put(&neighbour, "stays"));
    // A served slot is never dropped.
    assert!(wrong_state(&r.run(step(
        s,
        7,
        MoveStep::Drop { map_version: 8 }
    ))));
    r.run(step(s, 7, MoveStep::Fence));
    assert!(wrong_state(&r.run(step(
        s,
        6,
        MoveStep::Drop { map_version: 8 }
    ))));
    let drop = || step(s, 7, MoveStep::Drop { map_version: 8 });
    assert_eq!(
        r.run(drop()),
        ApplyOutcome::SlotStep {
            state: SlotState::Releasing { epoch: 7 },
            keys_removed: MAX_DROP_KEYS as u64,
        }
    );
    // Releasing is not served, and not moving: the client asks the owner.
    assert_eq!(
        r.run(put(&key_in(s, "new"), "v")),
        ApplyOutcome::SlotUnavailable(SlotUnavailable::WrongGroup {
            slot: s,
            state: SlotState::Releasing { epoch: 7 }
        })
    );
    assert_eq!(
        r.run(drop()),
        ApplyOutcome::SlotStep {
            state: SlotState::Absent,
            keys_removed: 6,
        }
    );
    assert_eq!(r.run(drop()), done(SlotState::Absent));
    let view = r.kv.read_view().expect("view");
    assert_eq!(view.len().expect("len"), 1);
    assert_eq!(
        r.get(&neighbour).map(|(v, _)| v),
        Some(Bytes::from_static(b"stays"))
    );
}

#[test]
fn a_target_discards_an_abandoned_copy_with_drop() {
    let mut r = Replica::new(&MemVfs::new());
    let s = slot(60);
    let a = key_in(s, "a");
    r.release(s, 1);
    r.run(step(s, 3, page(0, 0, &[(&a, 2, "x")], &[])));
    assert_eq!(
        r.run(step(s, 3, MoveStep::Drop { map_version: 4 })),
        ApplyOutcome::SlotStep {
            state: SlotState::Absent,
            keys_removed: 1,
        }
    );
    assert_eq!(r.get(&a), None);
    // The slot can be copied again, at the same epoch or a later one.
    assert_eq!(
        r.run(step(s, 3, page(0, 0, &[], &[]))),
        done(SlotState::Staging { epoch: 3 })
    );
}

#[test]
fn the_slot_table_survives_a_restart_and_a_failed_batch_changes_nothing() {
    let vfs = MemVfs::new();
    let s = slot(11);
    {
        let mut r = Replica::new(&vfs);
        r.run(step(s, 5, MoveStep::Fence));
        r.kv.flush().expect("flush");
    }
    let mut r = Replica::new(&vfs);
    assert_eq!(r.kv.slot_state(s), SlotState::Fenced { epoch: 5 });
    // A batch that fails (a gap after an unfence) leaves the table as it was,
    // in memory as on disk.
    let unfence = r.entry(None, step(s, 5, MoveStep::Unfence));
    let mut gap = r.entry(None, put(&key_in(s, "k"), "v"));
    gap.index += 1;
    assert!(r.kv.apply(&[unfence, gap]).is_err());
    assert_eq!(r.kv.slot_state(s), SlotState::Fenced { epoch: 5 });
    assert_eq!(
        r.kv.read_view().expect("view").slot_table().expect("table"),
        r.kv.slot_table()
    );
}

#[test]
fn digests_see_the_slot_table_and_the_offset_only_once_they_differ_from_before() {
    let plain = Replica::new(&MemVfs::new());
    let mut fenced = Replica::new(&MemVfs::new());
    fenced.run(step(slot(1), 2, MoveStep::Fence));
    let mut unfenced = Replica::new(&MemVfs::new());
    unfenced.run(step(slot(1), 2, MoveStep::Fence));
    unfenced.run(step(slot(1), 2, MoveStep::Unfence));
    let hash = |r: &Replica| r.kv.digest().expect("digest").hash;
    assert_ne!(hash(&plain), hash(&fenced));
    assert_eq!(hash(&plain), hash(&unfenced));
}
