//! Snapshot files between nodes: the leader's [`SnapshotOutbox`] streams a file to
//! a follower's [`SnapshotInbox`] (the `SnapshotOffer` and `SnapshotSend` RPCs of
//! `keel.raft.v1.Raft`).
//!
//! A transfer is an offer ("snapshot (term, index), this many bytes") answered with
//! the offset the receiver already holds, then the bytes from there in chunks of
//! [`CHUNK_BYTES`]. A broken connection costs only the chunks in flight: the next
//! offer resumes at the staging file's end. Neither side holds more than a few
//! chunks in memory (bounded channels between the file and the gRPC stream; HTTP/2
//! flow control between the nodes). Once the receiver has the whole file it
//! verifies it (`SnapshotReceiver::finish`: every checksum, fsync, rename), and only
//! then hands an `InstallSnapshot` message to its consensus thread, whose core
//! decides whether to take it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_proto::raft::raft_client::RaftClient;
use keel_proto::raft::{SnapshotChunk, SnapshotOffer, SnapshotOfferReply, SnapshotSendReply};
use keel_raft::{GroupId, Index, Message, MessageBody, NodeId, SnapshotMeta, Term};
use keel_storage::snapshot::{SnapshotError, SnapshotReader, SnapshotStore};
use keel_storage::vfs::StdVfs;
use tokio::sync::mpsc;
use tonic::transport::Endpoint;
use tonic::{Status, Streaming};

use super::{LocalIdentity, MAX_PEER_MESSAGE_BYTES};
use crate::members::decode_conf;
use crate::metrics::Metrics;

/// Bytes per chunk on the wire.
pub const CHUNK_BYTES: usize = 256 << 10;
/// Chunks buffered between a file and its gRPC stream, on either side.
const CHUNKS_IN_FLIGHT: usize = 4;
/// A transfer that makes no progress for this many attempts in a row is given up
/// (reported as failed; the leader's core sends a new one when the peer answers).
const MAX_ATTEMPTS_WITHOUT_PROGRESS: u32 = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How one transfer ended, reported to the consensus thread.
#[derive(Debug)]
pub(crate) struct TransferOutcome {
    /// The follower.
    pub(crate) peer: NodeId,
    /// The snapshot sent (its index), if one was chosen.
    pub(crate) index: Index,
    /// Bytes sent over all attempts.
    pub(crate) bytes: u64,
    /// Ok, or why it failed.
    pub(crate) result: Result<(), String>,
    /// How long it took.
    pub(crate) elapsed: Duration,
}

/// The sending side (leader): one task per transfer on the network runtime.
#[derive(Debug)]
pub(crate) struct SnapshotOutbox {
    pub(crate) local: LocalIdentity,
    pub(crate) group: GroupId,
    pub(crate) store: Arc<SnapshotStore>,
    pub(crate) metrics: Arc<Metrics>,
    /// How to reach peers (plain or TLS).
    pub(crate) connector: super::PeerConnector,
    pub(crate) runtime: tokio::runtime::Handle,
    /// Outcomes for the consensus thread; bounded (one transfer per peer at a time,
    /// so it never holds more than one per peer).
    pub(crate) done: crossbeam_channel::Sender<TransferOutcome>,
}

impl SnapshotOutbox {
    /// Starts sending the newest snapshot file at or after `min_index` to `peer` at
    /// `addr`. The caller ensures one transfer per peer at a time.
    pub(crate) fn start(&self, peer: NodeId, addr: String, leader_term: Term, min_index: Index) {
        let job = SendJob {
            peer,
            addr,
            leader_term,
            min_index,
            local: self.local,
            group: self.group,
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            connector: self.connector.clone(),
        };
        let done = self.done.clone();
        self.runtime.spawn(async move {
            let started = Instant::now();
            let mut bytes = 0;
            let mut index = 0;
            let result = job.run(&mut index, &mut bytes).await;
            let outcome = TransferOutcome {
                peer,
                index,
                bytes,
                result,
                elapsed: started.elapsed(),
            };
            if done.try_send(outcome).is_err() {
                tracing::error!(peer, "cannot report a snapshot transfer's outcome");
            }
        });
    }
}

struct SendJob {
    peer: NodeId,
    addr: String,
    leader_term: Term,
    min_index: Index,
    local: LocalIdentity,
    group: GroupId,
    store: Arc<SnapshotStore>,
    metrics: Arc<Metrics>,
    connector: super::PeerConnector,
}

