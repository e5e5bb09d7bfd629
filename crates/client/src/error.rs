//! The errors a client call returns.
//!
//! Every variant answers the question a caller of a database must be able to ask:
//! *did my write happen?* Either the error proves it did not
//! ([`Error::is_definite_failure`]), or the outcome is unknown
//! ([`Error::outcome_unknown`]) and the caller must find out by reading, or make the
//! write idempotent, before trying again.

use crate::config::ConfigError;

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The configuration given to [`crate::Client::new`] cannot work.
    #[error("invalid client configuration: {0}")]
    Config(#[from] ConfigError),

    /// The write's precondition did not hold; nothing changed.
    #[error("precondition failed: the key's current version is {}", display_version(*.current_version))]
    Conflict {
        /// The key's version when the precondition was checked; `None` if the key did
        /// not exist.
        current_version: Option<u64>,
    },

    /// The request is malformed or over a server limit (key or value too large, ...);
    /// nothing changed. Retrying the same request fails the same way.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The cluster's state forbids the request right now — e.g. a membership change
    /// that would lose quorum, or one while another is in flight; the message says
    /// why. Nothing changed.
    #[error("refused: {0}")]
    Refused(String),

    /// The server refused the request without executing it for a reason keel's error
    /// convention does not cover (e.g. a method this server does not implement);
    /// nothing changed.
    #[error("rejected by the server ({code}): {message}")]
    Rejected {
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },

    /// The deadline passed before any member accepted the request: every attempt
    /// failed in a way that proves it was not applied (no leader, not the leader,
    /// shutting down, connection could not be established) — or, for a read, in any
    /// retryable way. The request was **not** applied; it is safe to retry.
    #[error("cluster unavailable after {attempts} attempts: {last_error}")]
    Unavailable {
        /// How many attempts were made.
        attempts: u32,
        /// What the last attempt ran into.
        last_error: String,
    },

    /// The deadline passed while the leader kept answering that it is overloaded,
    /// or (with `attempts` 0) while this client already had the most writes in
    /// flight one session may have (1024). The request was **not** applied; retry
    /// later, ideally with less load.
    #[error("cluster overloaded after {attempts} attempts: {message}")]
    Overloaded {
        /// How many attempts were made.
        attempts: u32,
        /// The server's explanation.
        message: String,
    },

    /// The deadline passed while the leader kept answering that its data disk is
    /// full (the message names the directory to free). The write was **not**
    /// applied. Reads are still served; writes succeed again once space is freed
    /// on that node, or once another member leads (a leader whose disk fills up
    /// hands leadership over when it can).
    #[error("disk full after {attempts} attempts: {message}")]
    DiskFull {
        /// How many attempts were made.
        attempts: u32,
        /// The server's explanation.
        message: String,
    },

    /// A write may or may not have been applied: it may have reached a member that
    /// then timed out, dropped the connection, lost leadership, or failed internally
    /// before answering. Without a client session the client does not retry such a
    /// write, since a retry could apply it twice; with one (the default) it retries
    /// for up to 30 seconds and only then, or at the deadline, gives up with this.
    /// Read the key to find out, or retry only if applying twice is harmless.
    #[error("outcome unknown (the write may or may not have been applied): {reason}")]
    OutcomeUnknown {
        /// What happened.
        reason: String,
    },

    /// The cluster no longer knew the write's client session (it was idle for
    /// longer than the cluster's session idle time, or evicted), and no attempt of
    /// the write could have been applied: it was **not** applied. The client opens
    /// a new session and sends the write again by itself, so a call only ends with
    /// this if the new session was refused too.
    #[error("client session expired (the write was not applied): {0}")]
    SessionExpired(String),

    /// A member failed internally (e.g. a storage error) while serving a read. Only
    /// reads end in this error: a write whose member failed internally reports
    /// [`Error::OutcomeUnknown`], since it may have been applied.
    #[error("internal error on the server: {0}")]
    Internal(String),
}

fn display_version(v: Option<u64>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "none (the key does not exist)".to_owned(),
    }
}

impl Error {
    /// Whether the call definitely had no effect: true for every error except
    /// [`Error::OutcomeUnknown`]. A write that failed this way was not applied and
    /// may be retried as is.
    pub fn is_definite_failure(&self) -> bool {
        !self.outcome_unknown()
    }

    /// Whether a write may or may not have been applied ([`Error::OutcomeUnknown`]).
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Error::OutcomeUnknown { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_outcome_unknown_is_indefinite() {
        let definite = [
            Error::Config(ConfigError::NoEndpoints),
            Error::Conflict {
                current_version: Some(3),
            },
            Error::InvalidArgument("key too long".into()),
            Error::Refused("would lose quorum".into()),
            Error::Rejected {
                code: tonic::Code::Unimplemented,
                message: "no such method".into(),
            },
            Error::Unavailable {
                attempts: 3,
                last_error: "no leader".into(),
            },
            Error::Overloaded {
                attempts: 2,
                message: "queue full".into(),
            },
            Error::Internal("disk".into()),
            Error::SessionExpired("idle".into()),
            Error::DiskFull {
                attempts: 4,
                message: "disk full: node 1 cannot write its log".into(),
            },
        ];
        for e in definite {
            assert!(e.is_definite_failure(), "{e}");
            assert!(!e.outcome_unknown(), "{e}");
        }
        let unknown = Error::OutcomeUnknown {
            reason: "timed out".into(),
        };
        assert!(unknown.outcome_unknown());
        assert!(!unknown.is_definite_failure());
    }

    #[test]
    fn conflict_says_whether_the_key_exists() {
        let absent = Error::Conflict {
            current_version: None,
        };
        assert!(absent.to_string().contains("does not exist"));
        let present = Error::Conflict {
            current_version: Some(17),
        };
        assert!(present.to_string().contains("17"));
    }
}
