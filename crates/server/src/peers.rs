//! Remembers each peer's incarnation (see `identity.rs`).
//!
//! The first message from a peer records its incarnation durably; a later message
//! with a different one means the peer's data directory was wiped. Such a peer has
//! forgotten its votes and log, so its messages are refused: it must be removed and
//! added back as a new member rather than take part as if it remembered.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use keel_raft::NodeId;

use crate::error::ServerError;
use crate::identity::write_atomically;

const PEERS_FILE: &str = "peers.json";

/// The verdict on a peer's incarnation.
#[derive(Debug, PartialEq, Eq)]
pub enum IncarnationCheck {
    /// Known and unchanged (or recorded just now).
    Ok,
    /// Different from the recorded one: the peer's data was wiped.
    Changed {
        /// What was recorded.
        recorded: u64,
    },
}

/// Durable map of peer id → incarnation.
#[derive(Debug)]
pub struct PeerIncarnations {
    path: PathBuf,
    known: Mutex<BTreeMap<NodeId, u64>>,
}

impl PeerIncarnations {
    /// Loads the map from the data directory (empty if absent).
    pub fn open(dir: &Path) -> Result<Self, ServerError> {
        let path = dir.join(PEERS_FILE);
        let known = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                ServerError::Recovery(format!("{} is corrupt: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => {
                return Err(ServerError::Io {
                    what: "cannot read",
                    path,
                    source,
                });
            }
        };
        Ok(PeerIncarnations {
            path,
            known: Mutex::new(known),
        })
    }

    /// Checks `incarnation` for `peer`, recording it durably if first seen.
    pub fn check(&self, peer: NodeId, incarnation: u64) -> Result<IncarnationCheck, ServerError> {
        let mut known = self.known.lock().expect("peer map lock poisoned");
        match known.get(&peer) {
            Some(&recorded) if recorded == incarnation => Ok(IncarnationCheck::Ok),
            Some(&recorded) => Ok(IncarnationCheck::Changed { recorded }),
            None => {
                let mut next = known.clone();
                next.insert(peer, incarnation);
                let text = serde_json::to_string_pretty(&next).expect("map serializes");
                // Durable before we act on anything this peer says; if it cannot be
                // written (a full disk), the peer stays unknown and its messages are
                // refused until it can.
                write_atomically(&self.path, text.as_bytes())?;
                *known = next;
                Ok(IncarnationCheck::Ok)
            }
        }
    }

    /// Forgets `peer`'s incarnation: it is being added as a new member, possibly
    /// with a fresh data directory, and its first message records the new one.
    pub fn forget(&self, peer: NodeId) -> Result<(), ServerError> {
        let mut known = self.known.lock().expect("peer map lock poisoned");
        if known.remove(&peer).is_none() {
            return Ok(());
        }
        let text = serde_json::to_string_pretty(&*known).expect("map serializes");
        write_atomically(&self.path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_seen_is_recorded_and_change_detected_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = PeerIncarnations::open(dir.path()).expect("open");
        assert_eq!(p.check(2, 77).expect("check"), IncarnationCheck::Ok);
        assert_eq!(p.check(2, 77).expect("check"), IncarnationCheck::Ok);
        drop(p);
        let p = PeerIncarnations::open(dir.path()).expect("reopen");
        assert_eq!(
            p.check(2, 78).expect("check"),
            IncarnationCheck::Changed { recorded: 77 }
        );
        // Re-added as a new member: the new incarnation is accepted, durably.
        p.forget(2).expect("forget");
        drop(p);
        let p = PeerIncarnations::open(dir.path()).expect("reopen");
        assert_eq!(p.check(2, 78).expect("check"), IncarnationCheck::Ok);
        assert_eq!(
            p.check(2, 77).expect("check"),
            IncarnationCheck::Changed { recorded: 78 }
        );
    }
}
