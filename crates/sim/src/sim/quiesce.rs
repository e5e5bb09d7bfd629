//! Quiescence in the simulated runtime (`SimConfig::quiesce`), and the client's
//! idle stretches (`SimConfig::idle_stretches`) that give groups a reason to go
//! quiet.
//!
//! The runtime's two duties, as keel's node runtime will carry them out
//! (docs/sharding.md, "Heartbeats: coalesced, and quiet groups quiesce"):
//!
//! - **Quiesce.** Before every tick of a leader's core, if `can_quiesce()`, call
//!   `quiesce()`: the core sends its last heartbeat, marked, and goes silent (so
//!   the tick sends no ordinary heartbeat right before the mark).
//! - **Node-level failure detection.** A quiesced follower never times out by
//!   itself, so before each of its ticks the runtime asks whether its leader's
//!   *node* is alive, as one liveness heartbeat per peer node would tell it: the
//!   node is up, not paused, its link to this node is not cut, and it still leads
//!   the group in the follower's term (a node's liveness heartbeat carries its
//!   incarnation, so a restart — after which it leads nothing — is seen at once).
//!   When the answer has been no for an election timeout, the runtime calls
//!   `wake()`, and the follower campaigns after its timeout like any follower.
//!   Message loss is not modelled on the liveness channel: node heartbeats are
//!   few and are sent every interval, so one lost does not make a node silent.

use keel_raft::{NodeId, Role};

use super::{Phase, Simulation};
use crate::config::{ACTIVE_TICKS, IDLE_CYCLE_TICKS, QUIET_AFTER_TICKS, TICK, Time};
use crate::trace::TraceEvent;

impl Simulation {
    /// Before replica `id`'s tick: wakes it if it is a quiesced follower whose
    /// leader's node has been silent for an election timeout.
    pub(super) fn detect_silent_leader(&mut self, id: NodeId) {
        if !self.cfg.quiesce {
            return;
        }
        let Some(core) = self.node(id).core() else {
            return;
        };
        if !core.is_quiesced() || core.role() == Role::Leader {
            self.silent_since.remove(&id);
            return;
        }
        let (leader, term) = (core.leader(), core.term());
        if self.leader_node_alive(id, leader, term) {
            self.silent_since.remove(&id);
            return;
        }
        let now = self.now;
        let since = *self.silent_since.entry(id).or_insert(now);
        if now - since < self.election_time() {
            return;
        }
        self.silent_since.remove(&id);
        if let Some(p) = self.process_mut(id) {
            p.core.wake();
            self.stats.liveness_wakes += 1;
            self.record(TraceEvent::Quiet {
                node: id,
                what: "woken: its leader's node is silent",
            });
        }
    }

    /// What one liveness heartbeat per peer node tells replica `id` about the
    /// node hosting `leader`, the leader it follows in `term`.
    fn leader_node_alive(&self, id: NodeId, leader: NodeId, term: keel_raft::Term) -> bool {
        let node = self.node(leader);
        node.is_up()
            && !self.is_paused(leader)
            && !self.net.is_cut(self.host_of(leader), self.host_of(id))
            && node
                .core()
                .is_some_and(|c| c.role() == Role::Leader && c.term() == term)
    }

    /// Before replica `id`'s tick: quiesces it if it leads an idle, settled group.
    pub(super) fn maybe_quiesce(&mut self, id: NodeId) {
        if !self.cfg.quiesce {
            return;
        }
        let Some(p) = self.process_mut(id) else {
            return;
        };
        if !p.core.can_quiesce() {
            return;
        }
        p.core
            .quiesce()
            .expect("can_quiesce said the leader may quiesce");
        self.stats.quiesces += 1;
        self.record(TraceEvent::Quiet {
            node: id,
            what: "quiesced (last heartbeat sent)",
        });
    }

    /// Whether the fault-phase client and operator are idle now.
    pub(super) fn client_idle(&self) -> bool {
        self.cfg.idle_stretches
            && self.phase == Phase::Chaos
            && (self.now / TICK) % IDLE_CYCLE_TICKS >= ACTIVE_TICKS
    }

    /// Whether time `t` lies in the quiet part of an idle stretch, where an idle
    /// group should cost (almost) no messages.
    pub(super) fn quiet_at(&self, t: Time) -> bool {
        self.cfg.idle_stretches
            && self.phase == Phase::Chaos
            && (t / TICK) % IDLE_CYCLE_TICKS >= ACTIVE_TICKS + QUIET_AFTER_TICKS
    }
}
