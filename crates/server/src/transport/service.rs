//! The inbound side: accepts peers' streams, checks who is talking, and hands
//! messages to the consensus thread.

use std::sync::Arc;

use keel_proto::raft::raft_server::Raft;
use keel_proto::raft::{
    MessageBatch, SlotCommandReply, SlotCommandRequest, SlotFetchReply, SlotFetchRequest,
    SnapshotChunk, SnapshotOffer, SnapshotOfferReply, SnapshotSendReply, StreamSummary,
};
use keel_raft::{Message, MessageBody, NodeId};
use tonic::{Request, Response, Status, Streaming};

use super::demux::{Delivery, GroupDemux};
use super::slot_service;
use super::snapshot::{SnapshotInbox, SnapshotInboxes};
use super::{NOT_A_MEMBER, TransportStats};
use crate::log_limit::{LogLimit, left_out};
use crate::members::MemberBook;
use crate::metrics::Metrics;
use crate::node::{GroupDirectory, NodeHandle};
use crate::peers::{IncarnationCheck, PeerIncarnations};
use crate::placement::MapCache;
use crate::tls::NodeCertCheck;

/// The `keel.raft.v1.Raft` service of one node.
#[derive(Debug)]
pub struct RaftService {
    node_id: NodeId,
    cluster_id: u64,
    members: Arc<MemberBook>,
    incarnations: Arc<PeerIncarnations>,
    /// Hands hosted groups' messages to the consensus thread (`demux.rs`).
    demux: GroupDemux,
    stats: Arc<TransportStats>,
    /// Receives snapshot files (`snapshot.rs`), one inbox per hosted group;
    /// offers for other groups are refused.
    snapshots: SnapshotInboxes,
    /// With TLS: only connections that presented a node certificate of the
    /// cluster CA may use this service (`tls/verify.rs`).
    node_certs: Option<(Arc<NodeCertCheck>, Arc<Metrics>)>,
    /// Refusals a refused peer repeats at will are logged at this rate at most.
    refusal_log: LogLimit,
    /// The cluster map: nodes it lists are admitted though group 1 never had
    /// them as members (they joined through placement).
    maps: Option<MapCache>,
    /// The hosted groups' handles, for the slot-move calls (`slot_service.rs`);
    /// without them those calls are UNIMPLEMENTED.
    groups: Option<GroupDirectory>,
}

impl RaftService {
    /// A service delivering through `demux` (into the consensus thread's peer
    /// queue).
    pub fn new(
        node_id: NodeId,
        cluster_id: u64,
        members: Arc<MemberBook>,
        incarnations: Arc<PeerIncarnations>,
        demux: GroupDemux,
        stats: Arc<TransportStats>,
    ) -> Self {
        RaftService {
            node_id,
            cluster_id,
            members,
            incarnations,
            demux,
            stats,
            snapshots: SnapshotInboxes::default(),
            node_certs: None,
            refusal_log: LogLimit::default(),
            groups: None,
            maps: None,
        }
    }

    /// Also admits the nodes `maps`' cluster map lists (docs/sharding.md,
    /// *Joining through placement*).
    pub fn with_map(mut self, maps: MapCache) -> Self {
        self.maps = Some(maps);
        self
    }

    /// Whether messages from `from` are let in: a node group 1's book admits,
    /// or one the cluster map lists that group 1 has not seen removed (a node
    /// that joined through placement is in no group 1 configuration; a group
    /// 1 member whose removal committed is still refused, which is how it
    /// learns of its removal).
    fn admits_sender(&self, from: NodeId) -> bool {
        if from == self.node_id {
            return false;
        }
        if self.members.admits(from) {
            return true;
        }
        !self.members.was_removed(from)
            && self.maps.as_ref().is_some_and(|maps| {
                maps.with(|m| m.is_some_and(|m| m.map.nodes().contains_key(&from)))
            })
    }

