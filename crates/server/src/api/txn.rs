//! Transactions, shared by gRPC and HTTP: the request is checked and turned into
//! one [`Command::Txn`] before anything is proposed, so bad input changes nothing;
//! the applied outcome becomes the response.

use keel_proto::error::ErrorDetail;
use keel_proto::v1::{
    self, KeyValue, TxnDeleteResult, TxnGetResult, TxnPutResult, TxnRequest, TxnResponse, compare,
    txn_op, txn_op_result,
};
use keel_storage::command::{Command, Compare, CompareOp, CompareTarget, MAX_TXN_OPS, Txn, TxnOp};
use keel_storage::kv::{ApplyOutcome, TxnOpResult, TxnOutcome};

use super::ops::Forwarding;
use super::{ApiContext, DetailExt, validate};
use crate::config::MAX_KEY_BYTES;
use crate::node::NodeError;

/// Room beyond the value limit for a transaction's keys and framing. It matches
/// the slack of the gRPC message limit, so any transaction that fits in a request
/// fits in an entry.
pub(crate) const TXN_OVERHEAD_BYTES: usize = 64 << 10;

impl ApiContext {
    pub(crate) async fn txn(
        &self,
        req: TxnRequest,
        fwd: Forwarding,
    ) -> Result<TxnResponse, ErrorDetail> {
        let txn = to_txn(&req, self.limits.max_value_bytes)?;
        let node = self.group_for_keys(
            txn.compares.iter().map(|c| &c.key[..]).chain(
                txn.success
                    .iter()
                    .chain(&txn.failure)
                    .map(|op| &op.key()[..]),
            ),
        )?;
        let data = Command::Txn(txn).encode();
        check_encoded_size(data.len(), self.limits.max_value_bytes)?;
        match node.write(data, self.limits.request_timeout).await {
            Ok(ApplyOutcome::Txn(outcome)) => Ok(response(&req, outcome)),
            Ok(ApplyOutcome::TxnReadLimit { limit }) => {
                Err(ErrorDetail::invalid_argument(format!(
                    "the transaction's gets would return more than {limit} bytes of keys and values; nothing was changed"
                )))
            }
            Ok(other) => Err(ErrorDetail::internal(format!(
                "unexpected outcome of a transaction: {other:?}"
            ))),
            Err(NodeError::NotLeader { leader }) if leader != 0 && fwd == Forwarding::Allowed => {
                self.forward_kv(&self.address_of(leader), true, |mut c| async move {
                    c.txn(req).await
                })
                .await
            }
            Err(e) => Err(self.error(e)),
        }
    }
}

/// Refuses a transaction whose encoded entry is over the limit (the value limit
/// plus [`TXN_OVERHEAD_BYTES`]).
pub(crate) fn check_encoded_size(len: usize, max_value: usize) -> Result<(), ErrorDetail> {
    let max = max_value + TXN_OVERHEAD_BYTES;
    if len > max {
        return Err(ErrorDetail::invalid_argument(format!(
            "the transaction takes {len} bytes encoded; the limit is {max} (the value limit plus 64 KiB)"
        )));
    }
    Ok(())
}

/// The read limit a transaction proposed by this node carries: room for one
/// largest value with its key, so a response always fits in the message limit
/// (see [`TXN_OVERHEAD_BYTES`]).
pub(crate) fn read_limit(max_value: usize) -> u64 {
    (max_value + MAX_KEY_BYTES) as u64
}

/// Checks every limit and builds the storage transaction.
fn to_txn(req: &TxnRequest, max_value: usize) -> Result<Txn, ErrorDetail> {
    let count = req.compares.len() + req.success.len() + req.failure.len();
    if count > MAX_TXN_OPS {
        return Err(ErrorDetail::invalid_argument(format!(
            "a transaction may hold at most {MAX_TXN_OPS} comparisons and operations in all; this one has {count}"
        )));
    }
    let compares = req
        .compares
        .iter()
        .enumerate()
        .map(|(i, c)| to_compare(c, max_value).map_err(|e| at(e, "comparison", i)))
        .collect::<Result<_, _>>()?;
    let txn = Txn {
        compares,
        success: to_ops(&req.success, "success", max_value)?,
        failure: to_ops(&req.failure, "failure", max_value)?,
        read_limit: read_limit(max_value),
    };
    txn.validate()
        .map_err(|e| ErrorDetail::invalid_argument(e.to_string()))?;
    Ok(txn)
}

