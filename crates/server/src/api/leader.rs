//! Leader transfer (`keel leader transfer`, gRPC `Cluster.TransferLeader`):
//! hand a group's leadership to another voter for planned maintenance.
//!
//! Group 1's: served by its leader, another member answering NOT_LEADER
//! naming it; on a node outside group 1 the call is asked of group 1's
//! members (`group1_calls.rs`). A data group's: carried out here if this
//! node's replica leads it, else asked of the group's members in the cluster
//! map, one hop, the way key operations are forwarded (`group_forward.rs`) —
//! a client cannot follow a data group's NOT_LEADER itself, since it names
//! group 1's leader otherwise. The placement group's only where its replica
//! leads: the map does not list its members, so elsewhere the call finds no
//! one to ask (NO_LEADER).

use keel_placement::PLACEMENT_GROUP;
use keel_proto::error::ErrorDetail;
use keel_proto::v1::{TransferLeaderRequest, TransferLeaderResponse};
use keel_raft::{ConfState, GroupId, Role};

use super::forward::Forwarder;
use super::group_forward::{Hop, Members, other_members};
use super::{ApiContext, DetailExt};
use crate::node::KV_GROUP;

impl ApiContext {
    /// Hands `req.group`'s leadership to voter `req.to` (0: the most
    /// caught-up one) and answers the new leader once it leads.
    pub(crate) async fn transfer_leader(
        &self,
        req: TransferLeaderRequest,
        hop: Hop,
    ) -> Result<TransferLeaderResponse, ErrorDetail> {
        if req.group != 0 && req.group != KV_GROUP {
            return self.transfer_group_leader(req, hop).await;
        }
        self.one_hop(hop)?;
        if self.asks_group_1() {
            // Not a write: starting a transfer twice is harmless, so a call
            // cut off after sending may simply be retried.
            return self
                .ask_group_1(
                    false,
                    req,
                    |mut c, r| async move { c.transfer_leader(r).await },
                )
                .await;
        }
        check_target(&self.members.conf(), req.to)?;
        let leader_id = self
            .node
            .transfer_leader(req.to, self.limits.request_timeout)
            .await
            .map_err(|e| self.error(e))?;
        Ok(TransferLeaderResponse { leader_id })
    }

    /// [`Self::transfer_leader`] for a group other than group 1 (see the
    /// module docs). A forwarded call is carried out by this node's replica
    /// whatever its role: a follower answers NOT_LEADER naming the leader,
    /// which the forwarding node asks next.
    async fn transfer_group_leader(
        &self,
        req: TransferLeaderRequest,
        hop: Hop,
    ) -> Result<TransferLeaderResponse, ErrorDetail> {
        let group = req.group;
        if let Some(handle) = self.groups.get(group) {
            let status = handle.status();
            if status.role == Role::Leader || hop == Hop::Forwarded {
                check_target(&status.conf, req.to)?;
                let leader_id = handle
                    .transfer_leader(req.to, self.limits.request_timeout)
                    .await
                    .map_err(|e| self.error(e))?;
                return Ok(TransferLeaderResponse { leader_id });
            }
        } else if hop == Hop::Forwarded {
            return Err(ErrorDetail::no_leader().with_message(format!(
                "node {} does not host group {group} (its cluster map is older than the \
                 sender's?)",
                self.id
            )));
        }
        let members = self.group_members(group)?;
        let to = Members {
            group,
            members: &members,
            is_write: false,
        };
        self.ask_members(to, req, Forwarder::cluster, |mut c, r| async move {
            c.transfer_leader(r).await
        })
        .await
        .map_err(|last| {
            ErrorDetail::no_leader().with_message(format!(
                "no member of group {group} carried the transfer out (nothing changed){}",
                last.map(|e| format!("; last: {}", e.message))
                    .unwrap_or_default()
            ))
        })
    }

    /// `group`'s members other than this node, with their addresses, by the
    /// cached map; a clear error for a group the map does not have.
    fn group_members(&self, group: GroupId) -> Result<Vec<(u64, String)>, ErrorDetail> {
        let Some(cached) = self.maps.current() else {
            return Err(ErrorDetail::no_leader()
                .with_message("this node has no cluster map yet to find the group in".into()));
        };
        if group != PLACEMENT_GROUP && !cached.map.groups().contains_key(&group) {
            return Err(ErrorDetail::invalid_argument(format!(
                "the cluster map (version {}) has no group {group}",
                cached.map.version()
            )));
        }
        let members = other_members(&cached.map, group, self.id);
        if members.is_empty() {
            return Err(ErrorDetail::no_leader().with_message(format!(
                "the cluster map names no other member of group {group} to ask"
            )));
        }
        Ok(members)
    }
}

/// A transfer's target must be a voter of the group (0: any).
fn check_target(conf: &ConfState, to: u64) -> Result<(), ErrorDetail> {
    if to == 0 || conf.voters.contains(&to) {
        return Ok(());
    }
    let why = if conf.learners.contains(&to) {
        format!("node {to} is a learner: only a voter can lead")
    } else {
        format!("node {to} is not a member")
    };
    Err(ErrorDetail::invalid_argument(why))
}

#[cfg(test)]
mod tests {
    use keel_proto::error::Kind;

    use super::*;

    #[test]
    fn only_a_voter_may_be_handed_leadership() {
        let conf = ConfState {
            voters: vec![1, 2, 3],
            learners: vec![4],
        };
        assert!(check_target(&conf, 0).is_ok());
        assert!(check_target(&conf, 2).is_ok());
        let learner = check_target(&conf, 4).expect_err("a learner");
        assert_eq!(learner.kind(), Kind::InvalidArgument);
        assert!(learner.message.contains("learner"), "{learner:?}");
        let stranger = check_target(&conf, 9).expect_err("not a member");
        assert!(stranger.message.contains("not a member"), "{stranger:?}");
    }
}
