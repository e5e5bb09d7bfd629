//! The simulation: a discrete-event loop over one seeded world.
//!
//! Each *step* takes the earliest scheduled event (a node's tick, a message arrival,
//! an fsync completion, a client request, a fault starting or ending), carries it
//! out — driving the affected cores exactly as the `Ready` contract says — and then
//! checks every invariant on the nodes it touched. Ties in time are broken by
//! scheduling order, so the run is a pure function of the seed.
//!
//! Submodules: `drive` (one node's inputs and the `Ready` handling both forms of the
//! contract share), `sync_driver` and `async_driver` (the two forms), `lifecycle`
//! (start, crash, restart), `chaos` (fault injection), `pause` (stopped and resumed
//! processes), `admin` (membership changes and leadership transfers), `snapshots`
//! (taking, compacting, installing) and `transfer` (snapshots on the network),
//! `reads` (the client's reads at the nodes), `liveness` (healing, the liveness
//! bounds and the final checks).
//!
//! Every node's core is told its node's clock reading (`Raft::set_clock`) each
//! time the simulation reaches for its process, so before every step, tick and
//! `Ready`.

mod admin;
mod async_driver;
mod chaos;
mod drive;
mod lifecycle;
mod liveness;
mod pause;
mod quiesce;
mod reads;
mod snapshots;
mod sync_driver;
mod transfer;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use keel_raft::{GroupId, Message, MessageBody, NodeId, Role};

use crate::checker::{Checker, Invariant, Violation};
use crate::client::Client;
use crate::config::{Bug, SimConfig, TICK, Time};
use crate::network::{NetParams, Network};
use crate::node::{Input, NodeClock, SimNode};
use crate::report::{Failure, FailureKind, LivenessBound, RunSummary, Stats};
use crate::rng::SimRng;
use crate::storage::{Disk, StorageError};
use crate::trace::{Trace, TraceEvent};

/// Trace lines shown in a failure report.
const REPORT_TRACE_LINES: usize = 40;

/// Most proposals in one client burst.
const MAX_BURST: u64 = 6;

/// How long the fault-phase client waits for a proposal before it stops trusting
/// its leader hint: a few commit round trips on a slow disk.
const PROPOSAL_PATIENCE: Time = 3 * TICK;

/// Something scheduled to happen at a point in simulated time.
#[derive(Debug)]
enum Scheduled {
    /// Node `node` (incarnation `incarnation`) ticks.
    Tick { node: NodeId, incarnation: u32 },
    /// A message arrives.
    Deliver(Message),
    /// Node `node`'s fsync (of either form) completes.
    SyncDone { node: NodeId, incarnation: u32 },
    /// Node `node` crashes if it is still busy as `during` says.
    PlannedCrash {
        node: NodeId,
        incarnation: u32,
        during: chaos::Busy,
    },
    /// Node `node`'s background snapshot write completes.
    SnapshotWritten { node: NodeId, incarnation: u32 },
    /// Snapshot transfer `id` reaches its recipient.
    TransferArrives(u64),
    /// Node `node` learns how its snapshot transfer to `peer` ended.
    TransferDone {
        node: NodeId,
        incarnation: u32,
        peer: NodeId,
        meta: keel_raft::SnapshotMeta,
        success: bool,
    },
    /// An input for node `node` (incarnation `incarnation`) that waited while the
    /// node was paused.
    Feed {
        node: NodeId,
        incarnation: u32,
        input: Input,
    },
    /// The client acts.
    Client,
    /// The client issues a read.
    ClientRead,
    /// Read `id` reaches its node.
    ReadArrives(u64),
    /// The fault planner considers a new fault.
    FaultTimer,
    /// The operator considers a membership change or a leadership transfer.
    Admin,
    /// Fault `id` ends.
    FaultEnd(u64),
}

/// Why a run stopped early.
#[derive(Debug)]
enum Stop {
    /// A safety invariant broke.
    Violation(Violation),
    /// Storage failed outside an injected crash.
    Storage { node: NodeId, error: StorageError },
    /// A liveness bound was exceeded.
    Liveness {
        bound: LivenessBound,
        nodes: Vec<NodeId>,
        detail: String,
    },
}

impl From<Violation> for Stop {
    fn from(v: Violation) -> Self {
        Stop::Violation(v)
    }
}

/// Which part of the run is in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Faults are injected.
    Chaos,
    /// Everything is healed; progress is required.
    Liveness,
}

