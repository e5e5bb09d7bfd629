//! What one simulated run is: its seed, cluster size, length, and the few knobs a
//! person replaying a failure may want to turn. Everything else (network rates, fault
//! mix, Raft tunables) is drawn from the seed, so that the seed alone names the run.

use std::fmt;
use std::str::FromStr;

/// Simulated time, in units of 1/[`TICK`] of a nominal tick. Finer than a tick so
/// that message delays, fsync latencies and clock drift can be fractions of one.
pub type Time = u64;

/// Time units in one nominal tick. Liveness bounds are stated in nominal ticks; each
/// node's real tick period deviates from it by its clock drift.
pub const TICK: Time = 100;

/// Largest cluster the simulator accepts. Node ids are `1..=nodes`.
pub const MAX_NODES: usize = 7;

/// Most Raft groups a simulated node hosts.
pub const MAX_GROUPS: usize = 8;

/// Which storage a simulated node runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StorageKind {
    /// The real WAL and KV state machine of `keel-storage`, on a crash-simulating
    /// [`keel_storage::vfs::MemVfs`]. The default: it is what the simulator is for.
    #[default]
    Real,
    /// An idealised in-memory model (a crash keeps a random prefix of the unsynced
    /// writes, nothing is ever torn). Replaying a failing seed on it tells a storage
    /// bug from a consensus bug.
    Model,
}

/// How the nodes' runtimes drive the `Ready` contract (see `keel_raft::Ready`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Persistence {
    /// Every node, in every incarnation, persists synchronously: the core waits for
    /// each `Ready`'s fsync before `advance`.
    Sync,
    /// Every node persists asynchronously: a storage thread fsyncs while the core
    /// keeps stepping (`advance_async` / `on_persisted`).
    Async,
    /// Each incarnation of each node draws one of the two forms from the seed (half
    /// each), so clusters mix them and a node switches form across restarts. The
    /// default: both forms are valid uses of the core and must interoperate.
    #[default]
    Mixed,
}

impl Persistence {
    /// The command-line spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Persistence::Sync => "sync",
            Persistence::Async => "async",
            Persistence::Mixed => "mixed",
        }
    }
}

impl fmt::Display for Persistence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Persistence {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sync" => Ok(Persistence::Sync),
            "async" => Ok(Persistence::Async),
            "mixed" => Ok(Persistence::Mixed),
            _ => Err(format!(
                "unknown persistence {s:?}; expected sync, async or mixed"
            )),
        }
    }
}

/// A bug the simulator can inject on purpose, to prove that the checker notices
/// (a checker that never fails proves nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// A restarting node forgets whom it voted for in its current term (the runtime
    /// loads the term but drops the vote), so it can vote twice in one term.
    /// Expected: election safety fails (two leaders in one term).
    ForgetVote,
    /// A node sends its votes and append acknowledgements *before* its fsync (the
    /// classic missing-fsync bug); crashes then lose promised entries. Expected: a
    /// committed entry disappears (leader completeness or committed-prefix checks).
    AckBeforeSync,
    /// The network rewrites the payload of some entries in flight, a forged message
    /// that still claims the original term. Expected: log matching fails.
    CorruptEntries,
    /// An asynchronous runtime calls `on_persisted` when it hands a `Ready`'s
    /// entries to the storage thread instead of when their fsync completes: the core
    /// then counts (and applies, and on a leader commits with) entries that a crash
    /// can still lose. Expected: the local durability check fails. Synchronous
    /// nodes are unaffected.
    PersistBeforeSync,
    /// The leader's core accepts a membership change while another is still
    /// uncommitted (the core's one-change-in-flight rule is off), and the operator
    /// makes use of it: two voters join at once. Expected: two leaders in one term
    /// (election safety), as majorities of configurations two changes apart need
    /// not overlap (thesis §4.1), or another safety check.
    ConcurrentConfChanges,
    /// A follower's core takes a leader's snapshot as soon as it holds *an* entry at
    /// the snapshot's index, whatever its term, and keeps its own log after it (the
    /// core's `InjectedBug::SnapshotIgnoresTerm`). Expected: the follower claims a
    /// committed prefix its log does not hold (committed prefix, or another safety
    /// check).
    SnapshotIgnoresTerm,
    /// The runtime compacts its WAL up to a new snapshot as soon as it starts
    /// writing it, before the snapshot file is durable. A crash in between leaves a
    /// log that starts where no durable snapshot covers it. Expected: durability
    /// (the node's disk holds no state it can restart from).
    CompactBeforeSnapshot,
    /// The leader trusts its lease for the whole lease duration, with no margin for
    /// clocks running at different rates (the core's
    /// `InjectedBug::LeaseWithoutDriftMargin`): a slow-clocked leader cut off from
    /// fast-clocked voters still serves lease reads after they elected a leader
    /// that committed writes. Expected: a linearizable read misses an acknowledged
    /// write (or an earlier read).
    LeaseWithoutDriftMargin,
    /// The runtime serves a linearizable read on a follower from its local state
    /// at once, without asking the leader for a read index. Expected: a
    /// linearizable read misses an acknowledged write (or an earlier read).
    FollowerReadWithoutReadIndex,
}

