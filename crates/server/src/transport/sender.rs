//! One outbound stream to one peer, reconnecting with backoff.
//!
//! The request stream reads the peer's batch queue directly (through a shared
//! handle, so that the queue outlives each connection): batches go from the
//! consensus thread to the gRPC stream with no task in between.

use std::sync::Arc;
use std::time::Duration;

use super::{MAX_PEER_MESSAGE_BYTES, PeerConnector, TransportStats};
use keel_proto::raft::MessageBatch;
use keel_proto::raft::raft_client::RaftClient;
use keel_raft::NodeId;
use tokio::sync::{Mutex, mpsc};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const BACKOFF_MIN: Duration = Duration::from_millis(20);
/// Short, so that a restarted peer hears from us soon (an attempt costs little).
const BACKOFF_MAX: Duration = Duration::from_millis(250);

type Queue = Arc<Mutex<mpsc::Receiver<MessageBatch>>>;

/// Runs until the queue's sending side is dropped (node shutdown).
pub(super) async fn run(
    peer: NodeId,
    addr: String,
    queue: mpsc::Receiver<MessageBatch>,
    stats: Arc<TransportStats>,
    connector: PeerConnector,
) {
    let queue: Queue = Arc::new(Mutex::new(queue));
    let endpoint = match connector.endpoint(&addr) {
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
    let mut backoff = BACKOFF_MIN;
    loop {
        match endpoint.connect().await {
            Ok(channel) => {
                backoff = BACKOFF_MIN;
                tracing::debug!(peer, %addr, "connected to peer");
                let mut client =
                    RaftClient::new(channel).max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
                match client.stream(batches(queue.clone())).await {
                    Ok(_) => {}
                    Err(status) if status.code() == tonic::Code::PermissionDenied => {
                        if status.message().contains(super::NOT_A_MEMBER) {
                            stats.refused_as_non_member.inc();
                        }
                        tracing::warn!(peer, "peer refused our stream: {}", status.message());
                    }
                    Err(status) => {
                        tracing::debug!(peer, "stream to peer ended: {}", status.message())
                    }
                }
            }
            Err(e) => tracing::debug!(peer, %addr, "cannot connect to peer: {e}"),
        }
        // Batches queued while the peer was unreachable are stale by now; Raft
        // resends what still matters.
        if !drain_stale(&queue, &stats).await {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// The request stream: the peer's queue, until it closes or the call ends.
fn batches(queue: Queue) -> impl futures::Stream<Item = MessageBatch> {
    futures::stream::unfold(queue, |queue| async move {
        let next = queue.lock().await.recv().await;
        next.map(|batch| (batch, queue))
    })
}

/// Drops everything queued; returns false once the queue is closed.
async fn drain_stale(queue: &Queue, stats: &TransportStats) -> bool {
    let mut rx = queue.lock().await;
    loop {
        match rx.try_recv() {
            Ok(batch) => {
                stats.dropped.inc_by(batch.messages.len() as u64);
            }
            Err(mpsc::error::TryRecvError::Empty) => return true,
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
        }
    }
}
