//! Human-readable form of commands, for `keel wal dump` and the event log.

use std::fmt;

use super::{Command, Compare, CompareTarget, Expect, MoveStep, SlotCommand, Txn, TxnOp};

/// Writes bytes as text: printable ASCII as-is, everything else — including space,
/// backslash and double quote, which would make the output ambiguous — as `\xNN`;
/// empty as `""`.
pub(crate) struct Escaped<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("\"\"");
        }
        for &b in self.0 {
            if b.is_ascii_graphic() && b != b'\\' && b != b'"' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Expect {
    /// ` IF-ABSENT`, ` IF-VERSION=n`, or nothing for `Any` (leading space included,
    /// so it appends to a command).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Any => Ok(()),
            Expect::Absent => f.write_str(" IF-ABSENT"),
            Expect::Version(v) => write!(f, " IF-VERSION={v}"),
        }
    }
}

impl fmt::Display for Command {
    /// `SET key value`, `DEL key`, with a precondition appended if there is one:
    /// `SET name1 Sam IF-VERSION=7`; `ADD key -3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Put { key, value, expect } => {
                write!(f, "SET {} {}{expect}", Escaped(key), Escaped(value))
            }
            Command::Delete { key, expect } => write!(f, "DEL {}{expect}", Escaped(key)),
            Command::Txn(txn) => txn.fmt(f),
            Command::Add { key, delta } => write!(f, "ADD {} {delta}", Escaped(key)),
            Command::Slot(cmd) => cmd.fmt(f),
        }
    }
}

impl fmt::Display for SlotCommand {
    /// `FENCE-SLOT 17 EPOCH=5`; an ingest page shows its position and counts,
    /// not its data: `INGEST-SLOT 17 EPOCH=5 ROUND=0 PAGE=2 PUTS=310 DELETES=0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} EPOCH={}", self.step.name(), self.slot, self.epoch)?;
        match &self.step {
            MoveStep::Fence | MoveStep::Unfence => Ok(()),
            MoveStep::Ingest(page) => write!(
                f,
                " ROUND={} PAGE={} PUTS={} DELETES={}",
                page.round,
                page.page,
                page.puts.len(),
                page.deletes.len()
            ),
            MoveStep::Ingested {
                fence_index,
                revision,
            } => write!(f, " FENCE-INDEX={fence_index} REVISION={revision}"),
            MoveStep::Own { map_version } | MoveStep::Drop { map_version } => {
                write!(f, " MAP-VERSION={map_version}")
            }
        }
    }
}

impl fmt::Display for Compare {
    /// `version(k)>5` or `value(k)=v`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = Escaped(&self.key);
        match &self.target {
            CompareTarget::Version(op, v) => write!(f, "version({key}){}{v}", op.symbol()),
            CompareTarget::Value(value) => write!(f, "value({key})={}", Escaped(value)),
        }
    }
}

impl fmt::Display for TxnOp {
    /// `SET k v`, `DEL k` or `GET k`, like single commands.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxnOp::Put { key, value } => write!(f, "SET {} {}", Escaped(key), Escaped(value)),
            TxnOp::Delete { key } => write!(f, "DEL {}", Escaped(key)),
            TxnOp::Get { key } => write!(f, "GET {}", Escaped(key)),
        }
    }
}

/// Writes ` {word} a{sep}b{sep}c`, or nothing for an empty list.
fn list<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    word: &str,
    sep: &str,
    items: &[T],
) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        let lead = if i == 0 { word } else { sep };
        write!(f, " {lead} {item}")?;
    }
    Ok(())
}

