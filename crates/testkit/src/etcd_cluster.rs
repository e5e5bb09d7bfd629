//! A cluster of real `etcd` processes on this machine, so that the benchmark can run
//! the same workload against etcd side by side with keel.
//!
//! Members run with etcd's defaults (fsync on every commit, like keel) except for
//! what a loopback cluster needs: addresses, data directories, the initial cluster,
//! and warn-level logging. Members are numbered 1..=n like keel's nodes.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::local_cluster::{free_ports, tail};
use crate::prometheus;

/// Where Debian's `etcd-server` package installs the server.
pub const DEBIAN_ETCD_BIN: &str = "/usr/bin/etcd";

/// How long one metrics or health probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The `etcd` binary: the first `etcd` on `PATH`, else Debian's location, if it
/// exists; `None` if etcd is not installed.
pub fn find_etcd() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("etcd"));
    on_path
        .chain(std::iter::once(PathBuf::from(DEBIAN_ETCD_BIN)))
        .find(|p| p.is_file())
}

/// What to start.
#[derive(Clone, Debug)]
pub struct EtcdSpec {
    /// Number of members (1..=n).
    pub members: usize,
    /// Where data directories and logs go.
    pub base_dir: PathBuf,
    /// The `etcd` binary to run.
    pub etcd_bin: PathBuf,
    /// Client (gRPC and HTTP) address of each member.
    pub client: Vec<SocketAddr>,
    /// Peer (Raft) address of each member.
    pub peer: Vec<SocketAddr>,
    /// Extra flags for every member.
    pub extra_args: Vec<String>,
}

impl EtcdSpec {
    /// `members` members on free ports of `ip`.
    pub fn on_free_ports(
        members: usize,
        ip: IpAddr,
        base_dir: PathBuf,
        etcd_bin: PathBuf,
    ) -> std::io::Result<Self> {
        let mut ports = free_ports(ip, 2 * members)?;
        let peer = ports.split_off(members);
        Ok(EtcdSpec {
            members,
            base_dir,
            etcd_bin,
            client: ports,
            peer,
            extra_args: Vec::new(),
        })
    }

    /// The `--initial-cluster` value: `m1=http://peer1,m2=http://peer2,...`.
    pub fn initial_cluster(&self) -> String {
        self.peer
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}=http://{a}", member_name(i + 1)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn member_name(id: usize) -> String {
    format!("m{id}")
}

/// A running etcd cluster. Dropping it kills every member.
#[derive(Debug)]
pub struct EtcdCluster {
    spec: EtcdSpec,
    children: Vec<Child>,
}

impl EtcdCluster {
    /// Starts every member (as a new cluster).
    pub fn start(spec: EtcdSpec) -> std::io::Result<Self> {
        std::fs::create_dir_all(&spec.base_dir)?;
        let mut cluster = EtcdCluster {
            spec,
            children: Vec::new(),
        };
        for id in 1..=cluster.spec.members {
            let child = cluster.spawn(id)?;
            cluster.children.push(child);
        }
        Ok(cluster)
    }

    fn spawn(&self, id: usize) -> std::io::Result<Child> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(id))?;
        let err = log.try_clone()?;
        let client = format!("http://{}", self.client_addr(id));
        let peer = format!("http://{}", self.spec.peer[id - 1]);
        Command::new(&self.spec.etcd_bin)
            .args(["--name", &member_name(id)])
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.spec.initial_cluster()])
            .args(["--initial-cluster-token", "keel-bench"])
            .args(["--initial-cluster-state", "new"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .args(["--log-level", "warn"])
            .args(&self.spec.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
    }

    /// The cluster's specification.
    pub fn spec(&self) -> &EtcdSpec {
        &self.spec
    }

    /// Client addresses of all members, in id order.
    pub fn endpoints(&self) -> Vec<String> {
        self.spec.client.iter().map(ToString::to_string).collect()
    }

    /// Client address of member `id`.
    pub fn client_addr(&self, id: usize) -> SocketAddr {
        self.spec.client[id - 1]
    }

    /// Member `id`'s data directory.
    pub fn data_dir(&self, id: usize) -> PathBuf {
        self.spec.base_dir.join(format!("etcd-{id}"))
    }

    /// Member `id`'s process log.
    pub fn log_path(&self, id: usize) -> PathBuf {
        self.spec.base_dir.join(format!("etcd-{id}.log"))
    }

    /// The last `n` lines of member `id`'s log, for failure reports.
    pub fn log_tail(&self, id: usize, n: usize) -> String {
        tail(&self.log_path(id), n)
    }

    /// Process id of member `id`, while it runs.
    pub fn pid(&mut self, id: usize) -> Option<u32> {
        let child = self.children.get_mut(id.checked_sub(1)?)?;
        matches!(child.try_wait(), Ok(None)).then(|| child.id())
    }

    /// One sample from member `id`'s `/metrics` page (`None` if the page lacks it).
    pub fn metric(&self, id: usize, name: &str) -> std::io::Result<Option<f64>> {
        let page = prometheus::http_get(self.client_addr(id), "/metrics", PROBE_TIMEOUT)?;
        Ok(prometheus::sample(&page, name))
    }

    /// The member that reports itself leader, if any answers so.
    pub fn leader(&self) -> Option<usize> {
        (1..=self.spec.members)
            .find(|&id| matches!(self.metric(id, "etcd_server_is_leader"), Ok(Some(v)) if v == 1.0))
    }

    /// Waits until every member answers `/health` with true and one of them leads;
    /// returns the leader's id. Fails with the members' log tails after `timeout`.
    pub fn wait_ready(&mut self, timeout: Duration) -> std::io::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(id) = self.leader()
                && (1..=self.spec.members).all(|m| self.healthy(m))
            {
                return Ok(id);
            }
            if let Some(dead) = (1..=self.spec.members).find(|&m| self.pid(m).is_none()) {
                return Err(self.failure(format!("etcd member {dead} exited")));
            }
            if Instant::now() >= deadline {
                return Err(self.failure(format!("etcd cluster not ready after {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn healthy(&self, id: usize) -> bool {
        prometheus::http_get(self.client_addr(id), "/health", PROBE_TIMEOUT)
            .is_ok_and(|body| body.contains("\"health\":\"true\""))
    }

    fn failure(&self, what: String) -> std::io::Error {
        let logs: String = (1..=self.spec.members)
            .map(|id| format!("\n--- etcd member {id} log ---\n{}", self.log_tail(id, 10)))
            .collect();
        std::io::Error::other(format!("{what}{logs}"))
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn spec_names_members_and_peers() {
        let spec = EtcdSpec::on_free_ports(
            3,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            PathBuf::from("/nonexistent"),
            PathBuf::from(DEBIAN_ETCD_BIN),
        )
        .expect("free ports");
        assert_eq!(spec.client.len(), 3);
        assert_eq!(spec.peer.len(), 3);
        let initial = spec.initial_cluster();
        assert!(initial.starts_with(&format!("m1=http://{}", spec.peer[0])));
        assert_eq!(initial.matches(",m").count(), 2);
    }
}
