//! Writes: a run of consecutive pipelined write commands becomes a list of
//! proposals, handed to the consensus thread one after another before any answer
//! is awaited, so they are proposed in the connection's order and share turns and
//! WAL fsyncs (group commit).
//!
//! Plain SETs and MSETs that follow each other are merged into one transaction
//! (up to the transaction limits): they all answer OK, a later SET of a key
//! simply replaces an earlier one's value in the transaction, and no client can
//! observe the difference from applying them one by one, except that they become
//! visible together. Every other write is its own proposal: a SET with NX, XX or
//! GET and GETSET/GETDEL/MSETNX are transactions (conditions and reads checked in
//! the state machine), DEL a delete or a transaction of deletes, INCR and friends
//! an add.
//!
//! Each proposal goes to the group that owns its keys (`groups.rs`): a SET
//! joins the merged transaction only while its key belongs to the same group,
//! and an MSET, MSETNX or DEL whose keys belong to several groups is refused
//! with `CROSSSLOT` (they are atomic, and keel writes atomically within one
//! group only). Where this node leads the group, the proposal is handed to its
//! replica; otherwise it is forwarded (`forward.rs`): to the leader of a hosted
//! group, or to a member of a group this node does not host, one at a time in
//! order.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use keel_placement::GroupId;
use keel_proto::error::{ErrorDetail, Kind};
use keel_storage::command::{
    Command, Compare, CompareOp, CompareTarget, Expect, MAX_TXN_OPS, Txn, TxnOp,
};
use keel_storage::kv::ApplyOutcome;

use super::Shared;
use super::answer::{Shape, answer};
use super::command::{Cond, Write};
use super::forward::forward;
use super::groups::KeyGroups;
use super::limits::RedisLimits;
use super::resp::Reply;
use crate::api::txn::{TXN_OVERHEAD_BYTES, check_encoded_size, read_limit};
use crate::metrics::ClientOp;
use crate::node::{KV_GROUP, NodeError};

/// Bytes a put adds to an encoded transaction beyond its key and value: a tag and
/// two lengths, generously.
const PUT_OVERHEAD: usize = 24;

/// One proposal and the commands of the run it answers.
#[derive(Debug)]
struct Unit {
    command: Command,
    answers: Vec<(usize, Shape)>,
    /// The group that owns the command's keys.
    group: GroupId,
}

/// Answers `writes` in order.
pub(crate) async fn run(shared: &Shared, writes: &[&Write]) -> Vec<Reply> {
    let mut replies: Vec<Option<Reply>> = vec![None; writes.len()];
    let groups = KeyGroups::now(&shared.ctx);
    let units = plan(&shared.limits, writes, &mut replies, &groups);
    let outcomes = propose_all(shared, &units).await;
    for (unit, outcome) in units.iter().zip(&outcomes) {
        for &(i, shape) in &unit.answers {
            replies[i] = Some(answer(shape, outcome));
        }
    }
    replies
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Reply::err("internal error: a write got no answer")))
        .collect()
}

/// Proposals for `writes`; a command refused before proposing gets its reply in
/// `replies` instead.
fn plan(
    limits: &RedisLimits,
    writes: &[&Write],
    replies: &mut [Option<Reply>],
    groups: &KeyGroups,
) -> Vec<Unit> {
    // The estimate per put (PUT_OVERHEAD) exceeds what a put really takes by more
    // than a transaction header, so a group within this encodes within the limit.
    let max_bytes = limits.max_value_bytes + TXN_OVERHEAD_BYTES;
    let read_limit = read_limit(limits.max_value_bytes);
    let mut units = Vec::new();
    let mut group = SetGroup::default();
    for (i, w) in writes.iter().enumerate() {
        let pairs = match w {
            Write::Set { key, value, .. } if w.is_plain_set() => {
                vec![(key.clone(), value.clone())]
            }
            Write::MSet(pairs) => pairs.clone(),
            _ => {
                units.extend(group.take());
                let owner = groups.single(keys_of(w));
                match owner.and_then(|g| single(w, read_limit).map(|unit| (g, unit))) {
                    Ok((g, unit)) => units.push(Unit {
                        command: unit.0,
                        answers: vec![(i, unit.1)],
                        group: g,
                    }),
                    Err(reply) => replies[i] = Some(reply),
                }
                continue;
            }
        };
        let owner = match groups.single(pairs.iter().map(|(k, _)| &k[..])) {
            Ok(g) => g,
            Err(reply) => {
                replies[i] = Some(reply);
                continue;
            }
        };
        if group.group.is_some_and(|g| g != owner) {
            units.extend(group.take());
        }
        if !group.fits(&pairs, max_bytes) {
            units.extend(group.take());
            if !group.fits(&pairs, max_bytes) {
                replies[i] = Some(Reply::err(format!(
                    "MSET of {} keys is more than keel writes in one transaction (at most {MAX_TXN_OPS} keys and {max_bytes} bytes)",
                    pairs.len()
                )));
                continue;
            }
        }
        group.group = Some(owner);
        group.add(i, pairs);
    }
    units.extend(group.take());
    units
}

