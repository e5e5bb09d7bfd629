//! Node-to-node transport over gRPC.
//!
//! Each node keeps one outbound stream per peer (`sender.rs`) and serves one
//! inbound service (`service.rs`). Messages for any number of groups travel in
//! batches; every batch names the cluster and the sender's incarnation. Queues are
//! bounded everywhere: when a peer is slow or unreachable, messages are dropped,
//! which Raft tolerates (it retransmits what matters).

mod sender;
mod service;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use keel_raft::{Message, NodeId};
use tokio::sync::mpsc;

pub use service::RaftService;

/// Largest gRPC message a node accepts from a peer (a batch of AppendEntries).
pub const MAX_PEER_MESSAGE_BYTES: usize = 64 << 20;
/// A batch is closed once it holds this many messages...
const MAX_BATCH_MESSAGES: usize = 4096;
/// ...or this many bytes of entries.
const MAX_BATCH_BYTES: u64 = 8 << 20;

/// Counters exported on the status page and, later, as metrics.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Messages handed to a peer stream.
    pub sent: AtomicU64,
    /// Messages dropped because a peer queue was full or the peer unreachable.
    pub dropped: AtomicU64,
    /// Messages received and passed to the consensus thread.
    pub received: AtomicU64,
    /// Messages or batches refused (foreign cluster, wiped peer, malformed).
    pub rejected: AtomicU64,
}

/// Sends Raft messages to peers. Cheap to call from the consensus thread: `send`
/// never blocks.
#[derive(Debug)]
pub struct Transport {
    peers: BTreeMap<NodeId, mpsc::Sender<Message>>,
    stats: Arc<TransportStats>,
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
    /// Starts one sender task per peer on the current tokio runtime.
    pub fn start(
        local: LocalIdentity,
        peers: &BTreeMap<NodeId, String>,
        queue_len: usize,
        stats: Arc<TransportStats>,
    ) -> Transport {
        let mut senders = BTreeMap::new();
        for (&id, addr) in peers {
            if id == local.node_id {
                continue;
            }
            let (tx, rx) = mpsc::channel(queue_len);
            tokio::spawn(sender::run(local, id, addr.clone(), rx, stats.clone()));
            senders.insert(id, tx);
        }
        Transport {
            peers: senders,
            stats,
        }
    }

    /// Queues a message for its recipient; drops it if the queue is full.
    pub fn send(&self, m: Message) {
        let Some(tx) = self.peers.get(&m.to) else {
            tracing::debug!(to = m.to, "no route to node; message dropped");
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if tx.try_send(m).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
