//! Client-facing APIs. `ops.rs` (and `txn.rs` for transactions, `add.rs` for
//! atomic adds) holds the operations, shared by the gRPC services (`grpc.rs`,
//! `batch.rs` for many calls over one stream), the HTTP/JSON API (`http.rs`,
//! `http_txn.rs`) and the Redis protocol (`crate::redis`); errors everywhere are
//! keel's `ErrorDetail`, which says whether a write may have been applied. The
//! dashboard (`dashboard.rs`) is served over HTTP from the cluster status
//! (`status.rs`). Key operations reach `ops.rs` through `routed.rs`, which
//! forwards one hop to a member of the key's group when this node hosts no
//! replica of it (`group_forward.rs`).

mod add;
mod backup;
mod batch;
mod dashboard;
mod forward;
mod group1_calls;
mod group_forward;
mod grpc;
mod http;
mod http_members;
mod http_session;
mod http_txn;
mod leader;
mod map;
mod map_change;
mod map_route;
mod members;
mod ops;
mod route;
mod routed;
mod scan_merge;
mod sessions;
pub mod status;
pub(crate) mod txn;
pub(crate) mod validate;

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_client::BearerToken;
use keel_proto::error::ErrorDetail;
use keel_raft::NodeId;
use keel_storage::kv::slots::SlotUnavailable;

pub(crate) use group_forward::Hop;
pub(crate) use grpc::status_response;
pub use grpc::{ClusterService, KvService};
pub use http::router;
pub(crate) use ops::{Forwarding, Served, not_served};
pub(crate) use route::owner_of;

use crate::backup::Backups;
use crate::config::DefaultReadMode;
use crate::members::MemberBook;
use crate::metrics::{ClientOp, Metrics};
use crate::node::{GroupDirectory, NodeError, NodeHandle};
use crate::placement::MapCache;
use crate::timeline::Timeline;
use crate::transport::PeerConnector;
use forward::Forwarder;

/// Limits and defaults the APIs enforce.
#[derive(Clone, Debug)]
pub struct ApiLimits {
    /// Largest value accepted.
    pub max_value_bytes: usize,
    /// Largest scan page.
    pub max_scan_limit: u32,
    /// How long a request may wait inside the node.
    pub request_timeout: Duration,
    /// Mode for reads that do not name one.
    pub default_read_mode: DefaultReadMode,
    /// Stamped into every session write (`ServerConfig::session_idle_timeout_ms`).
    pub session_idle_timeout_ms: u64,
    /// Stamped into every session write (`ServerConfig::max_client_sessions`).
    pub max_client_sessions: u64,
    /// Test fault (`ServerConfig::fault_lose_write_reply_every`); 0 is off.
    pub fault_lose_write_reply_every: u64,
}

/// Who this node is, as the APIs report it.
#[derive(Clone, Debug)]
pub struct ApiIdentity {
    /// This node.
    pub id: NodeId,
    /// Its cluster.
    pub cluster_id: u64,
    /// Its advertised gRPC address.
    pub address: String,
    /// Its HTTP address, if served.
    pub http_address: Option<String>,
    /// How it connects to other members when forwarding (plain or mutual TLS).
    pub peers: PeerConnector,
    /// The bearer token its forwarded requests carry, if the cluster has one.
    pub token: Option<BearerToken>,
    /// It joined through placement: its group 1 replica serves nothing until
    /// group 1's configuration lists the node.
    pub outside_group_1: bool,
}

/// How this node reaches the placement group, which changes the cluster map.
#[derive(Clone, Debug, Default)]
pub struct PlacementAccess {
    /// This node's replica of the placement group, if it is a member.
    pub node: Option<NodeHandle>,
    /// The placement group's members (empty in a cluster from before it).
    pub members: Vec<NodeId>,
}

/// Everything a request handler needs. Shared by all handlers.
#[derive(Debug)]
pub struct ApiContext {
    /// The consensus thread and state machine.
    pub node: NodeHandle,
    /// This node.
    pub id: NodeId,
    /// Its cluster.
    pub cluster_id: u64,
    /// Members and their gRPC addresses.
    pub members: Arc<MemberBook>,
    /// This node's advertised gRPC address.
    pub address: String,
    /// This node's HTTP address, if served.
    pub http_address: Option<String>,
    /// It joined through placement (see [`ApiIdentity::outside_group_1`]).
    pub outside_group_1: bool,
    /// Limits.
    pub limits: ApiLimits,
    /// When the node started.
    pub started: Instant,
    /// The node's metrics, also served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Where backups are written before they are streamed.
    pub backups: Arc<Backups>,
    /// This node's recent events, leaders and throughput, for the dashboard.
    pub timeline: Arc<Timeline>,
    /// The newest cluster map this node has seen.
    pub maps: MapCache,
    /// This node's part in the placement group, for changes to the map.
    pub placement: PlacementAccess,
    /// Every group this node hosts.
    pub groups: GroupDirectory,
    forwarder: Forwarder,
    group_leaders: group_forward::GroupLeaders,
    lost_replies: sessions::LostReplies,
    status_cache: status::StatusCache,
}

