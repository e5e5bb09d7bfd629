//! The placement group's replicated state machine: the [`ClusterMap`] plus the
//! index of the last log entry applied to it.
//!
//! The runtime hands it the placement group's committed entries in log order.
//! An entry that carries a command is decoded and applied with
//! [`ClusterMap::apply`]; the consensus layer's own entries (the leader's empty
//! entry, membership changes) only advance the applied index. Every outcome,
//! including a refusal or an undecodable entry, is a function of the log alone,
//! so every replica reaches the same map at the same index.
//!
//! The map is small (a few KiB), so the machine lives in memory: after a restart
//! the runtime restores the newest snapshot ([`PlacementMachine::snapshot`]) and
//! re-applies the log after it. Nothing here does I/O.

mod bootstrap;
mod snapshot;
#[cfg(test)]
mod tests;

pub use bootstrap::BootstrapError;
pub use snapshot::SnapshotError;

use crate::command::{Applied, Command};
use crate::error::{CommandError, DecodeError};
use crate::map::ClusterMap;

/// What applying one log entry did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryOutcome {
    /// The entry carried a command and it took (possibly changing nothing, when
    /// it was already true).
    Applied(Applied),
    /// The entry carried a command the map refused; nothing changed.
    Refused(CommandError),
    /// The entry's bytes are not a command this build reads; nothing changed.
    /// A leader only proposes commands it encoded, so this means a newer build
    /// proposed it, or the log was damaged in a way its checksums missed.
    Undecodable(DecodeError),
    /// The entry carried no command (an empty or membership entry): only the
    /// applied index moved.
    NoCommand,
}

/// Why [`PlacementMachine::apply`] did not take an entry. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Entries must be applied one after another, starting right after the
    /// applied index; anything else is a bug in the caller.
    #[error("entry {got} is not the next to apply (applied index {applied})")]
    OutOfOrder {
        /// The machine's applied index.
        applied: u64,
        /// The index of the entry offered.
        got: u64,
    },
}

/// The placement group's state machine. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacementMachine {
    map: ClusterMap,
    applied: u64,
}

impl PlacementMachine {
    /// A machine at `applied` holding `map` (what a snapshot restores to).
    pub(crate) fn from_parts(map: ClusterMap, applied: u64) -> PlacementMachine {
        PlacementMachine { map, applied }
    }

    /// The cluster map as of the applied index.
    pub fn map(&self) -> &ClusterMap {
        &self.map
    }

    /// The index of the last log entry applied (0: none).
    pub fn applied_index(&self) -> u64 {
        self.applied
    }

    /// Applies the committed entry at `index`. `command` is the entry's payload
    /// when it is an application entry, `None` for the consensus layer's own
    /// entries. `index` must be exactly one past the applied index; an entry at
    /// or below it is refused too (the caller would be applying twice).
    pub fn apply(
        &mut self,
        index: u64,
        command: Option<&[u8]>,
    ) -> Result<EntryOutcome, ApplyError> {
        if index != self.applied + 1 {
            return Err(ApplyError::OutOfOrder {
                applied: self.applied,
                got: index,
            });
        }
        self.applied = index;
        let Some(bytes) = command else {
            return Ok(EntryOutcome::NoCommand);
        };
        // An empty payload is what the leader's first entry of a term carries.
        if bytes.is_empty() {
            return Ok(EntryOutcome::NoCommand);
        }
        Ok(match Command::decode(bytes) {
            Err(e) => EntryOutcome::Undecodable(e),
            Ok(command) => match self.map.apply(&command) {
                Ok(applied) => EntryOutcome::Applied(applied),
                Err(e) => EntryOutcome::Refused(e),
            },
        })
    }
}
