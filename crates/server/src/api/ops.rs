//! The key-value operations, shared by gRPC and HTTP. Inputs are validated before
//! anything is proposed; writes return their revision; reads are linearizable
//! unless the request asks otherwise.

use keel_proto::error::ErrorDetail;
use keel_proto::v1::{
    DeleteRequest, DeleteResponse, GetRequest, GetResponse, KeyValue, Precondition, PutRequest,
    PutResponse, ReadMode, ScanRequest, ScanResponse, precondition,
};
use keel_storage::command::{Command, Envelope, Expect};
use keel_storage::kv::ApplyOutcome;

use super::forward::forwarded_error;
use super::{ApiContext, sessions, validate};
use crate::config::DefaultReadMode;
use crate::node::NodeError;

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
        if let Barrier::Forward(leader) = self.read_barrier(req.read_mode(), fwd).await? {
            let mut client = self.forwarder.client(&leader)?;
            return client
                .get(req)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| forwarded_error(&s, false));
        }
        let revision = self.node.kv().applied_index();
        let kv = self
            .node
            .kv()
            .get(&req.key)
            .map_err(|e| ErrorDetail::internal(format!("state machine read failed: {e}")))?
            .map(|(value, version)| KeyValue {
                key: req.key.clone(),
                value,
                version,
            });
        Ok(GetResponse { kv, revision })
    }

    pub(crate) async fn scan(
        &self,
        req: ScanRequest,
        fwd: Forwarding,
    ) -> Result<ScanResponse, ErrorDetail> {
        validate::prefix(&req.prefix, "prefix")?;
        validate::prefix(&req.start_after, "start_after key")?;
        if let Barrier::Forward(leader) = self.read_barrier(req.read_mode(), fwd).await? {
            let mut client = self.forwarder.client(&leader)?;
            return client
                .scan(req)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| forwarded_error(&s, false));
        }
        let limit = match req.limit {
            0 => DEFAULT_SCAN_LIMIT,
            n => n.min(self.limits.max_scan_limit),
        } as usize;
        let start_after = (!req.start_after.is_empty()).then_some(&req.start_after[..]);
        let revision = self.node.kv().applied_index();
        let (items, more) = self
            .node
            .kv()
            .scan(&req.prefix, start_after, limit)
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
    }

    pub(crate) async fn put(
        &self,
        req: PutRequest,
        fwd: Forwarding,
    ) -> Result<PutResponse, ErrorDetail> {
        validate::key(&req.key)?;
        validate::value(&req.value, self.limits.max_value_bytes)?;
        let cmd = Envelope {
            session: sessions::header(&self.limits, req.session.as_ref())?,
            command: Command::Put {
                key: req.key.clone(),
                value: req.value.clone(),
                expect: expect_of(req.precondition.as_ref()),
            },
        };
        match self.propose(cmd).await {
            Ok(ApplyOutcome::Put { revision }) => Ok(PutResponse { revision }),
            Ok(ApplyOutcome::Conflict { current_version }) => {
                Err(ErrorDetail::conflict(current_version.unwrap_or(0)))
            }
            Ok(ApplyOutcome::SessionRejected(why)) => Err(sessions::rejection(why)),
            Ok(other) => Err(ErrorDetail::internal(format!(
                "unexpected outcome of a put: {other:?}"
            ))),
            Err(NodeError::NotLeader { leader }) if leader != 0 && fwd == Forwarding::Allowed => {
                let mut client = self.forwarder.client(&self.address_of(leader))?;
                client
                    .put(req)
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|s| forwarded_error(&s, true))
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
        let cmd = Envelope {
            session: sessions::header(&self.limits, req.session.as_ref())?,
            command: Command::Delete {
                key: req.key.clone(),
                expect: expect_of(req.precondition.as_ref()),
            },
        };
        match self.propose(cmd).await {
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
                let mut client = self.forwarder.client(&self.address_of(leader))?;
                client
                    .delete(req)
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|s| forwarded_error(&s, true))
            }
            Err(e) => Err(self.error(e)),
        }
    }

    async fn propose(&self, cmd: Envelope) -> Result<ApplyOutcome, NodeError> {
        let outcome = self
            .node
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

    /// Makes a local read safe for `mode`, or says where to forward it.
    async fn read_barrier(&self, mode: ReadMode, fwd: Forwarding) -> Result<Barrier, ErrorDetail> {
        let linearizable = match mode {
            ReadMode::Stale => false,
            // Leases arrive with their own issue; until then a lease read takes the
            // linearizable path, which is never less safe.
            ReadMode::Linearizable | ReadMode::Lease => true,
            ReadMode::Default => self.limits.default_read_mode == DefaultReadMode::Linearizable,
        };
        if !linearizable {
            return Ok(Barrier::Local);
        }
        match self.node.read_barrier(self.limits.request_timeout).await {
            Ok(_) => Ok(Barrier::Local),
            Err(NodeError::NotLeader { leader })
                if leader != 0 && leader != self.id && fwd == Forwarding::Allowed =>
            {
                Ok(Barrier::Forward(self.address_of(leader)))
            }
            Err(e) => Err(self.error(e)),
        }
    }
}

fn expect_of(p: Option<&Precondition>) -> Expect {
    match p.and_then(|p| p.condition.as_ref()) {
        None => Expect::Any,
        Some(precondition::Condition::Version(v)) => Expect::Version(*v),
        Some(precondition::Condition::Absent(true)) => Expect::Absent,
        Some(precondition::Condition::Absent(false)) => Expect::Any,
    }
}

/// Where a read is served.
enum Barrier {
    /// Here, now.
    Local,
    /// By the leader at this address.
    Forward(String),
}
