//! Node-to-node transport over gRPC.
//!
//! Each node keeps one outbound stream per peer (`sender.rs`) and serves one
//! inbound service (`service.rs`). The consensus thread groups each `Ready`'s
//! messages by peer and hands one batch per peer straight to the channel the gRPC
//! request stream reads, so a message crosses no other thread on its way out.
//! Every batch names the cluster and the sender's incarnation; the receiver
//! lets in only the messages of groups this node hosts (`demux.rs`). Queues are bounded
//! everywhere: when a peer is slow or unreachable, batches are dropped, which Raft
//! tolerates (it retransmits what matters).

mod connect;
mod demux;
mod sender;
mod service;
mod sightings;
pub(crate) mod slot_service;
pub mod slot_wire;
pub mod slots;
mod snapshot;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use keel_proto::raft::{MessageBatch, RaftMessage};
use keel_raft::{Message, NodeId};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

pub use connect::PeerConnector;
pub use demux::{Delivery, GroupDemux, HostedGroups};
pub use service::RaftService;
pub use sightings::{PeerSightings, Sighting};
pub use snapshot::{SnapshotInbox, SnapshotInboxes};
pub(crate) use snapshot::{SnapshotOutbox, TransferOutcome};

/// Largest gRPC message a node accepts from a peer (a batch of AppendEntries).
pub const MAX_PEER_MESSAGE_BYTES: usize = 64 << 20;
/// A batch is closed once it holds this many bytes of entries (the rest goes in
/// the next batch), keeping every batch well under [`MAX_PEER_MESSAGE_BYTES`].
const MAX_BATCH_BYTES: u64 = 8 << 20;

/// The transport's counters, exported as metrics (`Metrics::new` registers
/// the node's own set: `keel_peer_*`).
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Messages handed to a peer stream.
    pub sent: Counter,
    /// Batches handed to peer streams: one per peer per round of the
    /// consensus thread, whatever the number of groups (`sent` over this is
    /// the messages a batch carries).
    pub batches_sent: Counter,
    /// Messages dropped because a peer queue was full or the peer unreachable.
    pub dropped: Counter,
    /// Messages received and passed to the consensus thread.
    pub received: Counter,
    /// Messages or batches refused (foreign cluster, wiped peer, malformed).
    pub rejected: Counter,
    /// Streams of ours that a peer refused because this node is not a member
    /// (it was removed): how a removed node that never received its removal
    /// learns of it.
    pub refused_as_non_member: Counter,
    /// Batches admitted from each peer node, for node-level liveness.
    pub sightings: PeerSightings,
}

/// The phrase a node's refusal of a non-member's stream carries.
pub(crate) const NOT_A_MEMBER: &str = "is not a member of this cluster";

/// Sends Raft messages to peers. Called from the consensus thread: never blocks.
///
/// Peers come and go with membership changes ([`Transport::set_peer`],
/// [`Transport::retain_peers`]); each has one connection task on the runtime.
#[derive(Debug)]
pub struct Transport {
    local: LocalIdentity,
    peers: BTreeMap<NodeId, mpsc::Sender<MessageBatch>>,
    /// Peer addresses, for connections besides the message streams (snapshots).
    addrs: BTreeMap<NodeId, String>,
    /// The nodes the cluster map lists: kept connected whatever group 1's
    /// configuration says (a node that joined through placement is in none).
    map_peers: BTreeSet<NodeId>,
    stats: Arc<TransportStats>,
    queue_batches: usize,
    runtime: tokio::runtime::Handle,
    connector: PeerConnector,
}

/// What identifies this node on every batch it sends.
#[derive(Clone, Copy, Debug)]
pub struct LocalIdentity {
    /// This node.
    pub node_id: NodeId,
    /// Its cluster.
    pub cluster_id: u64,
    /// Its data directory's incarnation.
    pub incarnation: u64,
}