/// Says which item an error is about: `success operation 3: the key is empty`.
fn at(e: ErrorDetail, what: &str, i: usize) -> ErrorDetail {
    let message = format!("{what} {}: {}", i + 1, e.message);
    e.with_message(message)
}

fn to_compare(c: &v1::Compare, max_value: usize) -> Result<Compare, ErrorDetail> {
    validate::key(&c.key)?;
    let op = match v1::CompareOp::try_from(c.op) {
        Ok(v1::CompareOp::Equal) => CompareOp::Equal,
        Ok(v1::CompareOp::NotEqual) => CompareOp::NotEqual,
        Ok(v1::CompareOp::Less) => CompareOp::Less,
        Ok(v1::CompareOp::Greater) => CompareOp::Greater,
        Err(_) => {
            return Err(ErrorDetail::invalid_argument(format!(
                "unknown comparison operator {}",
                c.op
            )));
        }
    };
    let target = match &c.target {
        Some(compare::Target::Version(v)) => CompareTarget::Version(op, *v),
        Some(compare::Target::Value(value)) => {
            if op != CompareOp::Equal {
                return Err(ErrorDetail::invalid_argument(
                    "a value can only be compared for equality",
                ));
            }
            validate::value(value, max_value)?;
            CompareTarget::Value(value.clone())
        }
        None => {
            return Err(ErrorDetail::invalid_argument(
                "compares neither a version nor a value",
            ));
        }
    };
    Ok(Compare {
        key: c.key.clone(),
        target,
    })
}

fn to_ops(ops: &[v1::TxnOp], branch: &str, max_value: usize) -> Result<Vec<TxnOp>, ErrorDetail> {
    let what = format!("{branch} operation");
    ops.iter()
        .enumerate()
        .map(|(i, op)| to_op(op, max_value).map_err(|e| at(e, &what, i)))
        .collect()
}

fn to_op(op: &v1::TxnOp, max_value: usize) -> Result<TxnOp, ErrorDetail> {
    let op = match &op.op {
        Some(txn_op::Op::Put(p)) => {
            validate::value(&p.value, max_value)?;
            TxnOp::Put {
                key: p.key.clone(),
                value: p.value.clone(),
            }
        }
        Some(txn_op::Op::Delete(d)) => TxnOp::Delete { key: d.key.clone() },
        Some(txn_op::Op::Get(g)) => TxnOp::Get { key: g.key.clone() },
        None => {
            return Err(ErrorDetail::invalid_argument(
                "is neither put, delete nor get",
            ));
        }
    };
    validate::key(op.key())?;
    Ok(op)
}

/// The wire form of an outcome; gets return the key they were asked for.
fn response(req: &TxnRequest, outcome: TxnOutcome) -> TxnResponse {
    let ops = if outcome.succeeded {
        &req.success
    } else {
        &req.failure
    };
    let results = outcome
        .results
        .into_iter()
        .zip(ops)
        .map(|(result, op)| {
            let result = match result {
                TxnOpResult::Put => txn_op_result::Result::Put(TxnPutResult {}),
                TxnOpResult::Delete { existed } => {
                    txn_op_result::Result::Delete(TxnDeleteResult { deleted: existed })
                }
                TxnOpResult::Get(found) => txn_op_result::Result::Get(TxnGetResult {
                    kv: found.map(|(value, version)| KeyValue {
                        key: op_key(op),
                        value,
                        version,
                    }),
                }),
            };
            v1::TxnOpResult {
                result: Some(result),
            }
        })
        .collect();
    TxnResponse {
        succeeded: outcome.succeeded,
        revision: outcome.revision,
        results,
    }
}

