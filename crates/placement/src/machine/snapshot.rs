//! The placement group's snapshot: the map and the index it was taken at.
//!
//! JSON, like the map itself (`{"format":1,"applied":N,"map":{...}}`), so that an
//! operator can read a placement snapshot with `jq`. Restoring checks the size,
//! the format and every rule of the map before anything is used.

use serde::{Deserialize, Serialize};

use super::PlacementMachine;
use crate::error::DecodeError;
use crate::ids::MAX_ENCODED_MAP_BYTES;
use crate::map::{ClusterMap, MapRecord, check_format};

/// The snapshot format this build writes and reads.
const SNAPSHOT_FORMAT: u32 = 1;

/// Room for the snapshot's own fields around the largest map.
const MAX_SNAPSHOT_BYTES: usize = MAX_ENCODED_MAP_BYTES + 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotRecord {
    format: u32,
    applied: u64,
    map: MapRecord,
}

/// Why a placement snapshot could not be restored. Nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes are not a placement snapshot this build reads, or its map
    /// breaks a rule.
    #[error("placement snapshot: {0}")]
    Decode(#[from] DecodeError),
}

impl PlacementMachine {
    /// The machine's snapshot: enough to restore it at its applied index.
    pub fn snapshot(&self) -> Vec<u8> {
        let record = SnapshotRecord {
            format: SNAPSHOT_FORMAT,
            applied: self.applied,
            map: MapRecord::from(self.map.clone()),
        };
        serde_json::to_vec(&record).expect("a snapshot holds only strings, numbers and lists")
    }

    /// The machine a snapshot written by [`PlacementMachine::snapshot`] describes.
    pub fn restore(bytes: &[u8]) -> Result<PlacementMachine, SnapshotError> {
        check_format(bytes, MAX_SNAPSHOT_BYTES, SNAPSHOT_FORMAT)?;
        let record: SnapshotRecord =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        let map = ClusterMap::try_from(record.map)?;
        Ok(PlacementMachine::from_parts(map, record.applied))
    }
}
