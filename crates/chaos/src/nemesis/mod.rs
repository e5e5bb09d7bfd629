//! Faults, injected one at a time on a seeded schedule: a quiet spell, a fault held
//! for a while, its repair, and again, until the run's fault phase ends.
//!
//! - [`partition`]: which links a partition cuts;
//! - [`process`]: kill, pause, and the clock nemesis (libfaketime);
//! - [`member`]: removing a node and adding it back;
//! - [`disk`]: damaging a stopped node's WAL;
//! - [`failover`]: the leader cut off while followers learn of commits late, then
//!   a lull in the writes;
//! - [`rebalance`]: slots of workload keys moving between two data groups,
//!   sometimes with a node killed meanwhile.

pub mod disk;
pub mod failover;
pub mod member;
pub mod partition;
pub mod process;
pub mod rebalance;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_client::Client;
use serde::{Deserialize, Serialize};

use crate::cluster;
use crate::lull::WriteLull;
use crate::net::Network;
use crate::nodes::Nodes;
use crate::proxy::Rules;
use crate::rng::Rng;

pub use process::Skew;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Nemesis {
    /// SIGKILL a node (the leader half the time), restart it later; now and then
    /// every node at once (a power loss).
    Kill,
    /// SIGSTOP a node (the leader half the time) for longer than an election
    /// timeout, then SIGCONT.
    Pause,
    /// Cut the network: random halves, the leader alone, a majority "bridge"
    /// (two sides that each see one middle node), or one-way cuts.
    Partition,
    /// Delay every chunk between nodes by a random amount (reordering across
    /// connections).
    Delay,
    /// Lose packets between nodes (nftables in namespaces; cut connections on
    /// loopback).
    Loss,
    /// Restart a node with its clock running fast or slow (libfaketime), often
    /// make it the leader and then cut it off; restart it with the true clock.
    Skew,
    /// Remove a node from the cluster, wipe it, and add it back with `--join`.
    Member,
    /// Kill a node, truncate its WAL's tail or flip a bit in it, restart it; a
    /// node that refuses to start is removed, wiped and added back.
    Wal,
    /// Slow every link between nodes, then let the clients only read and cut
    /// the leader off once their writes are answered (see [`failover`]).
    Failover,
    /// Move the slots of a few workload keys to the other of two data groups,
    /// half the time killing a node meanwhile (see [`rebalance`]).
    Rebalance,
}

impl Nemesis {
    /// Every kind.
    pub const ALL: [Nemesis; 10] = [
        Nemesis::Kill,
        Nemesis::Pause,
        Nemesis::Partition,
        Nemesis::Delay,
        Nemesis::Loss,
        Nemesis::Skew,
        Nemesis::Member,
        Nemesis::Wal,
        Nemesis::Failover,
        Nemesis::Rebalance,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Nemesis::Kill => "kill",
            Nemesis::Pause => "pause",
            Nemesis::Partition => "partition",
            Nemesis::Delay => "delay",
            Nemesis::Loss => "loss",
            Nemesis::Skew => "skew",
            Nemesis::Member => "member",
            Nemesis::Wal => "wal",
            Nemesis::Failover => "failover",
            Nemesis::Rebalance => "rebalance",
        }
    }
}

impl FromStr for Nemesis {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Nemesis::ALL
            .into_iter()
            .find(|n| n.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Nemesis::ALL.iter().map(|n| n.name()).collect();
                format!("unknown nemesis {s:?}; known: {}", names.join(", "))
            })
    }
}

/// One fault, as injected.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultEvent {
    /// Its kind.
    pub nemesis: Nemesis,
    /// What exactly, in words.
    pub detail: String,
    /// When it began (ns since the run started).
    pub start_ns: u64,
    /// When it was repaired.
    pub end_ns: u64,
}

/// How faults are timed.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// Quiet spell between faults, milliseconds.
    pub quiet_ms: (u64, u64),
    /// How long a fault lasts, milliseconds.
    pub hold_ms: (u64, u64),
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            quiet_ms: (1_000, 3_000),
            hold_ms: (1_500, 4_000),
        }
    }
}

