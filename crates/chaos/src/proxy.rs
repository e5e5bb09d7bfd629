//! A userspace TCP proxy in front of every node, so that faults can be put on
//! individual links between nodes when the nodes share one network (loopback).
//!
//! Node `j` listens on a private address; the address it advertises (and that
//! `--initial-cluster` lists) is its proxy's. Every connection to the proxy is
//! attributed to the node that opened it by looking the connecting socket up in
//! `/proc/net/tcp` and the nodes' open file descriptors; connections from anyone
//! else (the harness's clients) are attributed to node 0, which no rule blocks.
//!
//! On each connection the bytes flowing from node `a` to node `b` (whichever
//! opened it) pass through the rules for the link `a → b`:
//! - **blocked**: held back (the sender's TCP window fills and it stalls, as
//!   behind a firewall that drops packets) until the link heals; peers' keepalives
//!   usually give up first and reconnect, into the same stall;
//! - **delay**: each chunk is released a random delay (uniform in a range) after
//!   it arrived, never before an earlier chunk of the same direction, so data on
//!   one connection stays in order while different connections overtake each
//!   other;
//! - **reset**: with a small probability per chunk the connection is cut (a TCP
//!   stream cannot lose bytes and stay usable, so this is how the proxy loses
//!   packets).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::rng::Rng;

/// What happens on the links; node 0 (the harness) is never blocked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rules {
    /// Links `(from, to)` whose bytes are held back.
    pub blocked: BTreeSet<(u64, u64)>,
    /// Delay of every chunk between nodes, uniform in `[min, max]` milliseconds.
    pub delay_ms: Option<(u64, u64)>,
    /// Probability that a chunk between nodes cuts its connection.
    pub reset_probability: f64,
}

impl Rules {
    fn blocks(&self, from: u64, to: u64) -> bool {
        from != 0 && to != 0 && self.blocked.contains(&(from, to))
    }
}

/// The running proxies of a cluster.
pub struct Proxy {
    rules: watch::Sender<Rules>,
    owners: Arc<Mutex<Vec<(u64, u32)>>>,
    addrs: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Starts one proxy per node on a free port of `ip`, forwarding to
    /// `targets[i]` (node `i + 1`'s listen address); connections are attributed by
    /// process (loopback).
    pub async fn start(
        ip: std::net::IpAddr,
        targets: &[SocketAddr],
        seed: u64,
    ) -> std::io::Result<Proxy> {
        let binds: Vec<SocketAddr> = targets.iter().map(|_| SocketAddr::new(ip, 0)).collect();
        Proxy::start_with(&binds, targets, seed, Attribution::Processes).await
    }

    /// Starts one proxy per node listening on `binds[i]` and forwarding to
    /// `targets[i]` (node `i + 1`'s listen address).
    pub async fn start_with(
        binds: &[SocketAddr],
        targets: &[SocketAddr],
        seed: u64,
        attribution: Attribution,
    ) -> std::io::Result<Proxy> {
        let (rules, _) = watch::channel(Rules::default());
        let owners = Arc::new(Mutex::new(Vec::new()));
        let counter = Arc::new(AtomicU64::new(0));
        let attribution = Arc::new(attribution);
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for (i, (&bind, &target)) in binds.iter().zip(targets).enumerate() {
            let listener = TcpListener::bind(bind).await?;
            addrs.push(listener.local_addr()?);
            let node = i as u64 + 1;
            let shared = Shared {
                rules: rules.clone(),
                owners: owners.clone(),
                counter: counter.clone(),
                attribution: attribution.clone(),
                seed,
            };
            tasks.push(tokio::spawn(accept_loop(listener, node, target, shared)));
        }
        Ok(Proxy {
            rules,
            owners,
            addrs,
            tasks,
        })
    }

    /// The proxies' addresses, in node order (what nodes advertise).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Which process is which node, for attributing connections.
    pub fn set_owners(&self, owners: Vec<(u64, u32)>) {
        *self.owners.lock().expect("owners lock") = owners;
    }

    /// Replaces the rules; connections follow at once.
    pub fn set_rules(&self, rules: Rules) {
        self.rules.send_replace(rules);
    }

