//! The map's store on a running node: the placement group's key-value state
//! machine, reached through its [`NodeHandle`].

use std::time::Duration;

use bytes::Bytes;
use keel_storage::command::{Command, Envelope, Expect};
use keel_storage::kv::ApplyOutcome;

use super::cas::{CasError, MAP_KEY, MapStore, Written};
use crate::node::NodeHandle;

/// [`MapStore`] over the placement group hosted by this node. Reads and writes
/// are served by the group's leader (a follower answers `NotLeader`).
#[derive(Clone, Debug)]
pub struct NodeMapStore {
    node: NodeHandle,
    timeout: Duration,
}

impl NodeMapStore {
    /// A store over `node` (the placement group's handle), each read or write
    /// waiting at most `timeout`.
    pub fn new(node: NodeHandle, timeout: Duration) -> Self {
        NodeMapStore { node, timeout }
    }
}

impl MapStore for NodeMapStore {
    async fn read(&self) -> Result<Option<(Bytes, u64)>, CasError> {
        // ReadIndex: the read sees every map write committed before it began.
        self.node.read_barrier(self.timeout).await?;
        self.node
            .kv()
            .get(MAP_KEY)
            .map_err(|e| CasError::Storage(e.to_string()))
    }

    async fn write(&self, value: Bytes, expect: Expect) -> Result<Written, CasError> {
        let command = Command::Put {
            key: Bytes::from_static(MAP_KEY),
            value,
            expect,
        };
        let data = Envelope::from(command).encode();
        match self.node.write(data, self.timeout).await? {
            ApplyOutcome::Put { revision } => Ok(Written::Stored { version: revision }),
            ApplyOutcome::Conflict { .. } => Ok(Written::Conflict),
            other => Err(CasError::Unexpected(format!("{other:?}"))),
        }
    }
}
