//! A cluster of real `keel serve` processes on this machine, for `keel demo`, the
//! cluster tests and the benchmark. Each node gets its own data directory, log file
//! and event log under one base directory; nodes can be killed (SIGKILL), stopped
//! (SIGTERM), paused (SIGSTOP) and restarted from their data.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Number of nodes (ids 1..=n).
    pub nodes: u64,
    /// Where data directories and logs go.
    pub base_dir: PathBuf,
    /// The `keel` binary to run.
    pub keel_bin: PathBuf,
    /// gRPC address of each node.
    pub grpc: Vec<SocketAddr>,
    /// HTTP address of each node.
    pub http: Vec<SocketAddr>,
    /// Redis protocol address of each node; empty: not served
    /// ([`ClusterSpec::with_redis`]).
    pub redis: Vec<SocketAddr>,
    /// Extra flags for every `keel serve`; `{id}` in them becomes the node's id
    /// (e.g. `--tls-cert`, `certs/node-{id}.pem`).
    pub extra_args: Vec<String>,
}

impl ClusterSpec {
    /// `nodes` nodes on free ports of `ip` (any loopback address, e.g. a distinct
    /// 127.x.y.z per test so parallel tests never collide).
    pub fn on_free_ports(
        nodes: u64,
        ip: IpAddr,
        base_dir: PathBuf,
        keel_bin: PathBuf,
    ) -> std::io::Result<Self> {
        // One call for both, so no HTTP port repeats a gRPC port (each call's
        // ports are released before the next call: a repeat made node 2's HTTP
        // listener collide with node 1's gRPC one in CI).
        let mut ports = free_ports(ip, 2 * nodes as usize)?;
        let http = ports.split_off(nodes as usize);
        let grpc = ports;
        Ok(ClusterSpec {
            nodes,
            base_dir,
            keel_bin,
            grpc,
            http,
            redis: Vec::new(),
            extra_args: Vec::new(),
        })
    }

    /// Gives every node a free Redis protocol port on the same address as its
    /// gRPC port (`keel serve --redis`).
    pub fn with_redis(mut self) -> std::io::Result<Self> {
        let ip = self.grpc[0].ip();
        self.redis = free_ports_except(ip, self.nodes as usize, &self.taken())?;
        Ok(self)
    }

    /// Every port the spec gives its nodes.
    fn taken(&self) -> Vec<SocketAddr> {
        self.grpc
            .iter()
            .chain(&self.http)
            .chain(&self.redis)
            .copied()
            .collect()
    }

    /// The `--initial-cluster` value.
    pub fn initial_cluster(&self) -> String {
        self.grpc
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Ports the OS reports free on `ip` right now (bound and released at once; a
/// collision later is possible but unlikely, and each node reports a clear bind
/// error if it happens).
pub fn free_ports(ip: IpAddr, n: usize) -> std::io::Result<Vec<SocketAddr>> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind(SocketAddr::new(ip, 0)))
        .collect::<Result<_, _>>()?;
    listeners.iter().map(TcpListener::local_addr).collect()
}

/// `n` ports the OS reports free on `ip`, none of them in `taken`: ports
/// released earlier may be handed out again, so enough are asked for to skip
/// every one of those.
pub fn free_ports_except(
    ip: IpAddr,
    n: usize,
    taken: &[SocketAddr],
) -> std::io::Result<Vec<SocketAddr>> {
    let mut ports = free_ports(ip, n + taken.len())?;
    ports.retain(|a| !taken.contains(a));
    ports.truncate(n);
    Ok(ports)
}

/// Whether every address can be bound now.
pub fn ports_free(addrs: &[SocketAddr]) -> bool {
    let held: Vec<_> = addrs.iter().map(TcpListener::bind).collect();
    held.iter().all(Result::is_ok)
}

/// A running local cluster. Dropping it kills every node.
#[derive(Debug)]
pub struct LocalCluster {
    spec: ClusterSpec,
    children: BTreeMap<u64, Child>,
    /// Whether nodes get `--event-log`.
    event_logs: bool,
    /// Nodes added after the start: they join (`--join ...` and their own flags)
    /// rather than bootstrap.
    joiners: BTreeMap<u64, Vec<String>>,
}

impl LocalCluster {
    /// Starts every node.
    pub fn start(spec: ClusterSpec) -> std::io::Result<Self> {
        Self::start_with_event_logs(spec, true)
    }

