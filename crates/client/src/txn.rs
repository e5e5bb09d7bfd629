//! Transactions: compare keys, then run one of two lists of operations, atomically.
//!
//! ```no_run
//! # async fn example(client: keel_client::Client) -> Result<(), keel_client::Error> {
//! use keel_client::{Compare, Txn, TxnOp};
//!
//! // Take a lock if nobody holds it; otherwise read who does.
//! let r = client
//!     .txn(
//!         Txn::new()
//!             .when(Compare::absent("lock"))
//!             .then(TxnOp::put("lock", "me"))
//!             .otherwise(TxnOp::get("lock")),
//!     )
//!     .await?;
//! println!("took the lock: {} (revision {})", r.succeeded, r.revision);
//! # Ok(())
//! # }
//! ```

use bytes::Bytes;
use keel_proto::v1::{self, compare, txn_op, txn_op_result};

use crate::call::Op;
use crate::client::Client;
use crate::error::Error;
use crate::types::KeyValue;

/// How a comparison relates a key's version to a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// `version == n`.
    Equal,
    /// `version != n`.
    NotEqual,
    /// `version < n`.
    Less,
    /// `version > n`.
    Greater,
}

/// What a comparison looks at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CompareTarget {
    /// The key's version (the revision that last wrote it; 0 when it is absent).
    Version(CompareOp, u64),
    /// The key exists and its value is exactly these bytes.
    Value(Bytes),
}

/// One condition of a transaction, on the state before it runs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Compare {
    /// The key.
    pub key: Bytes,
    /// What is compared, and with what.
    pub target: CompareTarget,
}

impl Compare {
    /// The key's version compared with `version` (0 stands for "absent").
    pub fn version(key: impl Into<Bytes>, op: CompareOp, version: u64) -> Self {
        Compare {
            key: key.into(),
            target: CompareTarget::Version(op, version),
        }
    }

    /// The key does not exist.
    pub fn absent(key: impl Into<Bytes>) -> Self {
        Self::version(key, CompareOp::Equal, 0)
    }

    /// The key exists.
    pub fn exists(key: impl Into<Bytes>) -> Self {
        Self::version(key, CompareOp::Greater, 0)
    }

    /// The key exists and holds exactly `value`.
    pub fn value(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Compare {
            key: key.into(),
            target: CompareTarget::Value(value.into()),
        }
    }

    fn to_proto(&self) -> v1::Compare {
        let (op, target) = match &self.target {
            CompareTarget::Version(op, v) => (*op, compare::Target::Version(*v)),
            CompareTarget::Value(v) => (CompareOp::Equal, compare::Target::Value(v.clone())),
        };
        let op = match op {
            CompareOp::Equal => v1::CompareOp::Equal,
            CompareOp::NotEqual => v1::CompareOp::NotEqual,
            CompareOp::Less => v1::CompareOp::Less,
            CompareOp::Greater => v1::CompareOp::Greater,
        };
        v1::Compare {
            key: self.key.clone(),
            target: Some(target),
            op: op.into(),
        }
    }
}

/// One operation of a transaction's branch. Operations run in order: a get sees
/// the branch's earlier writes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TxnOp {
    /// Set a key.
    Put {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
    },
    /// Remove a key.
    Delete {
        /// The key.
        key: Bytes,
    },
    /// Read a key.
    Get {
        /// The key.
        key: Bytes,
    },
}

impl TxnOp {
    /// Set `key` to `value`.
    pub fn put(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        TxnOp::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    /// Remove `key`.
    pub fn delete(key: impl Into<Bytes>) -> Self {
        TxnOp::Delete { key: key.into() }
    }

    /// Read `key`.
    pub fn get(key: impl Into<Bytes>) -> Self {
        TxnOp::Get { key: key.into() }
    }

    fn to_proto(&self) -> v1::TxnOp {
        let op = match self {
            TxnOp::Put { key, value } => txn_op::Op::Put(v1::TxnPut {
                key: key.clone(),
                value: value.clone(),
            }),
            TxnOp::Delete { key } => txn_op::Op::Delete(v1::TxnDelete { key: key.clone() }),
            TxnOp::Get { key } => txn_op::Op::Get(v1::TxnGet { key: key.clone() }),
        };
        v1::TxnOp { op: Some(op) }
    }
}

/// A transaction, built with [`Txn::when`], [`Txn::then`] and [`Txn::otherwise`]:
/// if every comparison holds (or there are none), the `then` operations run,
/// otherwise the `otherwise` ones — all in one atomic write whose revision is the
/// version of every key it writes.
///
/// Limits (checked by the server, INVALID_ARGUMENT if broken, nothing applied): at
/// most 128 comparisons and operations in all; keys and values as for
/// [`Client::put`]; a branch may not write one key twice.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Txn {
    /// All must hold for `success` to run.
    pub compares: Vec<Compare>,
    /// Run when every comparison holds.
    pub success: Vec<TxnOp>,
    /// Run otherwise.
    pub failure: Vec<TxnOp>,
}

