//! Errors that stop a node from starting or running.

use std::path::PathBuf;

/// Why a node could not start, or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A flag or configuration value is invalid.
    #[error("configuration error: {0}")]
    Config(String),
    /// The flags contradict what the data directory recorded on first start.
    #[error("{0}")]
    IdentityMismatch(String),
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another keel process")]
    DataDirLocked(PathBuf),
    /// Reading or writing node metadata failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The write-ahead log could not be opened or written.
    #[error("write-ahead log: {0}")]
    Wal(#[from] keel_storage::wal::WalError),
    /// The state machine failed.
    #[error("state machine: {0}")]
    Kv(#[from] keel_storage::kv::KvError),
    /// The consensus core refused its configuration or recovered state.
    #[error("consensus core: {0}")]
    Raft(#[from] keel_raft::ConfigError),
    /// Binding a listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The recovered state is inconsistent (e.g. the state machine is ahead of the log).
    #[error("recovered state is inconsistent: {0}")]
    Recovery(String),
    /// A TLS file or certificate cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A fatal runtime failure (e.g. an fsync error): the node stopped.
    #[error("fatal: {0}")]
    Fatal(String),
}
