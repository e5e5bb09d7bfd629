//! Membership operations, shared by gRPC and HTTP: list, add, remove, promote, and
//! the state digest used to compare replicas. On a node outside group 1 they are
//! asked of group 1's members, the digest excepted (`group1_calls.rs`).
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
use keel_raft::{GroupId, NodeId, Role};

use super::ApiContext;
use super::forward::call_leader;
use super::ops::Forwarding;
use crate::members::validate_address;
use crate::node::{KV_GROUP, MemberChange, NodeError, NodeHandle};

/// Where a change is carried out.
enum Route {
    Here,
    Leader(String),
}

impl ApiContext {
    /// The member list a client asked this node for: [`ApiContext::member_list`],
    /// or — on a node outside group 1, whose group 1 replica never hears of a
    /// change — the answer of a member of group 1 (`group1_calls.rs`).
    pub(crate) async fn members_answer(&self) -> Result<MembersResponse, ErrorDetail> {
        if !self.asks_group_1() {
            return Ok(self.member_list());
        }
        self.ask_group_1(false, MembersRequest::default(), |mut c, r| async move {
            c.members(r).await
        })
        .await
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
        if self.asks_group_1() {
            return self
                .ask_group_1(true, req, |mut c, r| async move { c.add_member(r).await })
                .await;
        }
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
        if self.asks_group_1() {
            return self
                .ask_group_1(
                    true,
                    req,
                    |mut c, r| async move { c.remove_member(r).await },
                )
                .await;
        }
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
        if self.asks_group_1() {
            return self
                .ask_group_1(
                    true,
                    req,
                    |mut c, r| async move { c.promote_member(r).await },
                )
                .await;
        }
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

    /// A fingerprint of this node's group 1 state machine (reads every key: off
    /// the async threads).
    ///
    /// Not forwarded on a node outside group 1, unlike the other group 1
    /// calls: a digest is asked of a node to compare its replica with the
    /// others', so another node's answer would compare that node with itself.
    /// Such a node's inert replica holds nothing of group 1, so it says that
    /// it has no group 1 state to digest (REFUSED) rather than answer an empty
    /// digest that would look like a replica behind.
    ///
    /// `group` other than 0 and 1: this node's replica of that data group, so
    /// that a sharded group's replicas can be compared the same way; refused
    /// on a node that does not host it.
    pub(crate) async fn digest(&self, group: GroupId) -> Result<DigestResponse, ErrorDetail> {
        if group != 0 && group != KV_GROUP {
            let Some(handle) = self.groups.get(group) else {
                return Err(ErrorDetail::refused(format!(
                    "node {} does not host group {group}: it has no replica of it to digest",
                    self.id
                )));
            };
            return digest_of(handle).await;
        }
        if self.asks_group_1() {
            return Err(ErrorDetail::refused(format!(
                "node {} is outside group 1's configuration: it has no group 1 \
                 replica state to digest; ask a member of group 1",
                self.id
            )));
        }
        digest_of(self.node.clone()).await
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

/// The digest of `node`'s state machine (reads every key: off the async
/// threads).
async fn digest_of(node: NodeHandle) -> Result<DigestResponse, ErrorDetail> {
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