impl fmt::Display for Txn {
    /// `TXN IF version(a)=5 AND value(b)=x THEN SET a 1 ; DEL b ELSE GET a`; empty
    /// parts are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TXN")?;
        list(f, "IF", "AND", &self.compares)?;
        list(f, "THEN", ";", &self.success)?;
        list(f, "ELSE", ";", &self.failure)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn commands_print_like_the_dump_format() {
        let put = Command::Put {
            key: Bytes::from_static(b"name1"),
            value: Bytes::from_static(b"Sam"),
            expect: Expect::Any,
        };
        assert_eq!(put.to_string(), "SET name1 Sam");
        let del = Command::Delete {
            key: Bytes::from_static(b"name1"),
            expect: Expect::Version(7),
        };
        assert_eq!(del.to_string(), "DEL name1 IF-VERSION=7");
        let create = Command::Put {
            key: Bytes::from_static(b"a b\\c"),
            value: Bytes::from_static(&[0, 0xFF]),
            expect: Expect::Absent,
        };
        assert_eq!(create.to_string(), "SET a\\x20b\\x5cc \\x00\\xff IF-ABSENT");
        let empty = Command::Put {
            key: Bytes::from_static(b"k"),
            value: Bytes::new(),
            expect: Expect::Any,
        };
        assert_eq!(empty.to_string(), "SET k \"\"");
        let add = Command::Add {
            key: Bytes::from_static(b"hits"),
            delta: -3,
        };
        assert_eq!(add.to_string(), "ADD hits -3");
        let quotes = Command::Put {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"\"\""),
            expect: Expect::Any,
        };
        assert_eq!(quotes.to_string(), "SET k \\x22\\x22");
    }

    #[test]
    fn slot_commands_print_their_step_and_numbers() {
        use crate::command::{IngestPage, IngestPut};
        let slot = keel_placement::Slot::new(17).expect("slot");
        let cmd = |step| {
            Command::Slot(SlotCommand {
                slot,
                epoch: 5,
                step,
            })
        };
        assert_eq!(cmd(MoveStep::Fence).to_string(), "FENCE-SLOT 17 EPOCH=5");
        assert_eq!(
            cmd(MoveStep::Unfence).to_string(),
            "UNFENCE-SLOT 17 EPOCH=5"
        );
        let page = IngestPage {
            round: 1,
            page: 2,
            puts: vec![IngestPut {
                key: Bytes::from_static(b"k"),
                version: 3,
                value: Bytes::from_static(b"v"),
            }],
            deletes: vec![],
        };
        assert_eq!(
            cmd(MoveStep::Ingest(page)).to_string(),
            "INGEST-SLOT 17 EPOCH=5 ROUND=1 PAGE=2 PUTS=1 DELETES=0"
        );
        assert_eq!(
            cmd(MoveStep::Ingested {
                fence_index: 40,
                revision: 90
            })
            .to_string(),
            "SLOT-INGESTED 17 EPOCH=5 FENCE-INDEX=40 REVISION=90"
        );
        assert_eq!(
            cmd(MoveStep::Own { map_version: 6 }).to_string(),
            "OWN-SLOT 17 EPOCH=5 MAP-VERSION=6"
        );
        assert_eq!(
            cmd(MoveStep::Drop { map_version: 6 }).to_string(),
            "DROP-SLOT 17 EPOCH=5 MAP-VERSION=6"
        );
    }

    #[test]
    fn transactions_print_readably() {
        use crate::command::CompareOp;
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        let txn = Command::Txn(Txn {
            compares: vec![
                Compare {
                    key: b("a"),
                    target: CompareTarget::Version(CompareOp::NotEqual, 0),
                },
                Compare {
                    key: b("b"),
                    target: CompareTarget::Value(b("x y")),
                },
            ],
            success: vec![
                TxnOp::Put {
                    key: b("a"),
                    value: b("1"),
                },
                TxnOp::Delete { key: b("b") },
            ],
            failure: vec![TxnOp::Get { key: b("a") }],
            read_limit: 10,
        });
        assert_eq!(
            txn.to_string(),
            "TXN IF version(a)!=0 AND value(b)=x\\x20y THEN SET a 1 ; DEL b ELSE GET a"
        );
        let bare = Txn {
            compares: vec![],
            success: vec![TxnOp::Get { key: b("k") }],
            failure: vec![],
            read_limit: 0,
        };
        assert_eq!(bare.to_string(), "TXN THEN GET k");
    }
}