impl Transport {
    /// Starts one connection task per peer on the current tokio runtime.
    /// `queue_batches` bounds the batches waiting for each peer; `connector`
    /// says how to reach them (plain or TLS).
    pub fn start(
        local: LocalIdentity,
        peers: &BTreeMap<NodeId, String>,
        queue_batches: usize,
        stats: Arc<TransportStats>,
        connector: PeerConnector,
    ) -> Transport {
        let mut t = Transport {
            local,
            peers: BTreeMap::new(),
            addrs: BTreeMap::new(),
            map_peers: BTreeSet::new(),
            stats,
            queue_batches,
            runtime: tokio::runtime::Handle::current(),
            connector,
        };
        for (&id, addr) in peers {
            t.set_peer(id, addr);
        }
        t
    }

    /// Makes sure messages to `peer` go to `addr`: starts a connection task if
    /// there is none, or replaces it if the address changed.
    pub fn set_peer(&mut self, peer: NodeId, addr: &str) {
        if peer == self.local.node_id
            || (self.addrs.get(&peer).is_some_and(|a| a == addr) && self.peers.contains_key(&peer))
        {
            return;
        }
        let (tx, rx) = mpsc::channel(self.queue_batches);
        // Dropping the old sender (if any) ends its task.
        self.runtime.spawn(sender::run(
            peer,
            addr.to_string(),
            rx,
            self.stats.clone(),
            self.connector.clone(),
        ));
        self.peers.insert(peer, tx);
        self.addrs.insert(peer, addr.to_string());
    }

    /// Closes the connections to peers `keep` rejects (members that left),
    /// except to nodes the cluster map lists.
    pub fn retain_peers(&mut self, keep: impl Fn(NodeId) -> bool) {
        let map_peers = &self.map_peers;
        self.peers
            .retain(|&id, _| keep(id) || map_peers.contains(&id));
    }

    /// Connects to every node of the cluster map (`peers`: id → address), and
    /// remembers them so group 1's membership changes leave them connected. A
    /// node the map no longer lists stays connected until group 1's next
    /// change closes what it does not keep: a connection is cheap, and a node
    /// forgotten by the map has no replicas left to talk to.
    pub fn set_map_peers(&mut self, peers: BTreeMap<NodeId, String>) {
        for (&id, addr) in &peers {
            self.set_peer(id, addr);
        }
        self.map_peers = peers.into_keys().collect();
    }

    /// How many times peers refused this node's streams as a non-member's.
    pub(crate) fn refused_as_non_member(&self) -> u64 {
        self.stats.refused_as_non_member.get()
    }

    /// Peers with a connection task.
    pub fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.peers.keys().copied()
    }

    /// This node's identity on the wire.
    pub(crate) fn local(&self) -> LocalIdentity {
        self.local
    }

    /// How this node connects to peers.
    pub(crate) fn connector(&self) -> PeerConnector {
        self.connector.clone()
    }

    /// The address of `peer`, if known.
    pub(crate) fn peer_addr(&self, peer: NodeId) -> Option<&str> {
        self.addrs.get(&peer).map(String::as_str)
    }

    /// What the receiver saw of each peer node (node-level liveness).
    pub(crate) fn sightings(&self) -> &PeerSightings {
        &self.stats.sightings
    }

    /// Sends every peer one empty batch: the node-level liveness heartbeat
    /// (docs/sharding.md, "Heartbeats: coalesced, and quiet groups quiesce").
    /// One per peer whatever the number of groups; an older receiver admits it
    /// and finds nothing in it.
    pub fn send_liveness(&self) {
        for to in self.peers.keys().copied().collect::<Vec<_>>() {
            self.send_batch(to, Vec::new());
        }
    }

    /// Sends `messages` (taking them), one batch per recipient.
    pub fn send_all(&self, messages: &mut Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        let mut by_peer: BTreeMap<NodeId, (Vec<RaftMessage>, u64)> = BTreeMap::new();
        for m in messages.drain(..) {
            let bytes = message_bytes(&m);
            let (batch, batch_bytes) = by_peer.entry(m.to).or_default();
            if *batch_bytes + bytes > MAX_BATCH_BYTES && !batch.is_empty() {
                let full = std::mem::take(batch);
                *batch_bytes = 0;
                self.send_batch(m.to, full);
            }
            batch.push(RaftMessage::from(&m));
            *batch_bytes += bytes;
        }
        for (to, (batch, _)) in by_peer {
            self.send_batch(to, batch);
        }
    }

    fn send_batch(&self, to: NodeId, messages: Vec<RaftMessage>) {
        let n = messages.len() as u64;
        let Some(tx) = self.peers.get(&to) else {
            tracing::debug!(to, "no route to node; messages dropped");
            self.stats.dropped.inc_by(n);
            return;
        };
        let batch = MessageBatch {
            cluster_id: self.local.cluster_id,
            from: self.local.node_id,
            incarnation: self.local.incarnation,
            messages,
            liveness: true,
        };
        if tx.try_send(batch).is_ok() {
            self.stats.sent.inc_by(n);
            self.stats.batches_sent.inc();
        } else {
            self.stats.dropped.inc_by(n);
        }
    }
}

