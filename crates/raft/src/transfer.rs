//! Leadership transfer (thesis §3.10): the leader stops taking proposals, brings
//! the target's log up to date, and tells it to campaign at once with
//! `TimeoutNow`. The target's vote requests carry the `transfer` flag, so voters
//! that heard from the leader recently still consider them (the flag marks a
//! request the leader itself asked for, not a disruption). If the target has not
//! taken over within an election timeout, the leader aborts and takes proposals
//! again.

use crate::error::TransferError;
use crate::message::MessageBody;
use crate::raft::Raft;
use crate::ready::{Event, Role};
use crate::types::{NO_NODE, NodeId};

impl Raft {
    /// Starts handing leadership to voter `to`. While the transfer runs,
    /// proposals and membership changes are refused with `TransferInProgress`. A
    /// transfer to another target replaces the one running.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), TransferError> {
        self.assert_not_in_ready();
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader {
                leader: self.leader,
            });
        }
        // A transfer needs the group (its target must hear from us): wake it, and
        // count it as activity.
        self.wake_up();
        self.idle_ticks = 0;
        if to == self.cfg.id {
            return Err(TransferError::ToSelf { id: to });
        }
        if !self.voters.contains(&to) {
            return Err(TransferError::NotVoter { id: to });
        }
        if self.lead_transferee == to {
            return Ok(());
        }
        if self.lead_transferee != NO_NODE {
            self.abort_transfer("replaced by a transfer to another node");
        }
        self.lead_transferee = to;
        self.transfer_elapsed = 0;
        self.events.push(Event::TransferStarted { to });
        let caught_up = self
            .progress
            .get(&to)
            .is_some_and(|p| p.match_index == self.log.last_index());
        if caught_up {
            self.send_timeout_now(to);
        } else {
            self.send_append(to, false);
        }
        Ok(())
    }

    /// The node leadership is being handed to, or 0.
    pub fn lead_transferee(&self) -> NodeId {
        self.lead_transferee
    }

    pub(crate) fn send_timeout_now(&mut self, to: NodeId) {
        // The target campaigns without waiting out our lease: end it first.
        self.revoke_lease();
        self.send(to, MessageBody::TimeoutNow, false);
    }

    /// Leader: `from` acknowledged a match; if it is the transfer's target and now
    /// holds the whole log, tell it to campaign.
    pub(crate) fn maybe_finish_transfer(&mut self, from: NodeId) {
        if from == self.lead_transferee
            && self
                .progress
                .get(&from)
                .is_some_and(|p| p.match_index == self.log.last_index())
        {
            self.send_timeout_now(from);
        }
    }

    /// Leader tick: a transfer not done within an election timeout is abandoned.
    pub(crate) fn tick_transfer(&mut self) {
        if self.lead_transferee == NO_NODE {
            return;
        }
        self.transfer_elapsed += 1;
        if self.transfer_elapsed >= self.cfg.election_ticks {
            self.abort_transfer("the target did not take over within an election timeout");
        }
    }

    pub(crate) fn abort_transfer(&mut self, reason: &'static str) {
        let to = std::mem::replace(&mut self.lead_transferee, NO_NODE);
        self.transfer_elapsed = 0;
        if to != NO_NODE {
            self.events.push(Event::TransferAborted { to, reason });
        }
    }

    /// Follower: the leader asks us to campaign now. A learner, or a node the
    /// configuration no longer lists, cannot lead and ignores it; so does a node
    /// whose disk is full (`disk.rs`): the transfer then aborts on its timeout.
    pub(crate) fn handle_timeout_now(&mut self) {
        if self.is_voter() && !self.disk_full {
            self.start_election(false, true);
        }
    }
}
