//! Binary encoding of a [`Txn`], the body of op `0x03` (format in the module docs
//! of [`super`]). Counts are checked against [`MAX_TXN_OPS`] before anything is
//! allocated, so a hostile count cannot make the decoder reserve memory.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::{MAX_VARINT_LEN, Reader, put_varint};
use super::txn::{MAX_TXN_OPS, check_branch};
use super::{CommandError, Compare, CompareOp, CompareTarget, Txn, TxnError, TxnOp};

const CMP_VERSION: u8 = 0x01;
const CMP_VALUE: u8 = 0x02;

const CMP_EQUAL: u8 = 0x00;
const CMP_NOT_EQUAL: u8 = 0x01;
const CMP_LESS: u8 = 0x02;
const CMP_GREATER: u8 = 0x03;

const TXN_PUT: u8 = 0x01;
const TXN_DELETE: u8 = 0x02;
const TXN_GET: u8 = 0x03;

/// An upper bound of the encoded size, to allocate once.
pub(super) fn encoded_len_bound(txn: &Txn) -> usize {
    // Per item: a tag, a comparison operator, and up to two lengths or numbers.
    let per_item = 2 + 2 * MAX_VARINT_LEN;
    let compares: usize = txn
        .compares
        .iter()
        .map(|c| match &c.target {
            CompareTarget::Version(..) => c.key.len(),
            CompareTarget::Value(v) => c.key.len() + v.len(),
        })
        .sum();
    let ops: usize = txn
        .success
        .iter()
        .chain(&txn.failure)
        .map(|op| match op {
            TxnOp::Put { key, value } => key.len() + value.len(),
            TxnOp::Delete { key } | TxnOp::Get { key } => key.len(),
        })
        .sum();
    4 * MAX_VARINT_LEN + txn.len() * per_item + compares + ops
}

fn put_bytes(buf: &mut BytesMut, bytes: &[u8]) {
    put_varint(buf, bytes.len() as u64);
    buf.put_slice(bytes);
}

/// Appends the body of a transaction (everything after the op code).
pub(super) fn encode(buf: &mut BytesMut, txn: &Txn) {
    put_varint(buf, txn.read_limit);
    put_varint(buf, txn.compares.len() as u64);
    for c in &txn.compares {
        match &c.target {
            CompareTarget::Version(op, version) => {
                buf.put_u8(CMP_VERSION);
                put_bytes(buf, &c.key);
                buf.put_u8(match op {
                    CompareOp::Equal => CMP_EQUAL,
                    CompareOp::NotEqual => CMP_NOT_EQUAL,
                    CompareOp::Less => CMP_LESS,
                    CompareOp::Greater => CMP_GREATER,
                });
                put_varint(buf, *version);
            }
            CompareTarget::Value(value) => {
                buf.put_u8(CMP_VALUE);
                put_bytes(buf, &c.key);
                put_bytes(buf, value);
            }
        }
    }
    for branch in [&txn.success, &txn.failure] {
        put_varint(buf, branch.len() as u64);
        for op in branch {
            match op {
                TxnOp::Put { key, value } => {
                    buf.put_u8(TXN_PUT);
                    put_bytes(buf, key);
                    put_bytes(buf, value);
                }
                TxnOp::Delete { key } => {
                    buf.put_u8(TXN_DELETE);
                    put_bytes(buf, key);
                }
                TxnOp::Get { key } => {
                    buf.put_u8(TXN_GET);
                    put_bytes(buf, key);
                }
            }
        }
    }
}

/// Counts items against [`MAX_TXN_OPS`] as their counts are read.
struct OpBudget(u64);

impl OpBudget {
    fn take(&mut self, r: &mut Reader<'_>, field: &'static str) -> Result<usize, CommandError> {
        let n = r.varint(field)?;
        self.0 = self.0.saturating_add(n);
        if self.0 > MAX_TXN_OPS as u64 {
            return Err(TxnError::TooManyOps(self.0).into());
        }
        // At most MAX_TXN_OPS, so it fits.
        Ok(n as usize)
    }
}

