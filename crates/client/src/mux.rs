//! One batch stream per connection, shared by every call to that member.
//!
//! A unary gRPC call costs an HTTP/2 stream, headers both ways and a write per
//! answer on each end, which is most of what a lease read costs. Calls made at
//! the same time to the same member instead go out together as one message of a
//! `keel.v1.Kv/Batch` stream and come back, as they complete, several per message.
//! Each is still its own call to the caller: its own attempt, timeout, retries
//! and error (the node answers each request exactly as the unary method would).
//!
//! # What a failure proves
//!
//! The retry rules need to know whether a request may have been applied (see
//! [`crate::failure`]), so the mux keeps track of where each request is:
//!
//! - still queued here when the stream failed, or refused by the transport (the
//!   message came back to us): never sent — answered with a status whose source
//!   is [`NeverSent`], which [`crate::failure`] reads as "not applied";
//! - handed to the stream, then the stream failed: it may have arrived — a plain
//!   UNAVAILABLE status, read as ambiguous;
//! - answered: the answer, whatever it is.
//!
//! A member without the Batch method (an older build) answers UNIMPLEMENTED when
//! the stream opens; every request then goes unary on that connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::channel::AuthChannel;
use keel_proto::error::ErrorDetail;
use keel_proto::v1::batch_request_item::Request as Item;
use keel_proto::v1::batch_response_item::Response as Answer;
use keel_proto::v1::kv_client::KvClient;
use keel_proto::v1::{BatchError, BatchRequest, BatchRequestItem, BatchResponse};
use tokio::sync::{mpsc, oneshot};
use tonic::{Code, Status, Streaming};

/// Requests packed into one message at most.
const MAX_ITEMS_PER_MESSAGE: usize = 256;

/// Requests are packed into one message up to this many bytes (one larger request
/// still goes alone, up to [`MAX_BATCHED_REQUEST_BYTES`]).
const MAX_BYTES_PER_MESSAGE: usize = 64 << 10;

/// Larger requests go unary: batching gains nothing for them, and a request the
/// node refuses as too large must fail alone, not break the stream for others.
pub(crate) const MAX_BATCHED_REQUEST_BYTES: usize = 16 << 10;

/// Messages queued for the transport before the sender waits.
const OUTBOX: usize = 8;

/// Marks a request that never left this process (so it was not applied).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct NeverSent(String);

/// Why a batched request got no answer from the member.
#[derive(Debug)]
pub(crate) enum MuxError {
    /// The member has no Batch method: make the call unary.
    Unsupported,
    /// The request failed; the status says how (see the module docs).
    Failed(Status),
}

type Reply = oneshot::Sender<Result<Answer, MuxError>>;

/// The batch stream of one connection, opened on first use.
pub(crate) struct Mux {
    channel: AuthChannel,
    /// Largest message the stream decodes or encodes.
    max_message_bytes: usize,
    queue: OnceLock<mpsc::UnboundedSender<(Item, Reply)>>,
    shared: Arc<Shared>,
}

/// What the mux's tasks and its users share.
#[derive(Default)]
struct Shared {
    /// Set once the stream is over: new requests then go elsewhere.
    closed: AtomicBool,
    /// The member has no Batch method.
    unsupported: AtomicBool,
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    next_id: u64,
    /// Requests handed to the stream, by id, with where their answer goes.
    replies: HashMap<u64, Reply>,
}

impl Mux {
    /// A mux over `channel`; nothing is opened until the first request.
    pub(crate) fn new(channel: AuthChannel, max_message_bytes: usize) -> Self {
        Mux {
            channel,
            max_message_bytes,
            queue: OnceLock::new(),
            shared: Arc::default(),
        }
    }

    /// Whether requests may still be sent through this mux (else, make a new one,
    /// or go unary if the member lacks the method).
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Whether the member turned out to have no Batch method.
    pub(crate) fn is_unsupported(&self) -> bool {
        self.shared.unsupported.load(Ordering::Acquire)
    }

