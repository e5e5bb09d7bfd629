//! Writes this node cannot propose itself (it is not the leader) go through the
//! same API operations as a gRPC or HTTP write, with forwarding allowed: the
//! operation tries locally, and on NOT_LEADER sends the request to the leader
//! over gRPC. Here the command is turned into that request, and the answer back
//! into the outcome the leader's state machine reported, so a forwarded write is
//! answered exactly like a local one.

use keel_proto::error::{ErrorDetail, Kind};
use keel_proto::v1::{
    self, AddRequest, DeleteRequest, Precondition, PutRequest, TxnRequest, compare, precondition,
    txn_op, txn_op_result,
};
use keel_storage::command::{Command, Compare, CompareOp, CompareTarget, Expect, Txn, TxnOp};
use keel_storage::kv::{ApplyOutcome, TxnOpResult, TxnOutcome};

use super::retry::until_leader;
use crate::api::{ApiContext, Forwarding, Hop};

/// Has the leader carry out `command`, waiting out an election if there is no
/// leader (until the request timeout).
pub(crate) async fn forward(
    ctx: &ApiContext,
    command: &Command,
) -> Result<ApplyOutcome, ErrorDetail> {
    until_leader(ctx, || forward_once(ctx, command)).await
}

async fn forward_once(ctx: &ApiContext, command: &Command) -> Result<ApplyOutcome, ErrorDetail> {
    let allowed = Forwarding::Allowed;
    match command {
        Command::Put { key, value, expect } => {
            let req = PutRequest {
                key: key.clone(),
                value: value.clone(),
                precondition: precondition_of(*expect),
                session: None,
            };
            match ctx.routed_put(req, allowed, Hop::Client).await {
                Ok(r) => Ok(ApplyOutcome::Put {
                    revision: r.revision,
                }),
                Err(e) => conflict_or(e),
            }
        }
        Command::Delete { key, expect } => {
            let req = DeleteRequest {
                key: key.clone(),
                precondition: precondition_of(*expect),
                session: None,
            };
            match ctx.routed_delete(req, allowed, Hop::Client).await {
                Ok(r) => Ok(ApplyOutcome::Deleted {
                    revision: r.revision,
                    existed: r.deleted,
                }),
                Err(e) => conflict_or(e),
            }
        }
        Command::Txn(txn) => {
            let r = ctx
                .routed_txn(txn_request(txn), allowed, Hop::Client)
                .await?;
            Ok(ApplyOutcome::Txn(TxnOutcome {
                revision: r.revision,
                succeeded: r.succeeded,
                results: r.results.into_iter().map(txn_result).collect(),
            }))
        }
        Command::Add { key, delta } => {
            let req = AddRequest {
                key: key.clone(),
                delta: *delta,
            };
            let r = ctx.routed_add(req, allowed, Hop::Client).await?;
            Ok(ApplyOutcome::Added {
                revision: r.revision,
                value: r.value,
            })
        }
        // The Redis protocol never builds one: slot moves are the runtime's.
        Command::Slot(_) => Err(ErrorDetail::internal(
            "a slot-move command cannot be forwarded as a client request",
        )),
    }
}

/// A failed precondition is an outcome (the command answers nil or 0), not an
/// error.
fn conflict_or(e: ErrorDetail) -> Result<ApplyOutcome, ErrorDetail> {
    if e.kind() == Kind::Conflict {
        return Ok(ApplyOutcome::Conflict {
            current_version: (e.current_version != 0).then_some(e.current_version),
        });
    }
    Err(e)
}

fn precondition_of(expect: Expect) -> Option<Precondition> {
    let condition = match expect {
        Expect::Any => return None,
        Expect::Absent => precondition::Condition::Absent(true),
        Expect::Version(v) => precondition::Condition::Version(v),
    };
    Some(Precondition {
        condition: Some(condition),
    })
}

/// The wire form of a transaction (the leader sets its own read limit).
fn txn_request(txn: &Txn) -> TxnRequest {
    let ops = |ops: &[TxnOp]| -> Vec<v1::TxnOp> {
        ops.iter()
            .map(|op| {
                let op = match op {
                    TxnOp::Put { key, value } => txn_op::Op::Put(v1::TxnPut {
                        key: key.clone(),
                        value: value.clone(),
                    }),
                    TxnOp::Delete { key } => txn_op::Op::Delete(v1::TxnDelete { key: key.clone() }),
                    TxnOp::Get { key } => txn_op::Op::Get(v1::TxnGet { key: key.clone() }),
                };
                v1::TxnOp { op: Some(op) }
            })
            .collect()
    };
    TxnRequest {
        compares: txn.compares.iter().map(compare_of).collect(),
        success: ops(&txn.success),
        failure: ops(&txn.failure),
    }
}

fn compare_of(c: &Compare) -> v1::Compare {
    let (target, op) = match &c.target {
        CompareTarget::Version(op, v) => (compare::Target::Version(*v), *op),
        CompareTarget::Value(value) => (compare::Target::Value(value.clone()), CompareOp::Equal),
    };
    let op = match op {
        CompareOp::Equal => v1::CompareOp::Equal,
        CompareOp::NotEqual => v1::CompareOp::NotEqual,
        CompareOp::Less => v1::CompareOp::Less,
        CompareOp::Greater => v1::CompareOp::Greater,
    };
    v1::Compare {
        key: c.key.clone(),
        target: Some(target),
        op: op as i32,
    }
}

fn txn_result(r: v1::TxnOpResult) -> TxnOpResult {
    match r.result {
        Some(txn_op_result::Result::Delete(d)) => TxnOpResult::Delete { existed: d.deleted },
        Some(txn_op_result::Result::Get(g)) => {
            TxnOpResult::Get(g.kv.map(|kv| (kv.value, kv.version)))
        }
        // A put has nothing to report; a missing result is read as one.
        Some(txn_op_result::Result::Put(_)) | None => TxnOpResult::Put,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn transactions_keep_their_meaning_on_the_wire() {
        let k = |s: &'static str| Bytes::from_static(s.as_bytes());
        let txn = Txn {
            compares: vec![Compare {
                key: k("a"),
                target: CompareTarget::Version(CompareOp::Greater, 0),
            }],
            success: vec![
                TxnOp::Get { key: k("a") },
                TxnOp::Put {
                    key: k("a"),
                    value: k("v"),
                },
            ],
            failure: vec![TxnOp::Delete { key: k("b") }],
            read_limit: 7,
        };
        let req = txn_request(&txn);
        assert_eq!(req.compares[0].op, v1::CompareOp::Greater as i32);
        assert_eq!(req.compares[0].target, Some(compare::Target::Version(0)));
        assert_eq!(req.success.len(), 2);
        assert!(matches!(
            req.failure[0].op,
            Some(txn_op::Op::Delete(ref d)) if d.key == k("b")
        ));
        assert_eq!(precondition_of(Expect::Any), None);
        assert_eq!(
            conflict_or(ErrorDetail::conflict(0)),
            Ok(ApplyOutcome::Conflict {
                current_version: None
            })
        );
    }
}
