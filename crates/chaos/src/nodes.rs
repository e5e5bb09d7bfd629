//! The cluster's `keel serve` processes, with what the faults need beyond
//! `keel_testkit::LocalCluster`: each node listens on one address and advertises
//! another (its proxy), and may run under a command prefix (`ip netns exec NS`)
//! with extra environment variables of its own.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rustix::process::{Pid, Signal, kill_process};

/// How to run one node.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Node id (1-based).
    pub id: u64,
    /// Address the node binds for gRPC.
    pub listen: SocketAddr,
    /// Address peers and clients dial (a proxy in front of `listen`, or `listen`).
    pub advertise: SocketAddr,
    /// HTTP address.
    pub http: SocketAddr,
    /// Program and arguments put before `keel serve ...` (e.g. `ip netns exec NS`).
    pub prefix: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Start with `--join ADDR` (a member to ask for admission) instead of
    /// `--initial-cluster`: set once the node was removed and its data wiped.
    pub join: Option<String>,
}

impl NodeSpec {
    /// A node with no prefix, no extra environment, bootstrapped statically.
    pub fn new(id: u64, listen: SocketAddr, advertise: SocketAddr, http: SocketAddr) -> NodeSpec {
        NodeSpec {
            id,
            listen,
            advertise,
            http,
            prefix: Vec::new(),
            env: Vec::new(),
            join: None,
        }
    }
}

/// The processes of a cluster. Dropping it kills every node.
#[derive(Debug)]
pub struct Nodes {
    keel_bin: PathBuf,
    dir: PathBuf,
    specs: Vec<NodeSpec>,
    extra_args: Vec<String>,
    common_env: Vec<(String, String)>,
    children: BTreeMap<u64, Child>,
    paused: BTreeMap<u64, bool>,
}

impl Nodes {
    /// Prepares (does not start) a cluster whose files go under `dir`.
    pub fn new(keel_bin: PathBuf, dir: PathBuf, specs: Vec<NodeSpec>, extra: Vec<String>) -> Self {
        Nodes {
            keel_bin,
            dir,
            specs,
            extra_args: extra,
            common_env: Vec::new(),
            children: BTreeMap::new(),
            paused: BTreeMap::new(),
        }
    }

    /// Environment variables for every node (each spec's own come after).
    pub fn set_common_env(&mut self, env: Vec<(String, String)>) {
        self.common_env = env;
    }

    /// Node ids, in order.
    pub fn ids(&self) -> Vec<u64> {
        self.specs.iter().map(|s| s.id).collect()
    }

    /// The spec of node `id`.
    pub fn spec(&self, id: u64) -> &NodeSpec {
        &self.specs[(id - 1) as usize]
    }

    /// Mutable spec of node `id` (takes effect at its next start).
    pub fn spec_mut(&mut self, id: u64) -> &mut NodeSpec {
        &mut self.specs[(id - 1) as usize]
    }

    /// The advertised gRPC addresses, in id order.
    pub fn endpoints(&self) -> Vec<String> {
        self.specs.iter().map(|s| s.advertise.to_string()).collect()
    }

    /// `--initial-cluster`.
    fn initial_cluster(&self) -> String {
        let parts: Vec<String> = self
            .specs
            .iter()
            .map(|s| format!("{}={}", s.id, s.advertise))
            .collect();
        parts.join(",")
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    /// Node `id`'s process log.
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}.log"))
    }

    /// Node `id`'s event log.
    pub fn event_log_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}.events"))
    }

    /// Starts node `id` unless it runs.
    pub fn start(&mut self, id: u64) -> std::io::Result<()> {
        if self.is_running(id) {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(id))?;
        let spec = self.spec(id).clone();
        let mut command = match spec.prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&self.keel_bin);
                c
            }
            None => Command::new(&self.keel_bin),
        };
        command
            .arg("serve")
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(["--listen", &spec.listen.to_string()])
            .args(["--advertise", &spec.advertise.to_string()])
            .args(["--http", &spec.http.to_string()])
            .args(match &spec.join {
                Some(member) => ["--join".to_owned(), member.clone()],
                None => ["--initial-cluster".to_owned(), self.initial_cluster()],
            })
            .arg("--event-log")
            .arg(self.event_log_path(id))
            .args(&self.extra_args)
            .envs(self.common_env.iter().chain(&spec.env).map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        self.children.insert(id, command.spawn()?);
        self.paused.insert(id, false);
        Ok(())
    }

    /// Starts every node.
    pub fn start_all(&mut self) -> std::io::Result<()> {
        self.ids().into_iter().try_for_each(|id| self.start(id))
    }

    /// Whether node `id`'s process is alive (paused counts as alive).
    pub fn is_running(&mut self, id: u64) -> bool {
        self.children
            .get_mut(&id)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Process ids of the running nodes.
    pub fn pids(&mut self) -> Vec<(u64, u32)> {
        let running: Vec<u64> = self
            .ids()
            .into_iter()
            .filter(|&id| self.is_running(id))
            .collect();
        running
            .into_iter()
            .filter_map(|id| self.children.get(&id).map(|c| (id, c.id())))
            .collect()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self, id: u64) -> std::io::Result<()> {
        if let Some(mut c) = self.children.remove(&id) {
            signal(&c, Signal::CONT);
            let _ = c.kill();
            c.wait()?;
        }
        self.paused.remove(&id);
        Ok(())
    }

    /// SIGSTOP.
    pub fn pause(&mut self, id: u64) {
        if let Some(c) = self.children.get(&id) {
            signal(c, Signal::STOP);
            self.paused.insert(id, true);
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self, id: u64) {
        if let Some(c) = self.children.get(&id) {
            signal(c, Signal::CONT);
            self.paused.insert(id, false);
        }
    }

    /// Whether node `id`'s process has exited on its own (it was started and
    /// not killed by the harness), e.g. refusing to start on a corrupt WAL.
    pub fn has_exited(&mut self, id: u64) -> bool {
        self.children
            .get_mut(&id)
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Deletes node `id`'s data directory (the node must be down).
    pub fn wipe(&mut self, id: u64) -> std::io::Result<()> {
        self.kill(id)?;
        match std::fs::remove_dir_all(self.data_dir(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Whether node `id` is paused.
    pub fn is_paused(&self, id: u64) -> bool {
        self.paused.get(&id).copied().unwrap_or(false)
    }

    /// The node's files directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.children) {
            signal(&c, Signal::CONT);
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
