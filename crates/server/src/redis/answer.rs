//! From what the cluster said to what a Redis client expects: an applied outcome
//! becomes the command's reply, a keel error becomes a Redis error whose first
//! word tells the client what it may do.

use keel_proto::error::{ErrorDetail, Kind};
use keel_storage::kv::{ApplyOutcome, TxnOpResult};

use super::resp::Reply;

/// How a write command answers, given the outcome of the proposal it was part of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `+OK` (SET, MSET).
    Ok,
    /// `+OK` if written, nil if its condition did not hold (SET NX, SET XX).
    OkOrNil,
    /// 1 if written, 0 if not (SETNX, MSETNX).
    OneOrZero,
    /// The value before the write, or nil (SET .. GET, GETSET, GETDEL): the first
    /// result of a transaction whose first operation is a get.
    OldValue,
    /// How many keys existed and were deleted (DEL).
    Deleted,
    /// The new value (INCR and friends).
    Integer,
}

/// The reply of a command shaped `shape` whose proposal ended in `outcome`.
pub(crate) fn answer(shape: Shape, outcome: &Result<ApplyOutcome, ErrorDetail>) -> Reply {
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return error_reply(e),
    };
    let reply = match (shape, outcome) {
        (Shape::Ok, ApplyOutcome::Put { .. } | ApplyOutcome::Txn(_)) => Some(Reply::OK),
        (Shape::OkOrNil, ApplyOutcome::Put { .. }) => Some(Reply::OK),
        (Shape::OkOrNil, ApplyOutcome::Conflict { .. }) => Some(Reply::Nil),
        (Shape::OkOrNil, ApplyOutcome::Txn(t)) => {
            Some(if t.succeeded { Reply::OK } else { Reply::Nil })
        }
        (Shape::OneOrZero, ApplyOutcome::Put { .. }) => Some(Reply::Int(1)),
        (Shape::OneOrZero, ApplyOutcome::Conflict { .. }) => Some(Reply::Int(0)),
        (Shape::OneOrZero, ApplyOutcome::Txn(t)) => Some(Reply::Int(i64::from(t.succeeded))),
        (Shape::OldValue, ApplyOutcome::Txn(t)) => match t.results.first() {
            Some(TxnOpResult::Get(Some((value, _)))) => Some(Reply::Bulk(value.clone())),
            Some(TxnOpResult::Get(None)) => Some(Reply::Nil),
            _ => None,
        },
        (Shape::Deleted, ApplyOutcome::Deleted { existed, .. }) => {
            Some(Reply::Int(i64::from(*existed)))
        }
        (Shape::Deleted, ApplyOutcome::Txn(t)) => {
            let n = t
                .results
                .iter()
                .filter(|r| matches!(r, TxnOpResult::Delete { existed: true }))
                .count();
            Some(Reply::Int(n as i64))
        }
        (Shape::Integer, ApplyOutcome::Added { value, .. }) => Some(Reply::Int(*value)),
        (Shape::Integer, ApplyOutcome::AddRefused(why)) => Some(Reply::err(why.to_string())),
        (_, ApplyOutcome::TxnReadLimit { limit }) => Some(Reply::err(format!(
            "the old value is larger than this node returns ({limit} bytes); nothing was changed"
        ))),
        _ => None,
    };
    reply.unwrap_or_else(|| Reply::err(format!("internal error: unexpected outcome {outcome:?}")))
}