    /// Sends `request` in the next message and waits for its answer.
    pub(crate) async fn call(&self, request: Item) -> Result<Answer, MuxError> {
        let queue = self.queue.get_or_init(|| self.start());
        let (reply, answer) = oneshot::channel();
        if queue.send((request, reply)).is_err() {
            return Err(never_sent("the batch stream has ended"));
        }
        match answer.await {
            Ok(result) => result,
            // The tasks are gone without answering: only on runtime shutdown.
            Err(_) => Err(MuxError::Failed(Status::unavailable(
                "the batch stream stopped without an answer",
            ))),
        }
    }

    fn start(&self) -> mpsc::UnboundedSender<(Item, Reply)> {
        let (queue, queued) = mpsc::unbounded_channel();
        let (outbox, outgoing) = mpsc::channel(OUTBOX);
        let kv = KvClient::new(self.channel.clone())
            // Room for the packing around one largest answer.
            .max_decoding_message_size(self.max_message_bytes.saturating_add(64 << 10))
            .max_encoding_message_size(self.max_message_bytes.saturating_add(64 << 10));
        tokio::spawn(send(queued, outbox, self.shared.clone()));
        tokio::spawn(receive(kv, outgoing, self.shared.clone()));
        queue
    }
}

impl Shared {
    /// Ends the stream: every request handed to it and not answered fails with
    /// `status()` (it may have arrived), later ones as never sent.
    fn close(&self, status: impl Fn() -> Status) {
        self.fail_waiting(|| MuxError::Failed(status()));
    }

    /// Like `close`, when the member has no Batch method: nothing it was sent was
    /// run, so every request is made again unary.
    fn close_unsupported(&self) {
        self.unsupported.store(true, Ordering::Release);
        self.fail_waiting(|| MuxError::Unsupported);
    }

    fn fail_waiting(&self, error: impl Fn() -> MuxError) {
        self.closed.store(true, Ordering::Release);
        let replies = std::mem::take(&mut self.lock().replies);
        for (_, reply) in replies {
            let _ = reply.send(Err(error()));
        }
    }

