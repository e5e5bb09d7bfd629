//! Real-process clusters on one machine, shared by `keel demo`, the cluster tests,
//! the benchmark and the chaos harness.

pub mod etcd_cluster;
pub mod local_cluster;
pub mod proc_usage;
pub mod prometheus;