fn op_key(op: &v1::TxnOp) -> bytes::Bytes {
    match &op.op {
        Some(txn_op::Op::Put(p)) => p.key.clone(),
        Some(txn_op::Op::Delete(d)) => d.key.clone(),
        Some(txn_op::Op::Get(g)) => g.key.clone(),
        None => bytes::Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn get(key: &'static str) -> v1::TxnOp {
        v1::TxnOp {
            op: Some(txn_op::Op::Get(v1::TxnGet {
                key: Bytes::from_static(key.as_bytes()),
            })),
        }
    }

    fn put(key: &'static str, value: &'static str) -> v1::TxnOp {
        v1::TxnOp {
            op: Some(txn_op::Op::Put(v1::TxnPut {
                key: Bytes::from_static(key.as_bytes()),
                value: Bytes::from_static(value.as_bytes()),
            })),
        }
    }

    fn message(r: Result<Txn, ErrorDetail>) -> String {
        r.expect_err("must be refused").message
    }

    #[test]
    fn requests_become_transactions_within_limits() {
        let req = TxnRequest {
            compares: vec![v1::Compare {
                key: Bytes::from_static(b"k"),
                target: Some(compare::Target::Version(5)),
                op: v1::CompareOp::Greater as i32,
            }],
            success: vec![put("k", "v"), get("k")],
            failure: vec![get("k")],
        };
        let txn = to_txn(&req, 10).expect("valid");
        assert_eq!(
            txn.compares[0].target,
            CompareTarget::Version(CompareOp::Greater, 5)
        );
        assert_eq!(txn.success.len(), 2);
        assert_eq!(txn.read_limit, 10 + MAX_KEY_BYTES as u64);
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let base = TxnRequest::default();
        let too_many = TxnRequest {
            success: vec![get("k"); MAX_TXN_OPS + 1],
            ..base.clone()
        };
        assert!(message(to_txn(&too_many, 10)).contains("at most 128"));
        let empty_key = TxnRequest {
            failure: vec![get("k"), get("")],
            ..base.clone()
        };
        assert_eq!(
            message(to_txn(&empty_key, 10)),
            "failure operation 2: the key is empty"
        );
        let big = TxnRequest {
            success: vec![put("k", "0123456789x")],
            ..base.clone()
        };
        assert!(message(to_txn(&big, 10)).starts_with("success operation 1: the value is 11"));
        let twice = TxnRequest {
            success: vec![put("k", "a"), put("k", "b")],
            ..base.clone()
        };
        assert!(message(to_txn(&twice, 10)).contains("writes key k more than once"));
        let no_op = TxnRequest {
            success: vec![v1::TxnOp { op: None }],
            ..base.clone()
        };
        assert!(message(to_txn(&no_op, 10)).contains("neither put, delete nor get"));
        let cmp = |target, op| TxnRequest {
            compares: vec![v1::Compare {
                key: Bytes::from_static(b"k"),
                target,
                op,
            }],
            ..base.clone()
        };
        let value = Some(compare::Target::Value(Bytes::from_static(b"v")));
        assert!(
            message(to_txn(&cmp(value.clone(), v1::CompareOp::Less as i32), 10))
                .contains("only be compared for equality")
        );
        assert!(message(to_txn(&cmp(value, 9), 10)).contains("unknown comparison operator 9"));
        assert!(message(to_txn(&cmp(None, 0), 10)).contains("neither a version nor a value"));
    }

    #[test]
    fn gets_answer_with_the_key_they_asked_for() {
        let req = TxnRequest {
            success: vec![get("a"), put("b", "x"), get("c")],
            ..TxnRequest::default()
        };
        let out = response(
            &req,
            TxnOutcome {
                revision: 9,
                succeeded: true,
                results: vec![
                    TxnOpResult::Get(Some((Bytes::from_static(b"1"), 4))),
                    TxnOpResult::Put,
                    TxnOpResult::Get(None),
                ],
            },
        );
        assert_eq!(out.revision, 9);
        let Some(txn_op_result::Result::Get(g)) = &out.results[0].result else {
            panic!("a get result: {out:?}");
        };
        let kv = g.kv.as_ref().expect("found");
        assert_eq!(
            (&kv.key[..], &kv.value[..], kv.version),
            (&b"a"[..], &b"1"[..], 4)
        );
        assert_eq!(
            out.results[2].result,
            Some(txn_op_result::Result::Get(TxnGetResult { kv: None }))
        );
    }
}
