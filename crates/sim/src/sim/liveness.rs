//! The liveness phase and the final checks.
//!
//! Everything is healed (partitions and storms end, downed nodes restart, the
//! network turns calm) and no new fault starts. Then, each within its bound:
//! 1. a leader is established (it leads and a majority follows it in its term);
//! 2. every client request issued from then on is acknowledged;
//! 3. every replica applies everything committed.
//!
//! Finally every acknowledged write — from the whole run, not only this phase — must
//! be in every replica, and all replicas must hold the same data.

use keel_raft::NodeId;

use super::{Phase, Simulation, Stop};
use crate::checker::{Invariant, Violation};
use crate::config::TICK;
use crate::node::Input;
use crate::report::LivenessBound;
use crate::trace::TraceEvent;

impl Simulation {
    pub(super) fn liveness_phase(&mut self) -> Result<(), Stop> {
        self.phase = Phase::Liveness;
        self.record(TraceEvent::Phase("liveness: everything healed"));
        self.guarded(|sim| sim.heal_everything())?;
        let bounds = self.cfg.bounds;
        let healed = self.now;

        let deadline = healed + bounds.leader_ticks * TICK;
        while self.established_leader().is_none() {
            if self.now > deadline {
                return Err(self.stuck(
                    LivenessBound::Leader,
                    format!(
                        "no leader established within {} ticks of healing; {}",
                        bounds.leader_ticks,
                        self.describe_cluster()
                    ),
                ));
            }
            self.step_once()?;
        }
        if self.admin_enabled() {
            // Put every removed node back (within the same bound as electing a
            // leader: each change needs one commit round).
            self.schedule(0, super::Scheduled::Admin);
            while !self.membership_restored() {
                if self.now > deadline + bounds.leader_ticks * TICK {
                    return Err(self.stuck(
                        LivenessBound::Leader,
                        format!(
                            "membership not restored within {} ticks of a leader; {}",
                            bounds.leader_ticks,
                            self.describe_cluster()
                        ),
                    ));
                }
                self.step_once()?;
            }
        }
        self.stats.ticks_to_leader = (self.now - healed) / TICK;
        self.record(TraceEvent::Phase("liveness: leader established"));

        // Requests are issued by the client events (every half tick) from now on.
        self.requests_open = true;
        while !self.all_requests_acked() {
            self.check_request_bounds()?;
            self.step_once()?;
        }
        for r in &self.client.requests {
            let acked = r.acked.expect("all requests are acknowledged");
            let ticks = (acked - r.issued) / TICK;
            self.stats.max_request_ticks = self.stats.max_request_ticks.max(ticks);
        }
        self.record(TraceEvent::Phase("liveness: all requests acknowledged"));

        let deadline = self.now + (bounds.converge_ticks + self.max_lag()) * TICK;
        while !self.converged() {
            if self.now > deadline {
                return Err(self.stuck(
                    LivenessBound::Convergence,
                    format!(
                        "replicas did not all apply everything committed within {} ticks \
                         (+1 per entry of lag); {}",
                        bounds.converge_ticks,
                        self.describe_cluster()
                    ),
                ));
            }
            self.step_once()?;
        }
        self.record(TraceEvent::Phase("liveness: replicas converged"));
        self.final_checks()
    }

    /// The liveness client: opens new requests up to the configured number, and
    /// (re)tries every request that has no attempt in flight.
    pub(super) fn liveness_client(&mut self) -> Result<(), Stop> {
        if !self.requests_open {
            return Ok(());
        }
        if self.client.requests.len() < self.cfg.bounds.requests as usize {
            let backlog = self.backlog();
            self.client.new_request(self.now, backlog);
        }
        for r in 0..self.client.requests.len() {
            if !self.client.may_retry(r) {
                continue;
            }
            let hint = self.client.hint;
            let target = if hint != 0 && self.node(hint).is_up() {
                hint
            } else {
                let ids = self.ids();
                self.rng.pick(&ids).expect("a cluster has nodes")
            };
            let incarnation = self.node(target).incarnation;
            let (attempt, data) = self.client.propose(target, incarnation, Some(r), self.now);
            self.stats.proposals += 1;
            self.feed(target, Input::Propose { attempt, data })?;
        }
        Ok(())
    }

    fn all_requests_acked(&self) -> bool {
        let requests = &self.client.requests;
        requests.len() == self.cfg.bounds.requests as usize
            && requests.iter().all(|r| r.acked.is_some())
    }

    /// A request must be acknowledged within the bound plus one tick per entry of
    /// the backlog it was issued behind (see [`Simulation::backlog`]).
    fn check_request_bounds(&self) -> Result<(), Stop> {
        let bound = self.cfg.bounds.commit_ticks;
        let late = self
            .client
            .requests
            .iter()
            .find(|r| r.acked.is_none() && self.now > r.issued + (bound + r.backlog) * TICK);
        if let Some(r) = late {
            let detail = format!(
                "request for key k{:08} issued at t={} was not acknowledged within {} ticks \
                 (+{} for the entries ahead of it; {} attempts); {}",
                r.id,
                r.issued / TICK,
                bound,
                r.backlog,
                r.attempts,
                self.describe_cluster()
            );
            return Err(self.stuck(LivenessBound::Commit, detail));
        }
        Ok(())
    }

