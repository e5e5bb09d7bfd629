//! The key operations as the front ends call them: served by this node's
//! replica of the key's group when it hosts one (`ops.rs`, `txn.rs`,
//! `add.rs`), else forwarded one hop to a member of that group
//! (`group_forward.rs`). Inputs are checked before anything is sent on.

use bytes::Bytes;
use keel_proto::error::{ErrorDetail, Kind};
use keel_proto::v1::{
    AddRequest, AddResponse, DeleteRequest, DeleteResponse, GetRequest, GetResponse, PutRequest,
    PutResponse, TxnRequest, TxnResponse,
};

use super::group_forward::Hop;
use super::ops::Forwarding;
use super::{ApiContext, validate};

impl ApiContext {
    /// `Kv.Get`, routed.
    pub(crate) async fn routed_get(
        &self,
        req: GetRequest,
        fwd: Forwarding,
        hop: Hop,
    ) -> Result<GetResponse, ErrorDetail> {
        if let Some(remote) = self.remote_owner(hop, [&req.key[..]]) {
            validate::key(&req.key)?;
            return self
                .forward_to_group(remote, false, req, |mut c, r| async move { c.get(r).await })
                .await;
        }
        let key = req.key.clone();
        let answer = self.get(req, fwd).await;
        self.naming_group(&key, answer)
    }

    /// `Kv.Put`, routed.
    pub(crate) async fn routed_put(
        &self,
        req: PutRequest,
        fwd: Forwarding,
        hop: Hop,
    ) -> Result<PutResponse, ErrorDetail> {
        if let Some(remote) = self.remote_owner(hop, [&req.key[..]]) {
            validate::key(&req.key)?;
            validate::value(&req.value, self.limits.max_value_bytes)?;
            return self
                .forward_to_group(remote, true, req, |mut c, r| async move { c.put(r).await })
                .await;
        }
        let key = req.key.clone();
        let answer = self.put(req, fwd).await;
        self.naming_group(&key, answer)
    }

    /// `Kv.Delete`, routed.
    pub(crate) async fn routed_delete(
        &self,
        req: DeleteRequest,
        fwd: Forwarding,
        hop: Hop,
    ) -> Result<DeleteResponse, ErrorDetail> {
        if let Some(remote) = self.remote_owner(hop, [&req.key[..]]) {
            validate::key(&req.key)?;
            return self
                .forward_to_group(
                    remote,
                    true,
                    req,
                    |mut c, r| async move { c.delete(r).await },
                )
                .await;
        }
        let key = req.key.clone();
        let answer = self.delete(req, fwd).await;
        self.naming_group(&key, answer)
    }

    /// `Kv.Add`, routed.
    pub(crate) async fn routed_add(
        &self,
        req: AddRequest,
        fwd: Forwarding,
        hop: Hop,
    ) -> Result<AddResponse, ErrorDetail> {
        if let Some(remote) = self.remote_owner(hop, [&req.key[..]]) {
            validate::key(&req.key)?;
            return self
                .forward_to_group(remote, true, req, |mut c, r| async move { c.add(r).await })
                .await;
        }
        let key = req.key.clone();
        let answer = self.add(req, fwd).await;
        self.naming_group(&key, answer)
    }

    /// `Kv.Txn`, routed: forwarded only when every key belongs to one group
    /// this node does not host (keys of several groups are refused here with
    /// `CROSS_GROUP`). The receiving node checks the transaction's limits.
    pub(crate) async fn routed_txn(
        &self,
        req: TxnRequest,
        fwd: Forwarding,
        hop: Hop,
    ) -> Result<TxnResponse, ErrorDetail> {
        let remote = self.remote_owner(hop, req.keys());
        if let Some(remote) = remote {
            for key in req.keys() {
                validate::key(key)?;
            }
            return self
                .forward_to_group(remote, true, req, |mut c, r| async move { c.txn(r).await })
                .await;
        }
        let first = req.keys().next().map(Bytes::copy_from_slice);
        let answer = self.txn(req, fwd).await;
        match first {
            Some(key) => self.naming_group(&key, answer),
            None => answer,
        }
    }

    /// `answer`, with a NOT_LEADER or NO_LEADER detail naming the group this
    /// node routed `key` to: a client that routes by group learns whose
    /// leader the hint names, and that its map is stale if it sent the key
    /// for another group.
    fn naming_group<T>(
        &self,
        key: &[u8],
        answer: Result<T, ErrorDetail>,
    ) -> Result<T, ErrorDetail> {
        answer.map_err(|detail| match detail.kind() {
            Kind::NotLeader | Kind::NoLeader if detail.group == 0 => {
                detail.in_group(self.route_key(key).group)
            }
            _ => detail,
        })
    }
}
