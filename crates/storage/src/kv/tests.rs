//! State-machine tests: command semantics, replay, scans, and crashes on MemVfs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use keel_raft::{Entry, EntryKind};

use super::*;
use crate::command::{Command, Expect};
use crate::vfs::{MemVfs, StdVfs};
use keel_raft::SplitMix64;

const PATH: &str = "/node/state/kv.redb";

pub(super) fn open_mem(vfs: &MemVfs) -> KvStore {
    KvStore::open(Arc::new(vfs.clone()), Path::new(PATH)).expect("open")
}

pub(super) fn normal(index: u64, command: &Command) -> Entry {
    Entry {
        term: 1,
        index,
        kind: EntryKind::Normal,
        data: command.encode(),
    }
}

fn noop(index: u64) -> Entry {
    Entry {
        term: 1,
        index,
        kind: EntryKind::NoOp,
        data: Bytes::new(),
    }
}

fn put(key: &str, value: &str, expect: Expect) -> Command {
    Command::Put {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        expect,
    }
}

fn del(key: &str, expect: Expect) -> Command {
    Command::Delete {
        key: Bytes::copy_from_slice(key.as_bytes()),
        expect,
    }
}

/// `key`'s value (as text) and version.
pub(crate) fn get(kv: &KvStore, key: &str) -> Option<(String, u64)> {
    kv.get(key.as_bytes())
        .expect("get")
        .map(|(v, ver)| (String::from_utf8(v.to_vec()).expect("utf8"), ver))
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<KvStore>();
}

#[test]
fn puts_deletes_and_preconditions() {
    let kv = open_mem(&MemVfs::new());
    let entries = [
        noop(1),
        normal(2, &put("a", "1", Expect::Any)),
        normal(3, &put("a", "2", Expect::Absent)),
        normal(4, &put("a", "3", Expect::Version(2))),
        normal(5, &put("a", "4", Expect::Version(9))),
        normal(6, &put("b", "x", Expect::Absent)),
        normal(7, &del("b", Expect::Version(1))),
        normal(8, &del("b", Expect::Version(6))),
        normal(9, &del("b", Expect::Any)),
        normal(10, &del("c", Expect::Absent)),
        normal(11, &put("c", "new", Expect::Version(0))),
    ];
    let outcomes = kv.apply(&entries).expect("apply");
    use ApplyOutcome::*;
    assert_eq!(
        outcomes,
        vec![
            NoOp,
            Put { revision: 2 },
            Conflict {
                current_version: Some(2)
            },
            Put { revision: 4 },
            Conflict {
                current_version: Some(4)
            },
            Put { revision: 6 },
            Conflict {
                current_version: Some(6)
            },
            Deleted {
                revision: 8,
                existed: true
            },
            Deleted {
                revision: 9,
                existed: false
            },
            Deleted {
                revision: 10,
                existed: false
            },
            Conflict {
                current_version: None
            },
        ]
    );
    assert_eq!(get(&kv, "a"), Some(("3".into(), 4)));
    assert_eq!(get(&kv, "b"), None);
    assert_eq!(get(&kv, "c"), None);
    assert_eq!(kv.applied_index(), 11);
}

#[test]
fn replay_is_idempotent_and_gaps_are_refused() {
    let kv = open_mem(&MemVfs::new());
    let log: Vec<Entry> = (1..=8)
        .map(|i| normal(i, &put("k", &i.to_string(), Expect::Any)))
        .collect();
    kv.apply(&log[..5]).expect("first");
    let outcomes = kv.apply(&log).expect("replay");
    assert!(
        outcomes[..5]
            .iter()
            .all(|o| *o == ApplyOutcome::AlreadyApplied)
    );
    assert_eq!(outcomes[7], ApplyOutcome::Put { revision: 8 });
    assert_eq!(get(&kv, "k"), Some(("8".into(), 8)));
    // Everything already applied: nothing changes.
    assert_eq!(
        kv.apply(&log[..3]).expect("old"),
        vec![ApplyOutcome::AlreadyApplied; 3]
    );
    assert_eq!(kv.applied_index(), 8);
    let err = kv.apply(&[noop(10)]).expect_err("gap");
    assert!(
        matches!(
            err,
            KvError::Gap {
                applied: 8,
                index: 10
            }
        ),
        "{err}"
    );
}

#[test]
fn an_undecodable_committed_entry_is_fatal_and_applies_nothing_of_its_batch() {
    let kv = open_mem(&MemVfs::new());
    let bad = Entry {
        data: Bytes::from_static(&[9, 9, 9]),
        ..noop(2)
    };
    let bad = Entry {
        kind: EntryKind::Normal,
        ..bad
    };
    let err = kv
        .apply(&[normal(1, &put("a", "1", Expect::Any)), bad])
        .expect_err("bad command");
    assert!(matches!(err, KvError::BadCommand { index: 2, .. }), "{err}");
    assert_eq!(kv.applied_index(), 0);
    assert_eq!(get(&kv, "a"), None);
}

