//! Judges a history: per-key linearizability of a register with get, put and
//! compare-and-set (keys checked in parallel), and cheap checks that name the
//! common anomalies directly: reads of values nobody wrote, acknowledged writes
//! missing from the final reads, and versions that disagree.

mod cheap;
pub mod model;
pub mod search;

#[cfg(test)]
mod oracle;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::history::Op;
use model::KeyHistory;
use search::SearchOutcome;

/// How hard to look.
#[derive(Clone, Copy, Debug)]
pub struct CheckOptions {
    /// Search nodes explored per key before giving up with "unknown".
    pub budget_per_key: u64,
    /// Keys checked at once.
    pub threads: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            budget_per_key: 1_000_000,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// The kind of a violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnomalyKind {
    /// No order of the key's operations explains what the clients saw.
    NotLinearizable,
    /// An acknowledged write is missing from the final state.
    LostWrite,
    /// A read returned a value no operation ever tried to write.
    Phantom,
    /// A read returned a value whose write definitely failed.
    AbortedRead,
    /// One value was reported with two versions, or one version with two values.
    VersionMismatch,
}

impl AnomalyKind {
    /// Its name in reports and file names.
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::NotLinearizable => "not-linearizable",
            AnomalyKind::LostWrite => "lost-write",
            AnomalyKind::Phantom => "phantom",
            AnomalyKind::AbortedRead => "aborted-read",
            AnomalyKind::VersionMismatch => "version-mismatch",
        }
    }
}

/// One violation, with the operations that show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    /// What is wrong.
    pub kind: AnomalyKind,
    /// The key.
    pub key: String,
    /// Ids of the operations at fault (highlighted in the report).
    pub ops: Vec<u64>,
    /// A sentence explaining it.
    pub message: String,
}

/// The linearizability verdict of one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyVerdict {
    /// A linearization exists.
    Linearizable,
    /// None exists (the anomaly says where the search got stuck).
    NotLinearizable,
    /// The search budget ran out before a verdict.
    Unknown {
        /// Search nodes explored.
        explored: u64,
    },
}

/// What the checker found.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    /// Verdict per key, in key order.
    pub keys: BTreeMap<String, KeyVerdict>,
    /// Every violation found.
    pub anomalies: Vec<Anomaly>,
    /// Wall time the check took.
    pub elapsed: Duration,
}

impl CheckReport {
    /// Whether no violation was found.
    pub fn ok(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// Keys whose search ran out of budget.
    pub fn undecided(&self) -> Vec<&str> {
        self.keys
            .iter()
            .filter(|(_, v)| matches!(v, KeyVerdict::Unknown { .. }))
            .map(|(k, _)| k.as_str())
            .collect()
    }

    /// `valid`, `INVALID` or `unknown (budget exceeded)`.
    pub fn verdict(&self) -> &'static str {
        if !self.ok() {
            "INVALID"
        } else if !self.undecided().is_empty() {
            "unknown (budget exceeded)"
        } else {
            "valid"
        }
    }
}

/// Checks a whole history.
pub fn check(ops: &[Op], options: &CheckOptions) -> CheckReport {
    let start = Instant::now();
    let by_key = group_by_key(ops);
    let keys: Vec<(&String, &Vec<usize>)> = by_key.iter().collect();
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..options.threads.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((key, members)) = keys.get(i) else {
                        break;
                    };
                    let found = check_key(ops, key, members, options.budget_per_key);
                    results
                        .lock()
                        .expect("a checker thread panicked")
                        .push(((*key).clone(), found));
                }
            });
        }
    });
    let mut report = CheckReport {
        keys: BTreeMap::new(),
        anomalies: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for (key, (verdict, anomaly)) in results.into_inner().expect("a checker thread panicked") {
        report.keys.insert(key, verdict);
        report.anomalies.extend(anomaly);
    }
    report.anomalies.extend(cheap::check(ops, &by_key));
    report
        .anomalies
        .sort_by(|a, b| (a.kind, &a.key).cmp(&(b.kind, &b.key)));
    report.elapsed = start.elapsed();
    report
}

/// Indices of each key's operations, in history order.
pub fn group_by_key(ops: &[Op]) -> BTreeMap<String, Vec<usize>> {
    let mut by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        by_key.entry(op.key.clone()).or_default().push(i);
    }
    by_key
}

/// Linearizability of one key.
pub fn check_key(
    ops: &[Op],
    key: &str,
    members: &[usize],
    budget: u64,
) -> (KeyVerdict, Option<Anomaly>) {
    let history = KeyHistory::build(ops, members);
    match search::search(&history.ops, budget) {
        SearchOutcome::Linearizable => (KeyVerdict::Linearizable, None),
        SearchOutcome::BudgetExceeded { explored } => (KeyVerdict::Unknown { explored }, None),
        SearchOutcome::NotLinearizable(stuck) => {
            let id = |i: &usize| ops[history.ops[*i].source].id;
            let blocked: Vec<u64> = stuck.blocked.iter().map(id).collect();
            let message = format!(
                "no linearization of the {} operations on {key:?}: at best {} of them \
                 go in order (ending with the key at {}), and then none of operations \
                 {blocked:?}, one of which must come next, can",
                history.ops.len(),
                stuck.prefix.len(),
                history.describe(stuck.state),
            );
            let anomaly = Anomaly {
                kind: AnomalyKind::NotLinearizable,
                key: key.to_owned(),
                ops: blocked,
                message,
            };
            (KeyVerdict::NotLinearizable, Some(anomaly))
        }
    }
}
