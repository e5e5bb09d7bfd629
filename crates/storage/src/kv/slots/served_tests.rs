//! Reads that answer only from served slots (`kv/served.rs`): a fenced,
//! staged or released slot answers with its state, never its data, and a
//! store that never changed its table answers as before.

use bytes::Bytes;

use super::SlotState;
use super::tests::{Replica, key_in, page, put, slot, step};
use crate::command::MoveStep;
use crate::kv::NotServed;
use crate::vfs::MemVfs;

#[test]
fn a_store_that_serves_every_slot_answers_gets_and_scans_as_before() {
    let vfs = MemVfs::new();
    let mut a = Replica::new(&vfs);
    let k = key_in(slot(5), "a");
    a.run(put(&k, "one"));
    let got = a.kv.get_served(&k).expect("read").expect("served");
    assert_eq!(got.map(|(v, _)| v), Some(Bytes::from_static(b"one")));
    let (items, more) = a.kv.scan_served(b"", None, 10).expect("scan");
    assert_eq!(items.len(), 1);
    assert!(!more);
}

#[test]
fn a_fenced_slot_answers_its_state_and_scans_skip_it() {
    let vfs = MemVfs::new();
    let mut a = Replica::new(&vfs);
    let fenced = key_in(slot(5), "a");
    let other = key_in(slot(6), "b");
    a.run(put(&fenced, "one"));
    a.run(put(&other, "two"));
    a.run(step(slot(5), 9, MoveStep::Fence));
    assert_eq!(
        a.kv.get_served(&fenced).expect("read"),
        Err(NotServed {
            slot: slot(5),
            state: SlotState::Fenced { epoch: 9 }
        })
    );
    // The data is still there (until the move commits), just not served.
    assert!(a.get(&fenced).is_some());
    assert!(
        a.kv.get_served(&other)
            .expect("read")
            .expect("served")
            .is_some()
    );
    let (items, _) = a.kv.scan_served(b"", None, 10).expect("scan");
    let keys: Vec<&Bytes> = items.iter().map(|(k, _, _)| k).collect();
    assert_eq!(keys, [&other]);
    // Unfenced (the move was aborted): served again.
    a.run(step(slot(5), 9, MoveStep::Unfence));
    assert!(
        a.kv.get_served(&fenced)
            .expect("read")
            .expect("served")
            .is_some()
    );
}

#[test]
fn a_staged_slot_is_not_served_and_a_scan_limit_counts_served_keys_only() {
    let vfs = MemVfs::new();
    let mut b = Replica::new(&vfs);
    // B gives slot 7 up first (as a group that does not own it), then stages it.
    b.release(slot(7), 3);
    let staged = key_in(slot(7), "s");
    b.run(step(slot(7), 4, page(0, 0, &[(&staged, 12, "x")], &[])));
    assert_eq!(b.kv.slot_state(slot(7)), SlotState::Staging { epoch: 4 });
    assert!(b.get(&staged).is_some(), "staged data is stored");
    assert!(matches!(
        b.kv.get_served(&staged).expect("read"),
        Err(NotServed {
            state: SlotState::Staging { epoch: 4 },
            ..
        })
    ));
    let served: Vec<Bytes> = (0..3).map(|i| key_in(slot(8), &format!("k{i}"))).collect();
    for k in &served {
        b.run(put(k, "v"));
    }
    let (items, _) = b.kv.scan_served(b"", None, 3).expect("scan");
    assert_eq!(items.len(), 3, "the staged key does not take a place");
    assert!(items.iter().all(|(k, _, _)| served.contains(k)));
}

#[test]
fn a_store_created_to_serve_no_slot_refuses_reads_and_writes_and_stays_so() {
    use std::path::Path;
    use std::sync::Arc;

    use crate::kv::{ApplyOutcome, KvOptions, KvStore};

    let vfs = MemVfs::new();
    let path = Path::new("/node/state/2.redb");
    let opts = KvOptions {
        new_store_serves_all_slots: false,
        ..KvOptions::default()
    };
    let kv = KvStore::open_with(Arc::new(vfs.clone()), path, opts.clone()).expect("open");
    assert_eq!(kv.slot_state(slot(5)), SlotState::Absent);
    let k = key_in(slot(5), "a");
    assert!(matches!(
        kv.get_served(&k).expect("read"),
        Err(NotServed {
            state: SlotState::Absent,
            ..
        })
    ));
    let entry = keel_raft::Entry {
        term: 1,
        index: 1,
        kind: keel_raft::EntryKind::Normal,
        data: crate::command::Envelope::from(put(&k, "v")).encode(),
    };
    let outcome = kv.apply(&[entry]).expect("apply").pop().expect("one");
    assert!(
        matches!(outcome, ApplyOutcome::SlotUnavailable(_)),
        "{outcome:?}"
    );
    drop(kv);
    // Reopened with the default options: an existing store keeps its table.
    let kv = KvStore::open(Arc::new(vfs), path).expect("reopen");
    assert_eq!(kv.slot_state(slot(5)), SlotState::Absent);
}