#[test]
fn scan_pages_through_a_prefix_in_key_order() {
    let kv = open_mem(&MemVfs::new());
    let keys = ["a", "user/3", "user/1", "user/10", "user/2", "userx", "v"];
    let entries: Vec<Entry> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| normal(i as u64 + 1, &put(k, &format!("v{i}"), Expect::Any)))
        .collect();
    kv.apply(&entries).expect("apply");
    let names = |rows: &[KeyValue]| -> Vec<String> {
        rows.iter()
            .map(|(k, _, _)| String::from_utf8(k.to_vec()).expect("utf8"))
            .collect()
    };
    let (rows, more) = kv.scan(b"user/", None, 10).expect("scan");
    assert_eq!(names(&rows), ["user/1", "user/10", "user/2", "user/3"]);
    assert!(!more);
    assert_eq!(rows[0].1, Bytes::from_static(b"v2"));
    assert_eq!(rows[0].2, 3);

    let (page1, more1) = kv.scan(b"user/", None, 2).expect("page 1");
    assert_eq!(names(&page1), ["user/1", "user/10"]);
    assert!(more1);
    let after = page1.last().map(|r| r.0.clone()).expect("row");
    let (page2, more2) = kv.scan(b"user/", Some(&after), 2).expect("page 2");
    assert_eq!(names(&page2), ["user/2", "user/3"]);
    assert!(!more2, "exactly at the end: no more");

    let (all, _) = kv.scan(b"", None, 100).expect("all");
    assert_eq!(all.len(), keys.len());
    // A start_after before the prefix does not widen the scan.
    let (rows, _) = kv.scan(b"user/", Some(b"a"), 100).expect("scan");
    assert_eq!(rows.len(), 4);
    let (none, more) = kv.scan(b"user/", None, 0).expect("limit 0");
    assert!(none.is_empty() && more);
    assert!(kv.scan(b"zzz", None, 5).expect("empty").0.is_empty());

    // Keys only: the same pages, and a byte budget that ends a page early.
    let (keys_only, more) = kv.scan_keys(b"user/", None, 10, 1 << 20).expect("keys");
    assert_eq!(keys_only, ["user/1", "user/10", "user/2", "user/3"]);
    assert!(!more);
    let (first, more) = kv.scan_keys(b"user/", None, 10, 7).expect("budget");
    assert_eq!(
        first,
        ["user/1", "user/10"],
        "stops once 7 bytes are reached"
    );
    assert!(more);
    let (rest, more) = kv
        .scan_keys(b"user/", Some(b"user/10"), 10, 1)
        .expect("budget of one byte");
    assert_eq!(rest, ["user/2"], "at least one key per page");
    assert!(more);

    // A read view answers point reads like the store.
    let view = kv.read_view().expect("view");
    assert_eq!(
        view.get(b"user/1").expect("get"),
        kv.get(b"user/1").expect("get")
    );
    assert_eq!(view.get(b"nope").expect("get"), None);
}

/// The state a correct store must have after applying `log[..n]`.
fn model_after(log: &[Command], n: usize) -> BTreeMap<Bytes, (Bytes, u64)> {
    let mut state: BTreeMap<Bytes, (Bytes, u64)> = BTreeMap::new();
    for (i, c) in log.iter().take(n).enumerate() {
        let index = i as u64 + 1;
        let key = c.key().expect("the log holds single-key commands");
        let current = state.get(key).map(|(_, v)| *v);
        let ok = match c.expect().expect("the log holds single-key commands") {
            Expect::Any => true,
            Expect::Absent => current.is_none(),
            Expect::Version(v) => current == Some(v),
        };
        if !ok {
            continue;
        }
        match c {
            Command::Put { key, value, .. } => {
                state.insert(key.clone(), (value.clone(), index));
            }
            Command::Delete { key, .. } => {
                state.remove(key);
            }
            Command::Txn(_) | Command::Add { .. } | Command::Slot(_) => {
                unreachable!("the log holds puts and deletes only")
            }
        }
    }
    state
}

fn random_command(rng: &mut SplitMix64, log_len: u64) -> Command {
    let key = Bytes::from(format!("k{}", rng.below(12)));
    let expect = match rng.below(4) {
        0 => Expect::Absent,
        1 => Expect::Version(1 + rng.below(log_len.max(1))),
        _ => Expect::Any,
    };
    if rng.below(4) == 0 {
        Command::Delete { key, expect }
    } else {
        let value = Bytes::from(vec![rng.below(256) as u8; rng.below(2000) as usize]);
        Command::Put { key, value, expect }
    }
}

pub(super) fn contents(kv: &KvStore) -> BTreeMap<Bytes, (Bytes, u64)> {
    let (rows, more) = kv.scan(b"", None, 10_000).expect("scan");
    assert!(!more);
    rows.into_iter().map(|(k, v, ver)| (k, (v, ver))).collect()
}

