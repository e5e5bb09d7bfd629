//! Transaction semantics: each comparison, both branches, reads inside a
//! transaction, the read limit, and atomicity; then random transactions against a
//! model.

use std::collections::BTreeMap;

use bytes::Bytes;
use keel_raft::SplitMix64;

use super::tests::{contents, get, normal, open_mem};
use super::*;
use crate::command::{Command, Compare, CompareOp, CompareTarget, Txn, TxnOp};
use crate::vfs::MemVfs;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn version(key: &str, op: CompareOp, n: u64) -> Compare {
    Compare {
        key: b(key),
        target: CompareTarget::Version(op, n),
    }
}

fn value_is(key: &str, value: &str) -> Compare {
    Compare {
        key: b(key),
        target: CompareTarget::Value(b(value)),
    }
}

fn put(key: &str, value: &str) -> TxnOp {
    TxnOp::Put {
        key: b(key),
        value: b(value),
    }
}

fn del(key: &str) -> TxnOp {
    TxnOp::Delete { key: b(key) }
}

fn read(key: &str) -> TxnOp {
    TxnOp::Get { key: b(key) }
}

fn txn(compares: Vec<Compare>, success: Vec<TxnOp>, failure: Vec<TxnOp>) -> Command {
    Command::Txn(Txn {
        compares,
        success,
        failure,
        read_limit: u64::MAX,
    })
}

/// A store where `a` = "1" at version 1 and `b` = "2" at version 2.
fn seeded() -> KvStore {
    let kv = open_mem(&MemVfs::new());
    kv.apply(&[
        normal(1, &txn(vec![], vec![put("a", "1")], vec![])),
        normal(2, &txn(vec![], vec![put("b", "2")], vec![])),
    ])
    .expect("apply");
    kv
}

/// Applies `command` as entry 3 of a [`seeded`] store.
fn run(kv: &KvStore, command: &Command) -> ApplyOutcome {
    let mut out = kv.apply(&[normal(3, command)]).expect("apply");
    out.pop().expect("one outcome")
}

fn succeeded(outcome: &ApplyOutcome) -> bool {
    match outcome {
        ApplyOutcome::Txn(t) => t.succeeded,
        other => panic!("not a transaction outcome: {other:?}"),
    }
}

#[test]
fn every_comparison_kind_holds_exactly_when_it_should() {
    use CompareOp::*;
    // `a` has version 1, `b` version 2, `zz` is absent (version 0).
    let cases = [
        (version("a", Equal, 1), true),
        (version("a", Equal, 2), false),
        (version("a", NotEqual, 2), true),
        (version("a", NotEqual, 1), false),
        (version("b", Less, 3), true),
        (version("b", Less, 2), false),
        (version("b", Greater, 1), true),
        (version("b", Greater, 2), false),
        (version("zz", Equal, 0), true),
        (version("a", Equal, 0), false),
        (version("zz", Greater, 0), false),
        (version("a", Greater, 0), true),
        (version("zz", Less, 1), true),
        (value_is("a", "1"), true),
        (value_is("a", "2"), false),
        (value_is("a", ""), false),
        // An absent key equals no value, not even the empty one.
        (value_is("zz", ""), false),
    ];
    for (compare, want) in cases {
        let kv = seeded();
        let shown = compare.to_string();
        let outcome = run(&kv, &txn(vec![compare], vec![], vec![]));
        assert_eq!(succeeded(&outcome), want, "{shown}");
    }
}

#[test]
fn all_comparisons_must_hold_and_none_is_success() {
    use CompareOp::*;
    let kv = seeded();
    let both = vec![version("a", Equal, 1), value_is("b", "2")];
    assert!(succeeded(&run(&kv, &txn(both, vec![], vec![]))));
    let kv = seeded();
    let one_fails = vec![version("a", Equal, 1), value_is("b", "x")];
    assert!(!succeeded(&run(&kv, &txn(one_fails, vec![], vec![]))));
    let kv = seeded();
    assert!(succeeded(&run(&kv, &txn(vec![], vec![], vec![]))));
}

#[test]
fn the_branch_that_ran_writes_at_the_entry_index_and_reports_each_op() {
    let kv = seeded();
    let t = txn(
        vec![version("a", CompareOp::Equal, 1)],
        vec![
            read("a"),
            put("a", "new"),
            read("a"),
            del("b"),
            read("b"),
            del("missing"),
            put("c", "3"),
        ],
        vec![put("never", "x")],
    );
    let outcome = run(&kv, &t);
    assert_eq!(
        outcome,
        ApplyOutcome::Txn(TxnOutcome {
            revision: 3,
            succeeded: true,
            results: vec![
                TxnOpResult::Get(Some((b("1"), 1))),
                TxnOpResult::Put,
                // A read sees the branch's earlier write, at the entry's index.
                TxnOpResult::Get(Some((b("new"), 3))),
                TxnOpResult::Delete { existed: true },
                TxnOpResult::Get(None),
                TxnOpResult::Delete { existed: false },
                TxnOpResult::Put,
            ],
        })
    );
    assert_eq!(get(&kv, "a"), Some(("new".into(), 3)));
    assert_eq!(get(&kv, "b"), None);
    assert_eq!(get(&kv, "c"), Some(("3".into(), 3)));
    assert_eq!(get(&kv, "never"), None);
    assert_eq!(kv.applied_index(), 3);
}