/// One simulated run; [`run`] builds and runs one.
pub(crate) struct Simulation {
    cfg: SimConfig,
    rng: SimRng,
    raft: keel_raft::Config,
    now: Time,
    step: u64,
    seq: u64,
    queue: BTreeMap<(Time, u64), Scheduled>,
    /// Every replica: group `g`'s replica on node `k` has id `(g - 1) * nodes + k`
    /// (see [`Simulation::host_of`]), so group 1's replicas are the nodes' ids.
    nodes: Vec<SimNode>,
    net: Network,
    /// One client per group (index `g - 1`).
    clients: Vec<Client>,
    /// One checker per group (index `g - 1`): every invariant is about one group.
    checkers: Vec<Checker>,
    chaos: chaos::ChaosState,
    trace: Trace,
    stats: Stats,
    phase: Phase,
    /// Whether the liveness client issues requests (from the moment a leader is
    /// established after healing).
    requests_open: bool,
    /// Nodes whose core was called during the current step.
    touched: Vec<NodeId>,
    /// When nodes take snapshots (drawn per run).
    snapshot_policy: snapshots::Policy,
    /// Snapshot transfers on their way.
    transfers: transfer::Transfers,
    /// Paused nodes, and what waits for them.
    pauses: pause::Pauses,
    /// The client's reads in flight.
    reads: crate::reads::Reads,
    /// Quiesced followers whose leader's node has been silent, and since when
    /// (`quiesce`).
    silent_since: BTreeMap<NodeId, Time>,
    /// Simulated time spent in the quiet part of idle stretches.
    quiet_time: Time,
}

/// Runs one simulation to its end: the fault phase, then the liveness phase and the
/// final checks.
///
/// # Panics
///
/// If `cfg` does not validate ([`SimConfig::validate`]).
pub fn run(cfg: SimConfig) -> Result<RunSummary, Box<Failure>> {
    let mut sim = Simulation::new(cfg);
    match sim.run_to_end() {
        Ok(()) => Ok(sim.summary()),
        Err(stop) => Err(Box::new(sim.failure(stop))),
    }
}

impl Simulation {
    /// Builds the world for `cfg` (nothing runs yet).
    ///
    /// # Panics
    ///
    /// If `cfg` does not validate.
    pub(crate) fn new(cfg: SimConfig) -> Self {
        if let Err(e) = cfg.validate() {
            panic!("invalid simulation config: {e}");
        }
        let mut rng = SimRng::new(cfg.seed);
        let raft = random_raft_config(&cfg, &mut rng);
        let params = if cfg.faults {
            NetParams::random(&mut rng)
        } else {
            NetParams::calm()
        };
        // A node's disk and clock, shared by the replicas it hosts.
        let hosts: Vec<(Disk, NodeClock)> = (1..=cfg.nodes)
            .map(|_| (Disk::new(cfg.storage), random_clock(&cfg, &mut rng)))
            .collect();
        let nodes = (0..cfg.groups)
            .flat_map(|g| hosts.iter().enumerate().map(move |(k, h)| (g, k, h)))
            .map(|(g, k, (disk, clock))| {
                let id = (g * cfg.nodes + k + 1) as NodeId;
                SimNode::new(id, disk.clone(), *clock)
            })
            .collect();
        let clients = (0..cfg.groups as u64)
            .map(|g| Client::new(cfg.seed ^ (g << 48)))
            .collect();
        let checkers = (1..=cfg.groups as GroupId)
            .map(|g| Checker::for_nodes(group_replicas(cfg.nodes, g)))
            .collect();
        let snapshot_policy = snapshots::Policy::random(&mut rng);
        Simulation {
            rng,
            raft,
            now: 0,
            step: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            net: Network::new(params),
            clients,
            checkers,
            chaos: chaos::ChaosState::default(),
            trace: Trace::new(cfg.verbose),
            stats: Stats::default(),
            phase: Phase::Chaos,
            requests_open: false,
            touched: Vec::new(),
            snapshot_policy,
            transfers: transfer::Transfers::default(),
            pauses: pause::Pauses::default(),
            reads: crate::reads::Reads::default(),
            silent_since: BTreeMap::new(),
            quiet_time: 0,
            cfg,
        }
    }

    fn run_to_end(&mut self) -> Result<(), Stop> {
        self.record(TraceEvent::Phase("start"));
        for n in &self.nodes[..self.cfg.nodes] {
            let event = TraceEvent::Clock {
                node: n.id,
                rate_ppm: n.clock.rate_ppm,
            };
            self.trace.record(0, 0, event);
        }
        for host in self.hosts() {
            self.guarded(|sim| sim.start(host))?;
        }
        let first_request = self.rng.range(1, TICK);
        self.schedule(first_request, Scheduled::Client);
        let first_read = self.rng.range(1, TICK);
        self.schedule(first_read, Scheduled::ClientRead);
        if self.cfg.faults {
            let gap = crate::faults::gap(self.election_time(), &mut self.rng);
            self.schedule(gap, Scheduled::FaultTimer);
        }
        if self.admin_enabled() {
            let gap = self.admin_gap();
            self.schedule(gap, Scheduled::Admin);
        }
        while self.step < self.cfg.steps {
            self.step_once()?;
        }
        self.liveness_phase()
    }