/// Reads the body of a transaction (everything after the op code).
pub(super) fn decode(
    r: &mut Reader<'_>,
    make: &impl Fn(Range<usize>) -> Bytes,
) -> Result<Txn, CommandError> {
    let read_limit = r.varint("transaction read limit")?;
    let mut budget = OpBudget(0);
    let n = budget.take(r, "comparison count")?;
    let mut compares = Vec::with_capacity(n);
    for _ in 0..n {
        compares.push(decode_compare(r, make)?);
    }
    let success = decode_branch(r, make, &mut budget, ("success", "success count"))?;
    let failure = decode_branch(r, make, &mut budget, ("failure", "failure count"))?;
    Ok(Txn {
        compares,
        success,
        failure,
        read_limit,
    })
}

fn decode_compare(
    r: &mut Reader<'_>,
    make: &impl Fn(Range<usize>) -> Bytes,
) -> Result<Compare, CommandError> {
    let tag = r.u8("comparison")?;
    let key = make(r.bytes("comparison key")?);
    let target = match tag {
        CMP_VERSION => {
            let op = match r.u8("comparison operator")? {
                CMP_EQUAL => CompareOp::Equal,
                CMP_NOT_EQUAL => CompareOp::NotEqual,
                CMP_LESS => CompareOp::Less,
                CMP_GREATER => CompareOp::Greater,
                tag => {
                    return Err(CommandError::UnknownTag {
                        field: "comparison operator",
                        tag,
                    });
                }
            };
            CompareTarget::Version(op, r.varint("comparison version")?)
        }
        CMP_VALUE => CompareTarget::Value(make(r.bytes("comparison value")?)),
        tag => {
            return Err(CommandError::UnknownTag {
                field: "comparison",
                tag,
            });
        }
    };
    Ok(Compare { key, target })
}

fn decode_branch(
    r: &mut Reader<'_>,
    make: &impl Fn(Range<usize>) -> Bytes,
    budget: &mut OpBudget,
    (branch, count_field): (&'static str, &'static str),
) -> Result<Vec<TxnOp>, CommandError> {
    let n = budget.take(r, count_field)?;
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        let tag = r.u8("transaction operation")?;
        let key = make(r.bytes("operation key")?);
        ops.push(match tag {
            TXN_PUT => TxnOp::Put {
                key,
                value: make(r.bytes("operation value")?),
            },
            TXN_DELETE => TxnOp::Delete { key },
            TXN_GET => TxnOp::Get { key },
            tag => {
                return Err(CommandError::UnknownTag {
                    field: "transaction operation",
                    tag,
                });
            }
        });
    }
    check_branch(branch, &ops)?;
    Ok(ops)
}