    /// Starts every node, with or without `--event-log`. The event log records every
    /// committed entry, which costs a formatted line and a write per batch; a
    /// benchmark leaves it off, as a production node would.
    pub fn start_with_event_logs(spec: ClusterSpec, event_logs: bool) -> std::io::Result<Self> {
        let mut c = LocalCluster {
            spec,
            children: BTreeMap::new(),
            event_logs,
            joiners: BTreeMap::new(),
        };
        for id in 1..=c.spec.nodes {
            c.spawn(id)?;
        }
        Ok(c)
    }

    /// The cluster's specification.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// gRPC endpoints of all nodes, in id order.
    pub fn endpoints(&self) -> Vec<String> {
        self.spec.grpc.iter().map(ToString::to_string).collect()
    }

    /// gRPC address of node `id`.
    pub fn grpc_addr(&self, id: u64) -> SocketAddr {
        self.spec.grpc[(id - 1) as usize]
    }

    /// HTTP address of node `id`.
    pub fn http_addr(&self, id: u64) -> SocketAddr {
        self.spec.http[(id - 1) as usize]
    }

    /// Redis protocol address of node `id` (the cluster must have been started
    /// with [`ClusterSpec::with_redis`]).
    pub fn redis_addr(&self, id: u64) -> SocketAddr {
        self.spec.redis[(id - 1) as usize]
    }

    /// Whether the nodes serve the Redis protocol.
    pub fn has_redis(&self) -> bool {
        !self.spec.redis.is_empty()
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.spec.base_dir.join(format!("node-{id}"))
    }

    /// Node `id`'s process log (stdout and stderr).
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.spec.base_dir.join(format!("node-{id}.log"))
    }

    /// Node `id`'s event log.
    pub fn event_log_path(&self, id: u64) -> PathBuf {
        self.spec.base_dir.join(format!("node-{id}.events"))
    }

    /// Starts node `id` (first start or restart from its data directory).
    pub fn spawn(&mut self, id: u64) -> std::io::Result<()> {
        if self.is_running(id) {
            return Ok(());
        }
        std::fs::create_dir_all(&self.spec.base_dir)?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(id))?;
        let err = log.try_clone()?;
        let mut command = Command::new(&self.spec.keel_bin);
        command
            .arg("serve")
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(["--listen", &self.grpc_addr(id).to_string()])
            .args(["--http", &self.http_addr(id).to_string()]);
        if !self.spec.redis.is_empty() {
            command.args(["--redis", &self.redis_addr(id).to_string()]);
        }
        match self.joiners.get(&id) {
            Some(args) => command.args(args),
            None => command.args(["--initial-cluster", &self.initial_cluster()]),
        };
        if self.event_logs {
            command.arg("--event-log").arg(self.event_log_path(id));
        }
        let id_text = id.to_string();
        let child = command
            .args(
                self.spec
                    .extra_args
                    .iter()
                    .map(|a| a.replace("{id}", &id_text)),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()?;
        self.children.insert(id, child);
        Ok(())
    }

