//! Transactions: comparisons on keys, then one of two lists of operations, applied
//! atomically as one log entry (encoding in the module docs of [`super`]).

use std::collections::HashSet;

use bytes::Bytes;

use super::display::Escaped;

/// Most comparisons plus operations (both branches) one transaction may hold.
///
/// The bound keeps a transaction's work in the apply thread, and its response,
/// small next to a batch of ordinary writes; etcd's default `--max-txn-ops` is the
/// same number.
pub const MAX_TXN_OPS: usize = 128;

/// How a key's version is compared with a number.
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

impl CompareOp {
    /// Whether `left op right` holds.
    pub fn holds(self, left: u64, right: u64) -> bool {
        match self {
            CompareOp::Equal => left == right,
            CompareOp::NotEqual => left != right,
            CompareOp::Less => left < right,
            CompareOp::Greater => left > right,
        }
    }

    /// `=`, `!=`, `<` or `>`.
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Equal => "=",
            CompareOp::NotEqual => "!=",
            CompareOp::Less => "<",
            CompareOp::Greater => ">",
        }
    }
}

/// What a comparison looks at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CompareTarget {
    /// The key's version (the log index that last wrote it), with 0 standing for
    /// "absent": `Version(Equal, 0)` holds exactly when the key does not exist.
    Version(CompareOp, u64),
    /// The key exists and its value is exactly these bytes. An absent key never
    /// matches, not even an empty value.
    Value(Bytes),
}

/// One comparison; a transaction's `success` branch runs when all of them hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Compare {
    /// The key compared.
    pub key: Bytes,
    /// What is compared, and with what.
    pub target: CompareTarget,
}

/// One operation of a branch. Operations run in order, so a `Get` after a `Put`
/// of the same key sees the new value (with the transaction's revision as version).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TxnOp {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
    },
    /// Remove `key` (nothing happens if it does not exist).
    Delete {
        /// The key.
        key: Bytes,
    },
    /// Read `key`.
    Get {
        /// The key.
        key: Bytes,
    },
}

impl TxnOp {
    /// The key the operation acts on.
    pub fn key(&self) -> &Bytes {
        match self {
            TxnOp::Put { key, .. } | TxnOp::Delete { key } | TxnOp::Get { key } => key,
        }
    }

    /// Whether the operation changes the key.
    pub fn is_write(&self) -> bool {
        !matches!(self, TxnOp::Get { .. })
    }
}

/// A transaction: if every comparison holds, the `success` operations run,
/// otherwise the `failure` ones; all in one state-machine step, and every write gets
/// the entry's index as its version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Txn {
    /// All must hold for `success` to run.
    pub compares: Vec<Compare>,
    /// Run when every comparison holds (also when there are none).
    pub success: Vec<TxnOp>,
    /// Run when some comparison does not hold.
    pub failure: Vec<TxnOp>,
    /// Most bytes (keys plus values) the branch's gets may return together. Chosen
    /// by the node that proposes the transaction (from its message size limit) and
    /// carried in the entry, so every replica decides alike: over it, the
    /// transaction changes nothing (see `ApplyOutcome::TxnReadLimit`).
    pub read_limit: u64,
}

/// Why a transaction is not well formed. The decoder refuses such transactions and
/// the API refuses to propose them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// More comparisons plus operations than [`MAX_TXN_OPS`].
    #[error(
        "a transaction may hold at most {MAX_TXN_OPS} comparisons and operations in all; this one has {0}"
    )]
    TooManyOps(u64),
    /// A branch writes (puts or deletes) one key twice; which write should win would
    /// be a guess, so it is refused.
    #[error("the {branch} branch writes key {} more than once", Escaped(.key))]
    DuplicateWrite {
        /// `success` or `failure`.
        branch: &'static str,
        /// The key.
        key: Bytes,
    },
}

impl Txn {
    /// Total comparisons plus operations.
    pub fn len(&self) -> usize {
        self.compares.len() + self.success.len() + self.failure.len()
    }

    /// Whether the transaction holds nothing at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the rules every transaction must follow (the size of keys and values
    /// is the API's business, as for single writes).
    pub fn validate(&self) -> Result<(), TxnError> {
        if self.len() > MAX_TXN_OPS {
            return Err(TxnError::TooManyOps(self.len() as u64));
        }
        check_branch("success", &self.success)?;
        check_branch("failure", &self.failure)
    }
}

/// No key is written twice in one branch.
pub(super) fn check_branch(branch: &'static str, ops: &[TxnOp]) -> Result<(), TxnError> {
    let mut written = HashSet::with_capacity(ops.len());
    for op in ops.iter().filter(|op| op.is_write()) {
        if !written.insert(op.key()) {
            return Err(TxnError::DuplicateWrite {
                branch,
                key: op.key().clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &'static str) -> Bytes {
        Bytes::from_static(k.as_bytes())
    }

    #[test]
    fn compare_ops() {
        assert!(CompareOp::Equal.holds(0, 0));
        assert!(CompareOp::NotEqual.holds(1, 0));
        assert!(CompareOp::Less.holds(4, 5) && !CompareOp::Less.holds(5, 5));
        assert!(CompareOp::Greater.holds(6, 5) && !CompareOp::Greater.holds(5, 5));
    }

    #[test]
    fn validation() {
        let put = |k| TxnOp::Put {
            key: key(k),
            value: Bytes::new(),
        };
        let mut t = Txn {
            compares: vec![],
            success: vec![put("a"), TxnOp::Get { key: key("a") }, put("b")],
            failure: vec![put("a")],
            read_limit: 0,
        };
        assert_eq!(t.validate(), Ok(()));
        t.failure.push(TxnOp::Delete { key: key("a") });
        let err = t.validate().expect_err("duplicate");
        assert_eq!(
            err.to_string(),
            "the failure branch writes key a more than once"
        );
        t.failure = vec![TxnOp::Get { key: key("x") }; MAX_TXN_OPS - 2];
        assert_eq!(
            t.validate(),
            Err(TxnError::TooManyOps(MAX_TXN_OPS as u64 + 1))
        );
        t.failure.pop();
        assert_eq!(t.validate(), Ok(()));
    }
}
