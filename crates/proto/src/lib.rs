//! keel's protobuf messages and gRPC services, and the helpers that sit next to them.
//!
//! The message and service types are generated at build time from `proto/` by
//! `protox` and `tonic-prost-build`. Hand-written modules add:
//! - [`convert`]: lossless conversion between the consensus core's [`keel_raft::Message`]
//!   and the wire's [`raft::RaftMessage`], rejecting malformed input;
//! - [`error`]: keel's error convention (a `tonic::Status` carrying a
//!   [`v1::ErrorDetail`] in the `keel-error-bin` metadata entry), shared by the server
//!   that builds such statuses and the client that reads them.
//! - `TxnRequest::keys`: the keys a transaction names, which the server routes
//!   by and the client picks a group's leader by.

pub mod convert;
pub mod error;
mod txn;

/// The client API (`keel.v1.Kv`, `keel.v1.Cluster`).
#[allow(missing_docs)] // generated code documents what the .proto files document
pub mod v1 {
    tonic::include_proto!("keel.v1");
}

/// The node-to-node transport (`keel.raft.v1.Raft`).
#[allow(missing_docs)] // generated code documents what the .proto files document
pub mod raft {
    tonic::include_proto!("keel.raft.v1");
}

/// The subset of etcd's v3 API the benchmark uses.
#[allow(missing_docs)] // generated code documents what the .proto files document
pub mod etcd {
    tonic::include_proto!("etcdserverpb");
}
