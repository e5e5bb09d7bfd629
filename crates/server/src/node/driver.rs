//! The consensus thread: the one place the cores run, and the WAL's writer.
//!
//! It holds a table of the groups this node hosts (`group.rs`) and the context
//! they share (`ctx.rs`: the one WAL, the transport). Each turn collects inputs
//! (peer messages, each stepped into its group's core; client requests; ticks,
//! for every awake group — quiesced groups with nothing to do are parked out of
//! the turn, see `GroupTable`), and carries out every group's `Ready`: messages
//! go out at once, every group's together in one batch per peer (the leader
//! replicates while its own fsync runs); every group's entries and hard state
//! are appended to the WAL with one fsync for the whole turn (`persist.rs`);
//! then the messages that promised durability go out; committed
//! entries and confirmed reads are applied and answered inline, or queued to the
//! group's apply thread while it holds the state machine (`apply.rs`: it owns the
//! state machine's slow flushes). Requests that arrive during an fsync wait in
//! the channel and are proposed together in the next turn, which makes the WAL
//! commit in groups under load.
//!
//! (A separate WAL thread was measured too: overlapping the leader's fsync with
//! the followers' did not pay for the extra hand-offs per Ready on this hardware;
//! see BENCHMARKS.md.)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};
use keel_raft::{GroupId, Message, NodeId, Ready};

use super::ctx::NodeCtx;
use super::group::{Group, GroupTable};
use super::host_runtime::{Hosts, Order};
use super::liveness::NodeLiveness;
use super::persist::{GroupWrites, RoundWrite, write_round};
use super::quiet::{QuietStep, ReplicaView, awake_while_moving, quiet_step};
use super::requests::{NodeError, Request};
use crate::error::ServerError;
use crate::metrics::gauge_value;
use crate::transport::HostedGroups;

/// Inputs handled per turn before the core's output is processed, so that ticks are
/// not starved by a flood.
const MAX_INPUTS_PER_TURN: usize = 4096;
/// Ticks replayed at most after the thread was paused (e.g. SIGSTOP): enough to
/// time out an election, without spinning through hours of missed ticks.
const MAX_CATCH_UP_TICKS: u32 = 1000;

/// A group's apply thread, joined when the node stops.
pub(crate) type ApplyThread = std::thread::JoinHandle<Result<(), ServerError>>;

/// The consensus thread's state: the node-wide context and the hosted groups.
pub(crate) struct Driver {
    pub(crate) ctx: NodeCtx,
    pub(crate) groups: GroupTable,
    /// How groups are added at run time, and the apply threads started.
    pub(crate) hosts: Hosts,
    /// Orders to host more groups, or to stop hosting one (from the map's
    /// reconciler and the configuration follower).
    pub(crate) host_rx: Receiver<Order>,
    /// Keeps `host_rx` connected whoever else holds a sender: a disconnected
    /// channel is always ready in `select!`, which would spin this thread.
    pub(crate) _host_tx: crossbeam_channel::Sender<Order>,
    /// The groups the transport's receiver lets in, kept in line with `groups`.
    pub(crate) hosted: HostedGroups,
    /// Peer messages of every hosted group (the receiver demultiplexes by group).
    pub(crate) peer_rx: Receiver<Message>,
    /// Client requests, each for the group it names (a [`super::NodeHandle`]
    /// serves one group).
    pub(crate) req_rx: Receiver<(GroupId, Request)>,
    pub(crate) shutdown_rx: Receiver<()>,
    pub(crate) tick: Duration,
    /// Which peer nodes are alive, and when to tell them we are (`liveness.rs`).
    pub(crate) liveness: NodeLiveness,
    /// `liveness.silenced()` when the parked groups were last looked at
    /// (`quiet_turn`).
    pub(crate) parked_checked_at: u64,
    /// Whether groups other than group 1 are snapshotted when they keep the
    /// WAL's oldest segment (`pressure.rs`; off when snapshots are).
    pub(crate) relieve_pressure: bool,
    pub(crate) next_pressure_check: Instant,
}

impl Driver {
    /// Runs until shutdown (Ok) or a fatal error (the node must stop), and
    /// returns that with the apply threads to join. Dropping the driver hangs up
    /// on the apply threads, which then finish their queues.
    pub(crate) fn run(mut self) -> (Result<(), ServerError>, Vec<ApplyThread>) {
        let result = self.main_loop();
        for g in self.groups.all_mut() {
            g.reads.fail_all();
            g.fail_deferred_changes();
        }
        // Requests still queued were never proposed: they definitely did not apply.
        while let Ok((_, r)) = self.req_rx.try_recv() {
            r.refuse(NodeError::ShuttingDown);
        }
        let applies = std::mem::take(&mut self.hosts.applies);
        drop(self);
        (result, applies)
    }

