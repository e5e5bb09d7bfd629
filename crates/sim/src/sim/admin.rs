//! The operator: membership changes and leadership transfers during the fault
//! phase, sent to whoever leads, while partitions and crashes go on.
//!
//! Each event picks one of: remove a voter (the leader included), add a removed
//! node back as a learner, promote a learner, or hand leadership to another voter.
//! Removed nodes keep running with their disks (as a node taken out and later put
//! back would): they must not disrupt the others, and when added back they catch
//! up from wherever their log ended. The core refuses what it must (a second
//! change in flight, a change before the leader committed in its term, a transfer
//! to a learner); those refusals are part of what is exercised.
//!
//! Runs with neither pre-vote nor check-quorum do no membership changes: without
//! either, a removed node that did not learn of its removal disrupts the cluster
//! forever (thesis §4.2.3), a liveness failure the core does not claim to avoid.

use keel_raft::{ConfChange, GroupId, NodeId};

use super::{Phase, Scheduled, Simulation, Stop};
use crate::config::{Bug, Time};
use crate::node::Input;

impl Simulation {
    /// Whether the operator acts in this run.
    pub(super) fn admin_enabled(&self) -> bool {
        self.cfg.faults
            && self.cfg.nodes > 1
            && (self.raft.pre_vote || self.raft.check_quorum)
            && self.fault_mix().with_operator()
    }

    /// Time until the operator's next action: a few election timeouts, so that
    /// most changes commit before the next one and the cluster spends real time
    /// in each configuration.
    pub(super) fn admin_gap(&mut self) -> Time {
        let e = self.election_time();
        self.rng.range(e, 4 * e)
    }

    pub(super) fn on_admin(&mut self) -> Result<(), Stop> {
        if self.phase != Phase::Chaos {
            return self.restore_membership();
        }
        let gap = self.admin_gap();
        self.schedule(gap, Scheduled::Admin);
        if self.client_idle() {
            return Ok(());
        }
        let group = self.pick_group();
        let Some(leader) = self.current_leader(group) else {
            return Ok(());
        };
        let Some(core) = self.node(leader).core() else {
            return Ok(());
        };
        let conf = core.conf_state();
        let removed: Vec<NodeId> = self
            .group_ids(group)
            .into_iter()
            .filter(|id| !conf.contains(*id))
            .collect();
        let others: Vec<NodeId> = conf
            .voters
            .iter()
            .copied()
            .filter(|&v| v != leader)
            .collect();
        let input = match self.rng.below(8) {
            0..=1 if conf.voters.len() > 1 => {
                // Sometimes the leader itself (thesis §4.2.2).
                let victim = if self.rng.one_in(3) {
                    Some(leader)
                } else {
                    self.rng.pick(&others)
                };
                victim.map(|v| Input::ConfChange(ConfChange::Remove(v)))
            }
            2..=3 => self
                .rng
                .pick(&removed)
                .map(|n| Input::ConfChange(ConfChange::AddLearner(n))),
            4..=5 => self
                .rng
                .pick(&conf.learners)
                .map(|n| Input::ConfChange(ConfChange::PromoteLearner(n))),
            _ => {
                // A learner now and then, to see it refused.
                let target = if self.rng.one_in(4) && !conf.learners.is_empty() {
                    self.rng.pick(&conf.learners)
                } else {
                    self.rng.pick(&others)
                };
                target.map(Input::Transfer)
            }
        };
        let Some(input) = input else {
            return Ok(());
        };
        self.feed(leader, input)?;
        if self.bug(Bug::ConcurrentConfChanges) {
            // With the core's one-change-in-flight rule off, pile a second change
            // on the first: add a removed node and promote it at once.
            if let Some(&n) = removed.first() {
                self.feed(leader, Input::ConfChange(ConfChange::AddLearner(n)))?;
                self.feed(leader, Input::ConfChange(ConfChange::PromoteLearner(n)))?;
            }
        }
        Ok(())
    }
}

impl Simulation {
    /// Liveness phase: the operator puts every node back as a voter of every
    /// group, one change per group at a time (retrying every half election
    /// timeout until the leader takes it), so that the run ends with the cluster
    /// it started with: removed nodes catch up — and so resolve the client
    /// requests they had accepted while they led — and every replica must
    /// converge.
    fn restore_membership(&mut self) -> Result<(), Stop> {
        // One look again for all groups, however many need one.
        let mut again = false;
        for group in self.groups() {
            self.restore_group_membership(group, &mut again)?;
        }
        Ok(())
    }

    /// [`Simulation::restore_membership`] for one group; schedules the next look
    /// unless `again` says it is scheduled already.
    fn restore_group_membership(&mut self, group: GroupId, again: &mut bool) -> Result<(), Stop> {
        let mut look_again = |sim: &mut Self| {
            if !std::mem::replace(again, true) {
                sim.schedule(sim.election_time() / 2, Scheduled::Admin);
            }
        };
        let Some(leader) = self.current_leader(group) else {
            look_again(self);
            return Ok(());
        };
        let Some(core) = self.node(leader).core() else {
            return Ok(());
        };
        let conf = core.conf_state();
        let missing = self
            .group_ids(group)
            .into_iter()
            .find(|id| !conf.contains(*id));
        let pending = core.pending_conf_index();
        let change = match (missing, conf.learners.first()) {
            (Some(n), _) => ConfChange::AddLearner(n),
            (None, Some(&n)) => ConfChange::PromoteLearner(n),
            (None, None) if pending == 0 => return Ok(()),
            (None, None) => {
                look_again(self);
                return Ok(());
            }
        };
        look_again(self);
        self.feed(leader, Input::ConfChange(change))
    }

    /// Whether every node is a voter of the committed configuration of each
    /// group's current leader.
    pub(super) fn membership_restored(&self) -> bool {
        self.groups().all(|group| {
            let Some(core) = self.current_leader(group).and_then(|l| self.node(l).core()) else {
                return false;
            };
            core.pending_conf_index() == 0 && core.conf_state().voters.len() == self.cfg.nodes
        })
    }
}
