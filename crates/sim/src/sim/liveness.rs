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

use keel_raft::{GroupId, NodeId};

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
        while !self.leaders_established() {
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
        for r in self.clients.iter().flat_map(|c| &c.requests) {
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

    /// The liveness client of every group: opens new requests up to the
    /// configured number, and (re)tries every request that has no attempt in
    /// flight.
    pub(super) fn liveness_client(&mut self) -> Result<(), Stop> {
        if !self.requests_open {
            return Ok(());
        }
        for group in self.groups() {
            self.group_liveness_client(group)?;
        }
        Ok(())
    }

    fn group_liveness_client(&mut self, group: GroupId) -> Result<(), Stop> {
        let gi = (group - 1) as usize;
        if self.clients[gi].requests.len() < self.cfg.bounds.requests as usize {
            let backlog = self.backlog(group);
            self.clients[gi].new_request(self.now, backlog);
        }
        for r in 0..self.clients[gi].requests.len() {
            if !self.clients[gi].may_retry(r) {
                continue;
            }
            let hint = self.clients[gi].hint;
            let target = if hint != 0 && self.node(hint).is_up() {
                hint
            } else {
                let ids = self.group_ids(group);
                self.rng.pick(&ids).expect("a cluster has nodes")
            };
            let incarnation = self.node(target).incarnation;
            let (attempt, data) = self.clients[gi].propose(target, incarnation, Some(r), self.now);
            self.stats.proposals += 1;
            self.feed(target, Input::Propose { attempt, data })?;
        }
        Ok(())
    }

    fn all_requests_acked(&self) -> bool {
        self.clients.iter().all(|c| {
            c.requests.len() == self.cfg.bounds.requests as usize
                && c.requests.iter().all(|r| r.acked.is_some())
        })
    }

    /// A request must be acknowledged within the bound plus one tick per entry of
    /// the backlog it was issued behind (see [`Simulation::backlog`]).
    fn check_request_bounds(&self) -> Result<(), Stop> {
        let bound = self.cfg.bounds.commit_ticks;
        let late = self
            .clients
            .iter()
            .flat_map(|c| &c.requests)
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
    fn backlog(&self, group: GroupId) -> u64 {
        // Nodes that only just came back (a re-added member still catching up)
        // hold up no commit: count those that kept following.
        let members = self.members(group);
        let cores = self
            .nodes
            .iter()
            .filter(|n| members.contains(&n.id))
            .filter_map(|n| n.core());
        let longest = cores.clone().map(|c| c.last_index()).max().unwrap_or(0);
        let lowest_commit = cores.map(|c| c.commit_index()).min().unwrap_or(0);
        longest.saturating_sub(lowest_commit)
    }

    /// How many entries the slowest replica of any group has yet to apply.
    fn max_lag(&self) -> u64 {
        self.groups()
            .map(|group| {
                let members = self.members(group);
                let commits = self
                    .nodes
                    .iter()
                    .filter(|n| members.contains(&n.id))
                    .filter_map(|n| n.core());
                let max_commit = commits.clone().map(|c| c.commit_index()).max().unwrap_or(0);
                let min_applied = commits.map(|c| c.applied_index()).min().unwrap_or(0);
                max_commit.saturating_sub(min_applied)
            })
            .max()
            .unwrap_or(0)
    }

    /// Whether every group has an established leader.
    fn leaders_established(&self) -> bool {
        self.groups()
            .all(|group| self.established_leader(group).is_some())
    }

    /// A leader of `group` that leads, in its term, a majority of its
    /// configuration's voters that knows it.
    pub(super) fn established_leader(&self, group: GroupId) -> Option<NodeId> {
        let leader = self.current_leader(group)?;
        let core = self.node(leader).core()?;
        let (term, voters) = (core.term(), core.conf_state().voters);
        let following = voters
            .iter()
            .filter_map(|&v| self.node(v).core())
            .filter(|c| c.term() == term && c.leader() == leader)
            .count();
        (following > voters.len() / 2).then_some(leader)
    }

    /// The members (voters and learners) of the configuration of `group`'s
    /// replica with the highest commit index: the replicas that must converge.
    /// Nodes removed from the group no longer receive its log.
    pub(super) fn members(&self, group: GroupId) -> Vec<NodeId> {
        let ids = self.group_ids(group);
        let Some(conf) = ids
            .iter()
            .filter_map(|&id| self.node(id).core())
            .max_by_key(|c| (c.commit_index(), c.term()))
            .map(|c| c.conf_state())
        else {
            return ids;
        };
        ids.into_iter().filter(|&id| conf.contains(id)).collect()
    }

    /// In every group, every member runs, is idle, and has applied everything
    /// any replica knows committed.
    fn converged(&self) -> bool {
        self.groups().all(|group| self.group_converged(group))
    }

    fn group_converged(&self, group: GroupId) -> bool {
        let ids = self.group_ids(group);
        let Some(max_commit) = ids
            .iter()
            .map(|&id| self.node(id).core().map_or(0, |c| c.commit_index()))
            .max()
        else {
            return true;
        };
        let members = self.members(group);
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

    /// In every group, every acknowledged write is in every member's replica,
    /// and all of them hold the same data.
    fn final_checks(&mut self) -> Result<(), Stop> {
        for group in self.groups() {
            self.final_group_checks(group)?;
        }
        self.record(TraceEvent::Phase("end: all checks passed"));
        Ok(())
    }

    fn final_group_checks(&self, group: GroupId) -> Result<(), Stop> {
        let members = self.members(group);
        for (attempt, key, value) in self.clients[(group - 1) as usize].acknowledged() {
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
        Ok(())
    }

    fn stuck(&self, bound: LivenessBound, detail: String) -> Stop {
        Stop::Liveness {
            bound,
            nodes: self.nodes.iter().map(|n| n.id).collect(),
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
