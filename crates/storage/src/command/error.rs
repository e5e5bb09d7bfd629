//! Errors decoding a [`super::Command`].

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
    /// Bytes left over after the last field.
    #[error("{0} unexpected trailing bytes after the command")]
    TrailingBytes(usize),
}
