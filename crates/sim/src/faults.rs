//! Fault planning: which fault to inject next, and its shape.
//!
//! The simulation asks for a fault at random intervals; [`plan`] picks one from the
//! cluster's current state (so that "isolate the leader" means the actual leader):
//! crashes, partitions (symmetric and one-way), pauses and loss storms.
//! The budget — at most `max_active` faults at once, and quiet gaps between them —
//! keeps stretches in which the cluster can make progress, so that the run exercises
//! recovery and not only a cluster that is permanently down.

use keel_raft::NodeId;

use crate::config::{TICK, Time};
use crate::rng::SimRng;

/// A fault to inject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Cut these directed links.
    Partition {
        /// The links `(from, to)` that lose everything.
        links: Vec<(NodeId, NodeId)>,
        /// A short description for the trace.
        what: String,
    },
    /// Crash the node (power failure); it restarts when the fault ends.
    Crash(NodeId),
    /// Pause the node's process (SIGSTOP): it takes no steps — no ticks, no
    /// deliveries, no fsync completions, no reads served — while its clock runs
    /// on and whatever arrives for it waits; it resumes (SIGCONT) when the fault
    /// ends.
    Pause(NodeId),
    /// Raise loss and duplication for everyone.
    Storm {
        /// Loss probability in ppm.
        drop_ppm: u32,
        /// Duplication probability in ppm.
        dup_ppm: u32,
    },
}

impl FaultKind {
    /// A short description for the trace.
    pub fn describe(&self) -> String {
        match self {
            FaultKind::Partition { what, .. } => what.clone(),
            FaultKind::Crash(n) => format!("crash of node {n}"),
            FaultKind::Pause(n) => format!("pause of node {n}"),
            FaultKind::Storm { drop_ppm, dup_ppm } => format!(
                "loss storm ({}% lost, {}% duplicated)",
                drop_ppm / 10_000,
                dup_ppm / 10_000
            ),
        }
    }
}

/// What the planner may look at.
#[derive(Clone, Debug)]
pub struct ClusterView {
    /// All node ids.
    pub nodes: Vec<NodeId>,
    /// Nodes whose process runs.
    pub up: Vec<NodeId>,
    /// The leader with the highest term among running nodes, if any.
    pub leader: Option<NodeId>,
    /// Running nodes with an fsync in flight.
    pub syncing: Vec<NodeId>,
    /// Running nodes that are paused.
    pub paused: Vec<NodeId>,
}

/// Which faults to favour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// The usual mix (see [`plan`]).
    Usual,
    /// Every fault isolates the leader: the scenario a lease bug needs (a deposed
    /// leader that still believes it leads and serves reads while the others
    /// elect a successor), undisturbed by other faults, so that a small seed
    /// range shows it.
    IsolatedLeaders,
}

impl Mix {
    /// At most this many faults at once. Usually a minority of the cluster's worth,
    /// so stretches without a working majority stay short; one isolated leader at
    /// a time, so that the others can always elect a successor.
    pub fn max_active(self, nodes: usize) -> usize {
        match self {
            Mix::Usual => 1 + nodes / 2,
            Mix::IsolatedLeaders => 1,
        }
    }

    /// Whether the operator changes the membership and transfers leadership
    /// meanwhile (not with isolated leaders: a leader alone in its configuration
    /// is isolated from nobody).
    pub fn with_operator(self) -> bool {
        self == Mix::Usual
    }
}

/// Picks the next fault and how long it lasts, or `None` if the pick does not apply
/// to this cluster (e.g. a partition of one node, or a crash when all are down).
pub fn plan(
    view: &ClusterView,
    election: Time,
    mix: Mix,
    rng: &mut SimRng,
) -> Option<(FaultKind, Time)> {
    let mut duration = rng.range(election / 2, 6 * election);
    let pick = match mix {
        Mix::IsolatedLeaders => 55,
        _ => rng.below(100),
    };
    let fault = match pick {
        0..=19 => FaultKind::Crash(rng.pick(&view.up)?),
        20..=29 => FaultKind::Crash(view.leader?),
        // A crash in the middle of an fsync is where unsynced data gets lost.
        30..=39 => FaultKind::Crash(rng.pick(&view.syncing)?),
        40..=54 => {
            let (a, b) = halves(&view.nodes, rng)?;
            symmetric(&a, &b, format!("partition {a:?} | {b:?}"))
        }
        55..=64 => {
            let leader = view.leader?;
            let rest: Vec<NodeId> = view
                .nodes
                .iter()
                .copied()
                .filter(|&n| n != leader)
                .collect();
            if rest.is_empty() {
                return None;
            }
            symmetric(&[leader], &rest, format!("leader {leader} isolated"))
        }
        65..=79 => one_way(view, rng)?,
        80..=89 => {
            // Half the time the leader: a leader that stops for longer than its
            // lease must not serve lease reads when it resumes. Pauses are mostly
            // longer than a lease (the lease is one election timeout), sometimes
            // shorter.
            duration = rng.range(election / 2, 3 * election);
            let running: Vec<NodeId> = view
                .up
                .iter()
                .copied()
                .filter(|n| !view.paused.contains(n))
                .collect();
            let victim = match view.leader {
                Some(l) if rng.one_in(2) && running.contains(&l) => l,
                _ => rng.pick(&running)?,
            };
            FaultKind::Pause(victim)
        }
        _ => FaultKind::Storm {
            drop_ppm: rng.range(200_000, 600_000) as u32,
            dup_ppm: rng.range(50_000, 300_000) as u32,
        },
    };
    Some((fault, duration))
}

