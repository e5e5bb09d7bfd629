//! keel under test: a local cluster of `keel serve` processes that the bench starts
//! (and stops), or a cluster already running at given endpoints.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use keel_client::{Client, ClientConfig};
use keel_testkit::local_cluster::{ClusterSpec, LocalCluster};

use crate::target::{KeelTarget, ReadConsistency};
use crate::usage::UsageProbe;

/// How long a new cluster may take to elect a leader.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(20);
/// Deadline of one status call.
const STATUS_DEADLINE: Duration = Duration::from_millis(500);

/// How to start a local keel cluster.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// Nodes.
    pub nodes: u64,
    /// The `keel` binary.
    pub bin: PathBuf,
    /// Parent of the nodes' data directories and logs.
    pub base_dir: PathBuf,
    /// Whether nodes write event logs.
    pub event_logs: bool,
    /// Extra flags for every `keel serve`.
    pub extra_args: Vec<String>,
}

/// A keel cluster under test.
pub struct KeelSystem {
    endpoints: Vec<String>,
    status: Client,
    /// Present when the bench started the cluster; dropping it stops the nodes.
    local: Option<LocalCluster>,
}

impl KeelSystem {
    /// Starts a local cluster as `options` say and waits for a leader.
    pub async fn start_local(options: LocalOptions) -> anyhow::Result<Self> {
        let mut spec = ClusterSpec::on_free_ports(
            options.nodes,
            std::net::Ipv4Addr::LOCALHOST.into(),
            options.base_dir,
            options.bin.clone(),
        )
        .context("cannot find free ports")?;
        spec.extra_args = options.extra_args;
        let cluster = LocalCluster::start_with_event_logs(spec, options.event_logs)
            .with_context(|| format!("cannot start {}", options.bin.display()))?;
        let system = KeelSystem::new(cluster.endpoints(), Some(cluster))?;
        system.wait_for_leader().await?;
        Ok(system)
    }

    /// A cluster already running at `endpoints`; waits for a leader.
    pub async fn external(endpoints: Vec<String>) -> anyhow::Result<Self> {
        let system = KeelSystem::new(endpoints, None)?;
        system.wait_for_leader().await?;
        Ok(system)
    }

    fn new(endpoints: Vec<String>, local: Option<LocalCluster>) -> anyhow::Result<Self> {
        let status = Client::new(ClientConfig {
            deadline: STATUS_DEADLINE,
            request_timeout: STATUS_DEADLINE,
            connect_timeout: STATUS_DEADLINE,
            ..ClientConfig::with_endpoints(endpoints.iter().cloned())
        })
        .context("invalid keel endpoints")?;
        Ok(KeelSystem {
            endpoints,
            status,
            local,
        })
    }

    async fn wait_for_leader(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + ELECTION_TIMEOUT;
        while Instant::now() < deadline {
            for ep in &self.endpoints {
                if let Ok(s) = self.status.status(ep).await
                    && s.role == "leader"
                {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let logs: String = match &self.local {
            Some(c) => (1..=c.spec().nodes)
                .map(|id| format!("\n--- keel node {id} log ---\n{}", c.log_tail(id, 10)))
                .collect(),
            None => String::new(),
        };
        anyhow::bail!(
            "no keel leader within {ELECTION_TIMEOUT:?} at {}{logs}",
            self.endpoints.join(",")
        )
    }

    /// Client handles for the load.
    pub fn target(
        &self,
        connections: usize,
        reads: ReadConsistency,
        batching: bool,
    ) -> anyhow::Result<KeelTarget> {
        KeelTarget::new(&self.endpoints, connections, reads, batching)
            .context("cannot create keel clients")
    }

    /// The nodes' processes, if the bench started them.
    pub fn probe(&mut self) -> UsageProbe {
        let Some(cluster) = &mut self.local else {
            return UsageProbe::default();
        };
        let nodes = (1..=cluster.spec().nodes)
            .filter_map(|id| cluster.pid(id).map(|pid| (id, pid)))
            .collect();
        UsageProbe::new(nodes)
    }

    /// The highest term any reachable member reports.
    pub async fn highest_term(&self) -> Option<u64> {
        let mut highest = None;
        for ep in &self.endpoints {
            if let Ok(s) = self.status.status(ep).await {
                highest = highest.max(Some(s.term));
            }
        }
        highest
    }
}
