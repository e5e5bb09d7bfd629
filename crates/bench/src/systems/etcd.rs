//! etcd under test: a cluster of `etcd` processes on loopback that the bench starts
//! and stops, with etcd's default durability (an fsync per commit).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use keel_testkit::etcd_cluster::{EtcdCluster, EtcdSpec};

use crate::target::{EtcdTarget, ReadConsistency};
use crate::usage::UsageProbe;

/// How long a new cluster may take to become healthy and elect a leader.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// An etcd cluster the bench started.
pub struct EtcdSystem {
    cluster: EtcdCluster,
}

impl EtcdSystem {
    /// Starts `members` members of `etcd_bin` on free loopback ports, with their data
    /// under `base_dir`, and waits until they are healthy and one leads.
    pub async fn start(members: usize, etcd_bin: &Path, base_dir: PathBuf) -> anyhow::Result<Self> {
        let spec = EtcdSpec::on_free_ports(
            members,
            std::net::Ipv4Addr::LOCALHOST.into(),
            base_dir,
            etcd_bin.to_path_buf(),
        )
        .context("cannot find free ports")?;
        let cluster = EtcdCluster::start(spec)
            .with_context(|| format!("cannot start {}", etcd_bin.display()))?;
        // Probing is blocking socket I/O: keep it off the async workers.
        let cluster = tokio::task::spawn_blocking(move || {
            let mut cluster = cluster;
            cluster.wait_ready(READY_TIMEOUT).map(|_| cluster)
        })
        .await
        .context("etcd readiness probe failed")??;
        Ok(EtcdSystem { cluster })
    }

    /// Connections to the current leader, so that no request pays for a follower's
    /// forwarding hop (keel's client, too, sends everything to the leader).
    pub async fn target(
        &self,
        connections: usize,
        reads: ReadConsistency,
    ) -> anyhow::Result<EtcdTarget> {
        let leader = self.cluster.leader().context("etcd has no leader")?;
        let endpoint = self.cluster.client_addr(leader).to_string();
        EtcdTarget::connect(&endpoint, connections, reads)
            .await
            .with_context(|| format!("cannot connect to etcd at {endpoint}"))
    }

    /// The members' processes.
    pub fn probe(&mut self) -> UsageProbe {
        let members = self.cluster.spec().members;
        let nodes = (1..=members)
            .filter_map(|id| self.cluster.pid(id).map(|pid| (id as u64, pid)))
            .collect();
        UsageProbe::new(nodes)
    }

    /// The most leader changes any member has seen. (Blocking loopback probes of a
    /// few milliseconds, made only between runs.)
    pub fn leader_changes(&self) -> Option<u64> {
        let members = self.cluster.spec().members;
        (1..=members)
            .filter_map(|id| {
                self.cluster
                    .metric(id, "etcd_server_leader_changes_seen_total")
                    .ok()
                    .flatten()
            })
            .map(|v| v as u64)
            .max()
    }
}
