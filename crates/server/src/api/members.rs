//! Membership operations, shared by gRPC and HTTP: list, add, remove, promote, and
//! the state digest used to compare replicas.
//!
//! Changes are served by the leader. Over HTTP a follower forwards them (one hop);
//! over gRPC it answers NOT_LEADER and the client follows. Removing the leader
//! first hands leadership to another voter, then the change is sent on to it, so
//! the removal never costs an election timeout (thesis §3.10, §4.2.2).

use keel_client::AuthChannel;
use keel_proto::error::ErrorDetail;
use keel_proto::v1::cluster_client::ClusterClient;
use keel_proto::v1::{
    AddMemberRequest, AddMemberResponse, DigestResponse, Member, MembersRequest, MembersResponse,
    PromoteMemberRequest, PromoteMemberResponse, RemoveMemberRequest, RemoveMemberResponse,
};
use keel_raft::{NodeId, Role};

use super::forward::call_leader;
use super::group_forward::other_members;
use super::ops::Forwarding;
use super::{ApiContext, DetailExt};
use crate::members::validate_address;
use crate::node::{MemberChange, NodeError};

/// Where a change is carried out.
enum Route {
    Here,
    Leader(String),
}

impl ApiContext {
    /// The member list a client asked this node for: [`ApiContext::member_list`],
    /// or — on a node outside group 1, whose group 1 replica never hears of a
    /// change — the answer of the first of group 1's members (by the cluster
    /// map: `placement/group1_mirror.rs` keeps them current) that gives one.
    pub(crate) async fn members_answer(&self) -> Result<MembersResponse, ErrorDetail> {
        if !self.outside_group_1 {
            return Ok(self.member_list());
        }
        let members = self
            .maps
            .current()
            .map(|m| other_members(&m.map, crate::node::KV_GROUP, self.id))
            .unwrap_or_default();
        let mut last = ErrorDetail::no_leader()
            .with_message("this node is outside group 1 and no member of group 1 answered".into());
        for (_, addr) in members {
            let client = self.cluster_client(&addr);
            match call_leader(client, false, |mut c| async move {
                c.members(MembersRequest::default()).await
            })
            .await
            {
                Ok(list) => return Ok(list),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The configuration in force as this node knows it; the leader adds each
    /// member's replication progress.
    pub(crate) fn member_list(&self) -> MembersResponse {
        let status = self.node.status();
        let (config_index, change_in_progress) = self.members.conf_index();
        let members = self
            .members
            .members()
            .into_iter()
            .map(|m| {
                let progress = status.peers.iter().find(|p| p.id == m.id);
                let me = m.id == self.id && status.role == Role::Leader;
                Member {
                    id: m.id,
                    address: if m.id == self.id {
                        self.address.clone()
                    } else {
                        m.address
                    },
                    voter: m.voter,
                    promote_when_caught_up: m.promote,
                    match_index: if me {
                        status.last_index
                    } else {
                        progress.map_or(0, |p| p.match_index)
                    },
                    active: me || progress.is_some_and(|p| p.active),
                }
            })
            .collect();
        let bootstrap_members = self
            .members
            .bootstrap()
            .iter()
            .map(|(&id, address)| Member {
                id,
                address: address.clone(),
                voter: true,
                ..Member::default()
            })
            .collect();
        MembersResponse {
            members,
            leader_id: status.leader,
            config_index,
            change_in_progress,
            cluster_id: self.cluster_id,
            bootstrap_members,
        }
    }

    pub(crate) async fn add_member(
        &self,
        req: AddMemberRequest,
        fwd: Forwarding,
    ) -> Result<AddMemberResponse, ErrorDetail> {
        if req.id == 0 {
            return Err(ErrorDetail::invalid_argument("member id must be positive"));
        }
        validate_address(&req.address).map_err(ErrorDetail::invalid_argument)?;
        let change = MemberChange::Add {
            id: req.id,
            address: req.address.clone(),
            promote: !req.learner,
        };
        let index = match self.change(change, fwd).await? {
            Route::Here => 0,
            Route::Leader(leader) => {
                return self
                    .forward_to(&leader, |mut c| async move { c.add_member(req).await })
                    .await;
            }
        };
        let list = self.member_list();
        Ok(AddMemberResponse {
            cluster_id: self.cluster_id,
            members: list.members,
            bootstrap_members: list.bootstrap_members,
            index: index.max(list.config_index),
        })
    }

    pub(crate) async fn remove_member(
        &self,
        req: RemoveMemberRequest,
        fwd: Forwarding,
    ) -> Result<RemoveMemberResponse, ErrorDetail> {
        if req.id == 0 {
            return Err(ErrorDetail::invalid_argument("member id must be positive"));
        }
        if req.id == self.id && self.node.status().role == Role::Leader {
            // Hand over first; then the new leader removes this node.
            let leader = self
                .node
                .transfer_leader(0, self.limits.request_timeout)
                .await
                .map_err(|e| self.error(e))?;
            return self
                .forward_or_redirect(
                    leader,
                    fwd,
                    |mut c| async move { c.remove_member(req).await },
                )
                .await;
        }
        match self.change(MemberChange::Remove(req.id), fwd).await? {
            Route::Here => {}
            Route::Leader(leader) => {
                return self
                    .forward_to(&leader, |mut c| async move { c.remove_member(req).await })
                    .await;
            }
        }
        let list = self.member_list();
        Ok(RemoveMemberResponse {
            members: list.members,
            index: list.config_index,
        })
    }

    pub(crate) async fn promote_member(
        &self,
        req: PromoteMemberRequest,
        fwd: Forwarding,
    ) -> Result<PromoteMemberResponse, ErrorDetail> {
        if req.id == 0 {
            return Err(ErrorDetail::invalid_argument("member id must be positive"));
        }
        match self.change(MemberChange::Promote(req.id), fwd).await? {
            Route::Here => {}
            Route::Leader(leader) => {
                return self
                    .forward_to(&leader, |mut c| async move { c.promote_member(req).await })
                    .await;
            }
        }
        let list = self.member_list();
        Ok(PromoteMemberResponse {
            members: list.members,
            index: list.config_index,
        })
    }

    /// A fingerprint of the state machine (reads every key: off the async threads).
    pub(crate) async fn digest(&self) -> Result<DigestResponse, ErrorDetail> {
        let node = self.node.clone();
        let d = tokio::task::spawn_blocking(move || node.kv().digest())
            .await
            .map_err(|e| ErrorDetail::internal(format!("digest task failed: {e}")))?
            .map_err(|e| ErrorDetail::internal(format!("state machine read failed: {e}")))?;
        Ok(DigestResponse {
            applied_index: d.applied_index,
            keys: d.keys,
            hash: format!("{:032x}", d.hash),
        })
    }

    /// Carries out `change` here if this node leads; otherwise says where the
    /// leader is (HTTP forwards) or answers NOT_LEADER (gRPC).
    async fn change(&self, change: MemberChange, fwd: Forwarding) -> Result<Route, ErrorDetail> {
        match self
            .node
            .change_members(change, self.limits.request_timeout)
            .await
        {
            Ok(_) => Ok(Route::Here),
            Err(NodeError::NotLeader { leader })
                if leader != 0 && leader != self.id && fwd == Forwarding::Allowed =>
            {
                Ok(Route::Leader(self.address_of(leader)))
            }
            Err(e) => Err(self.error(e)),
        }
    }

    /// After handing leadership to `leader`: forward the call there (HTTP), or
    /// answer NOT_LEADER naming it so that the client retries there (gRPC).
    async fn forward_or_redirect<T, F, Fut>(
        &self,
        leader: NodeId,
        fwd: Forwarding,
        call: F,
    ) -> Result<T, ErrorDetail>
    where
        F: FnOnce(ClusterClient<AuthChannel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        if fwd == Forwarding::Never {
            return Err(self.error(NodeError::NotLeader { leader }));
        }
        self.forward_to(&self.address_of(leader), call).await
    }

    /// Runs a cluster call on the leader at `addr` (one hop).
    async fn forward_to<T, F, Fut>(&self, addr: &str, call: F) -> Result<T, ErrorDetail>
    where
        F: FnOnce(ClusterClient<AuthChannel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        call_leader(self.forwarder.cluster(addr), true, call).await
    }
}
