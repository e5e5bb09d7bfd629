//! The key-value operations, shared by gRPC and HTTP. Inputs are validated before
//! anything is proposed; writes return their revision; reads are linearizable
//! unless the request asks otherwise.
//!
//! Read modes: `linearizable` (ReadIndex; a follower asks the leader for the index
//! and serves the read itself), `lease` (the leader serves at once under its lease;
//! without one it falls back to ReadIndex; a follower sends the client to the
//! leader), `stale` (whatever this node has applied; the reply's revision says
//! how far that is).

use keel_proto::error::ErrorDetail;
use keel_proto::v1::{
    DeleteRequest, DeleteResponse, GetRequest, GetResponse, KeyValue, Precondition, PutRequest,
    PutResponse, ReadMode, ScanRequest, ScanResponse, precondition,
};
use keel_storage::command::{Command, Envelope, Expect};
use keel_storage::kv::slots::SlotUnavailable;
use keel_storage::kv::{ApplyOutcome, KvStore};

use super::{ApiContext, sessions, validate};
use crate::config::DefaultReadMode;
use crate::node::{KV_GROUP, NodeError, NodeHandle};

/// Scan page size when the request does not set one.
const DEFAULT_SCAN_LIMIT: u32 = 100;

/// Whether a request may be forwarded to the leader (HTTP) or must answer
/// NotLeader so the client follows (gRPC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Forwarding {
    Allowed,
    Never,
}

impl ApiContext {
    pub(crate) async fn get(
        &self,
        req: GetRequest,
        fwd: Forwarding,
    ) -> Result<GetResponse, ErrorDetail> {
        validate::key(&req.key)?;
        let node = self.group_for_key(&req.key)?;
        let read = |kv: &KvStore| {
            let revision = kv.applied_index();
            let kv = kv
                .get_served(&req.key)
                .map_err(|e| ErrorDetail::internal(format!("state machine read failed: {e}")))?
                .map_err(not_served)?
                .map(|(value, version)| KeyValue {
                    key: req.key.clone(),
                    value,
                    version,
                });
            Ok(GetResponse { kv, revision })
        };
        match self.serve_read(&node, req.read_mode(), fwd, read).await? {
            Served::Here(response) => Ok(response),
            Served::Forward(leader) => {
                self.forward_kv(&leader, false, |mut c| async move { c.get(req).await })
                    .await
            }
        }
    }

    pub(crate) async fn scan(
        &self,
        req: ScanRequest,
        fwd: Forwarding,
    ) -> Result<ScanResponse, ErrorDetail> {
        validate::prefix(&req.prefix, "prefix")?;
        validate::prefix(&req.start_after, "start_after key")?;
        if req.group != 0 {
            // One group's part of another node's fan-out: this node's replica.
            let node = self.hosted_part(req.group)?;
            return self.scan_group(&node, req, Forwarding::Never).await;
        }
        match self.scan_owners().as_slice() {
            // No map, or group 1 owns everything and this node serves it.
            [] => self.scan_group(&self.node.clone(), req, fwd).await,
            [KV_GROUP] if self.serves_group(KV_GROUP) => {
                self.scan_group(&self.node.clone(), req, fwd).await
            }
            groups => self.scan_groups(groups, req).await,
        }
    }

    /// A scan of one group's replica on this node (its served slots only).
    pub(crate) async fn scan_group(
        &self,
        node: &NodeHandle,
        req: ScanRequest,
        fwd: Forwarding,
    ) -> Result<ScanResponse, ErrorDetail> {
        let limit = self.scan_limit(req.limit);
        let read = |kv: &KvStore| {
            let start_after = (!req.start_after.is_empty()).then_some(&req.start_after[..]);
            let revision = kv.applied_index();
            let (items, more) = kv
                .scan_served(&req.prefix, start_after, limit)
                .map_err(|e| ErrorDetail::internal(format!("state machine scan failed: {e}")))?;
            let kvs = items
                .into_iter()
                .map(|(key, value, version)| KeyValue {
                    key,
                    value,
                    version,
                })
                .collect();
            Ok(ScanResponse {
                kvs,
                more,
                revision,
            })
        };
        match self.serve_read(node, req.read_mode(), fwd, read).await? {
            Served::Here(response) => Ok(response),
            Served::Forward(leader) => {
                self.forward_kv(&leader, false, |mut c| async move { c.scan(req).await })
                    .await
            }
        }
    }

    /// The page size a scan asks for, within the server's limit.
    pub(crate) fn scan_limit(&self, asked: u32) -> usize {
        let limit = match asked {
            0 => DEFAULT_SCAN_LIMIT,
            n => n.min(self.limits.max_scan_limit),
        };
        limit as usize
    }

    pub(crate) async fn put(
        &self,
        req: PutRequest,
        fwd: Forwarding,
    ) -> Result<PutResponse, ErrorDetail> {
        validate::key(&req.key)?;
        validate::value(&req.value, self.limits.max_value_bytes)?;
        let node = self.group_for_session_write(&req.key, req.session.as_ref())?;
        let cmd = Envelope {
            session: sessions::header(&self.limits, req.session.as_ref())?,
            command: Command::Put {
                key: req.key.clone(),
                value: req.value.clone(),
                expect: expect_of(req.precondition.as_ref()),
            },
        };
        match self.propose(&node, cmd).await {
            Ok(ApplyOutcome::Put { revision }) => Ok(PutResponse { revision }),
            Ok(ApplyOutcome::Conflict { current_version }) => {
                Err(ErrorDetail::conflict(current_version.unwrap_or(0)))
            }
            Ok(ApplyOutcome::SessionRejected(why)) => Err(sessions::rejection(why)),
            Ok(other) => Err(ErrorDetail::internal(format!(
                "unexpected outcome of a put: {other:?}"
            ))),
            Err(NodeError::NotLeader { leader }) if leader != 0 && fwd == Forwarding::Allowed => {
                self.forward_kv(&self.address_of(leader), true, |mut c| async move {
                    c.put(req).await
                })
                .await
            }
            Err(e) => Err(self.error(e)),
        }
    }

