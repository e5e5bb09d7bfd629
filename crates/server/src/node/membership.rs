//! Membership changes on the consensus thread: operators' requests (add, promote,
//! remove) checked against the cluster's health and proposed to the core; learners
//! promoted once caught up; and the member book and the transport kept in line with
//! the configuration in force.
//!
//! Refusals follow the Raft thesis §4 and etcd's operational experience:
//! - one change at a time (the core enforces it; the message says so);
//! - no add while a voter is unreachable: the learner is promoted once caught up,
//!   and a voter set that grows while members are down can lose its quorum;
//! - no removal or promotion after which the voters the leader can reach would not
//!   form a quorum of the new configuration;
//! - a learner is promoted only once within `promote_lag` entries of the leader's
//!   log, so that it does not slow commits down while it catches up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_raft::{ConfChange, ConfChangeError, ConfState, Entry, EntryKind, NodeId, Role, Status};
use tokio::sync::oneshot;

use super::ctx::NodeCtx;
use super::group::{Group, group_note};
use super::requests::{ChangeProposed, MemberChange, NodeError};
use crate::error::ServerError;
use crate::members::{MemberBook, MemberInfo, decode_context, encode_context};
use crate::peers::PeerIncarnations;

/// How often the leader looks for learners to promote.
const PROMOTION_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// The consensus thread's membership state.
pub(crate) struct Membership {
    pub(crate) book: Arc<MemberBook>,
    pub(crate) incarnations: Arc<PeerIncarnations>,
    /// A learner is promoted once within this many entries of the leader's log.
    pub(crate) promote_lag: u64,
    /// Index of the newest ConfChange entry appended (the configuration's index).
    pub(crate) conf_index: u64,
    next_promotion_check: Instant,
    /// The configuration the book and transport were last brought in line with.
    synced: Option<ConfState>,
    /// Whether this node's removal was noted in the event log.
    removal_noted: bool,
    /// Changes that arrived before this leader committed an entry of its term
    /// (e.g. just after a leadership transfer): retried each turn until it has,
    /// rather than refused, since that takes one round trip.
    deferred: Vec<Deferred>,
}

/// A change waiting for the leader's first commit in its term.
struct Deferred {
    change: MemberChange,
    deadline: Instant,
    reply: oneshot::Sender<Result<ChangeProposed, NodeError>>,
}

impl Membership {
    /// Whether a change waits for this leader's first commit in its term.
    pub(crate) fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    pub(crate) fn new(
        book: Arc<MemberBook>,
        incarnations: Arc<PeerIncarnations>,
        promote_lag: u64,
        conf_index: u64,
    ) -> Self {
        Membership {
            book,
            incarnations,
            promote_lag,
            conf_index,
            next_promotion_check: Instant::now(),
            synced: None,
            removal_noted: false,
            deferred: Vec::new(),
        }
    }
}

/// What [`Driver::propose_member_change`] did.
enum Proposal {
    /// Appended at this index and term.
    Appended(u64, u64),
    /// Nothing to do: the configuration (at this index) already has it.
    Already(u64),
    /// Not yet: this leader has not committed an entry of its term.
    NotYet,
}

/// Reads the member book entry an `AddLearner` entry carries.
pub(crate) fn member_of_entry(e: &Entry) -> Option<(NodeId, MemberInfo)> {
    if e.kind != EntryKind::ConfChange {
        return None;
    }
    match ConfChange::decode_with_context(&e.data) {
        Ok((ConfChange::AddLearner(id), ctx)) if !ctx.is_empty() => match decode_context(ctx) {
            Ok(info) => Some((id, info)),
            Err(err) => {
                tracing::warn!(
                    "membership change at index {} for node {id}: {err}",
                    e.index
                );
                None
            }
        },
        _ => None,
    }
}

impl Group {
    /// Step 1 of a Ready, before its messages go out: learns the addresses that
    /// appended `AddLearner` entries carry, so the leader can reach a new member at
    /// once. A re-added node may come with a fresh data directory: its old
    /// incarnation is forgotten.
    pub(super) fn note_conf_entries(&mut self, ctx: &mut NodeCtx, entries: &[Entry]) {
        for e in entries.iter().filter(|e| e.kind == EntryKind::ConfChange) {
            self.membership.conf_index = self.membership.conf_index.max(e.index);
            if let Some((id, info)) = member_of_entry(e) {
                if let Err(err) = self.membership.incarnations.forget(id) {
                    tracing::warn!("cannot forget node {id}'s old incarnation: {err}");
                }
                if self.is_primary() {
                    ctx.transport.set_peer(id, &info.address);
                }
                self.membership.book.record(id, info);
            }
        }
    }

