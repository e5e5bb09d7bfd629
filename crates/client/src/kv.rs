//! Key-value operations.

use bytes::Bytes;
use keel_proto::v1;

use crate::call::{Op, Route};
use crate::client::{Client, request};
use crate::error::Error;
use crate::types::{
    DeleteResponse, GetResponse, KeyValue, Precondition, ReadMode, ScanOptions, ScanResponse,
};

impl Client {
    /// Reads one key.
    ///
    /// Reads are retried after any retryable failure, on any member, until the
    /// deadline.
    pub async fn get(&self, key: impl Into<Bytes>, mode: ReadMode) -> Result<GetResponse, Error> {
        let message = v1::GetRequest {
            key: key.into(),
            read_mode: mode.to_proto().into(),
        };
        let route = self.route_for_key(&message.key).await;
        let response = self
            .caller
            .call(self.deadline, Op::Read, route, |conn, budget| {
                let mut kv = self.kv(conn);
                let request = request(message.clone(), budget);
                async move { kv.get(request).await }
            })
            .await?
            .into_inner();
        Ok(GetResponse {
            kv: response.kv.map(KeyValue::from),
            revision: response.revision,
        })
    }

    /// Writes one key unconditionally; returns the revision it committed at (also the
    /// value's new version).
    ///
    /// Exactly-once with the client's session (the default): retried after any
    /// retryable failure for up to 30 seconds, and a retry of a write that did
    /// happen returns the revision of that first execution. Without a session
    /// (`ClientConfig::sessions` off), retried only after failures that prove it
    /// was not applied; see [`Error::OutcomeUnknown`] for the others.
    pub async fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<u64, Error> {
        self.put_message(key.into(), value.into(), None).await
    }

    /// Writes one key if `condition` holds; returns the revision it committed at.
    /// Fails with [`Error::Conflict`] (nothing changed) if the condition does not hold.
    pub async fn put_with(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        condition: Precondition,
    ) -> Result<u64, Error> {
        self.put_message(key.into(), value.into(), Some(condition))
            .await
    }

    /// Deletes one key unconditionally.
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<DeleteResponse, Error> {
        self.delete_message(key.into(), None).await
    }

    /// Deletes one key if `condition` holds. Fails with [`Error::Conflict`] (nothing
    /// changed) if it does not.
    pub async fn delete_with(
        &self,
        key: impl Into<Bytes>,
        condition: Precondition,
    ) -> Result<DeleteResponse, Error> {
        self.delete_message(key.into(), Some(condition)).await
    }

    /// Lists keys starting with `prefix`, in key order, one page at a time. Use
    /// [`ScanResponse::resume_after`] to fetch the next page.
    pub async fn scan(
        &self,
        prefix: impl Into<Bytes>,
        options: &ScanOptions,
    ) -> Result<ScanResponse, Error> {
        let message = v1::ScanRequest {
            prefix: prefix.into(),
            limit: options.limit,
            read_mode: options.read_mode.to_proto().into(),
            start_after: options.start_after.clone(),
            group: 0,
        };
        let response = self
            .caller
            .call(self.deadline, Op::Read, Route::Leader, |conn, budget| {
                let mut kv = self.kv(conn);
                let request = request(message.clone(), budget);
                async move { kv.scan(request).await }
            })
            .await?
            .into_inner();
        Ok(ScanResponse {
            kvs: response.kvs.into_iter().map(KeyValue::from).collect(),
            more: response.more,
            revision: response.revision,
        })
    }

    async fn put_message(
        &self,
        key: Bytes,
        value: Bytes,
        condition: Option<Precondition>,
    ) -> Result<u64, Error> {
        let message = v1::PutRequest {
            key,
            value,
            precondition: condition.map(Precondition::to_proto),
            session: None,
        };
        let response = self
            .write(
                message,
                |mut kv, request| async move { kv.put(request).await },
            )
            .await?;
        Ok(response.revision)
    }

    async fn delete_message(
        &self,
        key: Bytes,
        condition: Option<Precondition>,
    ) -> Result<DeleteResponse, Error> {
        let message = v1::DeleteRequest {
            key,
            precondition: condition.map(Precondition::to_proto),
            session: None,
        };
        let response = self
            .write(message, |mut kv, request| async move {
                kv.delete(request).await
            })
            .await?;
        Ok(DeleteResponse {
            revision: response.revision,
            existed: response.deleted,
        })
    }
}