/// What the nemesis acts on.
pub struct Target {
    /// The processes.
    pub nodes: Arc<Mutex<Nodes>>,
    /// The links.
    pub net: Arc<Network>,
    /// For finding the leader and changing membership.
    pub client: Client,
    /// Nanoseconds since the run started.
    pub clock: Instant,
    /// The clock nemesis's settings.
    pub skew: Skew,
    /// The workload's write lulls (the `failover` nemesis starts them).
    pub lull: WriteLull,
    /// Data groups each wiped node left, to rejoin once it is admitted again.
    pub left_groups: Arc<Mutex<BTreeMap<u64, Vec<u64>>>>,
}

/// A fault just injected.
pub(crate) struct Injected {
    /// What it is, in words.
    pub(crate) detail: String,
    /// Its second stage, halfway through the hold.
    pub(crate) then: Option<Stage>,
}

/// The second stage of a fault.
pub(crate) enum Stage {
    /// Links to cut; the fault then lasts the rest of the hold.
    Block(Rules),
    /// Start a write lull and, once the writes in flight are answered, cut the
    /// leader of that moment off, keeping these delays on every link
    /// ([`failover::cut`]); the fault then lasts another whole hold.
    CutLeader {
        /// The delays in force, `(min, max)` milliseconds.
        delay_ms: (u64, u64),
    },
}

impl Injected {
    fn just(detail: String) -> Injected {
        Injected { detail, then: None }
    }
}

impl Target {
    fn ns(&self) -> u64 {
        self.clock.elapsed().as_nanos() as u64
    }

    pub(crate) fn nodes(&self) -> std::sync::MutexGuard<'_, Nodes> {
        self.nodes.lock().expect("nodes lock")
    }

    pub(crate) fn left_groups(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Vec<u64>>> {
        self.left_groups.lock().expect("left groups lock")
    }

    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.nodes().endpoints()
    }

    /// Clears every network fault, resumes every paused node, restarts every
    /// node running on a false clock with the true one, starts every stopped
    /// node, ends a write lull, and waits (a while) for nodes that join to be
    /// admitted.
    pub async fn heal(&self) -> anyhow::Result<()> {
        self.net.set_rules(Rules::default())?;
        self.lull.end();
        let joining = {
            let mut nodes = self.nodes();
            let mut joining = Vec::new();
            for id in nodes.ids() {
                nodes.resume(id);
                if !nodes.spec(id).env.is_empty() {
                    nodes.kill(id)?;
                    nodes.spec_mut(id).env.clear();
                }
                if !nodes.is_running(id) && nodes.spec(id).join.is_some() {
                    joining.push(id);
                }
                nodes.start(id)?;
            }
            self.net.set_owners(nodes.pids());
            joining
        };
        for id in joining {
            member::wait_admitted(self, id, Duration::from_secs(20)).await;
            let left = self.left_groups().remove(&id);
            if let Some(groups) = left {
                rebalance::rejoin_data_groups(self, id, &groups).await;
            }
        }
        Ok(())
    }
}

/// Injects faults of the given kinds until `until`, then heals; returns what it
/// did.
pub async fn run(
    target: &Target,
    kinds: &[Nemesis],
    schedule: &Schedule,
    mut rng: Rng,
    until: Instant,
) -> anyhow::Result<Vec<FaultEvent>> {
    let mut events = Vec::new();
    let endpoints = target.endpoints();
    loop {
        let quiet = Duration::from_millis(rng.range(schedule.quiet_ms.0, schedule.quiet_ms.1));
        let hold = Duration::from_millis(rng.range(schedule.hold_ms.0, schedule.hold_ms.1));
        let Some(&kind) = rng.pick(kinds) else { break };
        // A failover is slowed links for half a hold, then a whole hold cut off.
        let length = match kind {
            Nemesis::Failover => hold + hold / 2,
            _ => hold,
        };
        if Instant::now() + quiet + length >= until {
            break;
        }
        tokio::time::sleep(quiet).await;
        let leader = cluster::leader(&target.client, &endpoints).await;
        let start_ns = target.ns();
        let mut injected = inject(target, kind, leader, &mut rng).await?;
        match injected.then {
            Some(Stage::Block(rules)) => {
                tokio::time::sleep(hold / 2).await;
                target.net.set_rules(rules)?;
                tokio::time::sleep(hold / 2).await;
            }
            Some(Stage::CutLeader { delay_ms }) => {
                tokio::time::sleep(hold / 2).await;
                injected.detail += &failover::cut(target, delay_ms).await?;
                tokio::time::sleep(hold).await;
            }
            None => tokio::time::sleep(hold).await,
        }
        target.heal().await?;
        events.push(FaultEvent {
            nemesis: kind,
            detail: injected.detail,
            start_ns,
            end_ns: target.ns(),
        });
    }
    target.heal().await?;
    Ok(events)
}

