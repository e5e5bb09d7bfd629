//! Network faults as nftables rules in each receiving node's namespace: a drop
//! in the input hook for every blocked sender (a one-way cut is a drop on one
//! side only), and random drops of packets from other nodes (packet loss).

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::cmd::{self, CmdError};
use super::netns::Hosts;

/// The nftables table the harness owns in each node namespace.
const TABLE: &str = "keelchaos";

/// The ruleset of node `to`: drop everything from the addresses in `blocked`,
/// and each packet from `peers` with probability `loss_per_mille / 1000`.
pub fn ruleset(blocked: &[IpAddr], peers: &[IpAddr], loss_per_mille: u32) -> String {
    let set = |addrs: &[IpAddr]| {
        let list: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
        format!("{{ {} }}", list.join(", "))
    };
    // Declaring the table first makes the delete succeed when it is absent; the
    // file is applied as one transaction.
    let mut text = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
    let mut rules = Vec::new();
    if !blocked.is_empty() {
        rules.push(format!("ip saddr {} drop", set(blocked)));
    }
    if loss_per_mille > 0 && !peers.is_empty() {
        rules.push(format!(
            "ip saddr {} numgen random mod 1000 < {loss_per_mille} drop",
            set(peers)
        ));
    }
    if !rules.is_empty() {
        text.push_str(&format!(
            "table inet {TABLE} {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    {}\n  }}\n}}\n",
            rules.join("\n    ")
        ));
    }
    text
}

/// Applies `blocked` links (`(from, to)`) and a loss probability to every node's
/// namespace. A sender's packets carry its own address or (through a proxy) its
/// proxy address; both are dropped.
pub fn apply(
    hosts: &Hosts,
    ids: &[u64],
    blocked: &BTreeSet<(u64, u64)>,
    loss: f64,
) -> Result<(), CmdError> {
    let loss_per_mille = (loss * 1000.0).round().clamp(0.0, 1000.0) as u32;
    for &to in ids {
        let addrs_of = |id: u64| [hosts.node_ip(id), hosts.proxy_ip(id)];
        let from: Vec<IpAddr> = blocked
            .iter()
            .filter(|&&(_, t)| t == to)
            .flat_map(|&(f, _)| addrs_of(f))
            .collect();
        let peers: Vec<IpAddr> = ids
            .iter()
            .filter(|&&id| id != to)
            .flat_map(|&id| addrs_of(id))
            .collect();
        let text = ruleset(&from, &peers, loss_per_mille);
        let ns = hosts.node_ns(to);
        cmd::run("ip", &["netns", "exec", &ns, "nft", "-f", "-"], Some(&text))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_drop_the_blocked_and_sample_the_rest() {
        let a: IpAddr = [10, 77, 1, 2].into();
        let b: IpAddr = [10, 77, 1, 102].into();
        let healed = ruleset(&[], &[a, b], 0);
        assert!(!healed.contains("chain"), "{healed}");
        let cut = ruleset(&[a, b], &[a, b], 20);
        assert!(
            cut.contains("ip saddr { 10.77.1.2, 10.77.1.102 } drop"),
            "{cut}"
        );
        assert!(cut.contains("numgen random mod 1000 < 20 drop"), "{cut}");
    }
}