    fn refusal(&self) -> MuxError {
        if self.unsupported.load(Ordering::Acquire) {
            MuxError::Unsupported
        } else {
            never_sent("the batch stream has ended")
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // Never held across an await or a call that can panic.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Packs queued requests into messages until every handle is gone.
async fn send(
    mut queued: mpsc::UnboundedReceiver<(Item, Reply)>,
    outbox: mpsc::Sender<BatchRequest>,
    shared: Arc<Shared>,
) {
    while let Some(first) = queued.recv().await {
        let mut batch = vec![first];
        let mut bytes = batch[0].0.encoded_len();
        while batch.len() < MAX_ITEMS_PER_MESSAGE && bytes < MAX_BYTES_PER_MESSAGE {
            let Ok(next) = queued.try_recv() else { break };
            bytes += next.0.encoded_len();
            batch.push(next);
        }
        let mut items = Vec::with_capacity(batch.len());
        let mut ids = Vec::with_capacity(batch.len());
        {
            let mut waiting = shared.lock();
            for (request, reply) in batch {
                // Checked under the lock `close` takes: a request is either
                // registered before the close (and failed by it) or refused here.
                if shared.closed.load(Ordering::Acquire) {
                    let _ = reply.send(Err(shared.refusal()));
                    continue;
                }
                if reply.is_closed() {
                    // The caller gave up (its attempt timed out) before it left.
                    continue;
                }
                waiting.next_id += 1;
                let id = waiting.next_id;
                waiting.replies.insert(id, reply);
                ids.push(id);
                items.push(BatchRequestItem {
                    id,
                    request: Some(request),
                });
            }
        }
        if items.is_empty() {
            continue;
        }
        if outbox.send(BatchRequest { items }).await.is_err() {
            // The transport dropped the request stream and handed the message
            // back: these requests never left.
            let mut waiting = shared.lock();
            for id in ids {
                if let Some(reply) = waiting.replies.remove(&id) {
                    let _ = reply.send(Err(shared.refusal()));
                }
            }
        }
    }
}

/// Opens the stream, then hands every answer to its caller until the stream ends.
async fn receive(
    mut kv: KvClient<AuthChannel>,
    outgoing: mpsc::Receiver<BatchRequest>,
    shared: Arc<Shared>,
) {
    let requests = tokio_stream::wrappers::ReceiverStream::new(outgoing);
    let answers = match kv.batch(requests).await {
        Ok(response) => response.into_inner(),
        Err(status) if status.code() == Code::Unimplemented => {
            shared.close_unsupported();
            return;
        }
        // Refused before anything ran (no or a wrong bearer token): every request
        // gets the refusal itself, which is final.
        Err(status)
            if matches!(
                status.code(),
                Code::Unauthenticated | Code::PermissionDenied
            ) =>
        {
            let (code, why) = (status.code(), status.message().to_owned());
            shared.close(|| Status::new(code, why.clone()));
            return;
        }
        // The connection could not be (re-)established: nothing left.
        Err(status) if crate::failure::never_sent(&status) => {
            let why = format!("the batch stream did not open: {}", status.message());
            shared.close(|| never_sent_status(&why));
            return;
        }
        Err(status) => {
            let why = status.message().to_owned();
            shared.close(|| Status::unavailable(format!("the batch stream did not open: {why}")));
            return;
        }
    };
    let why = deliver(answers, &shared).await;
    shared.close(|| Status::unavailable(format!("the batch stream ended: {why}")));
}

/// Hands answers to their callers; returns why the stream ended.
async fn deliver(mut answers: Streaming<BatchResponse>, shared: &Shared) -> String {
    loop {
        let message = match answers.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return "the member closed it".to_owned(),
            Err(status) => return status.message().to_owned(),
        };
        let mut waiting = shared.lock();
        for item in message.items {
            // An unknown id (a buggy member) is dropped; its caller times out.
            let Some(reply) = waiting.replies.remove(&item.id) else {
                continue;
            };
            let result = match item.response {
                Some(Answer::Error(e)) => Err(MuxError::Failed(error_status(e))),
                Some(answer) => Ok(answer),
                None => Err(MuxError::Failed(Status::unknown(
                    "the member answered a batched request with nothing",
                ))),
            };
            let _ = reply.send(result);
        }
    }
}

/// The status a unary call would have returned.
fn error_status(e: BatchError) -> Status {
    let code = Code::from_i32(e.code);
    match e.detail {
        Some(detail) => with_message(detail, e.message).into_status_with_code(code),
        None => Status::new(code, e.message),
    }
}

fn with_message(mut detail: ErrorDetail, message: String) -> ErrorDetail {
    if detail.message.is_empty() {
        detail.message = message;
    }
    detail
}

fn never_sent(why: &str) -> MuxError {
    MuxError::Failed(never_sent_status(why))
}

fn never_sent_status(why: &str) -> Status {
    Status::from_error(Box::new(NeverSent(why.to_owned())))
}

#[cfg(test)]
mod tests {
    use keel_proto::v1::GetRequest;
    use tonic::transport::Endpoint;

    use super::*;
    use crate::failure::never_sent;

    fn get() -> Item {
        Item::Get(GetRequest {
            key: "k".into(),
            read_mode: 0,
        })
    }

    #[tokio::test]
    async fn a_stream_that_cannot_connect_fails_its_requests_as_never_sent() {
        // A port nothing listens on: the lazy channel's connect is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .expect("uri")
            .connect_lazy();
        let mux = Mux::new(AuthChannel::new(channel, None), 1 << 20);
        match mux.call(get()).await {
            Err(MuxError::Failed(status)) => assert!(never_sent(&status), "{status:?}"),
            other => panic!("expected a never-sent failure, got {other:?}"),
        }
        assert!(mux.is_closed());
        assert!(!mux.is_unsupported());
        // Later requests are refused as never sent too.
        match mux.call(get()).await {
            Err(MuxError::Failed(status)) => assert!(never_sent(&status), "{status:?}"),
            other => panic!("expected a never-sent failure, got {other:?}"),
        }
    }
}
