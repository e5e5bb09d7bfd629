//! Harness for tests that run real `keel` processes on loopback.
//!
//! Every cluster binds its own random 127.x.y.z address, so tests run in parallel
//! without port collisions. Nothing waits by sleeping for a condition: `eventually`
//! polls with a deadline, and failures print the nodes' logs.

#![allow(dead_code)] // each test binary uses a different subset

pub mod chromium;
pub mod tls;
pub mod tmpfs;
pub mod workload;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use keel_client::{BearerToken, Client, ClientConfig, ReadMode, StatusResponse, TlsConfig};
use keel_testkit::local_cluster::{ClusterSpec, LocalCluster};

/// The binary under test.
pub fn keel_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keel"))
}

/// A random loopback address, distinct per test with overwhelming probability.
pub fn unique_loopback() -> IpAddr {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().rotate_left(16)
        ^ (std::thread::current().id().as_u64_hash());
    let b = ((seed >> 8) % 250 + 2) as u8;
    let c = ((seed >> 16) % 250 + 2) as u8;
    let d = (seed % 250 + 2) as u8;
    IpAddr::V4(Ipv4Addr::new(127, b, c, d))
}

trait ThreadIdHash {
    fn as_u64_hash(&self) -> u32;
}

impl ThreadIdHash for std::thread::ThreadId {
    fn as_u64_hash(&self) -> u32 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish() as u32
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A running test cluster with a client.
pub struct TestCluster {
    pub cluster: LocalCluster,
    pub client: Client,
    /// The TLS and token the test clients use (none for a plain cluster).
    pub client_tls: Option<TlsConfig>,
    pub client_token: Option<BearerToken>,
    _dir: Option<tempfile::TempDir>,
}

impl TestCluster {
    pub fn start(nodes: u64) -> TestCluster {
        Self::start_with(nodes, &[])
    }

    pub fn start_with(nodes: u64, extra: &[&str]) -> TestCluster {
        Self::start_spec(nodes, extra, Ok)
    }

    /// Like [`TestCluster::start_with`], every node also serving the Redis
    /// protocol (`cluster.redis_addr(id)`).
    pub fn start_with_redis(nodes: u64, extra: &[&str]) -> TestCluster {
        Self::start_spec(nodes, extra, ClusterSpec::with_redis)
    }

    fn start_spec(
        nodes: u64,
        extra: &[&str],
        adjust: impl FnOnce(ClusterSpec) -> std::io::Result<ClusterSpec>,
    ) -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix("keel-test-")
            .tempdir()
            .expect("tempdir");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Self::start_in(dir, unique_loopback(), nodes, extra, adjust, None, None)
    }

    /// Starts `nodes` nodes on `ip` with `extra` flags, in `dir` (kept until the
    /// cluster is dropped), after `adjust` (e.g. [`ClusterSpec::with_redis`]);
    /// the test clients connect with `tls` and `token`.
    pub fn start_in(
        dir: tempfile::TempDir,
        ip: IpAddr,
        nodes: u64,
        extra: Vec<String>,
        adjust: impl FnOnce(ClusterSpec) -> std::io::Result<ClusterSpec>,
        tls: Option<TlsConfig>,
        token: Option<BearerToken>,
    ) -> TestCluster {
        let mut spec = ClusterSpec::on_free_ports(nodes, ip, dir.path().to_path_buf(), keel_bin())
            .and_then(adjust)
            .expect("free ports");
        spec.extra_args = extra;
        let cluster = LocalCluster::start(spec).expect("start cluster");
        let mut t = Self::adopt_with(cluster, tls, token);
        t._dir = Some(dir);
        t
    }

    /// Wraps a cluster started elsewhere (its directory is the caller's).
    pub fn adopt(cluster: LocalCluster) -> TestCluster {
        Self::adopt_with(cluster, None, None)
    }

    fn adopt_with(
        cluster: LocalCluster,
        tls: Option<TlsConfig>,
        token: Option<BearerToken>,
    ) -> TestCluster {
        let client = Client::new(ClientConfig {
            deadline: Duration::from_secs(10),
            request_timeout: Duration::from_secs(3),
            tls: tls.clone(),
            token: token.clone(),
            ..ClientConfig::with_endpoints(cluster.endpoints())
        })
        .expect("client");
        TestCluster {
            cluster,
            client,
            client_tls: tls,
            client_token: token,
            _dir: None,
        }
    }

    /// A client that talks to node `id` only (for reads of its local state).
    pub fn node_client(&self, id: u64) -> Client {
        Client::new(ClientConfig {
            deadline: Duration::from_secs(2),
            request_timeout: Duration::from_secs(1),
            tls: self.client_tls.clone(),
            token: self.client_token.clone(),
            ..ClientConfig::with_endpoints([self.cluster.grpc_addr(id).to_string()])
        })
        .expect("client")
    }

