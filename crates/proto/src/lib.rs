//! keel's protobuf messages and gRPC services.
//!
//! Generated at build time from `proto/` by `protox` and `tonic-prost-build`.

#![allow(missing_docs)] // generated code documents what the .proto files document

/// The client API (`keel.v1.Kv`, `keel.v1.Cluster`).
pub mod v1 {
    tonic::include_proto!("keel.v1");
}

/// The node-to-node transport (`keel.raft.v1.Raft`).
pub mod raft {
    tonic::include_proto!("keel.raft.v1");
}

/// The subset of etcd's v3 API the benchmark uses.
pub mod etcd {
    tonic::include_proto!("etcdserverpb");
}
