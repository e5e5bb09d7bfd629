//! One outbound stream to one peer, reconnecting with backoff.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use keel_proto::raft::raft_client::RaftClient;
use keel_proto::raft::{MessageBatch, RaftMessage};
use keel_raft::{Message, NodeId};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use super::{
    LocalIdentity, MAX_BATCH_BYTES, MAX_BATCH_MESSAGES, MAX_PEER_MESSAGE_BYTES, TransportStats,
};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(1000);
/// Batches buffered toward the gRPC stream before we stop reading the queue.
const STREAM_BUFFER: usize = 64;

/// Runs until the queue's sender side is dropped (node shutdown).
pub(super) async fn run(
    local: LocalIdentity,
    peer: NodeId,
    addr: String,
    mut queue: mpsc::Receiver<Message>,
    stats: Arc<TransportStats>,
) {
    let mut backoff = BACKOFF_MIN;
    let endpoint = match Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5)),
        Err(e) => {
            tracing::error!(peer, %addr, "invalid peer address: {e}");
            return;
        }
    };
    loop {
        match endpoint.connect().await {
            Ok(channel) => {
                backoff = BACKOFF_MIN;
                tracing::debug!(peer, %addr, "connected to peer");
                let client =
                    RaftClient::new(channel).max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
                if !stream_batches(local, peer, client, &mut queue, &stats).await {
                    return;
                }
                tracing::debug!(peer, %addr, "stream to peer ended; reconnecting");
            }
            Err(e) => {
                tracing::debug!(peer, %addr, "cannot connect to peer: {e}");
            }
        }
        // Messages queued while the peer was unreachable are stale by now; Raft
        // resends what still matters.
        if !drain_stale(&mut queue, &stats) {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Drops everything queued; returns false once the queue is closed.
fn drain_stale(queue: &mut mpsc::Receiver<Message>, stats: &TransportStats) -> bool {
    loop {
        match queue.try_recv() {
            Ok(_) => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TryRecvError::Empty) => return true,
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
        }
    }
}

/// Sends batches over one stream until it fails (returns true: reconnect) or the
/// queue closes (returns false: shut down).
async fn stream_batches(
    local: LocalIdentity,
    peer: NodeId,
    mut client: RaftClient<tonic::transport::Channel>,
    queue: &mut mpsc::Receiver<Message>,
    stats: &TransportStats,
) -> bool {
    let (tx, rx) = mpsc::channel::<MessageBatch>(STREAM_BUFFER);
    let call = tokio::spawn(async move { client.stream(ReceiverStream::new(rx)).await });
    loop {
        let Some(first) = queue.recv().await else {
            call.abort();
            return false;
        };
        let mut messages: Vec<RaftMessage> = vec![RaftMessage::from(&first)];
        let mut bytes = message_bytes(&first);
        while messages.len() < MAX_BATCH_MESSAGES && bytes < MAX_BATCH_BYTES {
            match queue.try_recv() {
                Ok(m) => {
                    bytes += message_bytes(&m);
                    messages.push(RaftMessage::from(&m));
                }
                Err(_) => break,
            }
        }
        let n = messages.len() as u64;
        let batch = MessageBatch {
            cluster_id: local.cluster_id,
            from: local.node_id,
            incarnation: local.incarnation,
            messages,
        };
        if tx.send(batch).await.is_err() {
            stats.dropped.fetch_add(n, Ordering::Relaxed);
            if let Ok(Err(status)) = call.await {
                tracing::warn!(peer, code = ?status.code(), "peer refused our stream: {}", status.message());
            }
            return true;
        }
        stats.sent.fetch_add(n, Ordering::Relaxed);
    }
}

fn message_bytes(m: &Message) -> u64 {
    match &m.body {
        keel_raft::MessageBody::AppendEntries { entries, .. } => {
            entries.iter().map(keel_raft::Entry::size).sum::<u64>() + 64
        }
        _ => 64,
    }
}
