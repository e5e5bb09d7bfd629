//! What the server's routing and the client's both need of a transaction
//! request: the keys it names.

use crate::v1::{TxnRequest, txn_op};

impl TxnRequest {
    /// Every key the request names: its comparisons', then its operations'
    /// (an operation naming nothing has the empty key, which validation
    /// refuses).
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        let compares = self.compares.iter().map(|c| &c.key[..]);
        let ops = self
            .success
            .iter()
            .chain(&self.failure)
            .map(|op| match &op.op {
                Some(txn_op::Op::Put(p)) => &p.key[..],
                Some(txn_op::Op::Delete(d)) => &d.key[..],
                Some(txn_op::Op::Get(g)) => &g.key[..],
                None => &[][..],
            });
        compares.chain(ops)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::v1::{self, TxnOp};

    use super::*;

    #[test]
    fn a_transactions_keys_are_its_comparisons_and_operations() {
        let op = |op| TxnOp { op: Some(op) };
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        let req = TxnRequest {
            compares: vec![v1::Compare {
                key: b("c"),
                ..Default::default()
            }],
            success: vec![
                op(txn_op::Op::Put(v1::TxnPut {
                    key: b("p"),
                    value: b("v"),
                })),
                op(txn_op::Op::Get(v1::TxnGet { key: b("g") })),
            ],
            failure: vec![
                op(txn_op::Op::Delete(v1::TxnDelete { key: b("d") })),
                TxnOp { op: None },
            ],
        };
        let keys: Vec<&[u8]> = req.keys().collect();
        assert_eq!(keys, [&b"c"[..], b"p", b"g", b"d", b""]);
    }
}