/// A keel error as a Redis error. The first word is the error code clients see:
/// `TRYAGAIN` when nothing was applied and a retry may succeed (no leader,
/// overloaded, shutting down, a slot moving between groups or not served by the
/// group asked), `UNCERTAIN` when a write may or may not have been applied,
/// `MISCONF` when the leader's disk is full (Redis's own code for "cannot persist,
/// writes refused"; nothing was applied), `CROSSSLOT` for keys of several groups
/// in one command (Redis Cluster's code), `ERR` otherwise.
pub(crate) fn error_reply(e: &ErrorDetail) -> Reply {
    let code = match e.kind() {
        Kind::NotLeader
        | Kind::NoLeader
        | Kind::Overloaded
        | Kind::ShuttingDown
        | Kind::SlotMoving
        | Kind::WrongGroup => "TRYAGAIN",
        Kind::CrossGroup => "CROSSSLOT",
        Kind::DiskFull => "MISCONF",
        Kind::OutcomeUnknown => {
            return Reply::Error(format!(
                "UNCERTAIN {} (the write may or may not have been applied)",
                e.message
            ));
        }
        _ => "ERR",
    };
    Reply::Error(format!("{code} {}", e.message))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use keel_storage::command::AddError;
    use keel_storage::kv::TxnOutcome;

    use super::*;

    #[test]
    fn slot_errors_are_tryagain_and_crossslot() {
        let reply = error_reply(&ErrorDetail::slot_moving(1, "slot 1 is moving"));
        assert_eq!(reply, Reply::Error("TRYAGAIN slot 1 is moving".into()));
        let reply = error_reply(&ErrorDetail::wrong_group(1, 0, "not here"));
        assert_eq!(reply, Reply::Error("TRYAGAIN not here".into()));
        let reply = error_reply(&ErrorDetail::cross_group("keys of 2 groups"));
        assert_eq!(reply, Reply::Error("CROSSSLOT keys of 2 groups".into()));
    }

    fn txn(succeeded: bool, results: Vec<TxnOpResult>) -> Result<ApplyOutcome, ErrorDetail> {
        Ok(ApplyOutcome::Txn(TxnOutcome {
            revision: 9,
            succeeded,
            results,
        }))
    }

    #[test]
    fn outcomes_become_redis_replies() {
        let put = Ok(ApplyOutcome::Put { revision: 3 });
        let conflict = Ok(ApplyOutcome::Conflict {
            current_version: Some(2),
        });
        assert_eq!(answer(Shape::Ok, &put), Reply::OK);
        assert_eq!(answer(Shape::OkOrNil, &conflict), Reply::Nil);
        assert_eq!(answer(Shape::OneOrZero, &conflict), Reply::Int(0));
        assert_eq!(answer(Shape::OkOrNil, &txn(false, vec![])), Reply::Nil);
        let old = txn(
            true,
            vec![
                TxnOpResult::Get(Some((Bytes::from_static(b"v1"), 2))),
                TxnOpResult::Put,
            ],
        );
        assert_eq!(
            answer(Shape::OldValue, &old),
            Reply::Bulk(Bytes::from_static(b"v1"))
        );
        let dels = txn(
            true,
            vec![
                TxnOpResult::Delete { existed: true },
                TxnOpResult::Delete { existed: false },
                TxnOpResult::Delete { existed: true },
            ],
        );
        assert_eq!(answer(Shape::Deleted, &dels), Reply::Int(2));
        assert_eq!(
            answer(
                Shape::Integer,
                &Ok(ApplyOutcome::Added {
                    revision: 4,
                    value: -3
                })
            ),
            Reply::Int(-3)
        );
        assert_eq!(
            answer(
                Shape::Integer,
                &Ok(ApplyOutcome::AddRefused(AddError::NotAnInteger))
            ),
            Reply::err("value is not an integer or out of range")
        );
        assert!(matches!(answer(Shape::Integer, &put), Reply::Error(_)));
    }

    #[test]
    fn errors_say_whether_to_retry() {
        let code = |e: ErrorDetail| match error_reply(&e) {
            Reply::Error(s) => s.split(' ').next().unwrap_or_default().to_string(),
            other => panic!("not an error: {other:?}"),
        };
        assert_eq!(code(ErrorDetail::no_leader()), "TRYAGAIN");
        assert_eq!(code(ErrorDetail::overloaded("queue full")), "TRYAGAIN");
        assert_eq!(code(ErrorDetail::outcome_unknown("timeout")), "UNCERTAIN");
        assert_eq!(code(ErrorDetail::invalid_argument("bad")), "ERR");
        assert_eq!(code(ErrorDetail::internal("disk")), "ERR");
        assert_eq!(code(ErrorDetail::disk_full("disk full: node 1")), "MISCONF");
    }
}
