//! Errors decoding a [`super::Command`].

use super::{IngestError, TxnError};

/// Why bytes are not a valid command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No bytes at all.
    #[error("empty command")]
    Empty,
    /// Written by a newer (or unknown) format version.
    #[error("unsupported command format version {0}")]
    UnsupportedVersion(u8),
    /// An unknown operation code.
    #[error("unknown command op code {0:#04x}")]
    UnknownOp(u8),
    /// An unknown precondition tag.
    #[error("unknown precondition tag {0:#04x}")]
    UnknownExpect(u8),
    /// The bytes end inside a field.
    #[error("command truncated in {0}")]
    Truncated(&'static str),
    /// A length or number is not a valid shortest-form varint.
    #[error("malformed varint in {0}")]
    BadVarint(&'static str),
    /// An unknown tag in a transaction (`field` says which kind).
    #[error("unknown {field} tag {tag:#04x}")]
    UnknownTag {
        /// What the tag selects.
        field: &'static str,
        /// The tag.
        tag: u8,
    },
    /// A transaction breaks a rule of [`super::Txn::validate`].
    #[error("invalid transaction: {0}")]
    Txn(#[from] TxnError),
    /// A slot number at or above `SLOT_COUNT` (4096).
    #[error("slot {0} is out of range (0..4096)")]
    SlotOutOfRange(u64),
    /// A slot-move command with epoch 0, which no move ever has.
    #[error("a slot-move command has epoch 0")]
    ZeroEpoch,
    /// An ingest page breaks a rule of [`super::IngestPage::validate`].
    #[error("invalid ingest page: {0}")]
    Ingest(#[from] IngestError),
    /// Bytes left over after the last field.
    #[error("{0} unexpected trailing bytes after the command")]
    TrailingBytes(usize),
}