#[test]
fn a_failed_comparison_runs_the_failure_branch_only() {
    let kv = seeded();
    let t = txn(
        vec![version("a", CompareOp::Equal, 7)],
        vec![put("a", "x"), del("b")],
        vec![read("a"), put("b", "else")],
    );
    let outcome = run(&kv, &t);
    assert_eq!(
        outcome,
        ApplyOutcome::Txn(TxnOutcome {
            revision: 3,
            succeeded: false,
            results: vec![TxnOpResult::Get(Some((b("1"), 1))), TxnOpResult::Put],
        })
    );
    assert_eq!(get(&kv, "a"), Some(("1".into(), 1)));
    assert_eq!(get(&kv, "b"), Some(("else".into(), 3)));
}

#[test]
fn a_failed_transaction_without_a_failure_branch_changes_nothing() {
    let kv = seeded();
    let before = contents(&kv);
    let t = txn(
        vec![value_is("a", "nope")],
        vec![put("a", "x"), del("b"), put("c", "y")],
        vec![],
    );
    let outcome = run(&kv, &t);
    assert!(!succeeded(&outcome));
    assert_eq!(contents(&kv), before);
    // The entry was still applied: the index moved on.
    assert_eq!(kv.applied_index(), 3);
}

#[test]
fn over_the_read_limit_nothing_changes_even_writes_before_the_read() {
    let kv = seeded();
    let before = contents(&kv);
    let mut t = Txn {
        compares: vec![],
        // "a" + "1" and "b" + "2": 4 bytes of reads.
        success: vec![put("c", "x"), read("a"), del("b"), read("a")],
        failure: vec![],
        read_limit: 3,
    };
    let outcome = run(&kv, &Command::Txn(t.clone()));
    assert_eq!(outcome, ApplyOutcome::TxnReadLimit { limit: 3 });
    assert_eq!(contents(&kv), before);
    assert_eq!(kv.applied_index(), 3);
    // Reads of absent keys cost nothing; exactly at the limit is fine.
    let kv = seeded();
    t.success = vec![read("a"), read("zz"), read("a")];
    t.read_limit = 4;
    assert!(succeeded(&run(&kv, &Command::Txn(t))));
}

/// What a correct store does with `t` at `index`: the new state and the outcome.
fn model(state: &mut BTreeMap<Bytes, (Bytes, u64)>, index: u64, t: &Txn) -> TxnOutcome {
    let ok = t.compares.iter().all(|c| match &c.target {
        CompareTarget::Version(op, n) => op.holds(state.get(&c.key).map_or(0, |e| e.1), *n),
        CompareTarget::Value(v) => state.get(&c.key).is_some_and(|e| e.0 == *v),
    });
    let ops = if ok { &t.success } else { &t.failure };
    let results = ops
        .iter()
        .map(|op| match op {
            TxnOp::Put { key, value } => {
                state.insert(key.clone(), (value.clone(), index));
                TxnOpResult::Put
            }
            TxnOp::Delete { key } => TxnOpResult::Delete {
                existed: state.remove(key).is_some(),
            },
            TxnOp::Get { key } => TxnOpResult::Get(state.get(key).cloned()),
        })
        .collect();
    TxnOutcome {
        revision: index,
        succeeded: ok,
        results,
    }
}

fn random_txn(rng: &mut SplitMix64, index: u64) -> Txn {
    let key = |rng: &mut SplitMix64| b(&format!("k{}", rng.below(6)));
    let compares = (0..rng.below(3))
        .map(|_| {
            let k = key(rng);
            let target = if rng.below(3) == 0 {
                CompareTarget::Value(b(&format!("v{}", rng.below(4))))
            } else {
                let op = [
                    CompareOp::Equal,
                    CompareOp::NotEqual,
                    CompareOp::Less,
                    CompareOp::Greater,
                ][rng.below(4) as usize];
                CompareTarget::Version(op, rng.below(index))
            };
            Compare { key: k, target }
        })
        .collect();
    let branch = |rng: &mut SplitMix64| {
        let mut written = std::collections::HashSet::new();
        (0..rng.below(6))
            .filter_map(|_| {
                let k = key(rng);
                match rng.below(3) {
                    0 => Some(TxnOp::Get { key: k }),
                    _ if !written.insert(k.clone()) => None,
                    1 => Some(TxnOp::Put {
                        key: k,
                        value: b(&format!("v{}", rng.below(4))),
                    }),
                    _ => Some(TxnOp::Delete { key: k }),
                }
            })
            .collect()
    };
    Txn {
        compares,
        success: branch(rng),
        failure: branch(rng),
        read_limit: u64::MAX,
    }
}

#[test]
fn random_transactions_match_the_model() {
    for seed in 0..20u64 {
        let mut rng = SplitMix64::new(seed);
        let kv = open_mem(&MemVfs::new());
        let mut state = BTreeMap::new();
        for index in 1..=60 {
            let t = random_txn(&mut rng, index);
            let want = model(&mut state, index, &t);
            let outcome = kv
                .apply(&[normal(index, &Command::Txn(t.clone()))])
                .expect("apply");
            assert_eq!(outcome, vec![ApplyOutcome::Txn(want)], "seed {seed}: {t}");
        }
        assert_eq!(contents(&kv), state, "seed {seed}");
    }
}