#[test]
fn crashes_roll_back_to_at_least_the_last_flush_and_replay_catches_up() {
    // Crashes that lost applied-but-unflushed state, to prove they are exercised.
    let mut rolled_back = 0;
    for seed in 0..40u64 {
        let mut rng = SplitMix64::new(seed);
        let vfs = MemVfs::new();
        let mut log: Vec<Command> = Vec::new();
        let mut flushed = 0u64;
        let mut applied_before_crash = 0u64;
        for life in 0..3 {
            let what = format!("seed {seed} life {life}");
            let kv = KvStore::open(Arc::new(vfs.clone()), Path::new(PATH))
                .unwrap_or_else(|e| panic!("{what}: reopen after crash: {e}"));
            let applied = kv.applied_index();
            rolled_back += usize::from(applied < applied_before_crash);
            assert!(
                applied <= applied_before_crash,
                "{what}: applied index moved forward"
            );
            assert!(
                applied >= flushed,
                "{what}: lost flushed state ({applied} < {flushed})"
            );
            assert!(applied as usize <= log.len(), "{what}");
            assert_eq!(contents(&kv), model_after(&log, applied as usize), "{what}");
            // Replay what the WAL would still hold.
            let replay: Vec<Entry> = log
                .iter()
                .enumerate()
                .map(|(i, c)| normal(i as u64 + 1, c))
                .collect();
            kv.apply(&replay).expect("replay");
            assert_eq!(
                contents(&kv),
                model_after(&log, log.len()),
                "{what}: replayed"
            );

            if rng.below(2) == 0 {
                vfs.halt_after(Some(rng.below(400)));
            }
            for _ in 0..1 + rng.below(12) {
                let batch: Vec<Entry> = (0..1 + rng.below(5))
                    .map(|_| {
                        let c = random_command(&mut rng, log.len() as u64);
                        log.push(c.clone());
                        normal(log.len() as u64, &c)
                    })
                    .collect();
                if kv.apply(&batch).is_err() {
                    // The machine halted; those entries stay in the "WAL" (`log`).
                    break;
                }
                if rng.below(3) == 0 {
                    if kv.flush().is_err() {
                        break;
                    }
                    flushed = kv.applied_index();
                }
            }
            applied_before_crash = kv.applied_index();
            // Power fails first; the process's clean shutdown (which would flush)
            // then finds its handles dead.
            vfs.crash(rng.next_u64());
            drop(kv);
        }
    }
    assert!(
        rolled_back > 10,
        "only {rolled_back} crashes lost unflushed state"
    );
}

#[test]
fn real_filesystem_persists_after_flush_and_locks_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("state").join("kv.redb");
    let vfs: Arc<dyn crate::vfs::Vfs> = Arc::new(StdVfs::new());
    let kv = KvStore::open(Arc::clone(&vfs), &path).expect("open");
    kv.apply(&[normal(1, &put("name1", "Sam", Expect::Any)), noop(2)])
        .expect("apply");
    kv.flush().expect("flush");
    assert!(
        KvStore::open(Arc::clone(&vfs), &path).is_err(),
        "a second open must fail while the first is live"
    );
    drop(kv);
    let kv = KvStore::open(vfs, &path).expect("reopen");
    assert_eq!(kv.applied_index(), 2);
    assert_eq!(get(&kv, "name1"), Some(("Sam".into(), 1)));
}

#[test]
fn readers_run_concurrently_with_the_applier_and_see_whole_batches() {
    let kv = open_mem(&MemVfs::new());
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for batch in 0..50u64 {
                // Each batch writes the same value under two keys.
                let v = batch.to_string();
                kv.apply(&[
                    normal(2 * batch + 1, &put("x", &v, Expect::Any)),
                    normal(2 * batch + 2, &put("y", &v, Expect::Any)),
                ])
                .expect("apply");
            }
        });
        for _ in 0..2 {
            s.spawn(|| {
                while kv.applied_index() < 100 {
                    let (rows, _) = kv.scan(b"", None, 10).expect("scan");
                    if let [x, y] = rows.as_slice() {
                        assert_eq!(x.1, y.1, "a read saw half a batch");
                    }
                }
            });
        }
        writer.join().expect("writer");
    });
    assert_eq!(get(&kv, "y"), Some(("49".into(), 100)));
}

#[test]
fn a_crash_at_any_point_of_the_first_open_leaves_a_usable_store() {
    let mut completed = false;
    for halt in 0..60 {
        for seed in 0..4 {
            let vfs = MemVfs::new();
            vfs.halt_after(Some(halt));
            let first = KvStore::open(Arc::new(vfs.clone()), Path::new(PATH));
            completed |= first.is_ok();
            vfs.crash(seed);
            drop(first);
            let kv = KvStore::open(Arc::new(vfs.clone()), Path::new(PATH))
                .unwrap_or_else(|e| panic!("halt {halt} seed {seed}: {e}"));
            assert_eq!(kv.applied_index(), 0);
            kv.apply(&[normal(1, &put("a", "b", Expect::Any))])
                .expect("usable");
        }
    }
    assert!(completed, "the halt range must cover a whole open");
}
