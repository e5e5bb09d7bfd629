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
//! expect   = 0x00                             Any
//!          | 0x01                             Absent
//!          | 0x02 version:varint              Version(n)
//! key      = len:varint bytes
//! value    = len:varint bytes
//! ```
//!
//! `varint` is unsigned LEB128 in its shortest form (anything longer is rejected, so
//! every entry has exactly one encoding). Nothing may follow the last field.
//! [`Command::decode`] reads version 1 only; [`Envelope::decode`] reads both.
//!
//! The session header wraps whatever `op` follows, so a new op code (from `0x03`
//! on, e.g. transactions) is exactly-once as soon as it exists. The decoder checks
//! syntax only: what the header's numbers mean, including nonsense such as
//! `first_unacked > seq`, is the state machine's business (`kv::sessions`), which
//! must never refuse a committed entry. The last three header fields are stamped by
//! the proposing node rather than read from each replica's clock and
//! configuration, so that every replica expires and evicts sessions at the same
//! entry; `docs/sessions.md` explains the whole design.

mod codec;
mod display;
mod error;
mod session;

use bytes::Bytes;

pub use error::CommandError;
pub use session::{Envelope, SessionHeader};
// The varint codec, shared with the state machine's session rows.
pub(crate) use codec::{Reader, put_varint};

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
}

impl Command {
    /// The key the command acts on.
    pub fn key(&self) -> &Bytes {
        match self {
            Command::Put { key, .. } | Command::Delete { key, .. } => key,
        }
    }

    /// The command's precondition.
    pub fn expect(&self) -> Expect {
        match self {
            Command::Put { expect, .. } | Command::Delete { expect, .. } => *expect,
        }
    }
}
