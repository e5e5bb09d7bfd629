//! The checker's own tests: known-bad histories it must reject, known-good ones it
//! must accept, and random small histories on which it must agree with the
//! brute-force oracle.

use proptest::prelude::*;

use super::model::KeyHistory;
use super::search::{SearchOutcome, search};
use super::*;
use crate::history::{Call, OpResult, Outcome};

/// A tiny language for fixtures: `(client, call, invoke, complete, outcome, result)`.
struct H(Vec<Op>);

impl H {
    fn new() -> H {
        H(Vec::new())
    }
    fn push(self, client: u64, call: Call, span: (u64, u64), outcome: Outcome) -> H {
        self.push_with(client, call, span, outcome, OpResult::default())
    }
    fn push_with(
        mut self,
        client: u64,
        call: Call,
        (invoke_ns, complete_ns): (u64, u64),
        outcome: Outcome,
        result: OpResult,
    ) -> H {
        let id = self.0.len() as u64;
        self.0.push(Op {
            id,
            client,
            call,
            key: "k".into(),
            invoke_ns,
            complete_ns,
            outcome,
            result,
            final_read: false,
        });
        self
    }
    fn put(self, c: u64, v: &str, span: (u64, u64), o: Outcome) -> H {
        self.push(c, Call::Put { value: v.into() }, span, o)
    }
    fn get(self, c: u64, v: Option<&str>, span: (u64, u64)) -> H {
        let result = OpResult {
            value: v.map(Into::into),
            ..OpResult::default()
        };
        self.push_with(c, Call::Get, span, Outcome::Ok, result)
    }
    fn cas(self, c: u64, from: Option<&str>, to: &str, span: (u64, u64), o: Outcome) -> H {
        let call = Call::Cas {
            expected: from.map(Into::into),
            new: to.into(),
        };
        let result = OpResult {
            conflict: o == Outcome::Fail,
            ..OpResult::default()
        };
        self.push_with(c, call, span, o, result)
    }
    fn finally(mut self) -> H {
        if let Some(last) = self.0.last_mut() {
            last.final_read = true;
        }
        self
    }
    fn check(&self) -> CheckReport {
        check(&self.0, &CheckOptions::default())
    }
}

use Outcome::{Fail, Ok as Acked, Unknown};

fn kinds(report: &CheckReport) -> Vec<AnomalyKind> {
    let mut k: Vec<AnomalyKind> = report.anomalies.iter().map(|a| a.kind).collect();
    k.dedup();
    k
}

#[test]
fn accepts_sequential_and_concurrent_histories() {
    let good = [
        H::new()
            .get(1, None, (0, 1))
            .put(1, "a", (2, 3), Acked)
            .get(2, Some("a"), (4, 5))
            .cas(2, Some("a"), "b", (6, 7), Acked)
            .get(1, Some("b"), (8, 9)),
        // A read concurrent with a write may see either value.
        H::new()
            .put(1, "a", (0, 10), Acked)
            .get(2, None, (1, 2))
            .get(3, Some("a"), (3, 4))
            .put(1, "b", (20, 30), Acked)
            .get(2, Some("b"), (21, 22)),
        // An unknown write may take effect long after it was given up on, or never.
        H::new()
            .put(1, "a", (0, 5), Unknown)
            .get(2, None, (10, 20))
            .get(2, Some("a"), (30, 40))
            .put(3, "b", (0, 5), Unknown),
        // A conflicting CAS saw another value, which an unknown write explains.
        H::new()
            .put(1, "a", (0, 1), Acked)
            .put(2, "x", (2, 3), Unknown)
            .cas(3, Some("a"), "b", (10, 11), Fail)
            .get(3, Some("x"), (12, 13)),
        // A failed write is left out.
        H::new().put(1, "a", (0, 1), Fail).get(2, None, (2, 3)),
    ];
    for (i, h) in good.iter().enumerate() {
        let report = h.check();
        assert!(report.ok(), "fixture {i}: {:?}", report.anomalies);
        assert_eq!(report.verdict(), "valid");
    }
}

#[test]
fn rejects_a_stale_read() {
    let report = H::new()
        .put(1, "a", (0, 10), Acked)
        .put(1, "b", (20, 30), Acked)
        .get(2, Some("a"), (40, 50))
        .check();
    assert_eq!(kinds(&report), [AnomalyKind::NotLinearizable]);
    assert_eq!(report.anomalies[0].ops, [2]);
    assert_eq!(report.verdict(), "INVALID");
}

#[test]
fn rejects_a_lost_write() {
    let report = H::new()
        .put(1, "a", (0, 10), Acked)
        .put(2, "b", (20, 30), Acked)
        .get(0, Some("a"), (100, 110))
        .finally()
        .check();
    assert_eq!(
        kinds(&report),
        [AnomalyKind::NotLinearizable, AnomalyKind::LostWrite]
    );
    let lost = &report.anomalies[1];
    assert_eq!(lost.ops, [1, 2], "{}", lost.message);

    let vanished = H::new()
        .put(1, "a", (0, 10), Acked)
        .get(0, None, (100, 110))
        .finally()
        .check();
    assert!(kinds(&vanished).contains(&AnomalyKind::LostWrite));
}