/// Consecutive plain SETs and MSETs, merged.
#[derive(Default)]
struct SetGroup {
    puts: Vec<(Bytes, Bytes)>,
    /// Where each key's put is in `puts`.
    at: HashMap<Bytes, usize>,
    bytes: usize,
    members: Vec<usize>,
    /// The group owning every key merged so far.
    group: Option<GroupId>,
}

impl SetGroup {
    /// Whether `pairs` can join without breaking a transaction limit.
    fn fits(&self, pairs: &[(Bytes, Bytes)], max_bytes: usize) -> bool {
        let mut new_keys = 0;
        let mut bytes = self.bytes;
        for (k, v) in pairs {
            new_keys += usize::from(!self.at.contains_key(k));
            bytes += k.len() + v.len() + PUT_OVERHEAD;
        }
        self.puts.len() + new_keys <= MAX_TXN_OPS && bytes <= max_bytes
    }

    fn add(&mut self, command: usize, pairs: Vec<(Bytes, Bytes)>) {
        for (k, v) in pairs {
            self.bytes += k.len() + v.len() + PUT_OVERHEAD;
            match self.at.get(&k) {
                // The later SET wins, as if they ran one after the other.
                Some(&j) => self.puts[j].1 = v,
                None => {
                    self.at.insert(k.clone(), self.puts.len());
                    self.puts.push((k, v));
                }
            }
        }
        self.members.push(command);
    }

    /// The group as one proposal (a put if it holds one key), leaving it empty.
    fn take(&mut self) -> Option<Unit> {
        let group = std::mem::take(self);
        let answers = group.members.iter().map(|&i| (i, Shape::Ok)).collect();
        let mut puts = group.puts;
        let command = match puts.len() {
            0 => return None,
            1 => {
                let (key, value) = puts.remove(0);
                Command::Put {
                    key,
                    value,
                    expect: Expect::Any,
                }
            }
            _ => Command::Txn(Txn {
                compares: vec![],
                success: puts
                    .into_iter()
                    .map(|(key, value)| TxnOp::Put { key, value })
                    .collect(),
                failure: vec![],
                read_limit: 0,
            }),
        };
        Some(Unit {
            command,
            answers,
            group: group.group.unwrap_or(KV_GROUP),
        })
    }
}

