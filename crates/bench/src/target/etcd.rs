//! etcd as a target, through its v3 gRPC KV API (`Put`, and `Range` on one key).

use std::time::Duration;

use bytes::Bytes;
use keel_proto::etcd::kv_client::KvClient;
use keel_proto::etcd::{PutRequest, RangeRequest};
use tonic::transport::{Channel, Endpoint};

use super::{OpError, ReadConsistency};

/// Longest wait for one request, as keel's client allows one attempt.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// An etcd member (the leader, so that no request pays for forwarding) with a
/// fixed number of HTTP/2 connections.
pub struct EtcdTarget {
    clients: Vec<KvClient<Channel>>,
    serializable: bool,
}

impl EtcdTarget {
    /// Opens `connections` connections to the member at `endpoint` (`host:port`).
    pub async fn connect(
        endpoint: &str,
        connections: usize,
        reads: ReadConsistency,
    ) -> Result<Self, tonic::transport::Error> {
        let endpoint = Endpoint::from_shared(format!("http://{endpoint}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .tcp_nodelay(true);
        let mut clients = Vec::new();
        for _ in 0..connections.max(1) {
            clients.push(KvClient::new(endpoint.connect().await?));
        }
        Ok(EtcdTarget {
            clients,
            // etcd has no lease read: anything but `stale` is a linearizable Range.
            serializable: reads == ReadConsistency::Stale,
        })
    }

    /// The handle of client number `client`.
    pub fn conn(&self, client: usize) -> EtcdConn {
        EtcdConn {
            client: self.clients[client % self.clients.len()].clone(),
            serializable: self.serializable,
        }
    }
}

/// One bench client's handle on etcd.
#[derive(Clone)]
pub struct EtcdConn {
    client: KvClient<Channel>,
    serializable: bool,
}

impl EtcdConn {
    /// Reads `key` (a single-key Range).
    pub async fn get(&mut self, key: Bytes) -> Result<(), OpError> {
        let request = RangeRequest {
            key,
            serializable: self.serializable,
            ..RangeRequest::default()
        };
        self.client.range(request).await.map(drop).map_err(op_error)
    }

    /// Writes `value` to `key`.
    pub async fn put(&mut self, key: Bytes, value: Bytes) -> Result<(), OpError> {
        let request = PutRequest {
            key,
            value,
            lease: 0,
        };
        self.client.put(request).await.map(drop).map_err(op_error)
    }
}

fn op_error(status: tonic::Status) -> OpError {
    OpError {
        kind: code_name(status.code()),
        message: status.message().to_owned(),
    }
}

/// gRPC status codes in snake case.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_snake_case_kinds() {
        let e = op_error(tonic::Status::deadline_exceeded(
            "context deadline exceeded",
        ));
        assert_eq!(e.kind, "deadline_exceeded");
        assert_eq!(e.message, "context deadline exceeded");
        assert_eq!(code_name(tonic::Code::Unavailable), "unavailable");
    }
}