/// Approximate encoded size of a message, for batch limits.
fn message_bytes(m: &Message) -> u64 {
    match &m.body {
        keel_raft::MessageBody::AppendEntries { entries, .. } => {
            entries.iter().map(keel_raft::Entry::size).sum::<u64>() + 64
        }
        _ => 64,
    }
}

#[cfg(test)]
mod tests {
    use keel_raft::MessageBody;

    use super::*;

    /// A heartbeat of `group` from node 1 to `to`.
    fn heartbeat(group: u64, to: NodeId) -> Message {
        Message {
            group,
            from: 1,
            to,
            term: 1,
            body: MessageBody::Heartbeat {
                commit: 0,
                read_seq: 0,
                lease: 0,
                quiesce: false,
            },
        }
    }

    #[tokio::test]
    async fn a_rounds_messages_of_every_group_go_in_one_batch_per_peer() {
        let local = LocalIdentity {
            node_id: 1,
            cluster_id: 7,
            incarnation: 1,
        };
        let stats = Arc::new(TransportStats::default());
        // Unreachable peers: their queues hold the batches (4 each).
        let t = Transport::start(
            local,
            &BTreeMap::from([
                (2, "127.0.0.1:1".to_string()),
                (3, "127.0.0.1:1".to_string()),
            ]),
            4,
            stats.clone(),
            PeerConnector::default(),
        );
        // Three groups' messages to nodes 2 and 3, as the consensus thread
        // stages a round (`NodeCtx::stage`), interleaved.
        let mut round: Vec<Message> = [1, 2, 7]
            .into_iter()
            .flat_map(|g| [heartbeat(g, 2), heartbeat(g, 3)])
            .collect();
        t.send_all(&mut round);
        assert!(round.is_empty(), "taken");
        assert_eq!(
            (
                stats.sent.get(),
                stats.batches_sent.get(),
                stats.dropped.get()
            ),
            (6, 2, 0),
            "six messages in two batches, one per peer"
        );
    }

    #[tokio::test]
    async fn the_maps_nodes_stay_connected_through_group_1_changes() {
        let local = LocalIdentity {
            node_id: 1,
            cluster_id: 7,
            incarnation: 1,
        };
        let mut t = Transport::start(
            local,
            &BTreeMap::from([(2, "127.0.0.1:1".to_string())]),
            4,
            Arc::new(TransportStats::default()),
            PeerConnector::default(),
        );
        // The map lists itself, node 2 and node 4 (outside group 1).
        t.set_map_peers(BTreeMap::from([
            (1, "127.0.0.1:1".to_string()),
            (2, "127.0.0.1:1".to_string()),
            (4, "127.0.0.1:1".to_string()),
        ]));
        assert_eq!(t.peers().collect::<Vec<_>>(), vec![2, 4]);
        assert_eq!(t.peer_addr(4), Some("127.0.0.1:1"));
        // Group 1 lets node 2 go and never had node 4: both stay, the map
        // lists them.
        t.retain_peers(|_| false);
        assert_eq!(t.peers().collect::<Vec<_>>(), vec![2, 4]);
        // Once the map forgets node 2, group 1's next change closes it.
        t.set_map_peers(BTreeMap::from([(4, "127.0.0.1:1".to_string())]));
        t.retain_peers(|_| false);
        assert_eq!(t.peers().collect::<Vec<_>>(), vec![4]);
    }
}