/// The proposal of a write that is not merged, and how it answers.
fn single(w: &Write, read_limit: u64) -> Result<(Command, Shape), Reply> {
    let txn = |compares, success, failure| {
        Command::Txn(Txn {
            compares,
            success,
            failure,
            read_limit,
        })
    };
    Ok(match w {
        Write::Set {
            key,
            value,
            cond,
            get,
            int_reply,
        } => {
            let guard = match cond {
                Cond::Always => vec![],
                Cond::IfAbsent => vec![version(key, CompareOp::Equal)],
                Cond::IfExists => vec![version(key, CompareOp::Greater)],
            };
            let put = TxnOp::Put {
                key: key.clone(),
                value: value.clone(),
            };
            let shape = if *int_reply {
                Shape::OneOrZero
            } else {
                Shape::OkOrNil
            };
            match (cond, get) {
                (_, true) => {
                    let read = TxnOp::Get { key: key.clone() };
                    (
                        txn(guard, vec![read.clone(), put], vec![read]),
                        Shape::OldValue,
                    )
                }
                (Cond::IfAbsent, false) => (
                    Command::Put {
                        key: key.clone(),
                        value: value.clone(),
                        expect: Expect::Absent,
                    },
                    shape,
                ),
                (_, false) => (txn(guard, vec![put], vec![]), shape),
            }
        }
        Write::GetDel(key) => (
            txn(
                vec![],
                vec![
                    TxnOp::Get { key: key.clone() },
                    TxnOp::Delete { key: key.clone() },
                ],
                vec![],
            ),
            Shape::OldValue,
        ),
        Write::Del(keys) => {
            let keys = distinct(keys.iter().cloned());
            if keys.len() > MAX_TXN_OPS {
                return Err(Reply::err(format!(
                    "keel deletes a DEL's keys in one transaction: at most {MAX_TXN_OPS} keys"
                )));
            }
            let command = match <[Bytes; 1]>::try_from(keys) {
                Ok([key]) => Command::Delete {
                    key,
                    expect: Expect::Any,
                },
                Err(keys) => txn(
                    vec![],
                    keys.into_iter().map(|key| TxnOp::Delete { key }).collect(),
                    vec![],
                ),
            };
            (command, Shape::Deleted)
        }
        Write::MSetNx(pairs) => {
            // The last value of a repeated key wins, as in MSET.
            let mut last: HashMap<&Bytes, &Bytes> = HashMap::new();
            for (k, v) in pairs {
                last.insert(k, v);
            }
            let keys = distinct(pairs.iter().map(|(k, _)| k.clone()));
            if 2 * keys.len() > MAX_TXN_OPS {
                return Err(Reply::err(format!(
                    "keel checks and writes an MSETNX's keys in one transaction: at most {} keys",
                    MAX_TXN_OPS / 2
                )));
            }
            let compares = keys.iter().map(|k| version(k, CompareOp::Equal)).collect();
            let puts = keys
                .iter()
                .map(|k| TxnOp::Put {
                    key: k.clone(),
                    value: last.get(k).map_or_else(Bytes::new, |v| (*v).clone()),
                })
                .collect();
            (txn(compares, puts, vec![]), Shape::OneOrZero)
        }
        Write::Add { key, delta } => (
            Command::Add {
                key: key.clone(),
                delta: *delta,
            },
            Shape::Integer,
        ),
        Write::MSet(_) => unreachable!("MSETs are merged by the caller"),
    })
}

/// The keys a write names.
fn keys_of(w: &Write) -> Vec<&[u8]> {
    match w {
        Write::Set { key, .. } | Write::GetDel(key) | Write::Add { key, .. } => vec![&key[..]],
        Write::Del(keys) => keys.iter().map(|k| &k[..]).collect(),
        Write::MSet(pairs) | Write::MSetNx(pairs) => pairs.iter().map(|(k, _)| &k[..]).collect(),
    }
}

/// `version(key) op 0`: `=` is "absent", `>` is "exists".
fn version(key: &Bytes, op: CompareOp) -> Compare {
    Compare {
        key: key.clone(),
        target: CompareTarget::Version(op, 0),
    }
}

/// `keys` without repeats, in first-seen order.
fn distinct(keys: impl Iterator<Item = Bytes>) -> Vec<Bytes> {
    let mut seen = std::collections::HashSet::new();
    keys.filter(|k| seen.insert(k.clone())).collect()
}