impl SendJob {
    async fn run(&self, index_out: &mut Index, bytes: &mut u64) -> Result<(), String> {
        let store = self.store.clone();
        let min_index = self.min_index;
        // The newest file: the core asked for its snapshot (min_index), and a newer
        // one only helps. The follower's core gets the file's own metadata.
        let (path, term, index, total) = tokio::task::spawn_blocking(move || {
            let file = store
                .list()
                .map_err(|e| e.to_string())?
                .into_iter()
                .rev()
                .find(|f| f.index >= min_index)
                .ok_or_else(|| format!("no snapshot file at or after index {min_index}"))?;
            let total = std::fs::metadata(&file.path)
                .map_err(|e| format!("cannot stat {}: {e}", file.path.display()))?
                .len();
            Ok::<_, String>((file.path, file.term, file.index, total))
        })
        .await
        .map_err(|e| format!("snapshot reader task failed: {e}"))??;
        *index_out = index;
        let offer = SnapshotOffer {
            cluster_id: self.local.cluster_id,
            from: self.local.node_id,
            incarnation: self.local.incarnation,
            group: self.group,
            leader_term: self.leader_term,
            index,
            term,
            total,
        };
        let endpoint = self
            .connector
            .endpoint(&self.addr)
            .map_err(|e| format!("invalid peer address {}: {e}", self.addr))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let mut backoff = BACKOFF_MIN;
        let mut failures = 0;
        let mut best = 0u64;
        loop {
            match self.attempt(&endpoint, &offer, &path, bytes).await {
                Ok(reply) if reply.complete => return Ok(()),
                Ok(reply) => {
                    tracing::debug!(
                        peer = self.peer,
                        "snapshot stream ended at {}",
                        reply.received
                    );
                    if reply.received > best {
                        best = reply.received;
                        failures = 0;
                    }
                }
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry { error, held }) => {
                    tracing::debug!(peer = self.peer, "snapshot transfer interrupted: {error}");
                    if held > best {
                        best = held;
                        failures = 0;
                    }
                    failures += 1;
                    if failures >= MAX_ATTEMPTS_WITHOUT_PROGRESS {
                        return Err(error);
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection: offer, then stream from the offset the receiver holds.
    async fn attempt(
        &self,
        endpoint: &Endpoint,
        offer: &SnapshotOffer,
        path: &std::path::Path,
        bytes: &mut u64,
    ) -> Result<SnapshotSendReply, Attempt> {
        let retry = |error: String, held: u64| Attempt::Retry { error, held };
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| retry(format!("cannot connect to {}: {e}", self.addr), 0))?;
        let mut client = RaftClient::new(channel).max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
        let SnapshotOfferReply { offset } = client
            .snapshot_offer(*offer)
            .await
            .map_err(|s| classify(s, 0))?
            .into_inner();
        if offset > offer.total {
            return Err(Attempt::Fatal(format!(
                "the peer claims {offset} bytes of a {}-byte snapshot",
                offer.total
            )));
        }
        let (tx, rx) = mpsc::channel::<SnapshotChunk>(CHUNKS_IN_FLIGHT);
        let store = self.store.clone();
        let path = path.to_path_buf();
        let first = *offer;
        let metrics = self.metrics.clone();
        // Reads the file on a blocking thread, one chunk ahead of the network at
        // most CHUNKS_IN_FLIGHT: the bounded channel is the flow control.
        let reader = tokio::task::spawn_blocking(move || {
            read_chunks(&store, &path, offset, first, &tx, &metrics)
        });
        let stream =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
        let reply = client.snapshot_send(stream).await;
        let sent = reader
            .await
            .map_err(|e| Attempt::Fatal(format!("snapshot reader task failed: {e}")))?
            .map_err(|e| Attempt::Fatal(format!("cannot read the snapshot: {e}")))?;
        *bytes += sent;
        match reply {
            Ok(r) => Ok(r.into_inner()),
            Err(s) => Err(classify(s, offset)),
        }
    }
}

/// Sends the file from `offset` into `tx`; returns the bytes handed over. A closed
/// channel (the call ended) is not an error: the reply says why.
fn read_chunks(
    store: &SnapshotStore,
    path: &std::path::Path,
    offset: u64,
    offer: SnapshotOffer,
    tx: &mpsc::Sender<SnapshotChunk>,
    metrics: &Metrics,
) -> Result<u64, SnapshotError> {
    let mut offer = Some(offer);
    let mut sent = 0;
    for chunk in store.chunks(path, offset, CHUNK_BYTES)? {
        let chunk = chunk?;
        let n = chunk.data.len() as u64;
        let msg = SnapshotChunk {
            offer: offer.take(),
            offset: chunk.offset,
            data: chunk.data,
        };
        if tx.blocking_send(msg).is_err() {
            return Ok(sent);
        }
        sent += n;
        metrics.snapshot_sent_bytes.inc_by(n);
    }
    if let Some(offer) = offer {
        // Nothing left to send (the receiver held it all): the offer alone asks it
        // to finish.
        let _ = tx.blocking_send(SnapshotChunk {
            offset,
            offer: Some(offer),
            data: Default::default(),
        });
    }
    Ok(sent)
}

enum Attempt {
    /// Worth trying again; `held` is what the receiver is known to hold.
    Retry { error: String, held: u64 },
    /// Will not get better by retrying.
    Fatal(String),
}

fn classify(s: Status, held: u64) -> Attempt {
    let error = format!("{}: {}", code_name(s.code()), s.message());
    match s.code() {
        tonic::Code::PermissionDenied | tonic::Code::InvalidArgument => Attempt::Fatal(error),
        _ => Attempt::Retry { error, held },
    }
}

fn code_name(c: tonic::Code) -> &'static str {
    match c {
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::DataLoss => "data loss",
        tonic::Code::FailedPrecondition => "refused",
        tonic::Code::PermissionDenied => "permission denied",
        tonic::Code::InvalidArgument => "invalid",
        _ => "error",
    }
}

/// The receiving side (follower) of one group, served by `RaftService`, which
/// holds one per hosted group.
#[derive(Debug)]
pub struct SnapshotInbox {
    node_id: NodeId,
    store: Arc<SnapshotStore>,
    inbox: crossbeam_channel::Sender<Message>,
    metrics: Arc<Metrics>,
    /// One transfer at a time: two would write the same staging file.
    busy: Arc<tokio::sync::Mutex<()>>,
}

impl SnapshotInbox {
    /// Receives into `store` and delivers the `InstallSnapshot` to `inbox` (the
    /// consensus thread's peer queue).
    pub fn new(
        node_id: NodeId,
        store: Arc<SnapshotStore>,
        inbox: crossbeam_channel::Sender<Message>,
        metrics: Arc<Metrics>,
    ) -> Self {
        SnapshotInbox {
            node_id,
            store,
            inbox,
            metrics,
            busy: Arc::default(),
        }
    }

    /// The group whose snapshots this inbox receives.
    pub fn group(&self) -> GroupId {
        self.store.group()
    }

    fn check(&self, offer: &SnapshotOffer) -> Result<(), Status> {
        if offer.group != self.store.group() {
            return Err(Status::invalid_argument(format!(
                "snapshot of group {} offered; this node serves group {}",
                offer.group,
                self.store.group()
            )));
        }
        if offer.index == 0 || offer.term == 0 || offer.leader_term < offer.term {
            return Err(Status::invalid_argument(format!(
                "snapshot offer with index {}, term {}, leader term {} makes no sense",
                offer.index, offer.term, offer.leader_term
            )));
        }
        Ok(())
    }

    fn finished_path(&self, offer: &SnapshotOffer) -> PathBuf {
        self.store.path_of(offer.term, offer.index)
    }

    /// Answers an offer with the bytes already held (creating the staging file).
    pub(crate) async fn offer(&self, offer: SnapshotOffer) -> Result<SnapshotOfferReply, Status> {
        self.check(&offer)?;
        if self.finished_path(&offer).exists() {
            return Ok(SnapshotOfferReply {
                offset: offer.total,
            });
        }
        let store = self.store.clone();
        let offset = tokio::task::spawn_blocking(move || {
            remove_other_partials(&store, offer.term, offer.index);
            store
                .receive(offer.term, offer.index, offer.total)
                .map(|r| r.offset())
        })
        .await
        .map_err(|e| Status::internal(format!("snapshot task failed: {e}")))?
        .map_err(refusal)?;
        Ok(SnapshotOfferReply { offset })
    }

    /// Receives a stream of chunks (the first carries the offer, already admitted
    /// by the caller).
    pub(crate) async fn receive(
        &self,
        offer: SnapshotOffer,
        first: SnapshotChunk,
        mut stream: Streaming<SnapshotChunk>,
    ) -> Result<SnapshotSendReply, Status> {
        self.check(&offer)?;
        let _busy = self.busy.clone().try_lock_owned().map_err(|_| {
            Status::unavailable("another snapshot transfer to this node is in progress")
        })?;
        let (tx, mut rx) = mpsc::channel::<SnapshotChunk>(CHUNKS_IN_FLIGHT);
        let store = self.store.clone();
        let finished = self.finished_path(&offer);
        let (term, index, total) = (offer.term, offer.index, offer.total);
        // The file is written on a blocking thread, fed through a bounded channel.
        let worker = tokio::task::spawn_blocking(move || {
            if finished.exists() {
                // Received and verified earlier (the hand-over was lost); the
                // install verifies it again as it reads it.
                let reader = SnapshotReader::open(&StdVfs::new(), &finished)?;
                return Ok((total, Some(reader.header().clone())));
            }
            let mut r = store.receive(term, index, total)?;
            while r.offset() < total {
                let Some(chunk) = rx.blocking_recv() else {
                    return Ok((r.offset(), None));
                };
                r.write_chunk(chunk.offset, &chunk.data)?;
            }
            let info = r.finish()?;
            Ok::<_, SnapshotError>((total, Some(info.header)))
        });
        let mut next = Some(first);
        loop {
            let chunk = match next.take() {
                Some(c) => c,
                None => match stream.message().await {
                    Ok(Some(c)) => c,
                    Ok(None) | Err(_) => break,
                },
            };
            let n = chunk.data.len() as u64;
            if n == 0 {
                continue;
            }
            if tx.send(chunk).await.is_err() {
                // The writer stopped (done or refused): its result says which.
                break;
            }
            self.metrics.snapshot_received_bytes.inc_by(n);
        }
        drop(tx);
        let (received, header) = worker
            .await
            .map_err(|e| Status::internal(format!("snapshot task failed: {e}")))?
            .map_err(refusal)?;
        let Some(header) = header else {
            return Ok(SnapshotSendReply {
                received,
                complete: false,
            });
        };
        let (conf, _) = decode_conf(&header.conf).map_err(|e| {
            Status::data_loss(format!(
                "snapshot {index} carries an unreadable membership: {e}"
            ))
        })?;
        let message = Message {
            group: offer.group,
            from: offer.from,
            to: self.node_id,
            term: offer.leader_term,
            body: MessageBody::InstallSnapshot {
                meta: SnapshotMeta {
                    index: header.index,
                    term: header.term,
                    conf,
                },
            },
        };
        self.inbox.try_send(message).map_err(|_| {
            Status::unavailable("the consensus thread's queue is full; offer again")
        })?;
        Ok(SnapshotSendReply {
            received,
            complete: true,
        })
    }
}

/// A snapshot error as the status the sender acts on: damage means start over
/// (the staging file is gone), an out-of-order chunk means offer again.
fn refusal(e: SnapshotError) -> Status {
    match &e {
        e if e.is_damage() => Status::data_loss(e.to_string()),
        SnapshotError::Mismatch { .. } => Status::data_loss(e.to_string()),
        SnapshotError::OutOfOrder { .. } | SnapshotError::PastEnd { .. } => {
            Status::failed_precondition(e.to_string())
        }
        SnapshotError::Limit(_) | SnapshotError::ChunkTooLarge { .. } => {
            Status::invalid_argument(e.to_string())
        }
        _ => Status::unavailable(e.to_string()),
    }
}

/// Staging files of other snapshots are abandoned transfers (a new leader, a newer
/// snapshot): remove them so they do not hold disk space until the next restart.
fn remove_other_partials(store: &SnapshotStore, term: Term, index: Index) {
    let keep = format!(
        "{}.partial",
        store
            .path_of(term, index)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let Ok(dir) = std::fs::read_dir(store.dir()) else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("snap-")
            && name.ends_with(".keel.partial")
            && name != keep
            && let Err(e) = std::fs::remove_file(entry.path())
        {
            tracing::warn!("cannot remove abandoned snapshot transfer {name}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use keel_proto::raft::raft_server::RaftServer;
    use keel_raft::{ConfState, Entry, EntryKind};
    use keel_storage::command::{Command, Expect};
    use keel_storage::kv::KvStore;
    use keel_storage::snapshot::{SnapshotInfo, SnapshotOptions};
    use tonic::transport::server::TcpIncoming;

    use super::*;
    use crate::members::encode_conf;
    use crate::peers::PeerIncarnations;
    use crate::transport::{GroupDemux, HostedGroups, RaftService, TransportStats};

    const CLUSTER: u64 = 0xc1;

    fn store(dir: &Path) -> Arc<SnapshotStore> {
        let (s, _) =
            SnapshotStore::open(Arc::new(StdVfs::new()), dir, 1, SnapshotOptions::default())
                .expect("open store");
        Arc::new(s)
    }

    /// A snapshot of ~1.2 MiB (several transfer chunks) at index 300, term 1.
    fn make_snapshot(dir: &Path) -> (Arc<SnapshotStore>, SnapshotInfo) {
        let kv = KvStore::open(Arc::new(StdVfs::new()), &dir.join("state.redb")).expect("kv");
        let entries: Vec<Entry> = (1..=300)
            .map(|i| Entry {
                term: 1,
                index: i,
                kind: EntryKind::Normal,
                data: Command::Put {
                    key: format!("key-{i:04}").into(),
                    value: vec![b'x'; 4096].into(),
                    expect: Expect::Any,
                }
                .encode(),
            })
            .collect();
        kv.apply(&entries).expect("apply");
        let s = store(&dir.join("snap"));
        let view = kv.read_view().expect("view");
        let info = s
            .write(&view, encode_conf(&ConfState::with_voters([1, 2, 3]), &[]))
            .expect("write snapshot");
        (s, info)
    }

    /// A receiving node 2 on a loopback port.
    async fn receiver(
        dir: &Path,
    ) -> (
        String,
        crossbeam_channel::Receiver<Message>,
        Arc<SnapshotStore>,
    ) {
        let (tx, rx) = crossbeam_channel::bounded(16);
        let snaps = store(&dir.join("snap"));
        let svc = RaftService::new(
            2,
            CLUSTER,
            Arc::new(crate::members::MemberBook::new(&BTreeMap::from([
                (1, "127.0.0.1:1".to_string()),
                (2, "127.0.0.1:2".to_string()),
                (3, "127.0.0.1:3".to_string()),
            ]))),
            Arc::new(PeerIncarnations::open(dir).expect("peers")),
            GroupDemux::new(
                HostedGroups::new([1], prometheus_client::metrics::counter::Counter::default()),
                tx.clone(),
            ),
            Arc::new(TransportStats::default()),
        )
        .with_snapshots(SnapshotInbox::new(
            2,
            snaps.clone(),
            tx,
            Arc::new(Metrics::new()),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(RaftServer::new(svc))
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        (addr, rx, snaps)
    }

    fn chunks(
        s: &SnapshotStore,
        info: &SnapshotInfo,
        offer: SnapshotOffer,
        from: u64,
        n: usize,
    ) -> Vec<SnapshotChunk> {
        let mut out: Vec<SnapshotChunk> = s
            .chunks(&info.path, from, CHUNK_BYTES)
            .expect("chunks")
            .take(n)
            .map(|c| {
                let c = c.expect("chunk");
                SnapshotChunk {
                    offer: None,
                    offset: c.offset,
                    data: c.data,
                }
            })
            .collect();
        out[0].offer = Some(offer);
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_broken_transfer_resumes_where_the_receiver_stands() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sender, info) = make_snapshot(&dir.path().join("a"));
        let (addr, inbox, _) = receiver(&dir.path().join("b")).await;
        let mut client = RaftClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let offer = SnapshotOffer {
            cluster_id: CLUSTER,
            from: 1,
            incarnation: 7,
            group: 1,
            leader_term: 2,
            index: info.header.index,
            term: info.header.term,
            total: info.len,
        };
        assert!(info.len > 3 * CHUNK_BYTES as u64, "several chunks");
        let at = |r: Result<tonic::Response<SnapshotOfferReply>, Status>| {
            r.expect("offer").into_inner().offset
        };
        assert_eq!(at(client.snapshot_offer(offer).await), 0);

        // Two chunks, then the stream ends as if the connection broke.
        let part = chunks(&sender, &info, offer, 0, 2);
        let reply = client
            .snapshot_send(futures::stream::iter(part))
            .await
            .expect("send")
            .into_inner();
        assert!(!reply.complete);
        assert_eq!(reply.received, 2 * CHUNK_BYTES as u64);
        assert!(inbox.try_recv().is_err(), "nothing handed over yet");

        // The next offer names the offset held; the rest completes the file.
        let offset = at(client.snapshot_offer(offer).await);
        assert_eq!(offset, 2 * CHUNK_BYTES as u64);
        let rest = chunks(&sender, &info, offer, offset, usize::MAX);
        let reply = client
            .snapshot_send(futures::stream::iter(rest))
            .await
            .expect("send")
            .into_inner();
        assert!(reply.complete);
        let m = inbox.try_recv().expect("InstallSnapshot handed over");
        assert_eq!((m.from, m.to, m.term), (1, 2, 2));
        let MessageBody::InstallSnapshot { meta } = m.body else {
            panic!("not an InstallSnapshot: {m:?}");
        };
        assert_eq!((meta.index, meta.term), (300, 1));
        assert_eq!(meta.conf, ConfState::with_voters([1, 2, 3]));

        // Another cluster is refused.
        let foreign = SnapshotOffer {
            cluster_id: 0xdead,
            ..offer
        };
        let status = client
            .snapshot_offer(foreign)
            .await
            .expect_err("foreign cluster");
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_outbox_sends_the_newest_file_and_reports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sender, info) = make_snapshot(&dir.path().join("a"));
        let (addr, inbox, received) = receiver(&dir.path().join("b")).await;
        let metrics = Arc::new(Metrics::new());
        let (done, outcomes) = crossbeam_channel::bounded(4);
        let outbox = SnapshotOutbox {
            local: LocalIdentity {
                node_id: 1,
                cluster_id: CLUSTER,
                incarnation: 7,
            },
            group: 1,
            store: sender,
            metrics: metrics.clone(),
            connector: crate::transport::PeerConnector::plain(),
            runtime: tokio::runtime::Handle::current(),
            done,
        };
        // The core asked for an older snapshot: the newest file goes.
        outbox.start(2, addr, 3, 100);
        let outcome =
            tokio::task::spawn_blocking(move || outcomes.recv_timeout(Duration::from_secs(10)))
                .await
                .expect("join")
                .expect("an outcome");
        assert_eq!(outcome.peer, 2);
        assert_eq!(outcome.index, 300);
        outcome.result.expect("sent");
        assert_eq!(outcome.bytes, info.len);
        assert_eq!(metrics.snapshot_sent_bytes.get(), info.len);
        let m = inbox.try_recv().expect("handed over");
        assert_eq!(m.term, 3);
        assert!(
            received.path_of(1, 300).exists(),
            "published on the receiver"
        );
    }
}

/// The snapshot inboxes of the groups a node hosts, by group. Cheap to clone;
/// clones share the table (the node adds groups it starts hosting at run time).
#[derive(Clone, Debug, Default)]
pub struct SnapshotInboxes {
    inboxes: Arc<std::sync::RwLock<std::collections::BTreeMap<GroupId, Arc<SnapshotInbox>>>>,
}

impl SnapshotInboxes {
    /// Receives `inbox`'s group's snapshots into it from now on.
    pub fn register(&self, inbox: SnapshotInbox) {
        self.inboxes
            .write()
            .expect("snapshot inboxes lock poisoned")
            .insert(inbox.group(), Arc::new(inbox));
    }

    /// Stops receiving `group`'s snapshots.
    pub fn unregister(&self, group: GroupId) {
        self.inboxes
            .write()
            .expect("snapshot inboxes lock poisoned")
            .remove(&group);
    }

    /// `group`'s inbox, if it has one.
    pub fn get(&self, group: GroupId) -> Option<Arc<SnapshotInbox>> {
        self.inboxes
            .read()
            .expect("snapshot inboxes lock poisoned")
            .get(&group)
            .cloned()
    }

    /// Whether no group receives snapshots here.
    pub fn is_empty(&self) -> bool {
        self.inboxes
            .read()
            .expect("snapshot inboxes lock poisoned")
            .is_empty()
    }
}
