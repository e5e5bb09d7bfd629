//! The key-value commands that Raft entries carry.
//!
//! A [`Command`] is encoded into the `data` of a `Normal` entry by the node that
//! proposes it and decoded by every replica's state machine, so the encoding is a
//! stable, versioned disk and wire format, described below.
//!
//! # Encoding (format version 1)
//!
//! ```text
//! command  = version:u8=1 op
//! op       = 0x01 expect key value      Put
//!          | 0x02 expect key            Delete
//!          | 0x03 txn                   Txn
//! expect   = 0x00                       Any
//!          | 0x01                       Absent
//!          | 0x02 version:varint        Version(n)
//! key      = len:varint bytes
//! value    = len:varint bytes
//!
//! txn      = read_limit:varint
//!            count:varint compare*      all must hold for `success` to run
//!            count:varint txnop*        success
//!            count:varint txnop*        failure
//! compare  = 0x01 key cmp version:varint   version(key) cmp version (0: absent)
//!          | 0x02 key value                the key exists with exactly this value
//! cmp      = 0x00 (=) | 0x01 (!=) | 0x02 (<) | 0x03 (>)
//! txnop    = 0x01 key value             put
//!          | 0x02 key                   delete
//!          | 0x03 key                   get
//! ```
//!
//! `varint` is unsigned LEB128 in its shortest form (anything longer is rejected, so
//! every command has exactly one encoding). Nothing may follow the last field.
//!
//! A transaction's three counts add up to at most [`MAX_TXN_OPS`] (checked as they
//! are read, before anything is allocated), and no branch writes (puts or deletes)
//! one key twice: the decoder refuses anything else, so every decoded [`Txn`] passes
//! [`Txn::validate`]. Its semantics are in [`Txn`] and `kv/txn.rs`.
//!
//! Room to grow: op codes from `0x04` on are free for new commands, and a future
//! format version can put a header (e.g. a client session id and sequence number
//! for exactly-once writes) between the version byte and the op, while decoders keep
//! reading version 1.

mod codec;
mod display;
mod error;
mod txn;
mod txn_codec;

use bytes::Bytes;

pub use error::CommandError;
pub use txn::{Compare, CompareOp, CompareTarget, MAX_TXN_OPS, Txn, TxnError, TxnOp};

/// A precondition on the key's current version (the log index that last wrote it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Expect {
    /// No precondition.
    #[default]
    Any,
    /// The key must not exist ("create").
    Absent,
    /// The key must exist with exactly this version (compare-and-set). Versions are
    /// log indexes, so `Version(0)` never holds.
    Version(u64),
}

/// A state-machine command.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// Set `key` to `value` if `expect` holds.
    Put {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
        /// Precondition.
        expect: Expect,
    },
    /// Remove `key` if `expect` holds.
    Delete {
        /// The key.
        key: Bytes,
        /// Precondition.
        expect: Expect,
    },
    /// Comparisons, then one of two lists of operations, atomically.
    Txn(Txn),
}

impl Command {
    /// The key a single-key command acts on (`None` for a transaction).
    pub fn key(&self) -> Option<&Bytes> {
        match self {
            Command::Put { key, .. } | Command::Delete { key, .. } => Some(key),
            Command::Txn(_) => None,
        }
    }

    /// A single-key command's precondition (`None` for a transaction).
    pub fn expect(&self) -> Option<Expect> {
        match self {
            Command::Put { expect, .. } | Command::Delete { expect, .. } => Some(*expect),
            Command::Txn(_) => None,
        }
    }
}
