//! keel as a target, through `keel_client` (which follows the leader and retries
//! what is safe to retry, exactly as an application would).

use bytes::Bytes;
use keel_client::{Client, ClientConfig, Error, ReadMode};

use super::{OpError, ReadConsistency};

/// A keel cluster with a fixed number of independent client handles (each with
/// its own connections).
pub struct KeelTarget {
    clients: Vec<Client>,
    mode: ReadMode,
}

impl KeelTarget {
    /// Handles for the cluster at `endpoints`: `connections` independent clients,
    /// each opening one connection per member it talks to, batching concurrent
    /// operations on it if `batching`.
    pub fn new(
        endpoints: &[String],
        connections: usize,
        reads: ReadConsistency,
        batching: bool,
    ) -> Result<Self, Error> {
        Self::with_sessions(endpoints, connections, reads, batching, true)
    }

    /// As [`KeelTarget::new`], with client sessions on or off (`keel bench move`
    /// runs without, as it was measured before sessions worked in every group).
    pub fn with_sessions(
        endpoints: &[String],
        connections: usize,
        reads: ReadConsistency,
        batching: bool,
        sessions: bool,
    ) -> Result<Self, Error> {
        let clients = (0..connections.max(1))
            .map(|_| {
                Client::new(ClientConfig {
                    batching,
                    sessions,
                    ..ClientConfig::with_endpoints(endpoints.iter().cloned())
                })
            })
            .collect::<Result<_, _>>()?;
        let mode = match reads {
            ReadConsistency::Linearizable => ReadMode::Linearizable,
            ReadConsistency::Lease => ReadMode::Lease,
            ReadConsistency::Stale => ReadMode::Stale,
        };
        Ok(KeelTarget { clients, mode })
    }

    /// The handle of client number `client`.
    pub fn conn(&self, client: usize) -> KeelConn {
        KeelConn {
            client: self.clients[client % self.clients.len()].clone(),
            mode: self.mode,
        }
    }

    /// The first client handle, for setup and status calls.
    pub fn client(&self) -> &Client {
        &self.clients[0]
    }
}

/// One bench client's handle on keel.
#[derive(Clone)]
pub struct KeelConn {
    client: Client,
    mode: ReadMode,
}

impl KeelConn {
    /// Reads `key`.
    pub async fn get(&mut self, key: Bytes) -> Result<(), OpError> {
        self.client
            .get(key, self.mode)
            .await
            .map(drop)
            .map_err(op_error)
    }

    /// Writes `value` to `key`.
    pub async fn put(&mut self, key: Bytes, value: Bytes) -> Result<(), OpError> {
        self.client
            .put(key, value)
            .await
            .map(drop)
            .map_err(op_error)
    }
}

fn op_error(e: Error) -> OpError {
    OpError {
        kind: kind(&e),
        message: e.to_string(),
    }
}

/// A short name for each of the client's error variants.
fn kind(e: &Error) -> &'static str {
    match e {
        Error::Config(_) => "config",
        Error::Conflict { .. } => "conflict",
        Error::InvalidArgument(_) => "invalid_argument",
        Error::Refused(_) => "refused",
        Error::Rejected { .. } => "rejected",
        Error::Unavailable { .. } => "unavailable",
        Error::Overloaded { .. } => "overloaded",
        Error::DiskFull { .. } => "disk_full",
        Error::OutcomeUnknown { .. } => "outcome_unknown",
        Error::SessionExpired(_) => "session_expired",
        Error::Internal(_) => "internal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_are_distinct_and_stable() {
        let errors = [
            Error::Unavailable {
                attempts: 1,
                last_error: "x".into(),
            },
            Error::Overloaded {
                attempts: 1,
                message: "x".into(),
            },
            Error::OutcomeUnknown { reason: "x".into() },
            Error::Internal("x".into()),
            Error::InvalidArgument("x".into()),
            Error::SessionExpired("x".into()),
        ];
        let kinds: Vec<&str> = errors.iter().map(kind).collect();
        assert_eq!(
            kinds,
            [
                "unavailable",
                "overloaded",
                "outcome_unknown",
                "internal",
                "invalid_argument",
                "session_expired"
            ]
        );
        let e = op_error(Error::Internal("disk".into()));
        assert!(e.message.contains("disk"));
    }
}
