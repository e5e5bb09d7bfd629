//! Reads as the trace shows them.

use std::fmt;

use bytes::Bytes;
use keel_raft::{Index, Term};

use crate::reads::{ReadMode, ReadPath};

/// What happened to a read (see [`super::TraceEvent::Read`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReadStep {
    /// The client issued it.
    Issued {
        /// The mode asked for.
        mode: ReadMode,
        /// The key.
        key: Bytes,
    },
    /// The node holds a lease valid at its clock: served under it once its state
    /// machine has applied `commit`.
    UnderLease {
        /// The lease's term.
        term: Term,
        /// The node's clock reading.
        clock: u64,
        /// Until when the lease holds, on that clock.
        valid_until: u64,
        /// The commit index the state machine must reach first.
        commit: Index,
    },
    /// A lease read found no valid lease and goes through ReadIndex.
    NoLease,
    /// The node's core was asked for a read index.
    Asked,
    /// The core refused (no leader known).
    Refused,
    /// The read index arrived: served once applied there.
    Confirmed {
        /// The read index.
        index: Index,
    },
    /// Answered.
    Served {
        /// How.
        path: ReadPath,
        /// The node's applied index.
        index: Index,
        /// Whether the key had a value.
        found: bool,
    },
}

impl fmt::Display for ReadStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadStep::Issued { mode, key } => {
                write!(
                    f,
                    "{mode} read of {:?} arrives",
                    String::from_utf8_lossy(key)
                )
            }
            ReadStep::UnderLease {
                term,
                clock,
                valid_until,
                commit,
            } => write!(
                f,
                "lease of term {term} valid (clock {clock} < {valid_until}); waits for apply \
                 of {commit}"
            ),
            ReadStep::NoLease => f.write_str("no valid lease: falls back to ReadIndex"),
            ReadStep::Asked => f.write_str("read index asked"),
            ReadStep::Refused => f.write_str("read index refused (no leader known)"),
            ReadStep::Confirmed { index } => write!(f, "read index {index} confirmed"),
            ReadStep::Served { path, index, found } => {
                let found = if *found { "found" } else { "absent" };
                write!(f, "served {path} at applied index {index} (key {found})")
            }
        }
    }
}