impl Bug {
    /// Every injectable bug, for help texts and tests.
    pub const ALL: [Bug; 9] = [
        Bug::ForgetVote,
        Bug::AckBeforeSync,
        Bug::CorruptEntries,
        Bug::PersistBeforeSync,
        Bug::ConcurrentConfChanges,
        Bug::SnapshotIgnoresTerm,
        Bug::CompactBeforeSnapshot,
        Bug::LeaseWithoutDriftMargin,
        Bug::FollowerReadWithoutReadIndex,
    ];

    /// The command-line spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Bug::ForgetVote => "forget-vote",
            Bug::AckBeforeSync => "ack-before-sync",
            Bug::CorruptEntries => "corrupt-entries",
            Bug::PersistBeforeSync => "persist-before-sync",
            Bug::ConcurrentConfChanges => "concurrent-conf-changes",
            Bug::SnapshotIgnoresTerm => "snapshot-ignores-term",
            Bug::CompactBeforeSnapshot => "compact-before-snapshot",
            Bug::LeaseWithoutDriftMargin => "lease-without-drift-margin",
            Bug::FollowerReadWithoutReadIndex => "follower-read-without-read-index",
        }
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Bug {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Bug::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Bug::ALL.iter().map(|b| b.as_str()).collect();
                format!("unknown bug {s:?}; expected one of {}", names.join(", "))
            })
    }
}

impl StorageKind {
    /// The command-line spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageKind::Real => "real",
            StorageKind::Model => "model",
        }
    }
}

impl fmt::Display for StorageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StorageKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "real" => Ok(StorageKind::Real),
            "model" => Ok(StorageKind::Model),
            _ => Err(format!("unknown storage {s:?}; expected real or model")),
        }
    }
}

/// How long the liveness phase may take, in nominal ticks. Defaults are derived from
/// the minimum election timeout `E` (timeouts are drawn from `[E, 2E)`).
///
/// An election after healing can take several rounds. Split votes aside, with
/// pre-vote off a node that raised its term while cut off times out, disrupts the
/// leader, and cannot win with its stale log; every node resets its timer when it
/// adopts the new term, so each round is a fresh race that a stale node wins with
/// probability (stale nodes / all nodes) — up to 2/5 — and costs about `1.2E`. Runs
/// of such rounds are rare but real (one seed of a 4,000-seed 5-node campaign had
/// seven in a row, and a request took 139 ticks), so the bound is `30E`: about 25 rounds, a tail of `(2/5)^25 ≈ 1e-10`, while a cluster
/// that is truly stuck still fails it. A request, or the final catch-up, may straddle
/// such a re-election, so they get the same allowance; the catch-up also gets a tick
/// per entry the slowest replica is behind, because the tightest flow-control
/// settings ship one entry per round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LivenessBounds {
    /// From the moment everything is healed until a leader is established (it leads
    /// and a majority follows it in its term).
    pub leader_ticks: u64,
    /// From a client request's issue until the client is told "ok".
    pub commit_ticks: u64,
    /// From the last acknowledgement until every replica has applied everything
    /// committed, plus one tick per entry the slowest replica is behind.
    pub converge_ticks: u64,
    /// Client requests issued during the liveness phase.
    pub requests: u32,
}

