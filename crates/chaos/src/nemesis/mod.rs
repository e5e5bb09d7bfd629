//! Faults, injected one at a time on a seeded schedule: a quiet spell, a fault held
//! for a while, its repair, and again, until the run's fault phase ends.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_client::Client;
use serde::{Deserialize, Serialize};

use crate::cluster;
use crate::nodes::Nodes;
use crate::proxy::{Proxy, Rules};
use crate::rng::Rng;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Nemesis {
    /// SIGKILL a node (the leader half the time), restart it later.
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
    /// Cut connections between nodes at random (the proxy's packet loss).
    Loss,
}

impl Nemesis {
    /// Every kind.
    pub const ALL: [Nemesis; 5] = [
        Nemesis::Kill,
        Nemesis::Pause,
        Nemesis::Partition,
        Nemesis::Delay,
        Nemesis::Loss,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Nemesis::Kill => "kill",
            Nemesis::Pause => "pause",
            Nemesis::Partition => "partition",
            Nemesis::Delay => "delay",
            Nemesis::Loss => "loss",
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
    pub proxy: Arc<Proxy>,
    /// For finding the leader.
    pub client: Client,
    /// Nanoseconds since the run started.
    pub clock: Instant,
}

impl Target {
    fn ns(&self) -> u64 {
        self.clock.elapsed().as_nanos() as u64
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, Nodes> {
        self.nodes.lock().expect("nodes lock")
    }

    /// Restarts every stopped node, resumes every paused one, clears every network
    /// fault.
    pub fn heal(&self) -> std::io::Result<()> {
        self.proxy.set_rules(Rules::default());
        let mut nodes = self.nodes();
        for id in nodes.ids() {
            nodes.resume(id);
            nodes.start(id)?;
        }
        self.proxy.set_owners(nodes.pids());
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
    let endpoints = target.nodes().endpoints();
    loop {
        let quiet = Duration::from_millis(rng.range(schedule.quiet_ms.0, schedule.quiet_ms.1));
        let hold = Duration::from_millis(rng.range(schedule.hold_ms.0, schedule.hold_ms.1));
        if Instant::now() + quiet + hold >= until || kinds.is_empty() {
            break;
        }
        tokio::time::sleep(quiet).await;
        let Some(&kind) = rng.pick(kinds) else { break };
        let leader = cluster::leader(&target.client, &endpoints).await;
        let start_ns = target.ns();
        let detail = inject(target, kind, leader, &mut rng)?;
        tokio::time::sleep(hold).await;
        target.heal()?;
        events.push(FaultEvent {
            nemesis: kind,
            detail,
            start_ns,
            end_ns: target.ns(),
        });
    }
    target.heal()?;
    Ok(events)
}

/// Starts one fault; returns its description.
fn inject(
    target: &Target,
    kind: Nemesis,
    leader: Option<u64>,
    rng: &mut Rng,
) -> std::io::Result<String> {
    let ids = target.nodes().ids();
    let victim = match leader {
        Some(l) if rng.chance(0.5) => l,
        _ => *rng.pick(&ids).unwrap_or(&1),
    };
    let is_leader = |id| if Some(id) == leader { " (leader)" } else { "" };
    Ok(match kind {
        Nemesis::Kill => {
            target.nodes().kill(victim)?;
            format!("kill -9 node {victim}{}", is_leader(victim))
        }
        Nemesis::Pause => {
            target.nodes().pause(victim);
            format!("SIGSTOP node {victim}{}", is_leader(victim))
        }
        Nemesis::Partition => {
            let (blocked, detail) = partition(&ids, leader, rng);
            target.proxy.set_rules(Rules {
                blocked,
                ..Rules::default()
            });
            detail
        }
        Nemesis::Delay => {
            let lo = rng.range(1, 30);
            let hi = lo + rng.range(0, 120);
            target.proxy.set_rules(Rules {
                delay_ms: Some((lo, hi)),
                ..Rules::default()
            });
            format!("delay {lo}-{hi} ms on every link")
        }
        Nemesis::Loss => {
            let p = rng.range(1, 5) as f64 / 100.0;
            target.proxy.set_rules(Rules {
                reset_probability: p,
                ..Rules::default()
            });
            format!("cut connections with probability {p} per chunk")
        }
    })
}

/// A network partition: the blocked links and a description.
pub fn partition(
    ids: &[u64],
    leader: Option<u64>,
    rng: &mut Rng,
) -> (BTreeSet<(u64, u64)>, String) {
    let mut shuffled = ids.to_vec();
    rng.shuffle(&mut shuffled);
    let mut blocked = BTreeSet::new();
    let cut_between = |blocked: &mut BTreeSet<(u64, u64)>, a: &[u64], b: &[u64]| {
        for &x in a {
            for &y in b {
                blocked.insert((x, y));
                blocked.insert((y, x));
            }
        }
    };
    match rng.range(0, 3) {
        0 => {
            let (a, b) = shuffled.split_at(shuffled.len() / 2);
            cut_between(&mut blocked, a, b);
            (blocked, format!("partition {a:?} | {b:?}"))
        }
        1 => {
            let alone = leader.unwrap_or(shuffled[0]);
            let rest: Vec<u64> = ids.iter().copied().filter(|&i| i != alone).collect();
            cut_between(&mut blocked, &[alone], &rest);
            (
                blocked,
                format!(
                    "isolate node {alone}{}",
                    if leader.is_some() { " (leader)" } else { "" }
                ),
            )
        }
        2 if ids.len() >= 3 => {
            // A bridge: two sides that cannot see each other, and one node that
            // sees both (each side plus the bridge is a majority of 5).
            let bridge = shuffled[0];
            let rest = &shuffled[1..];
            let (a, b) = rest.split_at(rest.len() / 2);
            cut_between(&mut blocked, a, b);
            (blocked, format!("bridge: {a:?} | {bridge} | {b:?}"))
        }
        _ => {
            // One-way: the leader (or a node) hears nobody, but everyone hears it.
            let deaf = leader.unwrap_or(shuffled[0]);
            for &other in ids.iter().filter(|&&i| i != deaf) {
                blocked.insert((other, deaf));
            }
            (
                blocked,
                format!("one-way: node {deaf} receives from nobody"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_partitions_keep_a_majority_somewhere() {
        assert_eq!("kill".parse::<Nemesis>(), Ok(Nemesis::Kill));
        assert!("nope".parse::<Nemesis>().is_err());
        let ids = [1, 2, 3, 4, 5];
        let mut rng = Rng::new(3);
        for _ in 0..50 {
            let (blocked, detail) = partition(&ids, Some(2), &mut rng);
            assert!(!blocked.is_empty(), "{detail}");
            assert!(blocked.iter().all(|&(a, b)| a != b && a != 0 && b != 0));
        }
    }
}
