//! Keeping group 1's members in the cluster map in line with group 1's Raft
//! configuration.
//!
//! Group 1's membership is its Raft configuration, changed by `keel member
//! add/remove` and `keel serve --join`; the map does not drive it
//! (`conf_sync.rs` leaves group 1 alone). But the map's group 1 members are
//! what every node outside group 1 knows of it: whom to forward group 1's keys
//! to, which nodes to keep connected. Left at the bootstrap members, a placed
//! node would forward to a removed member and never to an added one. So group
//! 1's leader writes its configuration into the map, one change at a time: a
//! voter the map lacks is added (once it is registered: only a registered,
//! active node may be a member), then a member that is neither a voter nor a
//! learner any more is removed (never the map's last).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use keel_placement::{ClusterMap, Command, NodeState};
use keel_raft::{ConfState, NodeId, Role};
use tokio::sync::watch;

use crate::api::ApiContext;
use crate::node::KV_GROUP;

/// How often the configuration is compared with the map though neither
/// changed as far as this task saw (a configuration change does not wake it).
const RECHECK: Duration = Duration::from_secs(1);

/// The map change that brings the map's group 1 members one step closer to
/// `conf`, group 1's configuration as its leader sees it; `None` when they
/// agree or nothing can be done yet.
pub(crate) fn mirror_step(map: &ClusterMap, conf: &ConfState) -> Option<Command> {
    let members = &map.groups().get(&KV_GROUP)?.members;
    let registered = |n: &NodeId| {
        map.nodes()
            .get(n)
            .is_some_and(|n| n.state == NodeState::Active)
    };
    if let Some(&node) = conf
        .voters
        .iter()
        .find(|v| !members.contains(v) && registered(v))
    {
        return Some(Command::AddGroupMember {
            group: KV_GROUP,
            node,
        });
    }
    let in_conf: BTreeSet<NodeId> = conf.voters.iter().chain(&conf.learners).copied().collect();
    members
        .iter()
        .find(|m| !in_conf.contains(m))
        .filter(|_| members.len() > 1)
        .map(|&node| Command::RemoveGroupMember {
            group: KV_GROUP,
            node,
        })
}

/// Runs until `stop`: while this node's replica leads group 1, on every new
/// map version and every [`RECHECK`], proposes the next [`mirror_step`].
pub(crate) async fn mirror_group1(ctx: Arc<ApiContext>, mut stop: watch::Receiver<bool>) {
    let mut updates = ctx.maps.subscribe();
    loop {
        let map = updates.borrow_and_update().clone();
        let status = ctx.node.status();
        let leads = status.role == Role::Leader && !ctx.outside_group_1;
        if let Some(command) = map
            .filter(|_| leads)
            .and_then(|m| mirror_step(&m.map, &status.conf))
        {
            match ctx.change_map_as_node(&command).await {
                Ok(r) => tracing::info!(
                    "group 1's members in the cluster map follow its configuration: {command:?} \
                     (version {})",
                    r.version
                ),
                Err(e) => tracing::debug!("cannot mirror group 1's members yet: {}", e.message),
            }
        }
        tokio::select! {
            changed = updates.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RECHECK) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::test_maps::two_groups;

    fn conf(voters: &[NodeId], learners: &[NodeId]) -> ConfState {
        ConfState {
            voters: voters.to_vec(),
            learners: learners.to_vec(),
        }
    }

    fn registered(mut map: ClusterMap, node: NodeId) -> ClusterMap {
        map.apply(&Command::RegisterNode {
            node,
            address: format!("127.0.0.1:{}", 7000 + node),
        })
        .expect("register");
        map
    }

    #[test]
    fn a_map_that_agrees_with_the_configuration_is_left_alone() {
        let map = two_groups();
        let members: Vec<NodeId> = map.groups()[&KV_GROUP].members.iter().copied().collect();
        assert_eq!(mirror_step(&map, &conf(&members, &[])), None);
    }

    #[test]
    fn a_registered_voter_is_added_and_an_unregistered_one_waits() {
        let map = two_groups();
        let mut voters: Vec<NodeId> = map.groups()[&KV_GROUP].members.iter().copied().collect();
        voters.push(9);
        // Node 9 is not registered yet: nothing to do.
        assert_eq!(mirror_step(&map, &conf(&voters, &[])), None);
        let map = registered(map, 9);
        assert_eq!(
            mirror_step(&map, &conf(&voters, &[])),
            Some(Command::AddGroupMember {
                group: KV_GROUP,
                node: 9
            })
        );
        // A learner is not added: it serves nothing yet.
        voters.pop();
        assert_eq!(mirror_step(&map, &conf(&voters, &[9])), None);
    }

    #[test]
    fn a_member_out_of_the_configuration_is_removed_after_additions_never_the_last() {
        let map = registered(two_groups(), 9);
        let members: Vec<NodeId> = map.groups()[&KV_GROUP].members.iter().copied().collect();
        let (gone, kept) = members.split_first().expect("members");
        let mut voters = kept.to_vec();
        voters.push(9);
        // Additions first, so the map never lists fewer members on the way.
        assert_eq!(
            mirror_step(&map, &conf(&voters, &[])),
            Some(Command::AddGroupMember {
                group: KV_GROUP,
                node: 9
            })
        );
        let mut map = map;
        map.apply(&Command::AddGroupMember {
            group: KV_GROUP,
            node: 9,
        })
        .expect("add");
        assert_eq!(
            mirror_step(&map, &conf(&voters, &[])),
            Some(Command::RemoveGroupMember {
                group: KV_GROUP,
                node: *gone
            })
        );
        // Still a learner (being removed, or demoted): kept.
        assert_eq!(mirror_step(&map, &conf(&voters, &[*gone])), None);
        // The map's last member is never removed.
        let mut alone = map.clone();
        for m in members.iter().chain([&9]).skip(1) {
            alone
                .apply(&Command::RemoveGroupMember {
                    group: KV_GROUP,
                    node: *m,
                })
                .expect("remove");
        }
        assert_eq!(mirror_step(&alone, &conf(&[42], &[])), None);
    }
}
