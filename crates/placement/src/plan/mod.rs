//! Placement decisions: pure functions from a map to the commands that carry
//! a decision out. They decide; they change nothing. The runtime proposes the
//! commands to the placement group one by one, and waits between them for the
//! data groups to follow (a new replica to catch up, a slot's data to arrive).
//!
//! Every function is deterministic (ties are broken by the lowest id), so
//! replicas and tests that ask the same question of the same map get the same
//! answer.

mod error;
mod join;
mod rebalance;
mod removal;

pub use error::PlanError;
pub use join::join;
pub(crate) use join::join_filling;
pub use rebalance::{PlannedMove, rebalance};
pub use removal::{RemovalPlan, node_removal};

use std::collections::BTreeMap;

use crate::ids::NodeId;
use crate::map::{ClusterMap, NodeState};

/// The active node outside `exclude` that holds the fewest replicas per
/// `counts` (lowest id on a tie): where a new replica goes.
fn least_loaded(
    map: &ClusterMap,
    counts: &BTreeMap<NodeId, usize>,
    exclude: impl Fn(NodeId) -> bool,
) -> Option<NodeId> {
    map.nodes()
        .iter()
        .filter(|&(&id, n)| n.state == NodeState::Active && !exclude(id))
        .map(|(&id, _)| (counts.get(&id).copied().unwrap_or(0), id))
        .min()
        .map(|(_, id)| id)
}
