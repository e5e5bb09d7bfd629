//! Library side of the `keel` binary: pieces shared by the binary, its tests and
//! the benchmark.

pub mod local_cluster;
