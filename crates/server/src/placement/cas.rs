//! Changing the cluster map by compare-and-set.
//!
//! The map is one key ([`MAP_KEY`]) of the placement group's key-value state
//! machine, holding [`ClusterMap::encode`]'s bytes. A change reads the map and
//! the key's version (linearizably), applies a [`Command`] with
//! [`ClusterMap::apply`], and writes the result back on the condition that the
//! version is still the one read. Two proposers racing each see one of their
//! writes conflict; the loser reads again and re-applies its command to the
//! winner's map, so no change is lost and none is applied to a stale map.
//! Attempts are bounded ([`MAX_CAS_ATTEMPTS`]): under endless contention the
//! caller gets [`CasError::Contended`] rather than a spin.

use bytes::Bytes;
use keel_placement::{Applied, ClusterMap, Command, CommandError, DecodeError};
use keel_storage::command::Expect;

use crate::node::NodeError;

/// The key of the placement group's state machine that holds the map.
pub const MAP_KEY: &[u8] = b"map";

/// Most read-apply-write rounds one change makes before giving up.
pub const MAX_CAS_ATTEMPTS: usize = 8;

/// Why a map change did not happen. Every variant but [`CasError::Node`]
/// (whose own variant says) means nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum CasError {
    /// The placement group holds no map yet (it is created at bootstrap).
    #[error("the placement group holds no cluster map yet")]
    NoMap,
    /// The stored map could not be decoded: nothing can change it safely.
    #[error("the stored cluster map is unreadable: {0}")]
    Corrupt(#[from] DecodeError),
    /// The map refused the command; nothing changed.
    #[error("the cluster map refused the change: {0}")]
    Refused(#[from] CommandError),
    /// Every attempt found the map changed since it was read.
    #[error("the cluster map kept changing: {attempts} attempts conflicted")]
    Contended {
        /// The attempts made.
        attempts: usize,
    },
    /// The placement group could not serve the read or the write.
    #[error("placement group: {0}")]
    Node(#[from] NodeError),
    /// The state machine could not be read.
    #[error("placement group state: {0}")]
    Storage(String),
    /// The write's outcome was not one a put can have.
    #[error("unexpected outcome of a map write: {0}")]
    Unexpected(String),
}

/// What a conditional write of the map did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// The map was stored; the key's new version.
    Stored {
        /// The key's version after the write.
        version: u64,
    },
    /// The condition did not hold; nothing was written.
    Conflict,
}

/// Where the map is kept: the placement group's state machine, or a test's
/// stand-in.
pub trait MapStore {
    /// The stored map's bytes and the key's version, read linearizably; `None`
    /// if there is no map.
    fn read(&self) -> impl Future<Output = Result<Option<(Bytes, u64)>, CasError>> + Send;

    /// Stores `value` if `expect` holds for the key.
    fn write(
        &self,
        value: Bytes,
        expect: Expect,
    ) -> impl Future<Output = Result<Written, CasError>> + Send;
}

/// A change that took (or was already true).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changed {
    /// The map after the command.
    pub map: ClusterMap,
    /// The key's version holding that map.
    pub stored_version: u64,
    /// What the command did to the map.
    pub applied: Applied,
}

/// Applies `command` to the stored map by compare-and-set, retrying on
/// conflict up to [`MAX_CAS_ATTEMPTS`] times. A command that is already true
/// writes nothing; a refused one writes nothing and is returned as
/// [`CasError::Refused`].
pub async fn change_map(store: &impl MapStore, command: &Command) -> Result<Changed, CasError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some((bytes, version)) = store.read().await? else {
            return Err(CasError::NoMap);
        };
        let mut map = ClusterMap::decode(&bytes)?;
        let applied = map.apply(command)?;
        if !applied.changed {
            return Ok(Changed {
                map,
                stored_version: version,
                applied,
            });
        }
        match store
            .write(Bytes::from(map.encode()), Expect::Version(version))
            .await?
        {
            Written::Stored { version } => {
                return Ok(Changed {
                    map,
                    stored_version: version,
                    applied,
                });
            }
            Written::Conflict => continue,
        }
    }
    Err(CasError::Contended {
        attempts: MAX_CAS_ATTEMPTS,
    })
}

/// What creating the map did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    /// This call stored the map, at this key version.
    Stored {
        /// The key's version.
        version: u64,
    },
    /// A map was there already (another proposer's, or an earlier attempt of
    /// this one whose answer was lost); nothing was written.
    Existing,
}

/// Stores `map` if the store holds none ("create if absent"): of several
/// proposers, exactly one write takes.
pub async fn create_map(store: &impl MapStore, map: &ClusterMap) -> Result<Created, CasError> {
    if store.read().await?.is_some() {
        return Ok(Created::Existing);
    }
    match store
        .write(Bytes::from(map.encode()), Expect::Absent)
        .await?
    {
        Written::Stored { version } => Ok(Created::Stored { version }),
        Written::Conflict => Ok(Created::Existing),
    }
}

#[cfg(test)]
#[path = "cas_tests.rs"]
mod tests;