    /// The rules in force.
    pub fn rules(&self) -> Rules {
        self.rules.borrow().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// How the proxy tells which node opened a connection.
#[derive(Clone, Debug)]
pub enum Attribution {
    /// By the process holding the connecting socket (nodes share loopback).
    Processes,
    /// By the connecting address: node `i + 1` connects from `nodes[i]`. The
    /// connection onward to the target then leaves from `sources[i]`, so the
    /// target's firewall sees which node it comes from.
    Addresses {
        /// Each node's own address.
        nodes: Vec<std::net::IpAddr>,
        /// The address its proxied connections leave from.
        sources: Vec<std::net::IpAddr>,
    },
}

impl Attribution {
    fn sender(&self, peer: SocketAddr, owners: &[(u64, u32)]) -> u64 {
        match self {
            Attribution::Processes => owner_of(peer, owners).unwrap_or(0),
            Attribution::Addresses { nodes, .. } => nodes
                .iter()
                .position(|&ip| ip == peer.ip())
                .map_or(0, |i| i as u64 + 1),
        }
    }

    /// Connects to `target` on behalf of node `from`.
    async fn connect(&self, from: u64, target: SocketAddr) -> std::io::Result<TcpStream> {
        let source = match self {
            Attribution::Addresses { sources, .. } if from > 0 => {
                sources.get(from as usize - 1).copied()
            }
            _ => None,
        };
        let Some(source) = source else {
            return TcpStream::connect(target).await;
        };
        let socket = if source.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(source, 0))?;
        socket.connect(target).await
    }
}

#[derive(Clone)]
struct Shared {
    rules: watch::Sender<Rules>,
    owners: Arc<Mutex<Vec<(u64, u32)>>>,
    counter: Arc<AtomicU64>,
    attribution: Arc<Attribution>,
    seed: u64,
}

async fn accept_loop(listener: TcpListener, node: u64, target: SocketAddr, shared: Shared) {
    loop {
        let Ok((inbound, peer)) = listener.accept().await else {
            continue;
        };
        let owners = shared.owners.lock().expect("owners lock").clone();
        let from = shared.attribution.sender(peer, &owners);
        let n = shared.counter.fetch_add(1, Ordering::Relaxed);
        let rng = Rng::new(shared.seed).fork(n);
        let rules = shared.rules.subscribe();
        let attribution = shared.attribution.clone();
        tokio::spawn(async move {
            let Ok(outbound) = attribution.connect(from, target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            let up = pipe(in_read, out_write, (from, node), rules.clone(), rng.fork(1));
            let down = pipe(out_read, in_write, (node, from), rules, rng.fork(2));
            // Either direction ending ends the connection.
            tokio::select! {
                _ = up => {}
                _ = down => {}
            }
        });
    }
}

/// Moves bytes one way under the rules of `link`, until EOF, an error or a reset.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: (u64, u64),
    rules: watch::Receiver<Rules>,
    mut rng: Rng,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let mut writer_rules = rules.clone();
    let writer = async move {
        while let Some((release, chunk)) = rx.recv().await {
            tokio::time::sleep_until(release).await;
            if writer_rules
                .wait_for(|r| !r.blocks(link.0, link.1))
                .await
                .is_err()
            {
                return;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    let reader = async move {
        let mut last_release = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let (delay, reset) = {
                let r = rules.borrow();
                let between_nodes = link.0 != 0 && link.1 != 0;
                let delay = match r.delay_ms {
                    Some((lo, hi)) if between_nodes => rng.range(lo, hi),
                    _ => 0,
                };
                (delay, between_nodes && rng.chance(r.reset_probability))
            };
            if reset {
                return;
            }
            let release = (Instant::now() + Duration::from_millis(delay)).max(last_release);
            last_release = release;
            if tx.send((release, buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
    }
}

/// The node whose process holds the socket connected from `peer`, found through
/// `/proc/net/tcp` (socket inode) and `/proc/PID/fd` (who holds it).
fn owner_of(peer: SocketAddr, owners: &[(u64, u32)]) -> Option<u64> {
    let inode = socket_inode(peer)?;
    let needle = format!("socket:[{inode}]");
    owners.iter().find_map(|&(node, pid)| {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == needle.as_str()))
            .then_some(node)
    })
}

fn socket_inode(local: SocketAddr) -> Option<u64> {
    let SocketAddr::V4(v4) = local else {
        return None;
    };
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(v4.ip().octets()),
        v4.port()
    );
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&want.as_str()))
            .then(|| fields.get(9)?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn forwards_blocks_and_heals() {
        let ip: std::net::IpAddr = [127, 0, 0, 1].into();
        let server = TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .expect("bind");
        let target = server.local_addr().expect("addr");
        let proxy = Proxy::start(ip, &[target], 1).await.expect("proxy");
        // This process plays node 2 dialing node 1.
        proxy.set_owners(vec![(2, std::process::id())]);
        let mut client = TcpStream::connect(proxy.addrs()[0]).await.expect("connect");
        let (mut served, _) = server.accept().await.expect("accept");

        client.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        served.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");

        let mut rules = Rules::default();
        rules.blocked.insert((2, 1));
        proxy.set_rules(rules);
        client.write_all(b"held").await.expect("write");
        served.write_all(b"back").await.expect("write");
        // The other direction still flows.
        client.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"back");
        let held = tokio::time::timeout(Duration::from_millis(200), served.read(&mut buf)).await;
        assert!(held.is_err(), "a blocked link delivered data");

        proxy.set_rules(Rules::default());
        served.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"held");
    }

    #[test]
    fn finds_the_socket_of_a_local_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let stream =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let local = stream.local_addr().expect("local");
        let me = std::process::id();
        assert_eq!(owner_of(local, &[(7, me)]), Some(7));
        assert_eq!(owner_of(local, &[]), None);
    }
}