impl Txn {
    /// An empty transaction (it runs its empty `then` branch).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a comparison; all of them must hold.
    pub fn when(mut self, compare: Compare) -> Self {
        self.compares.push(compare);
        self
    }

    /// Adds an operation to the branch that runs when every comparison holds.
    pub fn then(mut self, op: TxnOp) -> Self {
        self.success.push(op);
        self
    }

    /// Adds an operation to the branch that runs when a comparison does not hold.
    pub fn otherwise(mut self, op: TxnOp) -> Self {
        self.failure.push(op);
        self
    }

    fn to_proto(&self) -> v1::TxnRequest {
        v1::TxnRequest {
            compares: self.compares.iter().map(Compare::to_proto).collect(),
            success: self.success.iter().map(TxnOp::to_proto).collect(),
            failure: self.failure.iter().map(TxnOp::to_proto).collect(),
        }
    }
}

/// The result of one operation of the branch that ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOpResult {
    /// The key was set; its version is the transaction's revision.
    Put,
    /// The key was removed, if it existed.
    Delete {
        /// Whether it existed at that point of the transaction.
        existed: bool,
    },
    /// The key at that point of the transaction; `None` if it did not exist.
    Get(Option<KeyValue>),
}

/// The answer to [`Client::txn`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether every comparison held: the `then` branch ran (else `otherwise`).
    pub succeeded: bool,
    /// The log index the transaction committed at.
    pub revision: u64,
    /// One result per operation of the branch that ran, in order.
    pub results: Vec<TxnOpResult>,
}

impl TxnOpResult {
    fn from_proto(r: v1::TxnOpResult) -> Result<Self, Error> {
        match r.result {
            Some(txn_op_result::Result::Put(_)) => Ok(TxnOpResult::Put),
            Some(txn_op_result::Result::Delete(d)) => {
                Ok(TxnOpResult::Delete { existed: d.deleted })
            }
            Some(txn_op_result::Result::Get(g)) => Ok(TxnOpResult::Get(g.kv.map(KeyValue::from))),
            // The transaction was applied; only its answer is unreadable.
            None => Err(Error::OutcomeUnknown {
                reason: "the server sent a transaction result without a kind".into(),
            }),
        }
    }
}

impl Client {
    /// Runs a transaction: one atomic write, whichever branch runs.
    ///
    /// Retried like [`Client::put`]: only after failures that prove it was not
    /// applied; see [`Error::OutcomeUnknown`] for the others.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse, Error> {
        let message = txn.to_proto();
        // Every key of a transaction is in one group (the node refuses it
        // otherwise): the first one routes it.
        let key = Bytes::copy_from_slice(message.keys().next().unwrap_or_default());
        let response = self
            .kv_call(Op::Write, &key, message, |mut kv, r| async move {
                kv.txn(r).await
            })
            .await?;
        Ok(TxnResponse {
            succeeded: response.succeeded,
            revision: response.revision,
            results: response
                .results
                .into_iter()
                .map(TxnOpResult::from_proto)
                .collect::<Result<_, _>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_maps_to_the_wire() {
        let t = Txn::new()
            .when(Compare::absent("a"))
            .when(Compare::exists("b"))
            .when(Compare::version("c", CompareOp::Less, 9))
            .when(Compare::value("d", "x"))
            .then(TxnOp::put("a", "1"))
            .then(TxnOp::get("a"))
            .otherwise(TxnOp::delete("b"))
            .to_proto();
        let ops: Vec<(i32, Option<compare::Target>)> = t
            .compares
            .iter()
            .map(|c| (c.op, c.target.clone()))
            .collect();
        assert_eq!(
            ops,
            vec![
                (
                    v1::CompareOp::Equal.into(),
                    Some(compare::Target::Version(0))
                ),
                (
                    v1::CompareOp::Greater.into(),
                    Some(compare::Target::Version(0))
                ),
                (
                    v1::CompareOp::Less.into(),
                    Some(compare::Target::Version(9))
                ),
                (
                    v1::CompareOp::Equal.into(),
                    Some(compare::Target::Value(Bytes::from_static(b"x")))
                ),
            ]
        );
        assert_eq!(t.success.len(), 2);
        assert!(matches!(
            &t.failure[0].op,
            Some(txn_op::Op::Delete(d)) if d.key == "b"
        ));
    }
}
