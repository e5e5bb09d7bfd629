//! The key-value commands that Raft entries carry.
//!
//! A [`Command`] is encoded into the `data` of a `Normal` entry by the node that
//! proposes it and decoded by every replica's state machine, so the encoding is a
//! stable, versioned disk and wire format, described below. A write from a client
//! with a session travels in an [`Envelope`] that adds a [`SessionHeader`]; a write
//! without one is encoded exactly as before sessions existed (version 1).
//!
//! # Encoding
//!
//! ```text
//! entry    = version:u8=1 op                  a command (format version 1)
//!          | version:u8=2 session op          a command of a client session (2)
//! session  = client_id:16 bytes               random id, big-endian u128
//!            seq:varint                       the write's number in the session
//!            first_unacked:varint             lowest number the client may retry
//!            now_ms:varint                    proposer's wall clock (Unix ms)
//!            idle_timeout_ms:varint           drop sessions idle longer than this
//!            max_sessions:varint              most sessions kept
//! op       = 0x01 expect key value            Put
//!          | 0x02 expect key                  Delete
//!          | 0x03 txn                         Txn
//!          | 0x04 key delta:zigzag            Add (signed; zigzag varint)
//!          | 0x05 move                        FenceSlot
//!          | 0x06 move                        UnfenceSlot
//!          | 0x07 move page                   IngestSlot
//!          | 0x08 move fence_index:varint revision:varint    SlotIngested
//!          | 0x09 move map_version:varint     OwnSlot
//!          | 0x0A move map_version:varint     DropSlot
//! expect   = 0x00                             Any
//!          | 0x01                             Absent
//!          | 0x02 version:varint              Version(n)
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
//!
//! move     = slot:varint epoch:varint   slot < 4096; epoch > 0
//! page     = round:varint page:varint
//!            count:varint (key version:varint value)*   puts, keys increasing
//!            count:varint key*                          deletes, keys increasing
//! ```
//!
//! `varint` is unsigned LEB128 in its shortest form (anything longer is rejected, so
//! every entry has exactly one encoding); `zigzag` is a signed number mapped onto a
//! varint (0, -1, 1, -2, … become 0, 1, 2, 3, …). Nothing may follow the last field.
//! [`Command::decode`] reads version 1 only; [`Envelope::decode`] reads both.
//!
//! A transaction's three counts add up to at most [`MAX_TXN_OPS`] (checked as they
//! are read, before anything is allocated), and no branch writes (puts or deletes)
//! one key twice: the decoder refuses anything else, so every decoded [`Txn`] passes
//! [`Txn::validate`]. Its semantics are in [`Txn`] and `kv/txn.rs`.
//!
//! `Add` (op `0x04`, added for the Redis protocol's INCR family) reads the key's
//! value as a signed 64-bit decimal integer (absent: 0), adds `delta`, and stores
//! the sum as decimal text; a value that is not such an integer, or a sum that
//! overflows, changes nothing (`kv/add.rs`). It needs no new format version: an
//! older replica refuses the unknown op code and stops rather than diverge, as for
//! any new op, so every member must be upgraded before clients use it.
//!
//! The slot-move ops (`0x05`..=`0x0A`, [`SlotCommand`]) are the steps of moving a
//! hash slot between groups (`docs/sharding.md`); the runtime proposes them, never
//! a client. An ingest page carries at most [`MAX_INGEST_ITEMS`] puts and deletes
//! together (checked as the counts are read), each list in strictly increasing key
//! order, no key in both: the decoder refuses anything else, so every decoded
//! page passes [`IngestPage::validate`]. Whether a page's keys belong to its slot
//! is the state machine's check (a refusal there changes nothing; a decoding
//! error would stop the replica). Like `Add`, they need no new format version.
//!
//! Room to grow: op codes from `0x0B` on are free for new commands.
//! The session header wraps whatever `op` follows, so every op code (transactions
//! included) is exactly-once as soon as it exists. The decoder checks
//! syntax only: what the header's numbers mean, including nonsense such as
//! `first_unacked > seq`, is the state machine's business (`kv::sessions`), which
//! must never refuse a committed entry. The last three header fields are stamped by
//! the proposing node rather than read from each replica's clock and
//! configuration, so that every replica expires and evicts sessions at the same
//! entry; `docs/sessions.md` explains the whole design.

mod add;
mod codec;
mod display;
mod error;
mod session;
mod slot;
mod slot_codec;
mod txn;
mod txn_codec;

use bytes::Bytes;

pub use add::{AddError, parse_integer};
pub use error::CommandError;
pub use session::{Envelope, SessionHeader};
pub use slot::{IngestError, IngestPage, IngestPut, MAX_INGEST_ITEMS, MoveStep, SlotCommand};
pub use txn::{Compare, CompareOp, CompareTarget, MAX_TXN_OPS, Txn, TxnError, TxnOp};
// The varint codec, shared with the state machine's session rows.
pub(crate) use codec::{Reader, put_varint};
// Printing keys in errors the state machine reports.
pub(crate) use display::Escaped;

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
    /// Add `delta` to the signed 64-bit decimal integer stored in `key` (an
    /// absent key counts as 0) and store the sum as decimal text, atomically.
    /// Refused, changing nothing, if the value is not such an integer or the sum
    /// overflows ([`AddError`]).
    Add {
        /// The key.
        key: Bytes,
        /// What to add (negative to subtract).
        delta: i64,
    },
    /// A step of moving a hash slot between groups; proposed by the runtime.
    Slot(SlotCommand),
}

impl Command {
    /// The key a single-key command acts on (`None` for a transaction).
    pub fn key(&self) -> Option<&Bytes> {
        match self {
            Command::Put { key, .. } | Command::Delete { key, .. } | Command::Add { key, .. } => {
                Some(key)
            }
            Command::Txn(_) | Command::Slot(_) => None,
        }
    }

    /// A put's or delete's precondition (`None` for other commands).
    pub fn expect(&self) -> Option<Expect> {
        match self {
            Command::Put { expect, .. } | Command::Delete { expect, .. } => Some(*expect),
            Command::Txn(_) | Command::Add { .. } | Command::Slot(_) => None,
        }
    }
}