    fn main_loop(&mut self) -> Result<(), ServerError> {
        let mut next_tick = Instant::now() + self.tick;
        // Show the recovered state at once, not only after the first turn.
        self.end_turn(Instant::now())?;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            select! {
                recv(self.peer_rx) -> m => {
                    if let Ok(m) = m { self.route(m) }
                }
                recv(self.req_rx) -> r => {
                    if let Ok((group, r)) = r { self.handle_request(group, r)? }
                }
                recv(self.host_rx) -> order => {
                    match order {
                        Ok(Order::Host(order)) => {
                            self.hosts.carry_out(&mut self.ctx, &mut self.groups, order)?;
                        }
                        Ok(Order::Unhost(order)) => {
                            self.hosts.unhost(&mut self.ctx, &mut self.groups, order)?;
                        }
                        Ok(Order::Peers(peers)) => self.ctx.transport.set_map_peers(peers),
                        Err(_) => {}
                    }
                }
                recv(self.ctx.fatal_rx) -> e => {
                    return Err(ServerError::Fatal(e.unwrap_or_else(|_| "the apply thread stopped".into())));
                }
                recv(self.shutdown_rx) -> _ => return Ok(()),
                default(wait) => {}
            }
            for _ in 0..MAX_INPUTS_PER_TURN {
                let mut idle = true;
                if let Ok(m) = self.peer_rx.try_recv() {
                    self.route(m);
                    idle = false;
                }
                if let Ok((group, r)) = self.req_rx.try_recv() {
                    self.handle_request(group, r)?;
                    idle = false;
                }
                if idle {
                    break;
                }
            }
            let now = Instant::now();
            let mut ticks = 0;
            while now >= next_tick {
                if ticks < MAX_CATCH_UP_TICKS {
                    ticks += 1;
                }
                next_tick += self.tick;
            }
            // The awake groups only (`GroupTable`): a parked group is quiesced,
            // and a quiesced core ignores ticks.
            let clock = self.ctx.clock.now();
            for g in self.groups.iter_mut() {
                g.raft.set_clock(clock);
                for _ in 0..ticks {
                    g.raft.tick();
                }
            }
            self.quiet_turn(ticks);
            self.disk_turn()?;
            for g in self.groups.iter_mut() {
                g.snapshot_turn(&mut self.ctx)?;
            }
            self.relieve_wal_pressure(now);
            self.process_ready()?;
            self.end_turn(now)?;
        }
    }

    /// After the Readys: publish every awake group's lease and status, expire
    /// reads, and keep membership in line; then park the groups left with
    /// nothing to do (`GroupTable`), their lease and status now final.
    fn end_turn(&mut self, now: Instant) -> Result<(), ServerError> {
        for g in self.groups.iter_mut() {
            // A heartbeat answer may have renewed the lease without a Ready.
            g.lease.publish(g.raft.lease(), g.raft.commit_index());
            g.reads.expire(now);
            let status = g.raft.status();
            g.membership_turn(&mut self.ctx, &status)?;
            g.publish_status(&self.ctx, status);
        }
        let (ctx, liveness) = (&self.ctx, &self.liveness);
        self.groups.park_where(|g| g.may_park(ctx, liveness));
        let m = &self.ctx.metrics;
        m.queued_requests.set(gauge_value(self.req_rx.len() as u64));
        m.queued_peer_messages
            .set(gauge_value(self.peer_rx.len() as u64));
        Ok(())
    }

    /// Node-level liveness and quiescence, after the turn's ticks: tells every
    /// peer node this one is alive once per heartbeat interval, wakes the
    /// quiesced followers of a leader whose node fell silent, and quiesces
    /// idle leaders (`quiet.rs`). Their messages go out with this turn's Ready.
    ///
    /// Parked groups (quiesced, with nothing to do) are looked at only when
    /// liveness called another peer silent since the last look: until then
    /// every parked follower's leader is as alive as when it was parked.
    ///
    /// Only on turns that ticked: nothing it decides changes between ticks
    /// (silence, idleness and the liveness interval are counted in ticks), and
    /// under load most turns do not tick — a pass over every group and a copy
    /// of the receiver's sightings on each of thousands of turns a second is
    /// work for nothing.
    fn quiet_turn(&mut self, ticks: u32) {
        if ticks == 0 {
            return;
        }
        let seen = self.ctx.transport.sightings().snapshot();
        let peers: Vec<_> = self.ctx.transport.peers().collect();
        if self.liveness.tick(ticks, peers, &seen) {
            self.ctx.transport.send_liveness();
        }
        let mut woken: BTreeMap<NodeId, u64> = BTreeMap::new();
        let silenced = self.liveness.silenced();
        if silenced != self.parked_checked_at {
            self.parked_checked_at = silenced;
            woken = self.groups.wake_followers_of_silent(&self.liveness);
        }
        let mut quiesced = self.groups.parked_count() as u64;
        for g in self.groups.iter_mut() {
            let r = &g.raft;
            let view = awake_while_moving(ReplicaView::of(r), || g.kv.has_slot_in_move());
            let members = || r.voters().chain(r.learners()).collect::<Vec<_>>();
            match quiet_step(view, members, &self.liveness) {
                QuietStep::Quiesce => {
                    if let Err(e) = g.raft.quiesce() {
                        tracing::debug!(group = g.id(), "not quiesced: {e}");
                    }
                }
                QuietStep::Wake => {
                    g.raft.wake();
                    *woken.entry(view.leader).or_default() += 1;
                }
                QuietStep::Keep => {}
            }
            quiesced += u64::from(g.raft.is_quiesced());
        }
        let m = &self.ctx.metrics;
        m.quiesced_groups.set(gauge_value(quiesced));
        m.silent_peers
            .set(gauge_value(self.liveness.silent_count() as u64));
        for (leader, n) in woken {
            m.quiesced_woken.inc_by(n);
            self.ctx.note(&format!(
                "Node {leader} was silent for an election timeout: woke {n} quiesced \
                 group(s) it led."
            ));
        }
    }

    /// Hands a peer message to its group. The receiver lets in only hosted
    /// groups' messages, but a group may stop being hosted while one waits in
    /// the queue: it is dropped and counted like the receiver's, never creating
    /// a replica.
    fn route(&mut self, m: Message) {
        match self.groups.get_mut(m.group) {
            Some(g) => g.step(&self.ctx, m),
            None => self.hosted.count_unknown(m.group),
        }
    }

    fn handle_request(&mut self, group: GroupId, r: Request) -> Result<(), ServerError> {
        // A parked group's clock stood still (the tick pass sets the awake
        // groups'): the core must not measure a lease round it starts now from
        // a reading taken when it was parked.
        let was_parked = self.groups.is_parked(group);
        match self.groups.get_mut(group) {
            Some(g) => {
                if was_parked {
                    g.raft.set_clock(self.ctx.clock.now());
                }
                g.handle_request(&mut self.ctx, r)
            }
            None => {
                r.refuse(NodeError::Invalid(format!(
                    "this node does not host group {group}"
                )));
                Ok(())
            }
        }
    }

    /// Carries out every group's Readys, a round at a time: each group with a
    /// Ready does its steps before persisting, then the round's writes go into
    /// the WAL as one batch made durable by one fsync (`persist.rs`), then each
    /// group sends, applies and advances. A second round happens only if
    /// advancing produced more output (it rarely needs an fsync).
    fn process_ready(&mut self) -> Result<(), ServerError> {
        loop {
            let mut round: Vec<(GroupId, Ready)> = Vec::new();
            for g in self.groups.iter_mut() {
                if !g.raft.has_ready() {
                    continue;
                }
                let mut rd = g.raft.ready();
                g.before_persist(&mut self.ctx, &mut rd)?;
                round.push((g.id(), rd));
            }
            if round.is_empty() {
                return Ok(());
            }
            // Every group's messages in one batch per peer, before the fsync.
            self.ctx.send_staged();
            self.persist_round(&round)?;
            let stalled = self.ctx.disk.stalled();
            for (id, rd) in round {
                let g = self.groups.get_mut(id).expect("a group of this round");
                g.after_persist(&mut self.ctx, rd, stalled)?;
            }
            self.ctx.send_staged();
            if stalled {
                self.sync_disk_state();
            }
        }
    }

    /// Step 2 for a whole round: one WAL batch, at most one fsync. Only entries
    /// and term/vote need the fsync; a commit-index change rides along with the
    /// next one.
    fn persist_round(&mut self, round: &[(GroupId, Ready)]) -> Result<(), ServerError> {
        let started = Instant::now();
        let writes: Vec<GroupWrites<'_>> = round
            .iter()
            .map(|(id, ready)| GroupWrites {
                group: *id,
                ready,
                durable_term_vote: self
                    .groups
                    .get_mut(*id)
                    .map_or((0, 0), |g| g.durable_term_vote),
            })
            .collect();
        let stalled = self.ctx.disk.stalled();
        let may_sync = !stalled && !crate::test_bugs::skip_wal_sync();
        let readys = || round.iter().map(|(id, rd)| (*id, rd.number));
        match write_round(&mut self.ctx.wal, &writes, may_sync) {
            Ok(RoundWrite::Synced { fsync }) => {
                let m = &self.ctx.metrics;
                m.wal_fsync_seconds.observe(fsync.as_secs_f64());
                m.wal_append_seconds
                    .observe(started.elapsed().as_secs_f64());
                for g in self.groups.iter_mut() {
                    let hs = g.raft.hard_state();
                    g.durable_term_vote = (hs.term, hs.vote);
                }
            }
            Ok(RoundWrite::Buffered | RoundWrite::Deferred) => {}
            // Nothing was written that recovery could misread, and the records
            // stay buffered in the WAL (`disk.rs`).
            Err(e) if e.is_no_space() => {
                self.ctx.metrics.wal_no_space.inc();
                tracing::warn!("{e}");
                self.ctx.disk.stall(readys(), &e);
                return Ok(());
            }
            // A failed write or fsync poisons the WAL; returning stops the node.
            Err(e) => {
                return Err(ServerError::Fatal(format!(
                    "WAL write failed, stopping to protect the log: {e}"
                )));
            }
        }
        if stalled {
            // Earlier writes wait for space: this round's wait behind them
            // (`disk_turn` retries them).
            self.ctx.disk.queue(readys());
        }
        Ok(())
    }

    /// The hosted group `id`, if any.
    pub(super) fn group_mut(&mut self, id: GroupId) -> Option<&mut Group> {
        self.groups.get_mut(id)
    }
}
