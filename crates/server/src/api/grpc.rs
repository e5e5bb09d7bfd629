//! The gRPC services `keel.v1.Kv` and `keel.v1.Cluster`. A follower answers writes
//! and linearizable reads with NOT_LEADER and the leader's address; the client
//! follows it. A key operation for a group this node does not host is
//! forwarded to a member of that group (`group_forward.rs`), unless it was
//! itself forwarded.

use std::sync::Arc;

use keel_proto::v1::cluster_server::Cluster;
use keel_proto::v1::kv_server::Kv;
use keel_proto::v1::{
    AddMemberRequest, AddMemberResponse, AddRequest, AddResponse, BatchRequest, ChangeMapRequest,
    ChangeMapResponse, DeleteRequest, DeleteResponse, DigestRequest, DigestResponse, GetRequest,
    GetResponse, GroupStatus, MapRequest, MapResponse, MembersRequest, MembersResponse,
    PeerProgress, PromoteMemberRequest, PromoteMemberResponse, PutRequest, PutResponse,
    RemoveMemberRequest, RemoveMemberResponse, ScanRequest, ScanResponse, SnapshotSaveChunk,
    SnapshotSaveRequest, StatusRequest, StatusResponse, TransferLeaderRequest,
    TransferLeaderResponse, TxnRequest, TxnResponse, WatchMapRequest,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::ApiContext;
use super::group_forward::Hop;
use super::map_change::MapCall;
use super::ops::Forwarding;
use crate::metrics::ClientOp;

/// `keel.v1.Kv` on this node.
#[derive(Debug, Clone)]
pub struct KvService {
    ctx: Arc<ApiContext>,
}

impl KvService {
    /// A service over the shared handler state.
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        KvService { ctx }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn get(&self, r: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let out = self
            .ctx
            .timed(ClientOp::Get, {
                let hop = Hop::of(r.metadata());
                self.ctx.routed_get(r.into_inner(), Forwarding::Never, hop)
            })
            .await?;
        Ok(Response::new(out))
    }

    async fn put(&self, r: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let out = self
            .ctx
            .timed(ClientOp::Put, {
                let hop = Hop::of(r.metadata());
                self.ctx.routed_put(r.into_inner(), Forwarding::Never, hop)
            })
            .await?;
        Ok(Response::new(out))
    }

    async fn delete(&self, r: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        let out = self
            .ctx
            .timed(ClientOp::Delete, {
                let hop = Hop::of(r.metadata());
                self.ctx
                    .routed_delete(r.into_inner(), Forwarding::Never, hop)
            })
            .await?;
        Ok(Response::new(out))
    }

    async fn scan(&self, r: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        let out = self
            .ctx
            .timed(
                ClientOp::Scan,
                self.ctx.scan(r.into_inner(), Forwarding::Never),
            )
            .await?;
        Ok(Response::new(out))
    }

    async fn txn(&self, r: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let out = self
            .ctx
            .timed(ClientOp::Txn, {
                let hop = Hop::of(r.metadata());
                self.ctx.routed_txn(r.into_inner(), Forwarding::Never, hop)
            })
            .await?;
        Ok(Response::new(out))
    }

    async fn add(&self, r: Request<AddRequest>) -> Result<Response<AddResponse>, Status> {
        let out = self
            .ctx
            .timed(ClientOp::Add, {
                let hop = Hop::of(r.metadata());
                self.ctx.routed_add(r.into_inner(), Forwarding::Never, hop)
            })
            .await?;
        Ok(Response::new(out))
    }

    type BatchStream = super::batch::BatchStream;

    async fn batch(
        &self,
        r: Request<Streaming<BatchRequest>>,
    ) -> Result<Response<Self::BatchStream>, Status> {
        Ok(Response::new(super::batch::serve(
            self.ctx.clone(),
            r.into_inner(),
        )))
    }
}

/// `keel.v1.Cluster` on this node.
#[derive(Debug, Clone)]
pub struct ClusterService {
    ctx: Arc<ApiContext>,
}

impl ClusterService {
    /// A service over the shared handler state.
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        ClusterService { ctx }
    }
}