impl LivenessBounds {
    /// Bounds for a cluster whose minimum election timeout is `election_ticks`.
    pub fn for_election_ticks(election_ticks: u32) -> Self {
        let e = u64::from(election_ticks);
        LivenessBounds {
            leader_ticks: 30 * e,
            commit_ticks: 30 * e,
            converge_ticks: 30 * e,
            requests: 5,
        }
    }
}

/// One simulated run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// Names the run: every random choice derives from it.
    pub seed: u64,
    /// Cluster size (`1..=MAX_NODES`).
    pub nodes: usize,
    /// Raft groups every node hosts (`1..=MAX_GROUPS`), each with a replica on
    /// every node. The replicas of a node share its one WAL — a turn's writes of
    /// every group go into one batch with one fsync — its disk, clock, network
    /// links and fate (a crash or pause strikes them all); each group has its own
    /// client and its own checker. More than one group needs the real storage and
    /// the synchronous form of the contract (the server's).
    pub groups: usize,
    /// Scheduler steps (events) in the fault phase, before healing.
    pub steps: u64,
    /// Storage under each node.
    pub storage: StorageKind,
    /// Which form of the `Ready` contract the nodes' runtimes use.
    pub persistence: Persistence,
    /// A bug to inject on purpose, if any.
    pub bug: Option<Bug>,
    /// Inject faults (partitions, crashes, loss, duplication). Without, the run is a
    /// plain replication workload on a delaying, reordering network.
    pub faults: bool,
    /// Print every event as it happens.
    pub verbose: bool,
    /// Minimum election timeout of every core, in ticks.
    pub election_ticks: u32,
    /// Leader heartbeat interval, in ticks.
    pub heartbeat_ticks: u32,
    /// Liveness-phase bounds.
    pub bounds: LivenessBounds,
    /// Bound on each node's clock drift, in parts per million: every node's clock
    /// runs at a rate drawn from `[1 - d, 1 + d]` (and ticks at that rate). The
    /// cores' `max_clock_drift` is derived from it ([`SimConfig::lease_margin`]).
    pub clock_drift_ppm: u32,
    /// Leaders quiesce idle groups (`Raft::can_quiesce`, `Raft::quiesce`), and the
    /// runtime wakes a quiesced follower when node-level failure detection finds
    /// its leader's node silent for an election timeout. Off by default, so that
    /// existing seeds replay as they always did.
    pub quiesce: bool,
    /// The fault-phase client (and operator) go idle for the latter part of
    /// every [`IDLE_CYCLE_TICKS`]: no proposals, reads, membership changes or
    /// transfers, while faults go on. Gives groups the idle stretches quiescence
    /// is for; the run counts messages in the quiet part of each stretch
    /// (`Stats::quiet_messages`).
    pub idle_stretches: bool,
}

/// Length of one active-then-idle cycle of [`SimConfig::idle_stretches`], in ticks.
pub const IDLE_CYCLE_TICKS: u64 = 100;
/// Ticks of each cycle during which the client is active; the rest is idle.
pub const ACTIVE_TICKS: u64 = 40;
/// Ticks into an idle stretch after which it counts as quiet: a few heartbeat
/// intervals to quiesce, messages in flight (up to five ticks late) and
/// duplicates drained, and the odd wake-and-settle cycle a late duplicate causes.
pub const QUIET_AFTER_TICKS: u64 = 30;

/// Default steps in the fault phase: long enough for dozens of faults and elections,
/// short enough that `cargo test` runs hundreds of seeds quickly.
pub const DEFAULT_STEPS: u64 = 4_000;

