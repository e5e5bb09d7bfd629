//! Client sessions: exactly-once writes.
//!
//! A write that carries a [`SessionHeader`] is executed at most once per
//! (client id, sequence number): the state machine remembers each session's recent
//! outcomes and answers a repeated sequence number with the outcome of its first
//! execution — revision, CONFLICT and all — instead of executing it again. So a
//! client may retry a write whose outcome it never learned (timeout, leader change)
//! as often as it likes. `docs/sessions.md` has the whole design; in short:
//!
//! - **Table.** One row per session in [`SESSIONS`] (client id → [`row`]), written
//!   at most once per apply batch however many of the session's writes the batch
//!   holds; the session clock sits in the meta table.
//! - **Forgetting.** A write says which sequence numbers the client may still
//!   retry (`first_unacked`); results below it are dropped, and so is the oldest
//!   one beyond [`MAX_RESULTS_PER_SESSION`]. A retry of a forgotten number is
//!   refused ([`SessionRejection::Forgotten`]), never executed again.
//! - **Time.** The session clock is the largest `now_ms` any session entry
//!   carried: log time, the same on every replica. Before each session write,
//!   sessions idle longer than the entry's `idle_timeout_ms` are dropped.
//! - **Bound.** A new session beyond the entry's `max_sessions` evicts the least
//!   recently used one (ties broken by client id), but only one idle for at least
//!   [`EVICTION_GRACE_MS`]: otherwise the new session is refused
//!   ([`SessionRejection::TooManySessions`]). The grace keeps the retries of a
//!   session's first writes exactly-once (see `docs/sessions.md`).
//! - **Opening.** An unknown session is opened only by a write whose
//!   `first_unacked` is 1: its client is still waiting for the session's first
//!   write, so the session is new. Any other write means the session existed and
//!   was dropped ([`SessionRejection::UnknownSession`]).
//!
//! [`SessionHeader`]: crate::command::SessionHeader

mod batch;
mod index;
mod row;

use redb::TableDefinition;

pub(crate) use batch::SessionBatch;
pub(crate) use index::SessionIndex;
pub(crate) use row::SessionRow;

/// Client id → the session's [`row`].
pub(crate) const SESSIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("sessions");
/// Meta key of the session clock (largest `now_ms` seen), in milliseconds.
pub(crate) const SESSION_CLOCK: &str = "session_clock_ms";

/// Results remembered per session at most: a client with more writes in flight
/// than this loses the exactly-once guarantee for the oldest of them.
pub const MAX_RESULTS_PER_SESSION: usize = 1024;

/// A session idle for less than this (in log time) is never evicted to make room
/// for another: clients must stop retrying a write well within it.
pub const EVICTION_GRACE_MS: u64 = 60_000;

/// Why a write of a client session was refused. Nothing changed, and the state
/// machine decided the same on every replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionRejection {
    /// The session is not known (it expired or was evicted) and the write is not
    /// from a new session (its `first_unacked` is above 1). If this is a retry, an
    /// earlier attempt may have been applied; it was not applied now.
    UnknownSession,
    /// The result of this sequence number is forgotten (the client acknowledged
    /// it, or too many later ones were outstanding). As above: not applied now,
    /// possibly applied before.
    Forgotten {
        /// The lowest sequence number the session still remembers.
        lowest_known: u64,
    },
    /// A new session found every session slot taken by sessions used within the
    /// eviction grace; not applied.
    TooManySessions,
}

impl std::fmt::Display for SessionRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionRejection::UnknownSession => f.write_str(
                "the client session is not known to the cluster (it expired or was evicted)",
            ),
            SessionRejection::Forgotten { lowest_known } => write!(
                f,
                "the result of this sequence number is forgotten (the session remembers \
                 {lowest_known} and later)"
            ),
            SessionRejection::TooManySessions => f.write_str(
                "too many client sessions are active; none is idle long enough to evict",
            ),
        }
    }
}

/// Counters of the session table, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Sessions kept now.
    pub sessions: u64,
    /// Repeated writes answered from a remembered result since the store opened.
    pub duplicates: u64,
    /// Session writes refused since the store opened.
    pub rejected: u64,
}

#[cfg(test)]
mod tests;