impl ApiContext {
    /// Bundles the handler state.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: NodeHandle,
        who: ApiIdentity,
        members: Arc<MemberBook>,
        limits: ApiLimits,
        metrics: Arc<Metrics>,
        backups: Arc<Backups>,
        timeline: Arc<Timeline>,
        maps: MapCache,
        placement: PlacementAccess,
        groups: GroupDirectory,
    ) -> Arc<Self> {
        Arc::new(ApiContext {
            node,
            id: who.id,
            cluster_id: who.cluster_id,
            members,
            address: who.address,
            http_address: who.http_address,
            outside_group_1: who.outside_group_1,
            forwarder: Forwarder::new(limits.max_value_bytes, who.peers, who.token),
            group_leaders: group_forward::GroupLeaders::default(),
            lost_replies: sessions::LostReplies::every(limits.fault_lose_write_reply_every),
            limits,
            started: Instant::now(),
            metrics,
            backups,
            timeline,
            maps,
            placement,
            groups,
            status_cache: status::StatusCache::default(),
        })
    }

    /// Runs a client operation, recording its latency and outcome.
    pub(crate) async fn timed<T>(
        &self,
        op: ClientOp,
        f: impl Future<Output = Result<T, ErrorDetail>>,
    ) -> Result<T, ErrorDetail> {
        let started = Instant::now();
        let result = f.await;
        let outcome = result.as_ref().err().map(|e| e.kind().as_str_name());
        self.metrics.client_request(op, started, outcome);
        result
    }

    /// A `keel.v1.Cluster` client for the node at `addr` (connecting lazily),
    /// over the connections forwarded requests use.
    pub(crate) fn cluster_client(
        &self,
        addr: &str,
    ) -> Result<keel_proto::v1::cluster_client::ClusterClient<keel_client::AuthChannel>, ErrorDetail>
    {
        self.forwarder.cluster(addr)
    }

    /// The gRPC address of a member, or "" if unknown.
    pub fn address_of(&self, id: NodeId) -> String {
        if id == self.id {
            return self.address.clone();
        }
        self.members.address(id).unwrap_or_default()
    }

    /// Turns a node-level failure into the error clients see.
    pub fn error(&self, e: NodeError) -> ErrorDetail {
        node_error_detail(e, |id| self.address_of(id))
    }
}

/// Turns a node-level failure into keel's error detail, naming the leader's
/// address as `address_of` knows it. Shared by the client API and the peer
/// service's slot-move calls, so both answer a node error the same way.
pub(crate) fn node_error_detail(
    e: NodeError,
    address_of: impl Fn(NodeId) -> String,
) -> ErrorDetail {
    match e {
        NodeError::NotLeader { leader: 0 } => ErrorDetail::no_leader(),
        NodeError::NotLeader { leader } => ErrorDetail::not_leader(leader, address_of(leader)),
        NodeError::Overloaded(m) => ErrorDetail::overloaded(m),
        NodeError::DiskFull(m) => ErrorDetail::disk_full(m),
        NodeError::Invalid(m) => ErrorDetail::invalid_argument(m),
        NodeError::OutcomeUnknown(m) => ErrorDetail::outcome_unknown(m),
        NodeError::Timeout(m) => {
            // A read that timed out changed nothing; the client may retry.
            ErrorDetail::no_leader().with_message(format!("read not confirmed: {m}"))
        }
        NodeError::ShuttingDown => ErrorDetail::shutting_down(),
        NodeError::Refused(m) => ErrorDetail::refused(m),
        NodeError::SlotUnavailable(why) => slot_error(why),
    }
}

/// The answer to a write the state machine refused for its slot: `SLOT_MOVING`
/// while the slot is handed over, `WRONG_GROUP` when this group does not hold it.
/// The map version is not known here (0): the client refreshes its map once.
/// The answer is the group's own (`by_group`): a session write refused so was
/// looked up in the group's session table first and not found applied.
pub(crate) fn slot_error(why: SlotUnavailable) -> ErrorDetail {
    let detail = match why {
        SlotUnavailable::Moving { slot, .. } => {
            ErrorDetail::slot_moving(slot.get(), why.to_string())
        }
        SlotUnavailable::WrongGroup { slot, .. } => {
            ErrorDetail::wrong_group(slot.get(), 0, why.to_string())
        }
    };
    detail.by_group()
}

/// Small conveniences on the shared error type.
pub(crate) trait DetailExt {
    fn with_message(self, m: String) -> Self;
}

impl DetailExt for ErrorDetail {
    fn with_message(mut self, m: String) -> Self {
        self.message = m;
        self
    }
}

#[cfg(test)]
mod tests {
    use keel_placement::Slot;
    use keel_proto::error::Kind;
    use keel_storage::kv::ApplyOutcome;
    use keel_storage::kv::SlotState;

    use super::*;
    use crate::node::slot_refusal_as_error;

    #[test]
    fn a_write_refused_for_its_slot_is_slot_moving_or_wrong_group() {
        let slot = Slot::new(4095).expect("a slot");
        let moving = SlotUnavailable::Moving {
            slot,
            state: SlotState::Fenced { epoch: 3 },
        };
        let gone = SlotUnavailable::WrongGroup {
            slot,
            state: SlotState::Absent,
        };
        for (why, kind) in [(moving, Kind::SlotMoving), (gone, Kind::WrongGroup)] {
            let result = slot_refusal_as_error(Ok(ApplyOutcome::SlotUnavailable(why)));
            assert_eq!(result, Err(NodeError::SlotUnavailable(why)));
            let detail = slot_error(why);
            assert_eq!((detail.kind(), detail.slot), (kind, 4095), "{detail:?}");
            assert!(detail.by_group, "the group's own answer");
            assert!(detail.message.contains("slot 4095"), "{}", detail.message);
        }
        // Any other outcome passes through.
        let put = Ok(ApplyOutcome::Put { revision: 7 });
        assert_eq!(slot_refusal_as_error(put.clone()), put);
    }
}