    /// Adds a node with a fresh id and free ports, started with
    /// `--join <via's gRPC address>` and `extra` flags (e.g. `--learner`), and
    /// returns its id. The cluster's existing members are not told: the node asks
    /// to be added itself. Restarts keep the same flags (a node whose data
    /// directory is initialised ignores `--join`).
    pub fn add_node(&mut self, via: u64, extra: &[&str]) -> std::io::Result<u64> {
        let ip = self.spec.grpc[0].ip();
        let ports = free_ports_except(ip, 3, &self.spec.taken())?;
        self.spec.grpc.push(ports[0]);
        self.spec.http.push(ports[1]);
        if !self.spec.redis.is_empty() {
            self.spec.redis.push(ports[2]);
        }
        self.spec.nodes += 1;
        let id = self.spec.nodes;
        let mut args = vec!["--join".to_string(), self.grpc_addr(via).to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        self.joiners.insert(id, args);
        self.spawn(id)?;
        Ok(id)
    }

    /// The `--initial-cluster` value of the bootstrap members (not the joiners).
    fn initial_cluster(&self) -> String {
        let bootstrap = self.spec.nodes as usize - self.joiners.len();
        self.spec.grpc[..bootstrap]
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether node `id`'s process is alive.
    pub fn is_running(&mut self, id: u64) -> bool {
        match self.children.get_mut(&id) {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Process id of node `id`, while it runs (for reading its CPU time and memory
    /// from `/proc`).
    pub fn pid(&mut self, id: u64) -> Option<u32> {
        let child = self.children.get_mut(&id)?;
        matches!(child.try_wait(), Ok(None)).then(|| child.id())
    }

    /// Ids of running nodes.
    pub fn running(&mut self) -> Vec<u64> {
        (1..=self.spec.nodes)
            .filter(|&id| self.is_running(id))
            .collect()
    }

    /// SIGKILL: the node stops at once, losing nothing it had fsynced.
    pub fn kill(&mut self, id: u64) -> std::io::Result<()> {
        if let Some(mut c) = self.children.remove(&id) {
            let _ = c.kill();
            c.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then wait up to `timeout` for a clean exit (SIGKILL after).
    pub fn stop(
        &mut self,
        id: u64,
        timeout: Duration,
    ) -> std::io::Result<Option<std::process::ExitStatus>> {
        let Some(mut c) = self.children.remove(&id) else {
            return Ok(None);
        };
        signal(&c, Signal::TERM);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = c.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                return c.wait().map(Some);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGSTOP: the process freezes (as in a long GC pause) until [`Self::resume`].
    /// Returns once every thread of it is stopped (up to a second): `kill`
    /// returns before the signal has reached a running thread, and a test that
    /// acts on "node 2 is frozen" must not race the node's last moments.
    pub fn pause(&mut self, id: u64) {
        if let Some(c) = self.children.get(&id) {
            signal(c, Signal::STOP);
            let deadline = Instant::now() + Duration::from_secs(1);
            while !all_threads_stopped(c.id()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&mut self, id: u64) {
        if let Some(c) = self.children.get(&id) {
            signal(c, Signal::CONT);
        }
    }

    /// Kills node `id` and starts it again from its data directory.
    pub fn restart(&mut self, id: u64) -> std::io::Result<()> {
        self.kill(id)?;
        self.spawn(id)
    }

    /// The last `n` lines of node `id`'s process log, for failure reports.
    pub fn log_tail(&self, id: u64, n: usize) -> String {
        tail(&self.log_path(id), n)
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.children) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn signal(c: &Child, sig: Signal) {
    if let Some(pid) = i32::try_from(c.id()).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, sig);
    }
}

/// Whether every thread of process `pid` is in the stopped state (`T` in
/// `/proc/PID/task/TID/stat`). A process that is gone counts as stopped.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).map_or(true, |stat| {
            // The state follows the command name, which is in parentheses.
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next())
                .is_none_or(|state| state == 'T' || state == 't')
        })
    })
}

/// The last `n` lines of a text file ("" if unreadable).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::Ipv4Addr;

    use super::*;

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn a_stopped_process_reads_as_stopped_and_a_running_one_does_not() {
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
        assert!(!all_threads_stopped(child.id()));
        signal(&child, Signal::STOP);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !all_threads_stopped(child.id()) {
            assert!(Instant::now() < deadline, "sleep never showed as stopped");
            std::thread::sleep(Duration::from_millis(1));
        }
        signal(&child, Signal::CONT);
        let deadline = Instant::now() + Duration::from_secs(5);
        while all_threads_stopped(child.id()) {
            assert!(Instant::now() < deadline, "sleep stayed stopped");
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn a_specs_ports_are_all_distinct() {
        for _ in 0..20 {
            let spec = ClusterSpec::on_free_ports(5, IP, "/tmp/x".into(), "keel".into())
                .expect("ports")
                .with_redis()
                .expect("redis ports");
            let taken = spec.taken();
            assert_eq!(taken.len(), 15);
            assert_eq!(taken.iter().collect::<BTreeSet<_>>().len(), 15, "{taken:?}");
        }
    }

    #[test]
    fn ports_asked_for_beside_taken_ones_are_new() {
        let taken = free_ports(IP, 20).expect("ports");
        let more = free_ports_except(IP, 5, &taken).expect("ports");
        assert_eq!(more.len(), 5);
        assert!(
            more.iter().all(|a| !taken.contains(a)),
            "{more:?} {taken:?}"
        );
    }
}
