//! The groups a node hosts as the API sees them: a handle per group, by id.
//! The consensus thread adds a group here once it is in its table, so a
//! handle found here always reaches a hosted group (until it stops being one).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use keel_raft::GroupId;

use super::NodeHandle;

/// Handles of every hosted group. Cheap to clone; clones share the table.
#[derive(Clone, Debug, Default)]
pub struct GroupDirectory {
    handles: Arc<RwLock<BTreeMap<GroupId, NodeHandle>>>,
}

impl GroupDirectory {
    /// Lists `handle` under its group.
    pub(crate) fn insert(&self, handle: NodeHandle) {
        self.handles
            .write()
            .expect("group directory lock poisoned")
            .insert(handle.group(), handle);
    }

    /// Takes `group` out: this node no longer hosts it.
    pub(crate) fn remove(&self, group: GroupId) {
        self.handles
            .write()
            .expect("group directory lock poisoned")
            .remove(&group);
    }

    /// The handle of `group`, if this node hosts it.
    pub fn get(&self, group: GroupId) -> Option<NodeHandle> {
        self.handles
            .read()
            .expect("group directory lock poisoned")
            .get(&group)
            .cloned()
    }

    /// Whether this node hosts `group`.
    pub fn contains(&self, group: GroupId) -> bool {
        self.handles
            .read()
            .expect("group directory lock poisoned")
            .contains_key(&group)
    }

    /// Every hosted group's handle, in group order.
    pub fn all(&self) -> Vec<NodeHandle> {
        self.handles
            .read()
            .expect("group directory lock poisoned")
            .values()
            .cloned()
            .collect()
    }
}