/// Proposes every unit in order and collects the outcomes, forwarding to the
/// leader what this node cannot propose.
async fn propose_all(shared: &Shared, units: &[Unit]) -> Vec<Result<ApplyOutcome, ErrorDetail>> {
    let ctx = &shared.ctx;
    let timeout = ctx.limits.request_timeout;
    // Hand everything over first: proposals in this order, one turn, one fsync.
    let mut started = Vec::with_capacity(units.len());
    for unit in units {
        let data = unit.command.encode();
        if matches!(unit.command, Command::Txn(_))
            && let Err(e) = check_encoded_size(data.len(), shared.limits.max_value_bytes)
        {
            started.push(Err(Some(e)));
            continue;
        }
        // This node's replica of the unit's group, if it hosts one and leads.
        let node = ctx.hosted(unit.group).filter(|n| n.leader() == ctx.id);
        started.push(if let Some(node) = node {
            node.start_write(data, timeout)
                .map(|pending| (pending, Instant::now()))
                .map_err(|e| match e {
                    // Leadership moved: forward below.
                    NodeError::NotLeader { .. } => None,
                    e => Some(ctx.error(e)),
                })
        } else {
            Err(None)
        });
    }
    let mut outcomes = Vec::with_capacity(units.len());
    // Once a forward found no leader of a group for a whole request timeout,
    // the rest of the run's writes to that group fail at once rather than wait
    // that long again, each.
    let mut leaderless: Vec<(GroupId, ErrorDetail)> = Vec::new();
    let mut forward_unit = async |unit: &Unit| {
        if let Some((_, e)) = leaderless.iter().find(|(g, _)| *g == unit.group) {
            return Err(e.clone());
        }
        let outcome = forward(ctx, &unit.command).await;
        if let Err(e) = &outcome
            && matches!(e.kind(), Kind::NotLeader | Kind::NoLeader)
        {
            leaderless.push((unit.group, e.clone()));
        }
        outcome
    };
    for (unit, start) in units.iter().zip(started) {
        let outcome = match start {
            Ok((pending, at)) => match pending.await {
                Ok(outcome) => {
                    if let Some(op) = op_of(&unit.command) {
                        ctx.metrics.client_request(op, at, None);
                    }
                    Ok(outcome)
                }
                Err(NodeError::NotLeader { .. }) => forward_unit(unit).await,
                Err(e) => {
                    let e = ctx.error(e);
                    let kind = e.kind().as_str_name();
                    if let Some(op) = op_of(&unit.command) {
                        ctx.metrics.client_request(op, at, Some(kind));
                    }
                    Err(e)
                }
            },
            Err(None) => forward_unit(unit).await,
            Err(Some(e)) => Err(e),
        };
        outcomes.push(outcome);
    }
    outcomes
}

