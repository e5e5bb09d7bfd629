//! Checks that need no search. Each names an anomaly the linearizability search
//! would also reject, but says plainly what went wrong: a read of a value nobody
//! wrote (phantom) or whose write definitely failed (aborted read), an
//! acknowledged write that the final reads show lost, and a value reported with
//! two versions.

use std::collections::{BTreeMap, HashMap};

use super::{Anomaly, AnomalyKind};
use crate::history::{Op, Outcome};

/// Runs every cheap check on each key's operations.
pub fn check(ops: &[Op], by_key: &BTreeMap<String, Vec<usize>>) -> Vec<Anomaly> {
    let mut out = Vec::new();
    for (key, members) in by_key {
        let key_ops: Vec<&Op> = members.iter().map(|&i| &ops[i]).collect();
        let writers = writers_by_value(&key_ops);
        phantoms(key, &key_ops, &writers, &mut out);
        lost_writes(key, &key_ops, &writers, &mut out);
        versions(key, &key_ops, &mut out);
    }
    out
}

fn writers_by_value<'a>(ops: &[&'a Op]) -> HashMap<&'a str, Vec<&'a Op>> {
    let mut writers: HashMap<&str, Vec<&Op>> = HashMap::new();
    for op in ops {
        if let Some(v) = op.call.written() {
            writers.entry(v).or_default().push(op);
        }
    }
    writers
}

fn phantoms(key: &str, ops: &[&Op], writers: &HashMap<&str, Vec<&Op>>, out: &mut Vec<Anomaly>) {
    for op in ops {
        let Some(Some(v)) = op.read_value() else {
            continue;
        };
        let (kind, message) = match writers.get(v) {
            None => (
                AnomalyKind::Phantom,
                format!(
                    "operation {} read {v:?} from {key:?}, which no operation wrote",
                    op.id
                ),
            ),
            Some(ws) if ws.iter().all(|w| w.outcome == Outcome::Fail) => (
                AnomalyKind::AbortedRead,
                format!(
                    "operation {} read {v:?} from {key:?}, but its write (operation {}) \
                     definitely failed",
                    op.id, ws[0].id
                ),
            ),
            Some(_) => continue,
        };
        let mut ids = vec![op.id];
        ids.extend(writers.get(v).into_iter().flatten().map(|w| w.id));
        out.push(Anomaly {
            kind,
            key: key.to_owned(),
            ops: ids,
            message,
        });
    }
}

/// The last final read decides: an acknowledged write invoked after the write of
/// the final value completed must have come after it, so the final value should
/// not be the older one.
fn lost_writes(key: &str, ops: &[&Op], writers: &HashMap<&str, Vec<&Op>>, out: &mut Vec<Anomaly>) {
    let Some((last, value)) = ops
        .iter()
        .filter(|op| op.final_read)
        .filter_map(|op| op.read_value().map(|v| (*op, v)))
        .max_by_key(|(op, _)| op.complete_ns)
    else {
        return;
    };
    let final_written_at = match value {
        None => None,
        Some(v) => match writers.get(v) {
            // A phantom, reported elsewhere.
            None => return,
            Some(ws) if ws.iter().any(|w| w.outcome == Outcome::Unknown) => return,
            Some(ws) => ws.iter().map(|w| w.complete_ns).max(),
        },
    };
    for op in ops {
        let acknowledged = op.outcome == Outcome::Ok && op.call.written().is_some();
        let superseded = value.is_some() && op.call.written() == value;
        if acknowledged
            && !superseded
            && final_written_at.is_none_or(|t| op.invoke_ns > t)
            && op.complete_ns < last.invoke_ns
        {
            let shown = value.map_or("(absent)".to_owned(), |v| format!("{v:?}"));
            out.push(Anomaly {
                kind: AnomalyKind::LostWrite,
                key: key.to_owned(),
                ops: vec![op.id, last.id],
                message: format!(
                    "operation {} wrote {:?} to {key:?} and was acknowledged, but the final \
                     read (operation {}) found {shown}, written before operation {} began",
                    op.id,
                    op.call.written().unwrap_or_default(),
                    last.id,
                    op.id
                ),
            });
        }
    }
}

fn versions(key: &str, ops: &[&Op], out: &mut Vec<Anomaly>) {
    let mut version_of: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut value_of: HashMap<u64, (&str, u64)> = HashMap::new();
    for op in ops.iter().filter(|op| op.outcome == Outcome::Ok) {
        let pair = match (op.read_value(), op.call.written(), op.result.revision) {
            (Some(Some(v)), _, _) => op.result.version.map(|n| (v, n)),
            (_, Some(v), Some(n)) => Some((v, n)),
            _ => None,
        };
        let Some((value, version)) = pair else {
            continue;
        };
        let (seen_version, by) = *version_of.entry(value).or_insert((version, op.id));
        let (seen_value, by_value) = *value_of.entry(version).or_insert((value, op.id));
        let (message, other) = if seen_version != version {
            let m = format!(
                "{key:?} = {value:?} was reported at version {seen_version} (operation {by}) \
                 and at version {version} (operation {})",
                op.id
            );
            (m, by)
        } else if seen_value != value {
            let m = format!(
                "version {version} of {key:?} was reported holding {seen_value:?} (operation \
                 {by_value}) and {value:?} (operation {})",
                op.id
            );
            (m, by_value)
        } else {
            continue;
        };
        out.push(Anomaly {
            kind: AnomalyKind::VersionMismatch,
            key: key.to_owned(),
            ops: vec![other, op.id],
            message,
        });
    }
}
