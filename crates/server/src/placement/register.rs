//! Keeping this node registered in the cluster map (`RegisterNode`) at the
//! address it advertises: a node that joined the cluster after it was formed
//! registers itself once it has the map, and a node that comes back at a new
//! address moves its entry. Only a registered, active node can be made a
//! member of a data group (`keel shard group create`, `add-member`).
//!
//! A node that joined through placement (`--join-as placed|spare`) was
//! registered by its join already; this keeps its address current.
//!
//! Once this process has seen its node in a map, a later map without it means
//! the node was forgotten (`keel node remove`): it does not register again,
//! which would undo the removal while the node still runs. (Started again
//! later, it registers afresh, as a node with no replicas.)

use std::sync::Arc;
use std::time::Duration;

use keel_placement::{ClusterMap, Command, NodeState};
use keel_raft::NodeId;
use tokio::sync::watch;

use crate::api::ApiContext;

/// How often a registration that failed is tried again.
const RETRY: Duration = Duration::from_secs(2);

/// Whether node `me` must (re)register at `address`: `map` does not list it
/// and never did as far as this process saw (`seen`), or lists it active at
/// another address. A node the map knows in another state (draining) is left
/// to the operator who put it there, and so is one the map forgot.
pub(crate) fn needs_registering(map: &ClusterMap, me: NodeId, address: &str, seen: bool) -> bool {
    match map.nodes().get(&me) {
        None => !seen,
        Some(node) => node.state == NodeState::Active && node.address != address,
    }
}

/// Runs until `stop`: whenever the cached map does not list this node at its
/// advertised address, registers it through the placement group.
pub(crate) async fn register_self(ctx: Arc<ApiContext>, mut stop: watch::Receiver<bool>) {
    let mut updates = ctx.maps.subscribe();
    let mut seen = false;
    let mut forgotten_noted = false;
    loop {
        let (wanted, listed) = updates
            .borrow_and_update()
            .as_ref()
            .map_or((false, false), |m| {
                (
                    needs_registering(&m.map, ctx.id, &ctx.address, seen),
                    m.map.nodes().contains_key(&ctx.id),
                )
            });
        if seen && !listed && !forgotten_noted {
            forgotten_noted = true;
            tracing::warn!(
                "node {} is no longer in the cluster map (removed by an operator); it does \
                 not register again: stop it",
                ctx.id
            );
        }
        seen |= listed;
        if wanted {
            let command = Command::RegisterNode {
                node: ctx.id,
                address: ctx.address.clone(),
            };
            match ctx.change_map_as_node(&command).await {
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
        assert!(!needs_registering(&map, 2, "127.0.0.1:7002", true));
        assert!(needs_registering(&map, 2, "127.0.0.1:9002", true));
        assert!(needs_registering(&map, 4, "127.0.0.1:7004", false));
        let mut draining = map.clone();
        draining
            .apply(&Command::DrainNode { node: 2 })
            .expect("drain");
        assert!(!needs_registering(&draining, 2, "127.0.0.1:9002", true));
        // Forgotten after this process saw it listed: left alone.
        assert!(!needs_registering(&map, 4, "127.0.0.1:7004", true));
    }
}