/// Default clock drift bound: 5%, far more than real oscillators drift (tens of
/// ppm), so that the lease margin is exercised at a scale the runs can see.
pub const DEFAULT_CLOCK_DRIFT_PPM: u32 = 50_000;

/// Largest drift bound accepted: at 40% the lease margin is 80% of a lease (the
/// core wants it below the lease), and a slow clock ticks at under half the rate
/// of a fast one. Far beyond any real clock: it is there to make the injected lease
/// bug show quickly.
pub const MAX_CLOCK_DRIFT_PPM: u32 = 400_000;

impl SimConfig {
    /// The default run for `seed` on `nodes` nodes.
    pub fn new(seed: u64, nodes: usize) -> Self {
        let election_ticks = 10;
        SimConfig {
            seed,
            nodes,
            groups: 1,
            steps: DEFAULT_STEPS,
            storage: StorageKind::default(),
            persistence: Persistence::default(),
            bug: None,
            faults: true,
            verbose: false,
            election_ticks,
            heartbeat_ticks: 2,
            bounds: LivenessBounds::for_election_ticks(election_ticks),
            clock_drift_ppm: DEFAULT_CLOCK_DRIFT_PPM,
            quiesce: false,
            idle_stretches: false,
        }
    }

    /// Length of a leader lease in clock units: the minimum election timeout at
    /// the nominal rate (the core wants a lease no longer than that).
    pub fn lease_duration(&self) -> u64 {
        u64::from(self.election_ticks) * TICK
    }

    /// The cores' `max_clock_drift`: how far two clocks may drift apart over one
    /// lease, plus rounding.
    ///
    /// A leader's lease runs from when it sent the confirmed heartbeat round, on
    /// its clock; a voter's copy runs from when it received the round, on the
    /// voter's clock, and is what makes the next leader wait. With rates in
    /// `[1 - d, 1 + d]` the worst case is a slow leader (rate `1 - d`) and fast
    /// voters (`1 + d`): a lease of `L` units ends `L / (1 + d)` after the round on
    /// the voters, and the leader trusts its own until `(L - m) / (1 - d)` with
    /// margin `m`. Safety needs `(L - m) / (1 - d) <= L / (1 + d)`, that is
    /// `m >= L * 2d / (1 + d)`, which `2 d L` covers; clock readings are rounded
    /// down, which can cost one unit on each of the two clocks.
    pub fn lease_margin(&self) -> u64 {
        let drift = u64::from(self.clock_drift_ppm);
        (2 * drift * self.lease_duration()).div_ceil(1_000_000) + 2
    }

