//! What one attempt of a key-value call talks through: the connection's batch
//! stream when it can be used, a unary call otherwise.

use std::sync::Arc;

use crate::channel::AuthChannel;
use keel_proto::v1::batch_request_item::Request as Item;
use keel_proto::v1::batch_response_item::Response as Answer;
use keel_proto::v1::kv_client::KvClient;
use keel_proto::v1::{
    DeleteRequest, DeleteResponse, GetRequest, GetResponse, PutRequest, PutResponse, ScanRequest,
    ScanResponse, TxnRequest, TxnResponse,
};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::mux::{MAX_BATCHED_REQUEST_BYTES, Mux, MuxError};

/// The `keel.v1.Kv` methods, each batched when possible (see [`crate::mux`]).
pub(crate) struct KvConn {
    unary: KvClient<AuthChannel>,
    mux: Option<Arc<Mux>>,
}

/// How a request went.
enum Batched<M> {
    /// Through the batch stream, with this outcome.
    Answered(Result<Answer, Status>),
    /// Not batched: make it unary.
    Unary(Request<M>),
}

impl KvConn {
    pub(crate) fn new(unary: KvClient<AuthChannel>, mux: Option<Arc<Mux>>) -> Self {
        KvConn { unary, mux }
    }

    pub(crate) async fn get(
        &mut self,
        r: Request<GetRequest>,
    ) -> Result<Response<GetResponse>, Status> {
        match self.batched(r, Item::Get).await {
            Batched::Answered(Ok(Answer::Get(a))) => Ok(Response::new(a)),
            Batched::Answered(other) => Err(unexpected(other)),
            Batched::Unary(r) => self.unary.get(r).await,
        }
    }

    pub(crate) async fn put(
        &mut self,
        r: Request<PutRequest>,
    ) -> Result<Response<PutResponse>, Status> {
        match self.batched(r, Item::Put).await {
            Batched::Answered(Ok(Answer::Put(a))) => Ok(Response::new(a)),
            Batched::Answered(other) => Err(unexpected(other)),
            Batched::Unary(r) => self.unary.put(r).await,
        }
    }

    pub(crate) async fn delete(
        &mut self,
        r: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        match self.batched(r, Item::Delete).await {
            Batched::Answered(Ok(Answer::Delete(a))) => Ok(Response::new(a)),
            Batched::Answered(other) => Err(unexpected(other)),
            Batched::Unary(r) => self.unary.delete(r).await,
        }
    }

    pub(crate) async fn txn(
        &mut self,
        r: Request<TxnRequest>,
    ) -> Result<Response<TxnResponse>, Status> {
        match self.batched(r, Item::Txn).await {
            Batched::Answered(Ok(Answer::Txn(a))) => Ok(Response::new(a)),
            Batched::Answered(other) => Err(unexpected(other)),
            Batched::Unary(r) => self.unary.txn(r).await,
        }
    }

    /// Always unary: a page of a scan can be large, and batching pays off for
    /// small requests.
    pub(crate) async fn scan(
        &mut self,
        r: Request<ScanRequest>,
    ) -> Result<Response<ScanResponse>, Status> {
        self.unary.scan(r).await
    }

    async fn batched<M: Message + Clone>(&self, r: Request<M>, wrap: fn(M) -> Item) -> Batched<M> {
        let Some(mux) = &self.mux else {
            return Batched::Unary(r);
        };
        if mux.is_unsupported() || r.get_ref().encoded_len() > MAX_BATCHED_REQUEST_BYTES {
            return Batched::Unary(r);
        }
        // Cheap (keys and values are shared `Bytes`), and kept in case the member
        // turns out to have no Batch method.
        match mux.call(wrap(r.get_ref().clone())).await {
            Ok(answer) => Batched::Answered(Ok(answer)),
            Err(MuxError::Failed(status)) => Batched::Answered(Err(status)),
            Err(MuxError::Unsupported) => Batched::Unary(r),
        }
    }
}

/// The status for an answer of the wrong kind (a buggy member), or the error.
fn unexpected(outcome: Result<Answer, Status>) -> Status {
    match outcome {
        Err(status) => status,
        Ok(_) => Status::unknown("the member answered a batched request with the wrong kind"),
    }
}
