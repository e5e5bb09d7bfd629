//! Keeping each data group's Raft configuration in line with its members in
//! the cluster map, and deleting this node's replica once it is out of both.
//!
//! On the node whose replica leads a data group, one change at a time: a map
//! member missing from the configuration is added as a learner that the
//! leader promotes once caught up (`node/membership.rs`); then a member the
//! map no longer lists is removed, the leader itself last, by handing
//! leadership away first (the next leader removes it). A group is never left
//! without a voter.
//!
//! A replica stops being hosted (`node/unhost.rs`) once the map no longer
//! lists its node as a member of the group (or the group is gone from the map)
//! and a configuration without the node is committed: as its own replica
//! sees it, or — since a leader stops sending to a node as soon as it appends
//! that node's removal, so a removed follower usually never learns of it from
//! the log — as another member's replica reports it, asked once the replica
//! has heard from no leader for [`ORPHAN_GRACE`] ([`deletion`]).
//!
//! Group 1 and the placement group are left alone: their members come from
//! `identity.json` and `keel member`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use keel_placement::{ClusterMap, PLACEMENT_GROUP};
use keel_raft::{ConfState, GroupId, NodeId, Role};
use tokio::sync::watch;

use super::MapCache;
use keel_client::Client;

use crate::node::{GroupDirectory, HostSender, KV_GROUP, MemberChange, NodeHandle, NodeStatus};

/// How often differences are looked at again though the map did not change.
const RECHECK: Duration = Duration::from_secs(1);
/// How long a replica the map dropped may go without a leader before it takes
/// that as its removal from the group.
pub(crate) const ORPHAN_GRACE: Duration = Duration::from_secs(5);
/// How long one configuration change or leadership hand-off may take.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// The next step that brings a group's configuration closer to its map
/// members, as seen by the group's leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConfStep {
    /// Add this map member as a learner, promoted once caught up.
    Add(NodeId),
    /// Remove this member, which the map no longer lists.
    Remove(NodeId),
    /// The leader itself must go: hand leadership to another voter first.
    HandOff,
}

/// What the leader `me` of a group should do next so that its configuration
/// `conf` (voters and learners) holds exactly `wanted`, or `None` if nothing
/// can be done now. Additions come first, so that replacing a member never
/// shrinks the group on the way; removals never take the last voter away.
pub(crate) fn next_step(
    wanted: &BTreeSet<NodeId>,
    conf: &ConfState,
    me: NodeId,
) -> Option<ConfStep> {
    if wanted.is_empty() {
        return None;
    }
    if let Some(&id) = wanted.iter().find(|&&id| !conf.contains(id)) {
        return Some(ConfStep::Add(id));
    }
    let extra = |id: &&NodeId| !wanted.contains(*id);
    if let Some(&id) = conf.learners.iter().find(extra) {
        return Some(ConfStep::Remove(id));
    }
    if let Some(&id) = conf.voters.iter().filter(extra).find(|&&id| id != me)
        && conf.voters.len() > 1
    {
        return Some(ConfStep::Remove(id));
    }
    let others = conf.voters.iter().any(|&v| v != me);
    (conf.voters.contains(&me) && !wanted.contains(&me) && others).then_some(ConfStep::HandOff)
}

/// What to do with this node's replica of a data group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deletion {
    /// Keep hosting it.
    Keep,
    /// Delete it: nothing can count on it any more.
    Delete,
    /// The map dropped the node, but the replica has not seen its removal
    /// committed and has heard from no leader for [`ORPHAN_GRACE`]: delete it
    /// only if another replica confirms the removal committed.
    AskPeers,
}

/// What this node (`me`) should do with its replica of `group`, given the map
/// and the replica's status (configuration, its index, commit index, role) and
/// how long it has gone without a leader.
///
/// A replica is deleted only when no configuration that counts it can come
/// back: its group is gone from the map (ids are never reused), or a
/// configuration without it is *committed*. Deleting a voter whose removal was
/// only appended would be unsafe: if that entry were lost, the node could be
/// hosted again with an empty log while still a voter, and its vote could
/// elect a leader missing committed entries.
pub(crate) fn deletion(
    map: &ClusterMap,
    group: GroupId,
    me: NodeId,
    status: &NodeStatus,
    leaderless_for: Duration,
) -> Deletion {
    if group == KV_GROUP || group == PLACEMENT_GROUP {
        return Deletion::Keep;
    }
    match map.groups().get(&group) {
        // Removed from the map (a map too old to have created it says nothing).
        None if group < map.next_group_id() => Deletion::Delete,
        None => Deletion::Keep,
        Some(g) if g.members.contains(&me) => Deletion::Keep,
        Some(_) if !status.conf.contains(me) && status.commit >= status.conf_index => {
            Deletion::Delete
        }
        Some(_) if status.role != Role::Leader && leaderless_for >= ORPHAN_GRACE => {
            Deletion::AskPeers
        }
        Some(_) => Deletion::Keep,
    }
}

