//! `POST /v1/txn`: a transaction as JSON. Keys and values are UTF-8 strings, as in
//! the rest of the HTTP API; values that come back are text, or `value_base64`
//! when they are not UTF-8 (written by another client).
//!
//! ```json
//! {
//!   "compare": [
//!     {"key": "lock", "version": 0},
//!     {"key": "count", "op": ">", "version": 5},
//!     {"key": "color", "value": "red"}
//!   ],
//!   "success": [{"put": "lock", "value": "me"}, {"get": "count"}, {"delete": "tmp"}],
//!   "failure": [{"get": "lock"}]
//! }
//! ```
//!
//! A comparison has a `key` and either a `version` (with `op` one of `=` (the
//! default), `!=`, `<`, `>`; version 0 means the key is absent) or a `value` (the key
//! exists with exactly that value). An operation names its kind and key: `put`
//! (with `value`), `delete` or `get`. Every list may be left out.
//!
//! The answer (200 whichever branch ran) mirrors the branch that ran:
//!
//! ```json
//! {"succeeded": true, "revision": 42, "results": [
//!   {"put": "lock", "version": 42},
//!   {"get": "count", "found": true, "value": "7", "version": 12},
//!   {"delete": "tmp", "deleted": false}
//! ]}
//! ```
//!
//! A follower forwards the transaction to the leader, like other writes.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use keel_proto::v1::{self, TxnRequest, TxnResponse, compare, txn_op, txn_op_result};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::ApiContext;
use super::group_forward::Hop;
use super::http::{Ctx, HttpError, bad_request, put_bytes};
use super::ops::Forwarding;
use crate::metrics::ClientOp;

