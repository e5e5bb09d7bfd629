//! Keeping this node registered in the cluster map (`RegisterNode`) at the
//! address it advertises: a node that joined the cluster after it was formed
//! registers itself once it has the map, and a node that comes back at a new
//! address moves its entry. Only a registered, active node can be made a
//! member of a data group (`keel shard group create`, `add-member`).
//!
//! *Deviation from the plan (docs/sharding.md, step 6):* a joining node still
//! joins group 1 through `--join`; placement does not yet choose a group for
//! it (`plan::join`). Registering makes it available to operators.

use std::sync::Arc;
use std::time::Duration;

use keel_placement::{ClusterMap, Command, NodeState};
use keel_proto::v1::ChangeMapRequest;
use keel_raft::NodeId;
use tokio::sync::watch;

use crate::api::{ApiContext, MapCall};

/// How often a registration that failed is tried again.
const RETRY: Duration = Duration::from_secs(2);

/// Whether `map` lists node `me` at `address`, active. A node the map knows
/// in another state (draining, removed) is left to the operator who put it
/// there.
pub(crate) fn needs_registering(map: &ClusterMap, me: NodeId, address: &str) -> bool {
    match map.nodes().get(&me) {
        None => true,
        Some(node) => node.state == NodeState::Active && node.address != address,
    }
}

/// Runs until `stop`: whenever the cached map does not list this node at its
/// advertised address, registers it through the placement group.
pub(crate) async fn register_self(ctx: Arc<ApiContext>, mut stop: watch::Receiver<bool>) {
    let mut updates = ctx.maps.subscribe();
    loop {
        let wanted = updates
            .borrow_and_update()
            .as_ref()
            .is_some_and(|m| needs_registering(&m.map, ctx.id, &ctx.address));
        if wanted {
            let command = Command::RegisterNode {
                node: ctx.id,
                address: ctx.address.clone(),
            };
            let command_json = String::from_utf8_lossy(&command.encode()).into_owned();
            match ctx
                .change_map(ChangeMapRequest { command_json }, MapCall::Mover)
                .await
            {
                Ok(r) => tracing::info!(
                    "registered node {} at {} in the cluster map (version {})",
                    ctx.id,
                    ctx.address,
                    r.version
                ),
                Err(e) => tracing::debug!("cannot register in the cluster map yet: {}", e.message),
            }
        }
        tokio::select! {
            changed = updates.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RETRY) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::test_maps::two_groups;

    #[test]
    fn a_node_registers_when_missing_or_moved_and_only_then() {
        let map = two_groups();
        // Nodes 1..=3 are registered at 127.0.0.1:700N.
        assert!(!needs_registering(&map, 2, "127.0.0.1:7002"));
        assert!(needs_registering(&map, 2, "127.0.0.1:9002"));
        assert!(needs_registering(&map, 4, "127.0.0.1:7004"));
        let mut draining = map.clone();
        draining
            .apply(&Command::DrainNode { node: 2 })
            .expect("drain");
        assert!(!needs_registering(&draining, 2, "127.0.0.1:9002"));
    }
}