    /// Book entries from an installed snapshot.
    pub(super) fn learn_members(&mut self, ctx: &mut NodeCtx, entries: Vec<(NodeId, MemberInfo)>) {
        for (id, info) in entries {
            if self.is_primary() {
                ctx.transport.set_peer(id, &info.address);
            }
            self.membership.book.record(id, info);
        }
    }

    /// Once a turn: brings the book and the transport in line with the
    /// configuration in force, and on the leader promotes caught-up learners.
    pub(super) fn membership_turn(
        &mut self,
        ctx: &mut NodeCtx,
        status: &Status,
    ) -> Result<(), ServerError> {
        for d in std::mem::take(&mut self.membership.deferred) {
            self.change_members(ctx, d.change, d.deadline, d.reply)?;
        }
        self.sync_members(ctx, status);
        // Peers refusing us as a non-member while no leader talks to us: we were
        // removed and missed the entry. (A member that just joined can be refused
        // by a peer that has not heard of it yet, but it has a leader.)
        // Only a node that counts itself a member can have been removed: one
        // that joined through placement is in no group 1 configuration.
        if !self.membership.removal_noted
            && self.is_primary()
            && status.conf.contains(status.id)
            && ctx.transport.refused_as_non_member() > 0
            && (status.leader == keel_raft::NO_NODE || status.role != Role::Follower)
        {
            self.note_removal(status.id, "its peers refuse its messages as a non-member's");
        }
        if status.role == Role::Leader && Instant::now() >= self.membership.next_promotion_check {
            self.membership.next_promotion_check = Instant::now() + PROMOTION_CHECK_INTERVAL;
            self.promote_caught_up_learners(status);
        }
        Ok(())
    }

    /// The primary group's configuration also decides which peers the transport
    /// keeps connections to (until the cluster map does, docs/sharding.md).
    fn sync_members(&mut self, ctx: &mut NodeCtx, status: &Status) {
        let primary = self.is_primary();
        let m = &mut self.membership;
        m.book
            .set_conf(&status.conf, m.conf_index, status.pending_conf_index != 0);
        if m.synced.as_ref() == Some(&status.conf) {
            return;
        }
        let me = status.id;
        let was_member = m.synced.as_ref().is_some_and(|c| c.contains(me));
        let conf = status.conf.clone();
        for id in conf.voters.iter().chain(&conf.learners) {
            if let Some(addr) = m.book.address(*id)
                && primary
            {
                ctx.transport.set_peer(*id, &addr);
            }
        }
        // Close connections to members that left; keep the others (a node that
        // just joined also knows members its log does not mention yet).
        if let Some(prev) = &m.synced
            && primary
        {
            ctx.transport
                .retain_peers(|id| conf.contains(id) || !prev.contains(id));
        }
        let removed = was_member && !conf.contains(me);
        let line = if removed {
            None
        } else if m.synced.is_some() {
            Some(format!(
                "Node {me} now uses the configuration voters {:?}, learners {:?} (log index {}).",
                conf.voters, conf.learners, m.conf_index
            ))
        } else {
            None
        };
        m.synced = Some(conf);
        if let Some(line) = line {
            group_note(&self.events, &line);
        }
        if removed {
            self.note_removal(me, "its log holds the change");
        }
    }

    /// Notes, once, that this node is no longer a member.
    fn note_removal(&mut self, me: NodeId, how: &str) {
        self.membership.removal_noted = true;
        let line = format!(
            "Node {me} was removed from the cluster ({how}); it no longer takes part. Stop \
             it, or wipe its data directory and add it back as a new member."
        );
        group_note(&self.events, &line);
    }