#[cfg(test)]
pub(super) mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::command::Command;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn known_encoding_is_stable() {
        // Pinned bytes: changing them breaks every existing WAL and replica.
        let txn = Command::Txn(Txn {
            compares: vec![
                Compare {
                    key: b("a"),
                    target: CompareTarget::Version(CompareOp::Greater, 300),
                },
                Compare {
                    key: b("b"),
                    target: CompareTarget::Value(b("x")),
                },
            ],
            success: vec![
                TxnOp::Put {
                    key: b("a"),
                    value: b("v"),
                },
                TxnOp::Get { key: b("a") },
            ],
            failure: vec![TxnOp::Delete { key: b("b") }],
            read_limit: 1000,
        });
        #[rustfmt::skip]
        let want: &[u8] = &[
            1, 3, 0xE8, 0x07,           // version, op, read limit 1000
            2,                          // two comparisons
            1, 1, b'a', 3, 0xAC, 0x02,  // version(a) > 300
            2, 1, b'b', 1, b'x',        // value(b) = x
            2,                          // success: two operations
            1, 1, b'a', 1, b'v',        // put a v
            3, 1, b'a',                 // get a
            1,                          // failure: one operation
            2, 1, b'b',                 // delete b
        ];
        assert_eq!(&txn.encode()[..], want);
        assert_eq!(Command::decode(want), Ok(txn));
        let empty = Command::Txn(Txn {
            compares: vec![],
            success: vec![],
            failure: vec![],
            read_limit: 0,
        });
        assert_eq!(&empty.encode()[..], &[1, 3, 0, 0, 0, 0]);
    }

    #[test]
    fn malformed_transactions_get_a_precise_error() {
        let unknown = |field, tag| CommandError::UnknownTag { field, tag };
        let cases: &[(&[u8], CommandError)] = &[
            (&[1, 3], CommandError::Truncated("transaction read limit")),
            (&[1, 3, 0], CommandError::Truncated("comparison count")),
            (&[1, 3, 0, 1, 9, 0], unknown("comparison", 9)),
            (&[1, 3, 0, 1, 1, 0, 4, 0], unknown("comparison operator", 4)),
            (&[1, 3, 0, 0, 1, 7, 0], unknown("transaction operation", 7)),
            (
                &[1, 3, 0, 0, 1, 1, 1, b'k'],
                CommandError::Truncated("operation value"),
            ),
            (&[1, 3, 0, 0, 0], CommandError::Truncated("failure count")),
            (&[1, 3, 0, 0, 0, 0, 0], CommandError::TrailingBytes(1)),
            (&[1, 3, 0, 0x81, 0x01, 0], TxnError::TooManyOps(129).into()),
            (
                &[
                    1, 3, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
                ],
                TxnError::TooManyOps(u64::MAX).into(),
            ),
            (
                &[1, 3, 0, 0, 2, 2, 1, b'k', 1, 1, b'k', 0, 0],
                TxnError::DuplicateWrite {
                    branch: "success",
                    key: b("k"),
                }
                .into(),
            ),
            (
                &[1, 3, 0x80, 0x00, 0, 0, 0],
                CommandError::BadVarint("transaction read limit"),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(Command::decode(bytes).as_ref(), Err(want), "{bytes:?}");
        }
    }

    #[test]
    fn the_largest_transaction_round_trips_and_one_more_is_refused() {
        let get = TxnOp::Get { key: b("k") };
        let mut txn = Txn {
            compares: vec![],
            success: vec![get.clone(); MAX_TXN_OPS / 2],
            failure: vec![get; MAX_TXN_OPS / 2],
            read_limit: u64::MAX,
        };
        let c = Command::Txn(txn.clone());
        assert_eq!(Command::decode(&c.encode()), Ok(c));
        txn.compares.push(Compare {
            key: b("k"),
            target: CompareTarget::Version(CompareOp::Equal, 0),
        });
        assert_eq!(
            Command::decode(&Command::Txn(txn).encode()),
            Err(TxnError::TooManyOps(MAX_TXN_OPS as u64 + 1).into())
        );
    }

    proptest! {
        #[test]
        fn random_transaction_bodies_never_panic_and_decode_only_canonically(
            body in proptest::collection::vec(any::<u8>(), 0..96)
        ) {
            let mut data = vec![1, 3];
            data.extend_from_slice(&body);
            if let Ok(c) = Command::decode(&data) {
                prop_assert_eq!(&c.encode()[..], &data[..]);
            }
        }

        #[test]
        fn truncated_transactions_are_refused(txn in arb_txn(), cut in any::<prop::sample::Index>()) {
            let bytes = Command::Txn(txn).encode();
            let keep = cut.index(bytes.len());
            prop_assert!(Command::decode(&bytes[..keep]).is_err());
        }
    }

    /// Well-formed transactions (each branch writes a key at most once).
    pub(in crate::command) fn arb_txn() -> impl Strategy<Value = Txn> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from);
        let op = prop_oneof![
            Just(CompareOp::Equal),
            Just(CompareOp::NotEqual),
            Just(CompareOp::Less),
            Just(CompareOp::Greater)
        ];
        let target = prop_oneof![
            (op, any::<u64>()).prop_map(|(op, v)| CompareTarget::Version(op, v)),
            bytes().prop_map(CompareTarget::Value),
        ];
        let compare = (bytes(), target).prop_map(|(key, target)| Compare { key, target });
        let txn_op = prop_oneof![
            (bytes(), bytes()).prop_map(|(key, value)| TxnOp::Put { key, value }),
            bytes().prop_map(|key| TxnOp::Delete { key }),
            bytes().prop_map(|key| TxnOp::Get { key }),
        ];
        let branch = proptest::collection::vec(txn_op, 0..8).prop_map(|ops| {
            let mut seen = std::collections::HashSet::new();
            ops.into_iter()
                .filter(|op| !op.is_write() || seen.insert(op.key().clone()))
                .collect::<Vec<_>>()
        });
        (
            proptest::collection::vec(compare, 0..6),
            branch.clone(),
            branch,
            any::<u64>(),
        )
            .prop_map(|(compares, success, failure, read_limit)| Txn {
                compares,
                success,
                failure,
                read_limit,
            })
    }
}
