//! The clusters under test: started by the bench (and torn down after) or, for keel,
//! already running.

mod etcd;
mod keel;

pub use etcd::EtcdSystem;
pub use keel::{KeelSystem, LocalOptions};

use crate::target::{ReadConsistency, Target};
use crate::usage::UsageProbe;

/// A cluster under test.
pub enum System {
    /// keel.
    Keel(KeelSystem),
    /// etcd.
    Etcd(EtcdSystem),
}

impl System {
    /// `"keel"` or `"etcd"`.
    pub fn name(&self) -> &'static str {
        match self {
            System::Keel(_) => "keel",
            System::Etcd(_) => "etcd",
        }
    }

    /// Connections for the load.
    pub async fn target(
        &self,
        connections: usize,
        reads: ReadConsistency,
        keel_batching: bool,
    ) -> anyhow::Result<Target> {
        Ok(match self {
            System::Keel(s) => Target::Keel(s.target(connections, reads, keel_batching)?),
            System::Etcd(s) => Target::Etcd(s.target(connections, reads).await?),
        })
    }

    /// The processes to measure (none for a cluster the bench did not start).
    pub fn probe(&mut self) -> UsageProbe {
        match self {
            System::Keel(s) => s.probe(),
            System::Etcd(s) => s.probe(),
        }
    }

    /// A counter that grows with every election (keel: the highest term any member
    /// reports; etcd: the leader changes its members have seen), if it can be read.
    pub async fn election_counter(&self) -> Option<u64> {
        match self {
            System::Keel(s) => s.highest_term().await,
            System::Etcd(s) => s.leader_changes(),
        }
    }
}