/// Splits `nodes` into two non-empty random groups.
fn halves(nodes: &[NodeId], rng: &mut SimRng) -> Option<(Vec<NodeId>, Vec<NodeId>)> {
    if nodes.len() < 2 {
        return None;
    }
    let mut shuffled = nodes.to_vec();
    rng.shuffle(&mut shuffled);
    let cut = rng.range(1, nodes.len() as u64 - 1) as usize;
    let (mut a, mut b) = (shuffled[..cut].to_vec(), shuffled[cut..].to_vec());
    a.sort_unstable();
    b.sort_unstable();
    Some((a, b))
}

/// Both directions between every node of `a` and every node of `b`.
fn symmetric(a: &[NodeId], b: &[NodeId], what: String) -> FaultKind {
    let mut links = Vec::new();
    for &x in a {
        for &y in b {
            links.push((x, y));
            links.push((y, x));
        }
    }
    FaultKind::Partition { links, what }
}

/// A one-way partition: a node that can receive but not send (or the reverse), or a
/// single dead direction between two nodes.
fn one_way(view: &ClusterView, rng: &mut SimRng) -> Option<FaultKind> {
    if view.nodes.len() < 2 {
        return None;
    }
    // Half the time the victim is the leader: a leader that cannot send but still
    // hears from everyone is the classic one-way case.
    let victim = match view.leader {
        Some(l) if rng.one_in(2) => l,
        _ => rng.pick(&view.nodes)?,
    };
    let others: Vec<NodeId> = view
        .nodes
        .iter()
        .copied()
        .filter(|&n| n != victim)
        .collect();
    let (links, what) = match rng.below(3) {
        0 => (
            others.iter().map(|&o| (victim, o)).collect(),
            format!("node {victim} cannot send (one-way)"),
        ),
        1 => (
            others.iter().map(|&o| (o, victim)).collect(),
            format!("node {victim} cannot receive (one-way)"),
        ),
        _ => {
            let other = rng.pick(&others)?;
            (
                vec![(victim, other)],
                format!("link {victim} -> {other} down (one-way)"),
            )
        }
    };
    Some(FaultKind::Partition { links, what })
}

/// The quiet time before the next fault is considered.
pub fn gap(election: Time, rng: &mut SimRng) -> Time {
    rng.range(election / 2, 3 * election).max(TICK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(n: u64) -> ClusterView {
        ClusterView {
            nodes: (1..=n).collect(),
            up: (1..=n).collect(),
            leader: Some(1),
            syncing: vec![2],
            paused: vec![3],
        }
    }

    #[test]
    fn plans_cover_every_kind_and_stay_well_formed() {
        let mut rng = SimRng::new(5);
        let v = view(5);
        let (mut crash, mut part, mut oneway, mut storm, mut pause) = (0, 0, 0, 0, 0);
        for _ in 0..2000 {
            let Some((f, d)) = plan(&v, 10 * TICK, Mix::Usual, &mut rng) else {
                continue;
            };
            assert!((5 * TICK..=60 * TICK).contains(&d));
            match f {
                FaultKind::Crash(n) => {
                    assert!(v.up.contains(&n));
                    crash += 1;
                }
                FaultKind::Pause(n) => {
                    assert!(v.up.contains(&n) && !v.paused.contains(&n));
                    assert!(d <= 30 * TICK);
                    pause += 1;
                }
                FaultKind::Partition { links, what } => {
                    assert!(!links.is_empty());
                    assert!(links.iter().all(|(a, b)| a != b));
                    if what.contains("one-way") {
                        oneway += 1;
                    } else {
                        part += 1;
                    }
                }
                FaultKind::Storm { .. } => storm += 1,
            }
        }
        assert!(crash > 0 && part > 0 && oneway > 0 && storm > 0 && pause > 0);
    }

    #[test]
    fn single_node_gets_no_partitions() {
        let mut rng = SimRng::new(6);
        let v = view(1);
        for _ in 0..500 {
            let planned = plan(&v, 10 * TICK, Mix::Usual, &mut rng);
            assert!(
                !matches!(planned, Some((FaultKind::Partition { .. }, _))),
                "a one-node cluster cannot be partitioned"
            );
        }
    }

    #[test]
    fn halves_are_disjoint_and_cover() {
        let mut rng = SimRng::new(7);
        for _ in 0..100 {
            let (a, b) = halves(&[1, 2, 3, 4, 5], &mut rng).expect("5 nodes split");
            assert!(!a.is_empty() && !b.is_empty());
            let mut all: Vec<NodeId> = a.iter().chain(&b).copied().collect();
            all.sort_unstable();
            assert_eq!(all, vec![1, 2, 3, 4, 5]);
        }
    }
}