    /// Entries that must be replicated before a request issued now can commit, at
    /// most: from the lowest commit index of a running node to the longest log. A
    /// leader that accepted proposals while cut off must ship them all first — one
    /// per round trip under the tightest flow control — which the request bound
    /// allows for as the catch-up bound does.
    fn backlog(&self) -> u64 {
        // Nodes that only just came back (a re-added member still catching up)
        // hold up no commit: count those that kept following.
        let members = self.members();
        let cores = self
            .nodes
            .iter()
            .filter(|n| members.contains(&n.id))
            .filter_map(|n| n.core());
        let longest = cores.clone().map(|c| c.last_index()).max().unwrap_or(0);
        let lowest_commit = cores.map(|c| c.commit_index()).min().unwrap_or(0);
        longest.saturating_sub(lowest_commit)
    }

    /// How many entries the slowest replica has yet to apply.
    fn max_lag(&self) -> u64 {
        let members = self.members();
        let commits = self
            .nodes
            .iter()
            .filter(|n| members.contains(&n.id))
            .filter_map(|n| n.core());
        let max_commit = commits.clone().map(|c| c.commit_index()).max().unwrap_or(0);
        let min_applied = commits.map(|c| c.applied_index()).min().unwrap_or(0);
        max_commit.saturating_sub(min_applied)
    }

    /// A leader that leads, in its term, a majority of its configuration's voters
    /// that knows it.
    pub(super) fn established_leader(&self) -> Option<NodeId> {
        let leader = self.current_leader()?;
        let core = self.node(leader).core()?;
        let (term, voters) = (core.term(), core.conf_state().voters);
        let following = voters
            .iter()
            .filter_map(|&v| self.node(v).core())
            .filter(|c| c.term() == term && c.leader() == leader)
            .count();
        (following > voters.len() / 2).then_some(leader)
    }

    /// The members (voters and learners) of the configuration of the node with the
    /// highest commit index: the replicas that must converge. Nodes removed from the
    /// group no longer receive its log.
    pub(super) fn members(&self) -> Vec<NodeId> {
        let Some(conf) = self
            .nodes
            .iter()
            .filter_map(|n| n.core())
            .max_by_key(|c| (c.commit_index(), c.term()))
            .map(|c| c.conf_state())
        else {
            return self.ids();
        };
        self.ids()
            .into_iter()
            .filter(|&id| conf.contains(id))
            .collect()
    }

    /// Every member runs, is idle, and has applied everything any node knows
    /// committed.
    fn converged(&self) -> bool {
        let Some(max_commit) = self
            .nodes
            .iter()
            .map(|n| n.core().map_or(0, |c| c.commit_index()))
            .max()
        else {
            return true;
        };
        let members = self.members();
        self.nodes
            .iter()
            .filter(|n| members.contains(&n.id))
            .all(|n| {
                n.process.as_ref().is_some_and(|p| {
                    p.is_idle()
                        && p.core.applied_index() == max_commit
                        && p.storage.applied_index() == max_commit
                })
            })
    }

    /// Every acknowledged write is in every member's replica; all of them hold
    /// the same data.
    fn final_checks(&mut self) -> Result<(), Stop> {
        let members = self.members();
        for (attempt, key, value) in self.client.acknowledged() {
            for node in self.nodes.iter().filter(|n| members.contains(&n.id)) {
                let p = node.process.as_ref().expect("converged nodes run");
                let found = p.storage.get(key).map_err(|error| Stop::Storage {
                    node: node.id,
                    error,
                })?;
                if found.as_ref() != Some(value) {
                    return Err(Violation::new(
                        Invariant::LostAcknowledgedWrite,
                        vec![node.id],
                        format!(
                            "proposal #{attempt} ({key:?} = {value:?}) was acknowledged, but node \
                             {} holds {found:?} for it",
                            node.id
                        ),
                    )
                    .into());
                }
            }
        }
        let mut prints = Vec::with_capacity(self.nodes.len());
        for node in self.nodes.iter().filter(|n| members.contains(&n.id)) {
            let p = node.process.as_ref().expect("converged nodes run");
            let print = p.storage.digest().map_err(|error| Stop::Storage {
                node: node.id,
                error,
            })?;
            prints.push((node.id, print));
        }
        if let Some(&(other, _)) = prints.iter().find(|(_, p)| *p != prints[0].1) {
            return Err(Violation::new(
                Invariant::ReplicaDivergence,
                vec![prints[0].0, other],
                format!(
                    "nodes {} and {other} applied the same log but hold different data",
                    prints[0].0
                ),
            )
            .into());
        }
        self.record(TraceEvent::Phase("end: all checks passed"));
        Ok(())
    }

    fn stuck(&self, bound: LivenessBound, detail: String) -> Stop {
        Stop::Liveness {
            bound,
            nodes: self.ids(),
            detail,
        }
    }

    /// One line per node: role, term, leader, log, commit and applied indexes.
    fn describe_cluster(&self) -> String {
        let parts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| match n.core() {
                Some(c) => format!(
                    "node {}: {} term {} leader {} last {} commit {} applied {}",
                    n.id,
                    c.role().as_str(),
                    c.term(),
                    c.leader(),
                    c.last_index(),
                    c.commit_index(),
                    c.applied_index()
                ),
                None => format!("node {}: down", n.id),
            })
            .collect();
        parts.join("; ")
    }
}