/// Whether a replica of `group` on a member node the map lists reports a
/// committed configuration without `me` (its commit index has reached the
/// configuration's index). Members that do not answer count for nothing.
async fn removal_confirmed(client: &Client, map: &ClusterMap, group: GroupId, me: NodeId) -> bool {
    let Some(info) = map.groups().get(&group) else {
        return false;
    };
    for node in info.members.iter().filter(|&&n| n != me) {
        let Some(address) = map.nodes().get(node).map(|n| n.address.clone()) else {
            continue;
        };
        let Ok(status) = client.status(&address).await else {
            continue;
        };
        if let Some(g) = status.groups.iter().find(|g| g.group == group)
            && !g.voters.contains(&me)
            && !g.learners.contains(&me)
            && g.commit_index >= g.conf_index
        {
            return true;
        }
    }
    false
}

/// Runs until `stop`: on every new map version and every [`RECHECK`], leads
/// each data group this node leads towards its map members, and deletes the
/// replicas the map and their groups dropped.
pub(crate) async fn conf_sync(
    me: NodeId,
    client: Client,
    maps: MapCache,
    directory: GroupDirectory,
    hosts: HostSender,
    mut stop: watch::Receiver<bool>,
) {
    let mut updates = maps.subscribe();
    let mut leader_seen: BTreeMap<GroupId, Instant> = BTreeMap::new();
    loop {
        let map = updates.borrow_and_update().clone();
        if let Some(map) = map {
            for handle in directory.all() {
                let group = handle.group();
                if group == KV_GROUP || group == PLACEMENT_GROUP {
                    continue;
                }
                let status = handle.status();
                let now = Instant::now();
                let seen = leader_seen.entry(group).or_insert(now);
                if status.leader != 0 {
                    *seen = now;
                }
                let leads = status.role == Role::Leader;
                let leaderless_for = now.duration_since(*seen);
                let delete = match deletion(&map.map, group, me, &status, leaderless_for) {
                    Deletion::Keep => false,
                    Deletion::Delete => true,
                    Deletion::AskPeers => removal_confirmed(&client, &map.map, group, me).await,
                };
                if delete {
                    match hosts.unhost(group).await {
                        Ok(()) => {
                            leader_seen.remove(&group);
                            tracing::info!(
                                "deleted the replica of group {group} (cluster map version {})",
                                map.version()
                            );
                        }
                        Err(e) => tracing::warn!("cannot delete group {group}'s replica yet: {e}"),
                    }
                    continue;
                }
                if leads && let Some(wanted) = map.map.groups().get(&group) {
                    let step = next_step(&wanted.members, &status.conf, me);
                    if let Some(step) = step {
                        carry_out(&handle, &map.map, step).await;
                    }
                }
            }
        }
        tokio::select! {
            changed = updates.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RECHECK) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Makes one change on the leader's handle; a failure is logged and the
/// change is tried again at the next check.
async fn carry_out(handle: &NodeHandle, map: &ClusterMap, step: ConfStep) {
    let group = handle.group();
    let result = match step {
        ConfStep::Add(id) => {
            let Some(node) = map.nodes().get(&id) else {
                tracing::warn!("group {group}: node {id} has no address in the map");
                return;
            };
            let change = MemberChange::Add {
                id,
                address: node.address.clone(),
                promote: true,
            };
            handle
                .change_members(change, CHANGE_TIMEOUT)
                .await
                .map(|_| ())
        }
        ConfStep::Remove(id) => handle
            .change_members(MemberChange::Remove(id), CHANGE_TIMEOUT)
            .await
            .map(|_| ()),
        ConfStep::HandOff => handle.transfer_leader(0, CHANGE_TIMEOUT).await.map(|_| ()),
    };
    if let Err(e) = result {
        tracing::warn!("group {group}: {step:?} to follow the cluster map failed: {e}");
    }
}

#[cfg(test)]
#[path = "conf_sync_tests.rs"]
mod tests;