    fn promote_caught_up_learners(&mut self, status: &Status) {
        if status.pending_conf_index != 0 || status.lead_transferee != 0 {
            return;
        }
        for p in status.peers.iter().filter(|p| p.learner) {
            let wanted = self
                .membership
                .book
                .info(p.id)
                .is_some_and(|info| info.promote);
            if !wanted || self.lag_refusal(status, p.id).is_some() {
                continue;
            }
            if !self
                .raft
                .change_keeps_quorum(ConfChange::PromoteLearner(p.id))
            {
                continue;
            }
            match self
                .raft
                .propose_conf_change(ConfChange::PromoteLearner(p.id))
            {
                Ok((index, _)) => {
                    let line = format!(
                        "Node {} promotes learner {} to voter (log index {index}): it holds \
                         {} of {} entries.",
                        status.id, p.id, p.match_index, status.last_index
                    );
                    group_note(&self.events, &line);
                    return;
                }
                Err(e) => tracing::debug!("not promoting node {} yet: {e}", p.id),
            }
        }
    }

    /// Why learner `id` is not caught up enough to become a voter, if it is not.
    fn lag_refusal(&self, status: &Status, id: NodeId) -> Option<String> {
        let Some(p) = status.peers.iter().find(|p| p.id == id) else {
            return Some(format!(
                "the leader has no replication progress for node {id}"
            ));
        };
        if !p.active {
            return Some(format!("node {id} has not been heard from recently"));
        }
        let lag = status.last_index.saturating_sub(p.match_index);
        if lag > self.membership.promote_lag {
            return Some(format!(
                "node {id} has not caught up: it holds {} of {} entries, and is promoted \
                 once within {} of the leader",
                p.match_index, status.last_index, self.membership.promote_lag
            ));
        }
        None
    }

