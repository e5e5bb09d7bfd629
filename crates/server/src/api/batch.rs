//! `keel.v1.Kv/Batch`: many calls over one stream.
//!
//! With many requests in flight on one connection, gRPC's per-call cost (a new
//! HTTP/2 stream, headers both ways, a task, a write syscall per answer) is most of
//! what a lease read or a stale read costs. A batch stream pays it once: each
//! message carries many tagged requests, each handled exactly as its unary method
//! would be (same validation, same errors, same metrics), and the answers go back
//! as they complete, as many per message as are ready.
//!
//! Limits: at most [`MAX_ITEMS_PER_MESSAGE`] requests per message (more fails the
//! stream with INVALID_ARGUMENT before any of them runs) and
//! [`MAX_IN_FLIGHT_PER_STREAM`] requests running per stream (past it, the stream
//! is not read until some finish, which pushes back on the client through HTTP/2
//! flow control). Message size is bounded by the service's decoding limit.

use std::sync::Arc;

use keel_proto::error::{ErrorDetail, code_for};
use keel_proto::v1::batch_request_item::Request as Item;
use keel_proto::v1::batch_response_item::Response as Answer;
use keel_proto::v1::{
    BatchError, BatchRequest, BatchRequestItem, BatchResponse, BatchResponseItem,
};
use prost::Message as _;
use tokio::sync::{Semaphore, mpsc};
use tonic::{Status, Streaming};

use super::ApiContext;
use super::group_forward::Hop;
use super::ops::Forwarding;
use crate::metrics::ClientOp;

/// Requests one message may carry.
pub const MAX_ITEMS_PER_MESSAGE: usize = 1024;

/// Requests of one stream running at once.
pub const MAX_IN_FLIGHT_PER_STREAM: usize = 4096;

/// Answers are packed into one message up to this size (a single larger answer
/// still goes alone).
const MAX_ANSWER_BYTES_PER_MESSAGE: usize = 64 << 10;

/// Answer messages queued for the transport before the writer waits.
const OUTBOX: usize = 16;

/// The answer stream of one batch call.
pub type BatchStream = tokio_stream::wrappers::ReceiverStream<Result<BatchResponse, Status>>;

/// Starts serving one batch stream: a reader task runs every request on its own
/// task, a writer task packs the answers into messages.
pub(crate) fn serve(ctx: Arc<ApiContext>, inbound: Streaming<BatchRequest>) -> BatchStream {
    let (out_tx, out_rx) = mpsc::channel(OUTBOX);
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    tokio::spawn(read_requests(ctx, inbound, done_tx, out_tx.clone()));
    tokio::spawn(write_answers(done_rx, out_tx));
    BatchStream::new(out_rx)
}

async fn read_requests(
    ctx: Arc<ApiContext>,
    mut inbound: Streaming<BatchRequest>,
    done: mpsc::UnboundedSender<BatchResponseItem>,
    out: mpsc::Sender<Result<BatchResponse, Status>>,
) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_STREAM));
    loop {
        let message = match inbound.message().await {
            Ok(Some(m)) => m,
            // The client finished sending, or the stream broke: the requests
            // already running still answer if they can.
            Ok(None) | Err(_) => return,
        };
        if message.items.len() > MAX_ITEMS_PER_MESSAGE {
            let why = format!(
                "a batch message carries {} requests, over the limit of {MAX_ITEMS_PER_MESSAGE}",
                message.items.len()
            );
            let _ = out
                .send(Err(ErrorDetail::invalid_argument(why).into()))
                .await;
            return;
        }
        for item in message.items {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let ctx = ctx.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let answer = answer(&ctx, item).await;
                // The client may be gone; nothing to do then.
                let _ = done.send(answer);
                drop(slot);
            });
        }
    }
}

async fn write_answers(
    mut done: mpsc::UnboundedReceiver<BatchResponseItem>,
    out: mpsc::Sender<Result<BatchResponse, Status>>,
) {
    while let Some(first) = done.recv().await {
        let mut bytes = first.encoded_len();
        let mut items = vec![first];
        while bytes < MAX_ANSWER_BYTES_PER_MESSAGE {
            let Ok(next) = done.try_recv() else { break };
            bytes += next.encoded_len();
            items.push(next);
        }
        if out.send(Ok(BatchResponse { items })).await.is_err() {
            return;
        }
    }
}

/// Runs one request the way its unary method does.
async fn answer(ctx: &ApiContext, item: BatchRequestItem) -> BatchResponseItem {
    let id = item.id;
    let result = match item.request {
        Some(Item::Get(r)) => ctx
            .timed(
                ClientOp::Get,
                ctx.routed_get(r, Forwarding::Never, Hop::Client),
            )
            .await
            .map(Answer::Get),
        Some(Item::Put(r)) => ctx
            .timed(
                ClientOp::Put,
                ctx.routed_put(r, Forwarding::Never, Hop::Client),
            )
            .await
            .map(Answer::Put),
        Some(Item::Delete(r)) => ctx
            .timed(
                ClientOp::Delete,
                ctx.routed_delete(r, Forwarding::Never, Hop::Client),
            )
            .await
            .map(Answer::Delete),
        Some(Item::Txn(r)) => ctx
            .timed(
                ClientOp::Txn,
                ctx.routed_txn(r, Forwarding::Never, Hop::Client),
            )
            .await
            .map(Answer::Txn),
        None => Err(ErrorDetail::invalid_argument(
            "a batch request names no operation (or one this node does not know)",
        )),
    };
    let response = result.unwrap_or_else(|detail| Answer::Error(batch_error(detail)));
    BatchResponseItem {
        id,
        response: Some(response),
    }
}

/// The error a unary call would have carried in its status.
fn batch_error(detail: ErrorDetail) -> BatchError {
    let code = code_for(detail.kind());
    let message = if detail.message.is_empty() {
        detail.kind().as_str_name().to_owned()
    } else {
        detail.message.clone()
    };
    BatchError {
        code: code as i32,
        message,
        detail: Some(detail),
    }
}