    /// Status of node `id`, if it answers.
    pub async fn status(&self, id: u64) -> Option<StatusResponse> {
        self.client
            .with_deadline(Duration::from_millis(500))
            .status(&self.cluster.grpc_addr(id).to_string())
            .await
            .ok()
    }

    /// Statuses of every running node that answers.
    pub async fn statuses(&mut self) -> Vec<StatusResponse> {
        let mut out = Vec::new();
        for id in self.cluster.running() {
            if let Some(s) = self.status(id).await {
                out.push(s);
            }
        }
        out
    }

    /// Waits until the running nodes agree on one leader, and returns it.
    pub async fn wait_for_leader(&mut self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let statuses = self.statuses().await;
            let leaders: Vec<&StatusResponse> =
                statuses.iter().filter(|s| s.role == "leader").collect();
            if let [leader] = leaders.as_slice() {
                let agreed = statuses
                    .iter()
                    .filter(|s| s.leader_id == leader.id && s.term == leader.term)
                    .count();
                if agreed * 2 > self.cluster.spec().nodes as usize {
                    return leader.id;
                }
            }
            if Instant::now() >= deadline {
                self.dump_logs();
                panic!("no agreed leader within {timeout:?}: {statuses:#?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A follower that already knows `leader` leads (polled until one does). A
    /// majority agreeing on the leader does not mean every follower heard of
    /// it yet, and a follower that has not answers "no leader known" instead of
    /// forwarding.
    pub async fn follower_of(&mut self, leader: u64, timeout: Duration) -> u64 {
        let ids: Vec<u64> = self
            .cluster
            .running()
            .into_iter()
            .filter(|&id| id != leader)
            .collect();
        let this = &*self;
        eventually(timeout, &format!("a follower of node {leader}"), || {
            let ids = ids.clone();
            async move {
                for id in ids {
                    if this.status(id).await.is_some_and(|s| s.leader_id == leader) {
                        return Some(id);
                    }
                }
                None
            }
        })
        .await
    }

    /// Waits until node `id`'s local state has `key` = `value`.
    pub async fn wait_for_value_on(&self, id: u64, key: &str, value: &str, timeout: Duration) {
        let c = self.node_client(id);
        eventually(timeout, &format!("{key}={value} on node {id}"), || {
            let c = c.clone();
            async move {
                let r = c.get(key.to_string(), ReadMode::Stale).await.ok()?;
                (r.kv?.value == value.as_bytes()).then_some(())
            }
        })
        .await
    }

    pub fn dump_logs(&self) {
        for id in 1..=self.cluster.spec().nodes {
            eprintln!(
                "--- node {id} log (tail) ---\n{}",
                self.cluster.log_tail(id, 40)
            );
        }
    }

    /// Every node's log, for "no panics" checks.
    pub fn all_logs(&self) -> String {
        (1..=self.cluster.spec().nodes)
            .map(|id| std::fs::read_to_string(self.cluster.log_path(id)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn assert_no_panics(&self) {
        let logs = self.all_logs();
        assert!(!logs.contains("panicked"), "a node panicked:\n{logs}");
    }
}

/// Lines of each node's logs a failed test prints.
const FAILURE_LOG_LINES: usize = 60;

impl Drop for TestCluster {
    /// A failing test takes its nodes' logs with it (the directory is
    /// temporary): print their tails, so a failure seen once (in CI) can be
    /// read afterwards.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for id in 1..=self.cluster.spec().nodes {
            eprintln!(
                "---- node {id}: last {FAILURE_LOG_LINES} lines of its log ----\n{}",
                self.cluster.log_tail(id, FAILURE_LOG_LINES)
            );
            let events =
                std::fs::read_to_string(self.cluster.event_log_path(id)).unwrap_or_default();
            let lines: Vec<&str> = events.lines().collect();
            let from = lines.len().saturating_sub(FAILURE_LOG_LINES);
            eprintln!(
                "---- node {id}: last events ----\n{}",
                lines[from..].join("\n")
            );
        }
    }
}

/// A minimal HTTP/1.1 client: one request per connection.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    s.write_all(request_head(addr, method, path, headers, body.len()).as_bytes())
        .expect("write");
    s.write_all(body).expect("write body");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    parse_response(&raw)
}

/// The head of a one-request HTTP/1.1 connection (shared with `tls::https`).
pub fn request_head(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body_len: usize,
) -> String {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {body_len}\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// Splits a raw HTTP/1.1 response into status, head and (de-chunked) body.
pub fn parse_response(raw: &[u8]) -> (u16, String, Vec<u8>) {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("complete head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
    out
}
