//! The systems the load is driven against, behind one interface: a target hands
//! each client a connection that executes reads and writes.

mod etcd;
mod keel;

use bytes::Bytes;
use serde::Serialize;

pub use etcd::EtcdTarget;
pub use keel::KeelTarget;

use crate::workload::{Op, OpKind};

/// How fresh reads must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ReadConsistency {
    /// Linearizable: keel's ReadIndex; etcd's default Range (`serializable=false`).
    Linearizable,
    /// keel's leader-lease read; etcd has none, so it gets linearizable Range.
    Lease,
    /// Possibly stale, served locally: keel's stale read; etcd's serializable Range.
    Stale,
}

/// Why one operation failed: a short kind for counting, and the full message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct OpError {
    /// A short, stable name of the kind of failure (e.g. `unavailable`).
    pub kind: &'static str,
    /// What the client library said.
    pub message: String,
}

/// A system under load.
pub enum Target {
    /// A keel cluster, through keel's Rust client.
    Keel(KeelTarget),
    /// An etcd cluster, through etcd's v3 gRPC KV API.
    Etcd(EtcdTarget),
}

impl Target {
    /// The connection client number `client` uses. Clients share a target's
    /// connections round-robin.
    pub fn conn(&self, client: usize) -> Conn {
        match self {
            Target::Keel(t) => Conn::Keel(t.conn(client)),
            Target::Etcd(t) => Conn::Etcd(t.conn(client)),
        }
    }
}

/// One client's handle on a target.
#[derive(Clone)]
pub enum Conn {
    /// See [`Target::Keel`].
    Keel(keel::KeelConn),
    /// See [`Target::Etcd`].
    Etcd(etcd::EtcdConn),
}

impl Conn {
    /// Executes `op`; writes store `value`.
    pub async fn execute(&mut self, op: &Op, value: &Bytes) -> Result<(), OpError> {
        let key = op.key.clone();
        match (self, op.kind) {
            (Conn::Keel(c), OpKind::Read) => c.get(key).await,
            (Conn::Keel(c), OpKind::Write) => c.put(key, value.clone()).await,
            (Conn::Etcd(c), OpKind::Read) => c.get(key).await,
            (Conn::Etcd(c), OpKind::Write) => c.put(key, value.clone()).await,
        }
    }
}