    /// Takes the earliest event, carries it out and checks the touched nodes.
    fn step_once(&mut self) -> Result<(), Stop> {
        let Some(((at, _), event)) = self.queue.pop_first() else {
            // The client event reschedules itself forever, so the queue never empties.
            unreachable!("event queue ran dry at step {}", self.step);
        };
        debug_assert!(at >= self.now, "time went backwards");
        if self.quiet_at(self.now) {
            self.quiet_time += at - self.now;
        }
        self.now = at;
        self.step += 1;
        self.stats.steps = self.step;
        self.guarded(|sim| {
            sim.handle(event)?;
            sim.check_touched()
        })
    }

    /// Runs `f`, turning a panic (an assertion in a core, or in storage) into a
    /// violation report rather than losing the run's trace.
    fn guarded(&mut self, f: impl FnOnce(&mut Self) -> Result<(), Stop>) -> Result<(), Stop> {
        self.touched.clear();
        match catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(result) => result,
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
                    .unwrap_or_else(|| "non-string panic payload".to_string());
                let mut nodes = self.touched.clone();
                nodes.sort_unstable();
                nodes.dedup();
                Err(Stop::Violation(Violation::new(
                    Invariant::CoreInvariant,
                    nodes,
                    format!("panic: {msg}"),
                )))
            }
        }
    }

    fn handle(&mut self, event: Scheduled) -> Result<(), Stop> {
        let Some(event) = self.hold_if_paused(event) else {
            return Ok(());
        };
        match event {
            Scheduled::Tick { node, incarnation } => self.on_tick(node, incarnation),
            Scheduled::Deliver(m) => self.on_deliver(m),
            Scheduled::SyncDone { node, incarnation } => self.on_sync_done(node, incarnation),
            Scheduled::PlannedCrash {
                node,
                incarnation,
                during,
            } => {
                self.on_planned_crash(node, incarnation, during);
                Ok(())
            }
            Scheduled::SnapshotWritten { node, incarnation } => {
                self.on_snapshot_written(node, incarnation)
            }
            Scheduled::TransferArrives(id) => self.on_transfer_arrives(id),
            Scheduled::TransferDone {
                node,
                incarnation,
                peer,
                meta,
                success,
            } => self.on_transfer_done(node, incarnation, peer, &meta, success),
            Scheduled::Feed {
                node,
                incarnation,
                input,
            } => {
                if self.node(node).incarnation != incarnation {
                    return Ok(());
                }
                self.feed(node, input)
            }
            Scheduled::Client => self.on_client(),
            Scheduled::ClientRead => self.on_client_read(),
            Scheduled::ReadArrives(id) => self.on_read_arrives(id),
            Scheduled::FaultTimer => self.on_fault_timer(),
            Scheduled::Admin => self.on_admin(),
            Scheduled::FaultEnd(id) => self.on_fault_end(id),
        }
    }

    /// After every step: `validate()` every core the step touched, check that each
    /// one's log is exactly what it handed out to persist, and that what it counts
    /// as durable is.
    fn check_touched(&mut self) -> Result<(), Stop> {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for &id in &touched {
            let Some(core) = self.node(id).core() else {
                continue;
            };
            core.validate();
            let checker = &self.checkers[self.group_index(id)];
            let (last, shadow_last) = (core.last_index(), checker.last_index(id));
            let term_matches = core.log_term(last).unwrap_or(0) == checker.last_term(id);
            if last != shadow_last || !term_matches {
                return Err(Violation::new(
                    Invariant::CoreInvariant,
                    vec![id],
                    format!(
                        "node {id}'s core log ends at {last}@{:?}, but it handed storage a log \
                         ending at {shadow_last}@{}",
                        core.log_term(last),
                        checker.last_term(id)
                    ),
                )
                .into());
            }
            checker.check_persisted(id, core.status().persisted)?;
        }
        self.touched = touched;
        Ok(())
    }

    fn on_client(&mut self) -> Result<(), Stop> {
        match self.phase {
            Phase::Chaos => {
                let next = self.rng.range(TICK / 5, 2 * TICK);
                self.schedule(next, Scheduled::Client);
                if self.client_idle() {
                    return Ok(());
                }
                self.chaos_proposal()
            }
            Phase::Liveness => {
                self.schedule(TICK / 2, Scheduled::Client);
                self.liveness_client()
            }
        }
    }

    /// A fault-phase proposal, to whoever the client believes leads — unless a
    /// proposal has waited there for longer than [`PROPOSAL_PATIENCE`]: then, as a
    /// client that timed out, to a random node (whose refusal names the leader it
    /// knows). A quarter of the time it is a burst of several proposals, as from
    /// clients writing concurrently: what makes an asynchronous node's storage
    /// thread cover several `Ready`s with one fsync (group commit).
    fn chaos_proposal(&mut self) -> Result<(), Stop> {
        let group = self.pick_group();
        let gi = (group - 1) as usize;
        let hint = self.clients[gi].hint;
        let stuck =
            hint != 0 && self.clients[gi].hint_is_stuck(self.now.saturating_sub(PROPOSAL_PATIENCE));
        let target = if hint != 0 && !stuck && self.node(hint).is_up() {
            hint
        } else {
            let members = self.group_ids(group);
            let others: Vec<NodeId> = members.iter().copied().filter(|&n| n != hint).collect();
            let ids = if stuck && !others.is_empty() {
                others
            } else {
                members
            };
            self.rng.pick(&ids).expect("a cluster has nodes")
        };
        if !self.node(target).is_up() {
            // Connection refused: try someone else next time.
            self.clients[gi].hint = 0;
            return Ok(());
        }
        let burst = if self.rng.one_in(4) {
            self.rng.range(2, MAX_BURST)
        } else {
            1
        };
        let incarnation = self.node(target).incarnation;
        for _ in 0..burst {
            let (attempt, data) = self.clients[gi].propose(target, incarnation, None, self.now);
            self.stats.proposals += 1;
            self.feed(target, crate::node::Input::Propose { attempt, data })?;
        }
        Ok(())
    }

    // ---- Helpers ------------------------------------------------------------------

    /// The nodes (hosts), `1..=nodes`: what crashes, pauses and is cut off.
    fn hosts(&self) -> Vec<NodeId> {
        (1..=self.cfg.nodes as NodeId).collect()
    }

    /// The groups, `1..=groups`.
    fn groups(&self) -> std::ops::RangeInclusive<GroupId> {
        1..=self.cfg.groups as GroupId
    }

    /// Group `group`'s replicas, one per node.
    fn group_ids(&self, group: GroupId) -> Vec<NodeId> {
        group_replicas(self.cfg.nodes, group).collect()
    }

    /// The node that hosts replica `id` (its own id in group 1).
    fn host_of(&self, id: NodeId) -> NodeId {
        (id - 1) % self.cfg.nodes as NodeId + 1
    }

    /// The group replica `id` belongs to.
    fn group_of(&self, id: NodeId) -> GroupId {
        (id - 1) / self.cfg.nodes as NodeId + 1
    }

    /// Index of replica `id`'s group in `clients` and `checkers`.
    fn group_index(&self, id: NodeId) -> usize {
        (self.group_of(id) - 1) as usize
    }

    /// The replicas node `host` hosts, in group order.
    fn replicas_on(&self, host: NodeId) -> Vec<NodeId> {
        let n = self.cfg.nodes as NodeId;
        self.groups().map(|g| (g - 1) * n + host).collect()
    }

    /// The checker of replica `id`'s group.
    fn checker(&mut self, id: NodeId) -> &mut Checker {
        let gi = self.group_index(id);
        &mut self.checkers[gi]
    }

    /// The client of replica `id`'s group.
    fn client(&mut self, id: NodeId) -> &mut Client {
        let gi = self.group_index(id);
        &mut self.clients[gi]
    }

    /// A group for the next client action: drawn only when there are several,
    /// so that a one-group run draws what it always drew.
    fn pick_group(&mut self) -> GroupId {
        if self.cfg.groups == 1 {
            1
        } else {
            self.rng.range(1, self.cfg.groups as u64)
        }
    }

    fn node(&self, id: NodeId) -> &SimNode {
        &self.nodes[(id - 1) as usize]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut SimNode {
        &mut self.nodes[(id - 1) as usize]
    }

    /// Minimum election timeout in time units.
    fn election_time(&self) -> Time {
        Time::from(self.cfg.election_ticks) * TICK
    }

    fn schedule(&mut self, after: Time, event: Scheduled) {
        self.seq += 1;
        self.queue.insert((self.now + after, self.seq), event);
    }

    fn record(&mut self, event: TraceEvent) {
        self.trace.record(self.step, self.now, event);
    }

    /// Group `group`'s running leader with the highest term, if any.
    fn current_leader(&self, group: GroupId) -> Option<NodeId> {
        let n = self.cfg.nodes;
        let first = (group as usize - 1) * n;
        self.nodes[first..first + n]
            .iter()
            .filter_map(|n| n.core())
            .filter(|c| c.role() == Role::Leader)
            .max_by_key(|c| c.term())
            .map(|c| c.id())
    }

    fn summary(&self) -> RunSummary {
        let mut stats = self.stats;
        stats.leader_terms = self.checkers.iter().map(|c| c.leader_terms() as u64).sum();
        stats.committed = self.checkers.iter().map(Checker::committed_len).sum();
        stats.acked = self.clients.iter().map(|c| c.counts().1 as u64).sum();
        stats.quiet_ticks = self.quiet_time / TICK;
        RunSummary {
            config: self.cfg.clone(),
            fingerprint: self.trace.fingerprint(),
            time: self.now,
            stats,
        }
    }

    fn failure(&self, stop: Stop) -> Failure {
        let (kind, nodes, detail) = match stop {
            Stop::Violation(v) => (FailureKind::Safety(v.invariant), v.nodes, v.detail),
            Stop::Storage { node, error } => (
                FailureKind::Storage,
                vec![node],
                format!("node {node}: {error}"),
            ),
            Stop::Liveness {
                bound,
                nodes,
                detail,
            } => (FailureKind::Liveness(bound), nodes, detail),
        };
        let trace = self
            .trace
            .tail_for(&nodes, REPORT_TRACE_LINES)
            .iter()
            .map(|r| r.to_string())
            .collect();
        Failure {
            config: self.cfg.clone(),
            kind,
            step: self.step,
            time: self.now,
            nodes,
            detail,
            trace,
        }
    }

    fn bug(&self, bug: Bug) -> bool {
        self.cfg.bug == Some(bug)
    }
}

