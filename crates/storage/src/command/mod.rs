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
//! expect   = 0x00                       Any
//!          | 0x01                       Absent
//!          | 0x02 version:varint        Version(n)
//! key      = len:varint bytes
//! value    = len:varint bytes
//! ```
//!
//! `varint` is unsigned LEB128 in its shortest form (anything longer is rejected, so
//! every command has exactly one encoding). Nothing may follow the last field.
//!
//! Room to grow: op codes from `0x03` on are free for new commands (e.g.
//! transactions), and a future format version can put a header (e.g. a client
//! session id and sequence number for exactly-once writes) between the version byte
//! and the op, while decoders keep reading version 1.

mod codec;
mod display;
mod error;

use bytes::Bytes;

pub use error::CommandError;

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