/// The metrics label of a proposal (`None` for a slot-move command, which is
/// the runtime's, never a client's, and so never built here).
fn op_of(command: &Command) -> Option<ClientOp> {
    match command {
        Command::Put { .. } => Some(ClientOp::Put),
        Command::Delete { .. } => Some(ClientOp::Delete),
        Command::Txn(_) => Some(ClientOp::Txn),
        Command::Add { .. } => Some(ClientOp::Add),
        Command::Slot(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::tests::limits;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn set(k: &str, v: &str) -> Write {
        Write::Set {
            key: b(k),
            value: b(v),
            cond: Cond::Always,
            get: false,
            int_reply: false,
        }
    }

    #[test]
    fn consecutive_sets_share_one_transaction_until_another_write() {
        let writes = [
            set("a", "1"),
            Write::MSet(vec![(b("b"), b("2")), (b("a"), b("3"))]),
            set("c", "4"),
            Write::Add {
                key: b("n"),
                delta: 1,
            },
            set("d", "5"),
        ];
        let refs: Vec<&Write> = writes.iter().collect();
        let mut replies = vec![None; refs.len()];
        let units = plan(&limits(), &refs, &mut replies, &KeyGroups::default());
        assert!(replies.iter().all(Option::is_none));
        assert_eq!(units.len(), 3);
        let Command::Txn(t) = &units[0].command else {
            panic!("a transaction: {:?}", units[0].command);
        };
        assert_eq!(
            t.success,
            vec![
                TxnOp::Put {
                    key: b("a"),
                    value: b("3")
                },
                TxnOp::Put {
                    key: b("b"),
                    value: b("2")
                },
                TxnOp::Put {
                    key: b("c"),
                    value: b("4")
                },
            ],
            "a's later value wins; each key is written once"
        );
        assert_eq!(
            units[0].answers,
            vec![(0, Shape::Ok), (1, Shape::Ok), (2, Shape::Ok)]
        );
        assert!(matches!(units[1].command, Command::Add { .. }));
        assert!(
            matches!(units[2].command, Command::Put { .. }),
            "one SET alone is a put"
        );
    }

    #[test]
    fn groups_respect_the_transaction_limits() {
        let writes: Vec<Write> = (0..MAX_TXN_OPS + 5)
            .map(|i| set(&format!("k{i}"), "v"))
            .collect();
        let refs: Vec<&Write> = writes.iter().collect();
        let mut replies = vec![None; refs.len()];
        let units = plan(&limits(), &refs, &mut replies, &KeyGroups::default());
        assert_eq!(units.len(), 2);
        assert_eq!(units[0].answers.len(), MAX_TXN_OPS);

        let huge = Write::MSet(
            (0..MAX_TXN_OPS + 1)
                .map(|i| (b(&format!("k{i}")), b("v")))
                .collect(),
        );
        let mut replies = vec![None];
        let units = plan(&limits(), &[&huge], &mut replies, &KeyGroups::default());
        assert!(units.is_empty());
        assert!(matches!(&replies[0], Some(Reply::Error(e)) if e.contains("MSET of 129 keys")));
    }

    #[test]
    fn conditional_writes_are_transactions_with_guards() {
        let w = Write::Set {
            key: b("k"),
            value: b("v"),
            cond: Cond::IfExists,
            get: true,
            int_reply: false,
        };
        let (Command::Txn(t), Shape::OldValue) = single(&w, 10).expect("valid") else {
            panic!("SET XX GET is a transaction answering the old value");
        };
        assert_eq!(t.compares, vec![version(&b("k"), CompareOp::Greater)]);
        assert_eq!(t.success.len(), 2);
        assert_eq!(t.failure, vec![TxnOp::Get { key: b("k") }]);
        let nx = Write::Set {
            key: b("k"),
            value: b("v"),
            cond: Cond::IfAbsent,
            get: false,
            int_reply: true,
        };
        assert!(matches!(
            single(&nx, 10),
            Ok((
                Command::Put {
                    expect: Expect::Absent,
                    ..
                },
                Shape::OneOrZero
            ))
        ));
        let del = Write::Del(vec![b("a"), b("a")]);
        assert!(matches!(
            single(&del, 10),
            Ok((Command::Delete { .. }, Shape::Deleted))
        ));
        let many = Write::Del((0..=MAX_TXN_OPS).map(|i| b(&format!("k{i}"))).collect());
        assert!(single(&many, 10).is_err());
        let msetnx = Write::MSetNx(vec![(b("a"), b("1")), (b("a"), b("2"))]);
        let Ok((Command::Txn(t), Shape::OneOrZero)) = single(&msetnx, 10) else {
            panic!("MSETNX is a guarded transaction");
        };
        assert_eq!(t.compares.len(), 1);
        assert_eq!(
            t.success,
            vec![TxnOp::Put {
                key: b("a"),
                value: b("2")
            }]
        );
    }

    #[test]
    fn sets_merge_within_one_group_and_atomic_commands_across_groups_are_crossslot() {
        use crate::redis::groups::tests::{groups_with, key_in};
        let groups = groups_with("moved");
        let slot = keel_placement::slot_for_key(b"moved");
        let there = key_in(slot, "t");
        let beside = keel_placement::Slot::new(slot.get() ^ 1).expect("slot");
        let here = key_in(beside, "h");
        let also_here = key_in(beside, "a");
        let writes = [
            set(&here, "1"),
            set(&also_here, "2"),
            set(&there, "3"),
            Write::MSet(vec![(b("moved"), b("4")), (b(&there), b("5"))]),
            set(&here, "6"),
            Write::MSet(vec![(b(&here), b("7")), (b("moved"), b("8"))]),
            Write::Del(vec![b(&here), b("moved")]),
            Write::MSetNx(vec![(b("moved"), b("9")), (b(&here), b("9"))]),
            Write::Del(vec![b("moved"), b(&there)]),
            Write::Add {
                key: b("moved"),
                delta: 1,
            },
        ];
        let refs: Vec<&Write> = writes.iter().collect();
        let mut replies = vec![None; refs.len()];
        let units = plan(&limits(), &refs, &mut replies, &groups);
        // Refused before anything is proposed: the MSET, DEL and MSETNX that
        // span both groups.
        for i in [5, 6, 7] {
            assert!(
                matches!(&replies[i], Some(Reply::Error(e)) if e.starts_with("CROSSSLOT ")),
                "write {i}: {:?}",
                replies[i]
            );
        }
        let summary: Vec<(GroupId, Vec<usize>)> = units
            .iter()
            .map(|u| (u.group, u.answers.iter().map(|a| a.0).collect()))
            .collect();
        let expected: Vec<(GroupId, Vec<usize>)> = vec![
            (1, vec![0, 1]),
            (2, vec![2, 3]),
            (1, vec![4]),
            (2, vec![8]),
            (2, vec![9]),
        ];
        assert_eq!(summary, expected);
    }
}