/// Group `group`'s replica ids on a cluster of `nodes` nodes.
fn group_replicas(nodes: usize, group: GroupId) -> impl Iterator<Item = NodeId> {
    let n = nodes as NodeId;
    ((group - 1) * n + 1)..=(group * n)
}

/// Whether `messages` include a granted (real) vote.
fn grants_vote(messages: &[Message]) -> bool {
    messages.iter().any(|m| {
        matches!(
            m.body,
            MessageBody::RequestVoteResponse {
                granted: true,
                pre_vote: false,
                ..
            }
        )
    })
}

/// A node's clock: a rate within the drift bound — half the time at one end of
/// it, where the lease margin is tightest — and an arbitrary offset (clocks of
/// different machines share no origin).
fn random_clock(cfg: &SimConfig, rng: &mut SimRng) -> NodeClock {
    let drift = u64::from(cfg.clock_drift_ppm);
    let rate_ppm = if rng.one_in(2) {
        if rng.one_in(2) {
            1_000_000 - drift
        } else {
            1_000_000 + drift
        }
    } else {
        rng.range(1_000_000 - drift, 1_000_000 + drift)
    };
    NodeClock {
        offset: rng.range(0, 1 << 40),
        rate_ppm,
    }
}

/// Raft tunables for the run. Timeouts come from the config (the liveness bounds
/// depend on them); pre-vote, check-quorum and flow-control limits are drawn from
/// the seed, so that the runs cover the less common settings too. Leases are on
/// in seven runs in eight (always with the lease bug), with the margin the run's
/// drift bound needs ([`SimConfig::lease_margin`]); without them, lease reads all
/// go through ReadIndex.
fn random_raft_config(cfg: &SimConfig, rng: &mut SimRng) -> keel_raft::Config {
    let inflight = [1, 2, 4, 256];
    let msg_bytes = [1, 256, 1 << 20];
    let leases = !rng.one_in(8) || cfg.bug == Some(Bug::LeaseWithoutDriftMargin);
    keel_raft::Config {
        id: 0,
        // Set per replica at start.
        group: crate::storage::GROUP,
        election_ticks: cfg.election_ticks,
        heartbeat_ticks: cfg.heartbeat_ticks,
        pre_vote: !rng.one_in(4),
        check_quorum: !rng.one_in(4),
        max_inflight_msgs: rng.pick(&inflight).expect("non-empty"),
        max_msg_bytes: rng.pick(&msg_bytes).expect("non-empty"),
        lease_duration: if leases { cfg.lease_duration() } else { 0 },
        max_clock_drift: if leases { cfg.lease_margin() } else { 0 },
        ..keel_raft::Config::default()
    }
}