/// The transaction route (merged into the main router).
pub(super) fn routes() -> Router<Arc<ApiContext>> {
    Router::new().route("/v1/txn", post(txn))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TxnBody {
    #[serde(default)]
    compare: Vec<CompareBody>,
    #[serde(default)]
    success: Vec<OpBody>,
    #[serde(default)]
    failure: Vec<OpBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompareBody {
    key: String,
    op: Option<String>,
    version: Option<u64>,
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpBody {
    put: Option<String>,
    delete: Option<String>,
    get: Option<String>,
    value: Option<String>,
}

impl CompareBody {
    fn to_proto(&self) -> Result<v1::Compare, String> {
        let op = match self.op.as_deref() {
            None | Some("=") => v1::CompareOp::Equal,
            Some("!=") => v1::CompareOp::NotEqual,
            Some("<") => v1::CompareOp::Less,
            Some(">") => v1::CompareOp::Greater,
            Some(other) => return Err(format!("unknown op {other:?}: use =, !=, < or >")),
        };
        let target = match (self.version, &self.value) {
            (Some(v), None) => compare::Target::Version(v),
            (None, Some(value)) => compare::Target::Value(Bytes::from(value.clone())),
            _ => return Err("needs exactly one of \"version\" and \"value\"".into()),
        };
        Ok(v1::Compare {
            key: Bytes::from(self.key.clone()),
            target: Some(target),
            op: op as i32,
        })
    }
}

impl OpBody {
    /// The operation's kind and key.
    fn kind_and_key(&self) -> Result<(&'static str, &str), String> {
        match (&self.put, &self.delete, &self.get) {
            (Some(k), None, None) => Ok(("put", k)),
            (None, Some(k), None) => Ok(("delete", k)),
            (None, None, Some(k)) => Ok(("get", k)),
            _ => Err("needs exactly one of \"put\", \"delete\" and \"get\"".into()),
        }
    }

    fn to_proto(&self) -> Result<v1::TxnOp, String> {
        let (kind, key) = self.kind_and_key()?;
        let key = Bytes::from(key.to_string());
        let op = match (kind, &self.value) {
            ("put", Some(value)) => txn_op::Op::Put(v1::TxnPut {
                key,
                value: Bytes::from(value.clone()),
            }),
            ("put", None) => return Err("a put needs a \"value\"".into()),
            (_, Some(_)) => return Err(format!("a {kind} takes no \"value\"")),
            ("delete", None) => txn_op::Op::Delete(v1::TxnDelete { key }),
            _ => txn_op::Op::Get(v1::TxnGet { key }),
        };
        Ok(v1::TxnOp { op: Some(op) })
    }
}

fn to_request(body: &TxnBody) -> Result<TxnRequest, HttpError> {
    let ops = |list: &[OpBody], name: &str| {
        list.iter()
            .enumerate()
            .map(|(i, op)| {
                op.to_proto()
                    .map_err(|e| bad_request(format!("{name} operation {}: {e}", i + 1)))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let compares = body
        .compare
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.to_proto()
                .map_err(|e| bad_request(format!("comparison {}: {e}", i + 1)))
        })
        .collect::<Result<_, _>>()?;
    Ok(TxnRequest {
        compares,
        success: ops(&body.success, "success")?,
        failure: ops(&body.failure, "failure")?,
    })
}

/// The answer, with each result named after the operation it answers.
fn response_json(body: &TxnBody, resp: &TxnResponse) -> Json {
    let ops = if resp.succeeded {
        &body.success
    } else {
        &body.failure
    };
    let results: Vec<Json> = resp
        .results
        .iter()
        .zip(ops)
        .map(|(result, op)| {
            let mut obj = serde_json::Map::new();
            if let Ok((kind, key)) = op.kind_and_key() {
                obj.insert(kind.into(), json!(key));
            }
            match &result.result {
                Some(txn_op_result::Result::Put(_)) => {
                    obj.insert("version".into(), json!(resp.revision));
                }
                Some(txn_op_result::Result::Delete(d)) => {
                    obj.insert("deleted".into(), json!(d.deleted));
                }
                Some(txn_op_result::Result::Get(g)) => {
                    obj.insert("found".into(), json!(g.kv.is_some()));
                    if let Some(kv) = &g.kv {
                        put_bytes(&mut obj, "value", &kv.value);
                        obj.insert("version".into(), json!(kv.version));
                    }
                }
                None => {}
            }
            Json::Object(obj)
        })
        .collect();
    json!({"succeeded": resp.succeeded, "revision": resp.revision, "results": results})
}

async fn txn(State(ctx): Ctx, body: Bytes) -> Result<Response, HttpError> {
    let body: TxnBody = serde_json::from_slice(&body).map_err(|e| {
        bad_request(format!(
            "body must be {{\"compare\": [...], \"success\": [...], \"failure\": [...]}}: {e}"
        ))
    })?;
    let req = to_request(&body)?;
    let resp = ctx
        .timed(
            ClientOp::Txn,
            ctx.routed_txn(req, Forwarding::Allowed, Hop::Client),
        )
        .await?;
    Ok(axum::Json(response_json(&body, &resp)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TxnRequest, String> {
        let body: TxnBody = serde_json::from_str(text).map_err(|e| e.to_string())?;
        to_request(&body).map_err(|e| e.1.message)
    }

    #[test]
    fn the_documented_shape_parses() {
        let req = parse(
            r#"{"compare": [{"key": "lock", "version": 0},
                            {"key": "n", "op": ">", "version": 5},
                            {"key": "c", "value": "red"}],
                "success": [{"put": "lock", "value": "me"}, {"get": "n"}, {"delete": "t"}],
                "failure": [{"get": "lock"}]}"#,
        )
        .expect("valid");
        assert_eq!(req.compares.len(), 3);
        assert_eq!(req.compares[1].op, v1::CompareOp::Greater as i32);
        assert_eq!(
            req.compares[2].target,
            Some(compare::Target::Value(Bytes::from_static(b"red")))
        );
        assert!(matches!(req.success[0].op, Some(txn_op::Op::Put(_))));
        assert!(matches!(req.success[2].op, Some(txn_op::Op::Delete(_))));
        assert_eq!(req.failure.len(), 1);
        assert_eq!(parse("{}").expect("empty is fine"), TxnRequest::default());
    }

    #[test]
    fn malformed_bodies_are_refused_with_the_place() {
        for (body, want) in [
            (
                r#"{"success": [{"put": "k"}]}"#,
                "success operation 1: a put needs",
            ),
            (
                r#"{"failure": [{"get": "k", "value": "v"}]}"#,
                "a get takes no",
            ),
            (
                r#"{"success": [{"get": "a", "delete": "b"}]}"#,
                "exactly one of",
            ),
            (
                r#"{"compare": [{"key": "k"}]}"#,
                "comparison 1: needs exactly one",
            ),
            (
                r#"{"compare": [{"key": "k", "version": 1, "op": "=="}]}"#,
                "unknown op",
            ),
            (r#"{"compares": []}"#, "unknown field"),
        ] {
            let err = parse(body).expect_err(body);
            assert!(err.contains(want), "{body}: {err}");
        }
    }

    #[test]
    fn results_are_named_after_their_operations() {
        let body: TxnBody =
            serde_json::from_str(r#"{"success": [{"put": "a", "value": "1"}, {"get": "b"}]}"#)
                .expect("json");
        let resp = TxnResponse {
            succeeded: true,
            revision: 7,
            results: vec![
                v1::TxnOpResult {
                    result: Some(txn_op_result::Result::Put(v1::TxnPutResult {})),
                },
                v1::TxnOpResult {
                    result: Some(txn_op_result::Result::Get(v1::TxnGetResult {
                        kv: Some(v1::KeyValue {
                            key: Bytes::from_static(b"b"),
                            value: Bytes::from_static(&[0xFF]),
                            version: 3,
                        }),
                    })),
                },
            ],
        };
        assert_eq!(
            response_json(&body, &resp),
            json!({"succeeded": true, "revision": 7, "results": [
                {"put": "a", "version": 7},
                {"get": "b", "found": true, "value_base64": "/w==", "version": 3},
            ]})
        );
    }
}