#[test]
fn rejects_phantom_and_aborted_reads() {
    let phantom = H::new()
        .put(1, "a", (0, 10), Acked)
        .get(2, Some("zzz"), (20, 30))
        .check();
    assert_eq!(
        kinds(&phantom),
        [AnomalyKind::NotLinearizable, AnomalyKind::Phantom]
    );
    let aborted = H::new()
        .put(1, "a", (0, 10), Fail)
        .get(2, Some("a"), (20, 30))
        .check();
    assert_eq!(
        kinds(&aborted),
        [AnomalyKind::NotLinearizable, AnomalyKind::AbortedRead]
    );
}

#[test]
fn rejects_cas_anomalies() {
    // Two compare-and-sets from the same value both succeed, one after the other.
    let double = H::new()
        .put(1, "a", (0, 1), Acked)
        .cas(1, Some("a"), "b", (2, 3), Acked)
        .cas(2, Some("a"), "c", (4, 5), Acked)
        .check();
    assert_eq!(kinds(&double), [AnomalyKind::NotLinearizable]);
    // A compare-and-set reports a conflict although the key held the expected value.
    let false_conflict = H::new()
        .put(1, "a", (0, 1), Acked)
        .cas(2, Some("a"), "b", (2, 3), Fail)
        .get(1, Some("a"), (4, 5))
        .check();
    assert_eq!(kinds(&false_conflict), [AnomalyKind::NotLinearizable]);
    // Create-only succeeds on a key that exists.
    let create = H::new()
        .put(1, "a", (0, 1), Acked)
        .cas(2, None, "b", (2, 3), Acked)
        .check();
    assert_eq!(kinds(&create), [AnomalyKind::NotLinearizable]);
}

#[test]
fn rejects_disagreeing_versions() {
    let revision = |n| OpResult {
        revision: Some(n),
        ..OpResult::default()
    };
    let read = |v: &str, n| OpResult {
        value: Some(v.into()),
        version: Some(n),
        ..OpResult::default()
    };
    let put_a = Call::Put { value: "a".into() };
    let report = H::new()
        .push_with(1, put_a, (0, 1), Acked, revision(7))
        .push_with(2, Call::Get, (2, 3), Acked, read("a", 8))
        .check();
    assert_eq!(kinds(&report), [AnomalyKind::VersionMismatch]);
    assert_eq!(report.anomalies[0].ops, [0, 1]);
}

#[test]
fn gives_up_within_the_budget() {
    // Many concurrent writes and no read to prune them: more orders than the budget.
    let mut h = H::new();
    for i in 0..40u64 {
        h = h.put(i, &format!("v{i}"), (0, 100), Acked);
    }
    h = h.get(99, Some("v3"), (200, 201));
    let report = check(
        &h.0,
        &CheckOptions {
            budget_per_key: 1_000,
            threads: 1,
        },
    );
    assert!(report.ok());
    assert_eq!(report.verdict(), "unknown (budget exceeded)");
    assert_eq!(report.undecided(), ["k"]);
}

#[test]
fn keys_are_checked_independently() {
    let mut h = H::new()
        .put(1, "a", (0, 10), Acked)
        .put(1, "b", (20, 30), Acked)
        .get(2, Some("a"), (40, 50));
    let mut other = H::new()
        .put(3, "x", (0, 10), Acked)
        .get(4, Some("x"), (11, 12));
    for op in &mut other.0 {
        op.key = "other".into();
        op.id += 100;
    }
    h.0.extend(other.0);
    let report = h.check();
    assert_eq!(report.keys["other"], KeyVerdict::Linearizable);
    assert_eq!(report.keys["k"], KeyVerdict::NotLinearizable);
}

fn arb_op() -> impl Strategy<Value = (u64, u64, u8, u8, u8, u8)> {
    // invoke, duration, kind, value, expected, outcome
    (0u64..30, 0u64..15, 0u8..3, 0u8..4, 0u8..4, 0u8..3)
}

fn value(v: u8) -> Option<String> {
    (v > 0).then(|| format!("v{v}"))
}

fn build(spec: &[(u64, u64, u8, u8, u8, u8)]) -> Vec<Op> {
    spec.iter()
        .enumerate()
        .map(|(i, &(invoke, duration, kind, v, e, o))| {
            let outcome = [Acked, Fail, Unknown][o as usize];
            let written = value(v.max(1)).unwrap_or_default();
            let (call, result) = match kind {
                0 => (
                    Call::Get,
                    OpResult {
                        value: value(v),
                        ..OpResult::default()
                    },
                ),
                1 => (Call::Put { value: written }, OpResult::default()),
                _ => (
                    Call::Cas {
                        expected: value(e),
                        new: written,
                    },
                    OpResult {
                        conflict: outcome == Fail,
                        ..OpResult::default()
                    },
                ),
            };
            Op {
                id: i as u64,
                client: i as u64,
                call,
                key: "k".into(),
                invoke_ns: invoke,
                complete_ns: invoke + duration,
                outcome,
                result,
                final_read: false,
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn search_agrees_with_brute_force(spec in prop::collection::vec(arb_op(), 1..=6)) {
        let ops = build(&spec);
        let members: Vec<usize> = (0..ops.len()).collect();
        let history = KeyHistory::build(&ops, &members);
        let expected = oracle::linearizable(&history.ops);
        let found = search(&history.ops, u64::MAX);
        prop_assert_eq!(
            matches!(found, SearchOutcome::Linearizable),
            expected,
            "search said {:?} for {:?}",
            found,
            history.ops
        );
    }
}