    /// Checks the fields against each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes == 0 || self.nodes > MAX_NODES {
            return Err(format!(
                "nodes must be in 1..={MAX_NODES}, got {}",
                self.nodes
            ));
        }
        if self.groups == 0 || self.groups > MAX_GROUPS {
            return Err(format!(
                "groups must be in 1..={MAX_GROUPS}, got {}",
                self.groups
            ));
        }
        if self.groups > 1 && self.storage != StorageKind::Real {
            return Err("more than one group needs the real storage (a shared WAL)".into());
        }
        if self.groups > 1 && self.persistence == Persistence::Async {
            return Err(
                "more than one group runs the synchronous form of the contract, as the \
                 server does (--persistence sync or mixed)"
                    .into(),
            );
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return Err(format!(
                "need 0 < heartbeat_ticks ({}) < election_ticks ({})",
                self.heartbeat_ticks, self.election_ticks
            ));
        }
        if self.clock_drift_ppm > MAX_CLOCK_DRIFT_PPM {
            return Err(format!(
                "clock drift must be at most {MAX_CLOCK_DRIFT_PPM} ppm, got {}",
                self.clock_drift_ppm
            ));
        }
        Ok(())
    }

    /// The one-line command that replays this run with a full trace.
    pub fn replay_command(&self) -> String {
        let mut cmd = format!(
            "cargo run -p keel-sim --release -- --seed {} --nodes {}",
            self.seed, self.nodes
        );
        if self.groups != 1 {
            cmd.push_str(&format!(" --groups {}", self.groups));
        }
        if self.steps != DEFAULT_STEPS {
            cmd.push_str(&format!(" --steps {}", self.steps));
        }
        if self.storage != StorageKind::default() {
            cmd.push_str(&format!(" --storage {}", self.storage));
        }
        if self.persistence != Persistence::default() {
            cmd.push_str(&format!(" --persistence {}", self.persistence));
        }
        if self.clock_drift_ppm != DEFAULT_CLOCK_DRIFT_PPM {
            cmd.push_str(&format!(" --clock-drift-ppm {}", self.clock_drift_ppm));
        }
        if let Some(bug) = self.bug {
            cmd.push_str(&format!(" --inject-bug {bug}"));
        }
        if !self.faults {
            cmd.push_str(" --no-faults");
        }
        if self.quiesce {
            cmd.push_str(" --quiesce");
        }
        if self.idle_stretches {
            cmd.push_str(" --idle-stretches");
        }
        cmd.push_str(" --verbose");
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for bug in Bug::ALL {
            assert_eq!(bug.as_str().parse::<Bug>(), Ok(bug));
        }
        for kind in [StorageKind::Real, StorageKind::Model] {
            assert_eq!(kind.as_str().parse::<StorageKind>(), Ok(kind));
        }
        for mode in [Persistence::Sync, Persistence::Async, Persistence::Mixed] {
            assert_eq!(mode.as_str().parse::<Persistence>(), Ok(mode));
        }
        assert!("nope".parse::<Bug>().is_err());
        assert!("nope".parse::<Persistence>().is_err());
        assert!("nope".parse::<StorageKind>().is_err());
    }

    #[test]
    fn replay_command_names_every_non_default_knob() {
        let mut cfg = SimConfig::new(42, 5);
        assert_eq!(
            cfg.replay_command(),
            "cargo run -p keel-sim --release -- --seed 42 --nodes 5 --verbose"
        );
        cfg.steps = 10;
        cfg.storage = StorageKind::Model;
        cfg.persistence = Persistence::Async;
        cfg.bug = Some(Bug::CorruptEntries);
        cfg.faults = false;
        cfg.clock_drift_ppm = 200_000;
        assert_eq!(
            cfg.replay_command(),
            "cargo run -p keel-sim --release -- --seed 42 --nodes 5 --steps 10 \
             --storage model --persistence async --clock-drift-ppm 200000 \
             --inject-bug corrupt-entries --no-faults --verbose"
        );
    }

    #[test]
    fn validate_rejects_bad_sizes_and_timeouts() {
        assert!(SimConfig::new(1, 3).validate().is_ok());
        assert!(SimConfig::new(1, 0).validate().is_err());
        assert!(SimConfig::new(1, MAX_NODES + 1).validate().is_err());
        let mut cfg = SimConfig::new(1, 3);
        cfg.heartbeat_ticks = cfg.election_ticks;
        assert!(cfg.validate().is_err());
        let mut cfg = SimConfig::new(1, 3);
        cfg.clock_drift_ppm = MAX_CLOCK_DRIFT_PPM + 1;
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn the_lease_margin_covers_two_clocks_at_the_drift_bound() {
        let mut cfg = SimConfig::new(1, 3);
        assert_eq!(cfg.lease_duration(), 1_000);
        // 5%: the clocks may disagree by 10% of a lease, plus rounding.
        assert_eq!(cfg.lease_margin(), 102);
        for ppm in [0, 1, 20_000, 50_000, 123_457, MAX_CLOCK_DRIFT_PPM] {
            cfg.clock_drift_ppm = ppm;
            let (l, m, d) = (
                cfg.lease_duration() as f64,
                cfg.lease_margin() as f64,
                f64::from(ppm) / 1e6,
            );
            assert!(
                (l - m) / (1.0 - d) <= l / (1.0 + d),
                "margin {m} too small at {ppm} ppm"
            );
            assert!(m < l, "the core requires a margin below the lease");
        }
    }
}