    pub(crate) async fn delete(
        &self,
        req: DeleteRequest,
        fwd: Forwarding,
    ) -> Result<DeleteResponse, ErrorDetail> {
        validate::key(&req.key)?;
        let node = self.group_for_session_write(&req.key, req.session.as_ref())?;
        let cmd = Envelope {
            session: sessions::header(&self.limits, req.session.as_ref())?,
            command: Command::Delete {
                key: req.key.clone(),
                expect: expect_of(req.precondition.as_ref()),
            },
        };
        match self.propose(&node, cmd).await {
            Ok(ApplyOutcome::Deleted { revision, existed }) => Ok(DeleteResponse {
                revision,
                deleted: existed,
            }),
            Ok(ApplyOutcome::Conflict { current_version }) => {
                Err(ErrorDetail::conflict(current_version.unwrap_or(0)))
            }
            Ok(ApplyOutcome::SessionRejected(why)) => Err(sessions::rejection(why)),
            Ok(other) => Err(ErrorDetail::internal(format!(
                "unexpected outcome of a delete: {other:?}"
            ))),
            Err(NodeError::NotLeader { leader }) if leader != 0 && fwd == Forwarding::Allowed => {
                self.forward_kv(&self.address_of(leader), true, |mut c| async move {
                    c.delete(req).await
                })
                .await
            }
            Err(e) => Err(self.error(e)),
        }
    }

    pub(super) async fn propose(
        &self,
        node: &NodeHandle,
        cmd: Envelope,
    ) -> Result<ApplyOutcome, NodeError> {
        let outcome = node
            .write(cmd.encode(), self.limits.request_timeout)
            .await?;
        if self.lost_replies.lose() {
            return Err(NodeError::OutcomeUnknown(
                "the reply was dropped on purpose (test fault --fault-lose-write-reply-every)"
                    .into(),
            ));
        }
        Ok(outcome)
    }

    /// Runs `read` on local state when that is safe for `mode`, or says where to
    /// forward the request.
    pub(crate) async fn serve_read<T>(
        &self,
        node: &NodeHandle,
        mode: ReadMode,
        fwd: Forwarding,
        read: impl Fn(&KvStore) -> Result<T, ErrorDetail>,
    ) -> Result<Served<T>, ErrorDetail> {
        let mode = match mode {
            ReadMode::Default => match self.limits.default_read_mode {
                DefaultReadMode::Linearizable => ReadMode::Linearizable,
                DefaultReadMode::Lease => ReadMode::Lease,
                DefaultReadMode::Stale => ReadMode::Stale,
            },
            m => m,
        };
        match mode {
            ReadMode::Stale => return Ok(Served::Here(read(node.kv())?)),
            ReadMode::Lease => {
                let timeout = self.limits.request_timeout;
                match node.lease_read(timeout, &read).await {
                    Ok(Some(result)) => {
                        self.metrics.lease_reads.inc();
                        return Ok(Served::Here(result?));
                    }
                    Ok(None) => {
                        self.metrics.lease_read_fallbacks.inc();
                    }
                    Err(e) => return Err(self.error(e)),
                }
                let leader = node.leader();
                if leader != 0 && leader != self.id {
                    // Only the leader holds a lease: send the client there.
                    return match fwd {
                        Forwarding::Allowed => Ok(Served::Forward(self.address_of(leader))),
                        Forwarding::Never => Err(self.error(NodeError::NotLeader { leader })),
                    };
                }
                // A leader without a valid lease (just elected, or cut off from
                // its quorum): the linearizable path decides.
            }
            _ => {}
        }
        match node.read_barrier(self.limits.request_timeout).await {
            Ok(_) => Ok(Served::Here(read(node.kv())?)),
            Err(NodeError::NotLeader { leader })
                if leader != 0 && leader != self.id && fwd == Forwarding::Allowed =>
            {
                Ok(Served::Forward(self.address_of(leader)))
            }
            Err(e) => Err(self.error(e)),
        }
    }
}

/// A read of a slot the group does not serve (any more, or not yet): the
/// same answer a write gets, so clients retry or re-route alike.
pub(crate) fn not_served(n: keel_storage::kv::NotServed) -> ErrorDetail {
    let why = if n.state.is_moving() {
        SlotUnavailable::Moving {
            slot: n.slot,
            state: n.state,
        }
    } else {
        SlotUnavailable::WrongGroup {
            slot: n.slot,
            state: n.state,
        }
    };
    super::slot_error(why)
}

fn expect_of(p: Option<&Precondition>) -> Expect {
    match p.and_then(|p| p.condition.as_ref()) {
        None => Expect::Any,
        Some(precondition::Condition::Version(v)) => Expect::Version(*v),
        Some(precondition::Condition::Absent(true)) => Expect::Absent,
        Some(precondition::Condition::Absent(false)) => Expect::Any,
    }
}

/// Where a read was served.
pub(crate) enum Served<T> {
    /// Here: the result.
    Here(T),
    /// By the leader at this address.
    Forward(String),
}
