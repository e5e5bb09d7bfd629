//! Real-process clusters on one machine, shared by `keel demo`, the cluster tests,
//! the benchmark and the chaos harness.

pub mod local_cluster;