/// Starts one fault.
async fn inject(
    target: &Target,
    kind: Nemesis,
    leader: Option<u64>,
    rng: &mut Rng,
) -> anyhow::Result<Injected> {
    let ids = target.nodes().ids();
    let victim = match leader {
        Some(l) if rng.chance(0.5) => l,
        _ => *rng.pick(&ids).unwrap_or(&1),
    };
    let is_leader = |id| if Some(id) == leader { " (leader)" } else { "" };
    Ok(match kind {
        Nemesis::Kill if rng.chance(0.2) => {
            let mut nodes = target.nodes();
            for id in &ids {
                nodes.kill(*id)?;
            }
            Injected::just("kill -9 every node at once (a power loss)".into())
        }
        Nemesis::Kill => {
            target.nodes().kill(victim)?;
            Injected::just(format!("kill -9 node {victim}{}", is_leader(victim)))
        }
        Nemesis::Pause => {
            target.nodes().pause(victim);
            Injected::just(format!("SIGSTOP node {victim}{}", is_leader(victim)))
        }
        Nemesis::Partition => {
            let (blocked, detail) = partition::choose(&ids, leader, rng);
            target.net.set_rules(Rules {
                blocked,
                ..Rules::default()
            })?;
            Injected::just(detail)
        }
        Nemesis::Delay => {
            let lo = rng.range(1, 30);
            let hi = lo + rng.range(0, 120);
            target.net.set_rules(Rules {
                delay_ms: Some((lo, hi)),
                ..Rules::default()
            })?;
            Injected::just(format!("delay {lo}-{hi} ms on every link"))
        }
        Nemesis::Loss => {
            let p = rng.range(1, 5) as f64 / 100.0;
            target.net.set_rules(Rules {
                reset_probability: p,
                ..Rules::default()
            })?;
            Injected::just(match target.net.mode_name() {
                "netns" => format!("drop packets between nodes with probability {p}"),
                _ => format!("cut connections between nodes with probability {p} per chunk"),
            })
        }
        Nemesis::Skew => process::skew(target, victim, rng).await?,
        Nemesis::Member => Injected::just(member::remove(target, victim, leader).await?),
        Nemesis::Wal => Injected::just(disk::damage(target, victim, rng).await?),
        Nemesis::Rebalance => rebalance::inject(target, rng).await?,
        Nemesis::Failover => {
            let delay_ms = failover::delay_ms(rng);
            target.net.set_rules(Rules {
                delay_ms: Some(delay_ms),
                ..Rules::default()
            })?;
            Injected {
                detail: format!("delay {}-{} ms on every link", delay_ms.0, delay_ms.1),
                then: Some(Stage::CutLeader { delay_ms }),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!("kill".parse::<Nemesis>(), Ok(Nemesis::Kill));
        assert_eq!("wal".parse::<Nemesis>(), Ok(Nemesis::Wal));
        assert_eq!("failover".parse::<Nemesis>(), Ok(Nemesis::Failover));
        assert!("nope".parse::<Nemesis>().is_err());
        for n in Nemesis::ALL {
            assert_eq!(n.name().parse::<Nemesis>(), Ok(n));
        }
    }
}