    /// Admits only connections that presented a node certificate `check`
    /// accepts; refusals are counted in `metrics`.
    pub fn with_node_certs(mut self, check: Arc<NodeCertCheck>, metrics: Arc<Metrics>) -> Self {
        self.node_certs = Some((check, metrics));
        self
    }

    /// With TLS, whether the connection's certificate is a node's. A client
    /// certificate of the same CA, or none, is refused (PERMISSION_DENIED).
    fn admit_connection<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some((check, metrics)) = &self.node_certs else {
            return Ok(());
        };
        let verdict = match request.peer_certs() {
            Some(chain) => check.check(&chain),
            None => Err("no client certificate presented".to_string()),
        };
        verdict.map_err(|why| {
            self.stats.rejected.inc();
            metrics.auth_failed("grpc", "not_a_node_certificate");
            let from = request
                .remote_addr()
                .map_or_else(|| "an unknown address".to_string(), |a| a.to_string());
            if let Some(n) = self.refusal_log.admit() {
                tracing::warn!(
                    peer = %from,
                    "refused a peer connection from {from}: {why}{}",
                    left_out(n)
                );
            }
            Status::permission_denied(format!(
                "the peer service needs a node certificate signed by the cluster CA: {why}"
            ))
        })
    }

    /// Accepts snapshot transfers of `inbox`'s group into it.
    pub fn with_snapshots(self, inbox: SnapshotInbox) -> Self {
        self.snapshots.register(inbox);
        self
    }

    /// Receives snapshots into the inboxes of `inboxes`, a table the node
    /// keeps current as it hosts groups.
    pub fn with_snapshot_inboxes(mut self, inboxes: SnapshotInboxes) -> Self {
        self.snapshots = inboxes;
        self
    }

    /// Serves the slot-move calls from the groups of `groups`.
    pub fn with_groups(mut self, groups: GroupDirectory) -> Self {
        self.groups = Some(groups);
        self
    }

    /// A slot-move call passes the same checks as a snapshot offer: a member
    /// of this cluster, its incarnation, and a group this node hosts.
    fn admit_slot_call(
        &self,
        cluster_id: u64,
        from: NodeId,
        incarnation: u64,
        group: u64,
    ) -> Result<NodeHandle, Status> {
        let as_batch = MessageBatch {
            cluster_id,
            from,
            incarnation,
            messages: Vec::new(),
            liveness: false,
        };
        if let Err(status) = self.admit(&as_batch) {
            self.stats.rejected.inc();
            return Err(status);
        }
        let Some(groups) = &self.groups else {
            return Err(Status::unimplemented("this node does not serve slot moves"));
        };
        match groups.get(group) {
            Some(node) => Ok(node),
            None => {
                self.demux.hosted().count_unknown(group);
                Err(Status::not_found(format!(
                    "node {} does not host group {group}",
                    self.node_id
                )))
            }
        }
    }

    /// A snapshot offer passes the same checks as a batch of messages.
    fn admit_offer(&self, offer: &SnapshotOffer) -> Result<Arc<SnapshotInbox>, Status> {
        let as_batch = MessageBatch {
            cluster_id: offer.cluster_id,
            from: offer.from,
            incarnation: offer.incarnation,
            messages: Vec::new(),
            liveness: false,
        };
        if let Err(status) = self.admit(&as_batch) {
            self.stats.rejected.inc();
            return Err(status);
        }
        if self.snapshots.is_empty() {
            return Err(Status::unimplemented(
                "this node does not receive snapshots",
            ));
        }
        match self.snapshots.get(offer.group) {
            Some(inbox) if self.demux.hosted().contains(offer.group) => Ok(inbox),
            _ => {
                self.demux.hosted().count_unknown(offer.group);
                Err(Status::not_found(format!(
                    "node {} does not host group {}",
                    self.node_id, offer.group
                )))
            }
        }
    }

    /// Decides whether a batch may be processed; the error ends the stream.
    fn admit(&self, batch: &MessageBatch) -> Result<(), Status> {
        if batch.cluster_id != self.cluster_id {
            tracing::warn!(
                from = batch.from,
                "rejected messages from node {} of another cluster ({:016x}; this is {:016x})",
                batch.from,
                batch.cluster_id,
                self.cluster_id
            );
            return Err(Status::permission_denied(format!(
                "cluster id mismatch: node {} belongs to cluster {:016x}, the sender to {:016x}",
                self.node_id, self.cluster_id, batch.cluster_id
            )));
        }
        if !self.admits_sender(batch.from) {
            // A removed node keeps trying until it learns of its removal (from
            // this refusal): worth a warning, but not one per attempt.
            if let Some(n) = self.refusal_log.admit() {
                tracing::warn!(
                    from = batch.from,
                    "rejected messages from node {}, which is not a member of this cluster \
                     (removed, or never added){}",
                    batch.from,
                    left_out(n)
                );
            }
            return Err(Status::permission_denied(format!(
                "node {} {NOT_A_MEMBER}",
                batch.from
            )));
        }
        match self.incarnations.check(batch.from, batch.incarnation) {
            Ok(IncarnationCheck::Ok) => Ok(()),
            Ok(IncarnationCheck::Changed { recorded }) => {
                tracing::warn!(
                    from = batch.from,
                    "rejected messages from node {}: its data directory was replaced \
                     (incarnation {:016x}, previously {:016x}); it has forgotten its votes \
                     and must be removed and re-added as a new member",
                    batch.from,
                    batch.incarnation,
                    recorded
                );
                Err(Status::permission_denied(format!(
                    "node {}'s data directory was wiped; remove it and add it back",
                    batch.from
                )))
            }
            Err(e) => {
                tracing::error!("cannot record peer incarnation: {e}");
                Err(Status::unavailable("cannot record peer incarnation"))
            }
        }
    }
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn stream(
        &self,
        request: Request<Streaming<MessageBatch>>,
    ) -> Result<Response<StreamSummary>, Status> {
        self.admit_connection(&request)?;
        let mut stream = request.into_inner();
        let mut summary = StreamSummary::default();
        while let Some(batch) = stream.message().await? {
            if let Err(status) = self.admit(&batch) {
                self.stats.rejected.inc();
                return Err(status);
            }
            summary.batches += 1;
            self.stats.sightings.record(batch.from, batch.liveness);
            for pm in batch.messages {
                match Message::try_from(pm) {
                    // Stepping one tells the core that the snapshot's data is here
                    // and verified: only the snapshot receiver may produce it.
                    Ok(m) if matches!(m.body, MessageBody::InstallSnapshot { .. }) => {
                        self.stats.rejected.inc();
                        tracing::warn!(
                            "dropped an InstallSnapshot from {} that came without its data",
                            batch.from
                        );
                    }
                    Ok(m) if m.from == batch.from && m.to == self.node_id => {
                        summary.messages += 1;
                        match self.demux.deliver(m) {
                            Delivery::Queued => {
                                self.stats.received.inc();
                            }
                            // Counted by the demultiplexer, as its own metric.
                            Delivery::UnknownGroup => {}
                            Delivery::QueueFull => {
                                self.stats.dropped.inc();
                            }
                        }
                    }
                    Ok(m) => {
                        self.stats.rejected.inc();
                        tracing::warn!(
                            "dropped a message claiming to be from {} to {} in a batch from {}",
                            m.from,
                            m.to,
                            batch.from
                        );
                    }
                    Err(e) => {
                        self.stats.rejected.inc();
                        tracing::warn!(from = batch.from, "dropped a malformed message: {e}");
                    }
                }
            }
        }
        Ok(Response::new(summary))
    }

    async fn snapshot_offer(
        &self,
        request: Request<SnapshotOffer>,
    ) -> Result<Response<SnapshotOfferReply>, Status> {
        self.admit_connection(&request)?;
        let offer = request.into_inner();
        let inbox = self.admit_offer(&offer)?;
        inbox.offer(offer).await.map(Response::new)
    }

    async fn snapshot_send(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SnapshotSendReply>, Status> {
        self.admit_connection(&request)?;
        let mut stream = request.into_inner();
        let Some(mut first) = stream.message().await? else {
            return Err(Status::invalid_argument("empty snapshot stream"));
        };
        let offer = first.offer.take().ok_or_else(|| {
            Status::invalid_argument("the first snapshot chunk must carry the offer")
        })?;
        let inbox = self.admit_offer(&offer)?;
        inbox.receive(offer, first, stream).await.map(Response::new)
    }

    async fn slot_fetch(
        &self,
        request: Request<SlotFetchRequest>,
    ) -> Result<Response<SlotFetchReply>, Status> {
        self.admit_connection(&request)?;
        let req = request.into_inner();
        let node = self.admit_slot_call(req.cluster_id, req.from, req.incarnation, req.group)?;
        let ask = slot_service::validate_fetch(&req)?;
        slot_service::fetch(node, ask).await.map(Response::new)
    }

    async fn slot_command(
        &self,
        request: Request<SlotCommandRequest>,
    ) -> Result<Response<SlotCommandReply>, Status> {
        self.admit_connection(&request)?;
        let req = request.into_inner();
        let node = self.admit_slot_call(req.cluster_id, req.from, req.incarnation, req.group)?;
        let cmd = slot_service::validate_command(&req.command)?;
        let timeout = slot_service::command_timeout(req.timeout_ms);
        slot_service::propose(&node, cmd, timeout)
            .await
            .map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;
    use keel_raft::ConfState;

    use super::*;
    use crate::placement::CachedMap;
    use crate::placement::test_maps::map_of;
    use crate::transport::HostedGroups;

    /// Node 1's service, its group 1 book of nodes 1 to 3.
    fn service(dir: &std::path::Path) -> RaftService {
        let (tx, _rx) = crossbeam_channel::bounded(1);
        RaftService::new(
            1,
            7,
            Arc::new(MemberBook::new(&BTreeMap::from([
                (1, "127.0.0.1:7001".to_string()),
                (2, "127.0.0.1:7002".to_string()),
                (3, "127.0.0.1:7003".to_string()),
            ]))),
            Arc::new(PeerIncarnations::open(dir).expect("peers")),
            GroupDemux::new(
                HostedGroups::new([1], prometheus_client::metrics::counter::Counter::default()),
                tx,
            ),
            Arc::new(TransportStats::default()),
        )
    }

    #[test]
    fn nodes_the_map_lists_are_admitted_unless_group_1_removed_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let maps = MapCache::default();
        let svc = service(dir.path()).with_map(maps.clone());
        // Group 1's members, never itself; node 5 is unknown to both.
        assert!(svc.admits_sender(2));
        assert!(!svc.admits_sender(1));
        assert!(!svc.admits_sender(5));
        // Node 5 joined through placement: the map lists it (group 2 on 1, 2, 5).
        let map = map_of(5, &[&[1, 2, 3], &[1, 2, 5]]);
        let cached = CachedMap::decode(Bytes::from(map.encode())).expect("decodes");
        assert!(maps.offer(cached));
        assert!(svc.admits_sender(5));
        // Node 3 left group 1 (its removal committed): still refused, though
        // the map lists it, so a removed member learns of its removal.
        svc.members
            .set_conf(&ConfState::with_voters([1, 2, 3]), 1, false);
        svc.members
            .set_conf(&ConfState::with_voters([1, 2]), 2, false);
        assert!(!svc.admits_sender(3));
        // Without a map, only group 1's book counts.
        let without = service(dir.path());
        assert!(!without.admits_sender(5));
    }
}