    /// An operator's membership change: checked, proposed, and registered to be
    /// answered when applied.
    pub(super) fn change_members(
        &mut self,
        ctx: &mut NodeCtx,
        change: MemberChange,
        deadline: Instant,
        reply: oneshot::Sender<Result<ChangeProposed, NodeError>>,
    ) -> Result<(), ServerError> {
        match self.propose_member_change(ctx, &change) {
            Ok(Proposal::Already(index)) => {
                let _ = reply.send(Ok(ChangeProposed {
                    index,
                    applied: None,
                }));
            }
            Ok(Proposal::Appended(index, term)) => {
                let (tx, rx) = oneshot::channel();
                self.answer_when_applied(ctx, (index, term), deadline, tx)?;
                let _ = reply.send(Ok(ChangeProposed {
                    index,
                    applied: Some(rx),
                }));
            }
            Ok(Proposal::NotYet) if Instant::now() < deadline => {
                self.membership.deferred.push(Deferred {
                    change,
                    deadline,
                    reply,
                });
            }
            Ok(Proposal::NotYet) => {
                let _ = reply.send(Err(NodeError::Refused(
                    "the leader has not committed an entry of its term yet; retry in a moment"
                        .into(),
                )));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
        Ok(())
    }

    fn propose_member_change(
        &mut self,
        ctx: &NodeCtx,
        change: &MemberChange,
    ) -> Result<Proposal, NodeError> {
        let status = self.raft.status();
        if status.role != Role::Leader {
            return Err(NodeError::NotLeader {
                leader: status.leader,
            });
        }
        // A new leader knows what is committed only once it has committed an
        // entry of its own term (one round trip): until then a change it inherited
        // may look in flight when it is not. Wait for that rather than refuse.
        if self.raft.log_term(status.commit) != Some(status.term) {
            return Ok(Proposal::NotYet);
        }
        if status.pending_conf_index != 0 {
            return Err(in_progress(status.pending_conf_index));
        }
        let book = self.membership.book.clone();
        let (conf_change, context) = match *change {
            MemberChange::Add {
                id,
                ref address,
                promote,
            } => {
                if status.conf.contains(id) {
                    return match book.address(id) {
                        Some(a) if a == *address => {
                            Ok(Proposal::Already(self.membership.conf_index))
                        }
                        a => Err(NodeError::Invalid(format!(
                            "node {id} is already a member (at {}); remove it first to \
                             change its address",
                            a.unwrap_or_else(|| "an unknown address".into())
                        ))),
                    };
                }
                if let Some(other) = book.member_at(address) {
                    return Err(NodeError::Invalid(format!(
                        "address {address} is already used by member {other}"
                    )));
                }
                let unreachable = unreachable_voters(&status);
                if !unreachable.is_empty() {
                    return Err(NodeError::Refused(format!(
                        "the cluster is unhealthy: the leader has not heard from voter(s) \
                         {unreachable:?} recently. Adding a member now could leave the \
                         cluster without a quorum once it is promoted; restart or remove \
                         them first"
                    )));
                }
                let info = MemberInfo {
                    address: address.clone(),
                    promote,
                };
                (ConfChange::AddLearner(id), encode_context(&info))
            }
            MemberChange::Promote(id) => {
                if !status.conf.learners.contains(&id) {
                    return Err(NodeError::Invalid(if status.conf.voters.contains(&id) {
                        format!("node {id} is already a voter")
                    } else {
                        format!("node {id} is not a member")
                    }));
                }
                if let Some(why) = self.lag_refusal(&status, id) {
                    return Err(NodeError::Refused(why));
                }
                (ConfChange::PromoteLearner(id), Vec::new())
            }
            MemberChange::Remove(id) => {
                if !status.conf.contains(id) {
                    return Err(NodeError::Invalid(format!("node {id} is not a member")));
                }
                if id == status.id {
                    return Err(NodeError::Refused(
                        "this node leads the cluster: hand leadership over before removing it"
                            .into(),
                    ));
                }
                (ConfChange::Remove(id), Vec::new())
            }
        };
        let adds_voter = matches!(conf_change, ConfChange::PromoteLearner(_));
        if (adds_voter || matches!(conf_change, ConfChange::Remove(_)))
            && !self.raft.change_keeps_quorum(conf_change)
        {
            let after = conf_change
                .apply_to(&status.conf)
                .map(|c| c.voters)
                .unwrap_or_default();
            let active = self.raft.recently_active_voters();
            return Err(NodeError::Refused(format!(
                "{} would leave voters {after:?}, of which the leader reaches only \
                 {active:?} — fewer than a quorum of {}; bring members back first",
                describe(conf_change),
                after.len() / 2 + 1
            )));
        }
        match self
            .raft
            .propose_conf_change_with_context(conf_change, &context)
        {
            Ok((index, term)) => {
                ctx.metrics.proposals.inc();
                Ok(Proposal::Appended(index, term))
            }
            Err(ConfChangeError::NotCommittedInTerm { .. }) => Ok(Proposal::NotYet),
            Err(e) => Err(refusal(e)),
        }
    }

    /// At shutdown: changes still waiting were never proposed.
    pub(super) fn fail_deferred_changes(&mut self) {
        self.refuse_deferred_changes(&NodeError::ShuttingDown);
    }

    /// Answers changes still waiting (never proposed) with `err`.
    pub(super) fn refuse_deferred_changes(&mut self, err: &NodeError) {
        for d in self.membership.deferred.drain(..) {
            let _ = d.reply.send(Err(err.clone()));
        }
    }
}

fn describe(c: ConfChange) -> String {
    match c {
        ConfChange::AddLearner(id) => format!("adding node {id}"),
        ConfChange::PromoteLearner(id) => format!("promoting node {id}"),
        ConfChange::Remove(id) => format!("removing node {id}"),
    }
}

fn in_progress(index: u64) -> NodeError {
    NodeError::Refused(format!(
        "another membership change (log index {index}) is still being committed; only one \
         may be in flight — retry once it is"
    ))
}

/// Voters the leader has not heard from recently.
fn unreachable_voters(status: &Status) -> Vec<NodeId> {
    status
        .conf
        .voters
        .iter()
        .copied()
        .filter(|&v| v != status.id && !status.peers.iter().any(|p| p.id == v && p.active))
        .collect()
}

fn refusal(e: ConfChangeError) -> NodeError {
    match e {
        ConfChangeError::NotLeader { leader } => NodeError::NotLeader { leader },
        ConfChangeError::TransferInProgress { to } => NodeError::NotLeader { leader: to },
        ConfChangeError::InProgress { index } => in_progress(index),
        ConfChangeError::Propose(keel_raft::ProposeError::Overloaded { .. }) => {
            NodeError::Overloaded(e.to_string())
        }
        ConfChangeError::Propose(keel_raft::ProposeError::NotLeader { leader }) => {
            NodeError::NotLeader { leader }
        }
        ConfChangeError::Propose(keel_raft::ProposeError::DiskFull) => NodeError::DiskFull(
            "disk full: this leader cannot write its log; free space on its data directory".into(),
        ),
        other => NodeError::Invalid(other.to_string()),
    }
}
