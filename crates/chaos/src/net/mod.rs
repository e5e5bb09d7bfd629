//! Where the nodes live and how faults reach their links.
//!
//! - **netns** ([`netns`], [`nft`]): every node in a network namespace of its own
//!   with its own address; partitions and packet loss are nftables drops in the
//!   receiver's input hook. Needs root and `ip netns`.
//! - **proxy**: every node on loopback; partitions and loss are the userspace
//!   proxy's (see [`crate::proxy`]).
//!
//! In both, a proxy sits in front of every node for delay and reordering (this
//! kernel has no netem), and nodes advertise the proxy's address.

pub mod cmd;
pub mod netns;
pub mod nft;

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use crate::nodes::NodeSpec;
use crate::proxy::{Attribution, Proxy, Rules};

/// How nodes are networked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetMode {
    /// Namespaces, failing if they cannot be used.
    Netns,
    /// Loopback and proxies.
    Proxy,
    /// Namespaces when running as root with `ip netns` and `nft` at hand
    /// (installing `nftables` when missing), the proxy otherwise.
    Auto,
}

impl FromStr for NetMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "netns" => Ok(NetMode::Netns),
            "proxy" => Ok(NetMode::Proxy),
            "auto" => Ok(NetMode::Auto),
            _ => Err(format!(
                "unknown network mode {s:?}: use netns, proxy or auto"
            )),
        }
    }
}

/// Setting up the network failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Namespaces were asked for and cannot be used.
    #[error("network namespaces are unavailable: {0}")]
    Unavailable(String),
    /// A command failed.
    #[error(transparent)]
    Cmd(#[from] cmd::CmdError),
    /// A socket could not be opened.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The cluster's network: the proxies, and the namespaces when in use.
pub struct Network {
    proxy: Arc<Proxy>,
    hosts: Option<netns::Hosts>,
    ids: Vec<u64>,
    specs: Vec<NodeSpec>,
}

impl Network {
    /// Sets up `nodes` hosts per `mode`; `ip` is the loopback address of proxy mode.
    pub async fn start(
        mode: NetMode,
        nodes: u64,
        ip: IpAddr,
        seed: u64,
    ) -> Result<Network, NetError> {
        let use_netns = match mode {
            NetMode::Proxy => false,
            NetMode::Netns => {
                netns::available().map_err(NetError::Unavailable)?;
                ensure_nft().map_err(NetError::Unavailable)?;
                true
            }
            NetMode::Auto => match netns::available().and_then(|()| ensure_nft()) {
                Ok(()) => true,
                Err(why) => {
                    eprintln!("keel-chaos: no network namespaces ({why}); using loopback proxies");
                    false
                }
            },
        };
        let ids: Vec<u64> = (1..=nodes).collect();
        if use_netns {
            Self::start_netns(ids, seed).await
        } else {
            Self::start_loopback(ids, ip, seed).await
        }
    }

    async fn start_loopback(ids: Vec<u64>, ip: IpAddr, seed: u64) -> Result<Network, NetError> {
        let n = ids.len();
        let listen = keel_testkit::local_cluster::free_ports(ip, n)?;
        let http = keel_testkit::local_cluster::free_ports(ip, n)?;
        let binds: Vec<SocketAddr> = (0..n).map(|_| SocketAddr::new(ip, 0)).collect();
        let proxy = Proxy::start_with(&binds, &listen, seed, Attribution::Processes).await?;
        let specs = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| NodeSpec::new(id, listen[i], proxy.addrs()[i], http[i]))
            .collect();
        Ok(Network {
            proxy: Arc::new(proxy),
            hosts: None,
            ids,
            specs,
        })
    }

    async fn start_netns(ids: Vec<u64>, seed: u64) -> Result<Network, NetError> {
        let hosts = netns::Hosts::create(ids.len() as u64)?;
        let binds: Vec<SocketAddr> = ids
            .iter()
            .map(|&id| SocketAddr::new(hosts.proxy_ip(id), 7001))
            .collect();
        let listen: Vec<SocketAddr> = ids
            .iter()
            .map(|&id| SocketAddr::new(hosts.node_ip(id), 7001))
            .collect();
        let attribution = Attribution::Addresses {
            nodes: ids.iter().map(|&id| hosts.node_ip(id)).collect(),
            sources: ids.iter().map(|&id| hosts.proxy_ip(id)).collect(),
        };
        let proxy = Proxy::start_with(&binds, &listen, seed, attribution).await?;
        let specs = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let http = SocketAddr::new(hosts.node_ip(id), 8001);
                let mut spec = NodeSpec::new(id, listen[i], proxy.addrs()[i], http);
                spec.prefix = hosts.prefix(id);
                spec
            })
            .collect();
        Ok(Network {
            proxy: Arc::new(proxy),
            hosts: Some(hosts),
            ids,
            specs,
        })
    }

    /// `"netns"` or `"proxy"`.
    pub fn mode_name(&self) -> &'static str {
        if self.hosts.is_some() {
            "netns"
        } else {
            "proxy"
        }
    }

    /// How to run each node.
    pub fn specs(&self) -> Vec<NodeSpec> {
        self.specs.clone()
    }

    /// Which process is which node (the proxy's attribution on loopback).
    pub fn set_owners(&self, owners: Vec<(u64, u32)>) {
        self.proxy.set_owners(owners);
    }

    /// Puts `rules` in force: in namespaces, blocked links and loss become
    /// nftables drops and only delay stays with the proxy.
    pub fn set_rules(&self, rules: Rules) -> Result<(), NetError> {
        match &self.hosts {
            None => self.proxy.set_rules(rules),
            Some(hosts) => {
                nft::apply(hosts, &self.ids, &rules.blocked, rules.reset_probability)?;
                self.proxy.set_rules(Rules {
                    delay_ms: rules.delay_ms,
                    ..Rules::default()
                });
            }
        }
        Ok(())
    }

    /// [`Network::set_rules`], with the blocked links cut at once: in namespaces
    /// the proxy holds their bytes too (from now on) while the nftables rules,
    /// tens of milliseconds per namespace, go in. The next `set_rules` lifts the
    /// proxy's part.
    pub fn set_rules_at_once(&self, rules: Rules) -> Result<(), NetError> {
        let Some(hosts) = &self.hosts else {
            self.proxy.set_rules(rules);
            return Ok(());
        };
        self.proxy.set_rules(Rules {
            blocked: rules.blocked.clone(),
            delay_ms: rules.delay_ms,
            ..Rules::default()
        });
        nft::apply(hosts, &self.ids, &rules.blocked, rules.reset_probability)?;
        Ok(())
    }
}

/// `nft` is on the path, or installed now (as root, from Debian's `nftables`).
fn ensure_nft() -> Result<(), String> {
    if cmd::on_path("nft") {
        return Ok(());
    }
    eprintln!("keel-chaos: nft is missing; installing nftables with apt-get");
    cmd::apt_install(&["nftables"]).map_err(|e| format!("nft is missing and {e}"))?;
    if cmd::on_path("nft") {
        Ok(())
    } else {
        Err("nft is missing after installing nftables".into())
    }
}
