//! Hosts of their own: one network namespace per node, each with one address on
//! a bridge that lives in a namespace of its own, and a veth from the harness's
//! namespace into that bridge so the harness (its clients and proxies) can reach
//! the nodes.
//!
//! ```text
//!  root namespace (harness)          kchaos<PID>-br            kchaos<PID>-n<i>
//!  kchaos<PID>h 10.77.S.254/24 ─veth─ vh ┐
//!    + 10.77.S.(100+i)/32 (proxies)      ├ br0 ── v<i> ─veth─ eth0 10.77.S.i/24
//! ```
//!
//! The subnet `10.77.S.0/24` is chosen free on this machine; nothing routes it
//! anywhere else, and the node namespaces have no default route, so test traffic
//! never leaves these namespaces. Every name carries the harness's process id:
//! [`clean_stale`] removes what crashed runs left behind, and dropping [`Hosts`]
//! removes this run's.

use std::net::{IpAddr, Ipv4Addr};

use super::cmd::{self, CmdError};

/// Prefix of every namespace and link the harness creates.
pub const PREFIX: &str = "kchaos";

/// The namespaces and links of one run.
#[derive(Debug)]
pub struct Hosts {
    tag: String,
    subnet: u8,
    nodes: u64,
}

impl Hosts {
    /// Creates the bridge namespace and `nodes` node namespaces.
    pub fn create(nodes: u64) -> Result<Hosts, CmdError> {
        clean_stale();
        let tag = format!("{PREFIX}{}", std::process::id());
        let subnet = free_subnet()?;
        let hosts = Hosts { tag, subnet, nodes };
        // On an error the partial setup is removed by Drop.
        hosts.build()?;
        Ok(hosts)
    }

    fn build(&self) -> Result<(), CmdError> {
        let br = self.bridge_ns();
        cmd::ip(&["netns", "add", &br])?;
        cmd::ip(&["-n", &br, "link", "set", "lo", "up"])?;
        cmd::ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        cmd::ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for id in 1..=self.nodes {
            let ns = self.node_ns(id);
            let port = format!("v{id}");
            cmd::ip(&["netns", "add", &ns])?;
            cmd::ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            cmd::ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            cmd::ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"])?;
            let addr = format!("{}/24", self.node_ip(id));
            cmd::ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            cmd::ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        let host = self.host_link();
        cmd::ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", "vh", "netns", &br,
        ])?;
        cmd::ip(&["-n", &br, "link", "set", "vh", "master", "br0", "up"])?;
        let harness = format!("{}/24", self.harness_ip());
        cmd::ip(&["addr", "add", &harness, "dev", &host])?;
        for id in 1..=self.nodes {
            let alias = format!("{}/32", self.proxy_ip(id));
            cmd::ip(&["addr", "add", &alias, "dev", &host])?;
        }
        cmd::ip(&["link", "set", &host, "up"])?;
        Ok(())
    }

    /// Node `id`'s namespace.
    pub fn node_ns(&self, id: u64) -> String {
        format!("{}-n{id}", self.tag)
    }

    fn bridge_ns(&self) -> String {
        format!("{}-br", self.tag)
    }

    fn host_link(&self) -> String {
        format!("{}h", self.tag)
    }

    fn ip(&self, last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 77, self.subnet, last))
    }

    /// Node `id`'s own address (inside its namespace).
    pub fn node_ip(&self, id: u64) -> IpAddr {
        self.ip(id as u8)
    }

    /// The address of node `id`'s proxy, in the harness's namespace; the proxy's
    /// connections onward to node `id` leave from the proxy address of the node
    /// that opened them, so nftables in the receiver can tell senders apart.
    pub fn proxy_ip(&self, id: u64) -> IpAddr {
        self.ip(100 + id as u8)
    }

    /// The harness's own address on the bridge (its clients; never blocked).
    pub fn harness_ip(&self) -> IpAddr {
        self.ip(254)
    }

    /// The command prefix that runs a program in node `id`'s namespace.
    pub fn prefix(&self, id: u64) -> Vec<String> {
        ["ip", "netns", "exec"]
            .into_iter()
            .map(str::to_owned)
            .chain([self.node_ns(id)])
            .collect()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        remove(&self.tag);
    }
}

/// Removes every namespace and link of the run tagged `tag` (`kchaos<PID>`).
fn remove(tag: &str) {
    // The host end of the veth goes with its peer, but a crash between creating
    // it and moving on can leave it alone.
    let _ = cmd::ip(&["link", "del", &format!("{tag}h")]);
    for ns in namespaces() {
        if ns
            .strip_prefix(tag)
            .is_some_and(|rest| rest.starts_with('-'))
        {
            let _ = cmd::ip(&["netns", "del", &ns]);
        }
    }
}

fn namespaces() -> Vec<String> {
    cmd::ip(&["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Removes the namespaces and links of runs whose harness process is gone.
pub fn clean_stale() {
    let links = cmd::ip(&["-o", "link", "show"]).unwrap_or_default();
    let link_tags = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .filter_map(|name| name.split('@').next())
        .filter_map(|name| name.strip_suffix('h'))
        .map(str::to_owned);
    let ns_tags = namespaces()
        .into_iter()
        .filter_map(|ns| ns.split_once('-').map(|(tag, _)| tag.to_owned()));
    let mut tags: Vec<String> = link_tags.chain(ns_tags).collect();
    tags.sort();
    tags.dedup();
    for tag in tags {
        let Some(pid) = tag.strip_prefix(PREFIX).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            remove(&tag);
        }
    }
}

/// A `10.77.S.0/24` no interface of this namespace uses yet.
fn free_subnet() -> Result<u8, CmdError> {
    let used = cmd::ip(&["-o", "-4", "addr", "show"])?;
    let start = (std::process::id() % 250) as u8;
    (0..250u8)
        .map(|i| (start.wrapping_add(i)) % 250 + 1)
        .find(|s| !used.contains(&format!(" 10.77.{s}.")))
        .ok_or_else(|| CmdError::Failed {
            command: "choosing a subnet".into(),
            status: std::process::ExitStatus::default(),
            stderr: "every 10.77.S.0/24 is in use".into(),
        })
}

/// Whether namespaces can be used here: running as root, and `ip netns` works.
pub fn available() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("not running as root".into());
    }
    if !cmd::on_path("ip") {
        return Err("`ip` (iproute2) is not installed".into());
    }
    cmd::ip(&["netns", "list"])
        .map(|_| ())
        .map_err(|e| format!("`ip netns` does not work: {e}"))
}