/// This node's status in the wire format.
pub(crate) fn status_response(ctx: &ApiContext) -> StatusResponse {
    let s = ctx.node.status();
    StatusResponse {
        id: ctx.id,
        cluster_id: ctx.cluster_id,
        role: role_name(s.role, ctx.members.conf().learners.contains(&ctx.id)),
        term: s.term,
        leader_id: s.leader,
        commit_index: s.commit,
        applied_index: s.applied,
        last_index: s.last_index,
        address: ctx.address.clone(),
        http_address: ctx.http_address.clone().unwrap_or_default(),
        progress: s
            .peers
            .iter()
            .map(|p| PeerProgress {
                id: p.id,
                match_index: p.match_index,
                next_index: p.next_index,
                state: p.state.to_string(),
                active: p.active,
            })
            .collect(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_ms: ctx.started.elapsed().as_millis() as u64,
        groups: ctx
            .groups
            .all()
            .iter()
            .map(|h| GroupStatus {
                keys: h.kv().read_view().and_then(|v| v.len()).unwrap_or(0),
                ..group_status(h.group(), &h.status())
            })
            .collect(),
    }
}

/// How a replica's role is shown: a follower that is a learner of its
/// configuration follows but never votes or campaigns, so it says so.
fn role_name(role: keel_raft::Role, learner: bool) -> String {
    if role == keel_raft::Role::Follower && learner {
        "learner".to_string()
    } else {
        role.as_str().to_string()
    }
}

/// One hosted group's replica as it sees its group.
fn group_status(group: keel_raft::GroupId, s: &crate::node::NodeStatus) -> GroupStatus {
    GroupStatus {
        group,
        role: role_name(s.role, s.conf.learners.contains(&s.id)),
        term: s.term,
        leader_id: s.leader,
        commit_index: s.commit,
        applied_index: s.applied,
        last_index: s.last_index,
        voters: s.conf.voters.clone(),
        learners: s.conf.learners.clone(),
        conf_index: s.conf_index,
        keys: 0,
        quiesced: s.quiesced,
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(status_response(&self.ctx)))
    }

    async fn transfer_leader(
        &self,
        r: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        let hop = Hop::of(r.metadata());
        let out = self.ctx.transfer_leader(r.into_inner(), hop).await?;
        Ok(Response::new(out))
    }

    async fn members(
        &self,
        r: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        self.ctx.one_hop(Hop::of(r.metadata()))?;
        Ok(Response::new(self.ctx.members_answer().await?))
    }

    async fn add_member(
        &self,
        r: Request<AddMemberRequest>,
    ) -> Result<Response<AddMemberResponse>, Status> {
        self.ctx.one_hop(Hop::of(r.metadata()))?;
        let out = self
            .ctx
            .add_member(r.into_inner(), Forwarding::Never)
            .await?;
        Ok(Response::new(out))
    }

    async fn remove_member(
        &self,
        r: Request<RemoveMemberRequest>,
    ) -> Result<Response<RemoveMemberResponse>, Status> {
        self.ctx.one_hop(Hop::of(r.metadata()))?;
        let out = self
            .ctx
            .remove_member(r.into_inner(), Forwarding::Never)
            .await?;
        Ok(Response::new(out))
    }

    async fn promote_member(
        &self,
        r: Request<PromoteMemberRequest>,
    ) -> Result<Response<PromoteMemberResponse>, Status> {
        self.ctx.one_hop(Hop::of(r.metadata()))?;
        let out = self
            .ctx
            .promote_member(r.into_inner(), Forwarding::Never)
            .await?;
        Ok(Response::new(out))
    }

    async fn digest(&self, r: Request<DigestRequest>) -> Result<Response<DigestResponse>, Status> {
        let group = r.into_inner().group;
        Ok(Response::new(self.ctx.digest(group).await?))
    }

    async fn map(&self, _: Request<MapRequest>) -> Result<Response<MapResponse>, Status> {
        Ok(Response::new(self.ctx.cluster_map()?))
    }

    type WatchMapStream = ReceiverStream<Result<MapResponse, Status>>;

    async fn watch_map(
        &self,
        r: Request<WatchMapRequest>,
    ) -> Result<Response<Self::WatchMapStream>, Status> {
        let maps = self.ctx.watch_map(r.into_inner().after_version);
        Ok(Response::new(ReceiverStream::new(maps)))
    }

    async fn change_map(
        &self,
        r: Request<ChangeMapRequest>,
    ) -> Result<Response<ChangeMapResponse>, Status> {
        let call = if r
            .metadata()
            .contains_key(super::map_route::FORWARDED_HEADER)
        {
            MapCall::Forwarded
        } else {
            MapCall::Client
        };
        Ok(Response::new(
            self.ctx.change_map(r.into_inner(), call).await?,
        ))
    }

    type SnapshotSaveStream = ReceiverStream<Result<SnapshotSaveChunk, Status>>;

    async fn snapshot_save(
        &self,
        _: Request<SnapshotSaveRequest>,
    ) -> Result<Response<Self::SnapshotSaveStream>, Status> {
        let chunks = self.ctx.snapshot_save().await?;
        Ok(Response::new(ReceiverStream::new(chunks)))
    }
}
