//! Keeping the groups a node hosts in line with the cluster map: each data
//! group whose members in the map include this node gets a replica here.
//!
//! A replica starts from the group's *initial* members (its configuration
//! before the first entry of its log), whether the node was one of them or
//! was added later: every replica of a group then starts from the same
//! configuration, and one added later learns the changes that added it from
//! the leader's log or snapshot. A node that is not a voter of that first
//! configuration never campaigns until the log makes it one, so a replica
//! created early (before its group's leader adds it) is harmless.
//!
//! Each new map also gives the transport the map's nodes as peers, so a
//! node reaches the members of its groups that group 1 does not list (nodes
//! that joined through placement).
//!
//! Replicas of groups the node is no longer a member of are deleted by
//! `conf_sync.rs`, once their group's configuration has let them go.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_placement::{ClusterMap, PLACEMENT_GROUP};
use keel_raft::{GroupId, NodeId};
use tokio::sync::watch;

use super::MapCache;
use crate::node::{GroupDirectory, HostSender, KV_GROUP};

/// How soon a failed attempt is tried again, though the map did not change.
const RETRY: Duration = Duration::from_secs(1);

/// The groups of `map` this node should host and does not: each with the
/// configuration its replica starts from (voter id → address; an empty address
/// for a node the map no longer lists). Group 1 and the placement group are
/// hosted from the node's identity, not from the map, and groups recorded
/// before maps kept initial members are left alone.
pub(crate) fn missing_groups(
    map: &ClusterMap,
    me: NodeId,
    hosted: impl Fn(GroupId) -> bool,
) -> Vec<(GroupId, BTreeMap<NodeId, String>)> {
    map.groups()
        .iter()
        .filter(|&(&id, group)| {
            id != KV_GROUP
                && id != PLACEMENT_GROUP
                && group.members.contains(&me)
                && !group.initial.is_empty()
                && !hosted(id)
        })
        .map(|(&id, group)| {
            let voters = group
                .initial
                .iter()
                .map(|n| {
                    let address = map.nodes().get(n).map(|n| n.address.clone());
                    (*n, address.unwrap_or_default())
                })
                .collect();
            (id, voters)
        })
        .collect()
}

/// The nodes `map` lists, by id, with their addresses: the transport's peers
/// besides group 1's members.
pub(crate) fn map_peers(map: &ClusterMap) -> BTreeMap<NodeId, String> {
    map.nodes()
        .iter()
        .map(|(&id, node)| (id, node.address.clone()))
        .collect()
}

/// Runs until `stop`: on every new map (and again after a failure), asks the
/// consensus thread to host each missing group.
pub(crate) async fn reconcile(
    me: NodeId,
    maps: MapCache,
    directory: GroupDirectory,
    hosts: HostSender,
    mut stop: watch::Receiver<bool>,
) {
    let mut updates = maps.subscribe();
    loop {
        let map = updates.borrow_and_update().clone();
        let mut failed = false;
        if let Some(map) = map {
            // Peers first: a group hosted below may have members only the map
            // knows the addresses of.
            if let Err(e) = hosts.set_peers(map_peers(&map.map)) {
                tracing::warn!("cannot pass the cluster map's nodes to the transport yet: {e}");
                failed = true;
            }
            for (group, voters) in missing_groups(&map.map, me, |g| directory.contains(g)) {
                match hosts.host(group, voters).await {
                    Ok(_) => tracing::info!(
                        "hosting group {group} (cluster map version {})",
                        map.version()
                    ),
                    Err(e) => {
                        tracing::warn!("cannot host group {group} yet: {e}");
                        failed = true;
                    }
                }
            }
        }
        let retry = async {
            if failed {
                tokio::time::sleep(RETRY).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            changed = updates.changed() => if changed.is_err() { return },
            () = retry => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use keel_placement::Command;

    use super::*;

    fn map_of(nodes: u64) -> ClusterMap {
        let mut map = ClusterMap::new();
        for n in 1..=nodes {
            let register = Command::RegisterNode {
                node: n,
                address: format!("127.0.0.1:{}", 7000 + n),
            };
            map.apply(&register).expect("register");
        }
        map
    }

    fn create(map: &mut ClusterMap, members: &[NodeId]) {
        let members: BTreeSet<NodeId> = members.iter().copied().collect();
        let target = u8::try_from(members.len()).expect("small");
        let create = Command::CreateGroup {
            members,
            target_replicas: target,
        };
        map.apply(&create).expect("create");
    }

    #[test]
    fn a_member_hosts_each_missing_data_group_from_its_initial_members() {
        let mut map = map_of(5);
        create(&mut map, &[1, 2, 3]);
        create(&mut map, &[3, 4, 5]);
        create(&mut map, &[1, 4]);
        // Group 1 is hosted from the identity, never from the map.
        assert_eq!(
            missing_groups(&map, 1, |_| false)
                .into_iter()
                .map(|(g, _)| g)
                .collect::<Vec<_>>(),
            [3]
        );
        let for_four = missing_groups(&map, 4, |_| false);
        assert_eq!(for_four.iter().map(|(g, _)| *g).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(
            for_four[0].1,
            BTreeMap::from([
                (3, "127.0.0.1:7003".to_string()),
                (4, "127.0.0.1:7004".to_string()),
                (5, "127.0.0.1:7005".to_string()),
            ])
        );
        assert!(missing_groups(&map, 4, |g| g == 2 || g == 3).is_empty());
    }

    #[test]
    fn a_member_added_later_starts_from_the_initial_members_not_the_current_ones() {
        let mut map = map_of(4);
        create(&mut map, &[1, 2, 3]);
        create(&mut map, &[1, 2, 3]);
        map.apply(&Command::AddGroupMember { group: 2, node: 4 })
            .expect("add");
        map.apply(&Command::RemoveGroupMember { group: 2, node: 1 })
            .expect("remove");
        let missing = missing_groups(&map, 4, |_| false);
        assert_eq!(missing.len(), 1);
        assert_eq!(
            missing[0].1.keys().copied().collect::<Vec<_>>(),
            [1, 2, 3],
            "the configuration before the group's first entry"
        );
        // Node 1 left group 2 in the map: nothing new for it to host.
        assert!(missing_groups(&map, 1, |_| false).is_empty());
    }
}
