//! Client requests on the consensus thread, for the group they are for:
//! proposals, read barriers, waits for an applied index, and the control
//! requests (membership, leadership transfer).

use std::sync::atomic::Ordering;

use keel_raft::{ProposeError, ReadIndexError};

use super::apply::ApplyJob;
use super::ctx::NodeCtx;
use super::group::Group;
use super::requests::{NodeError, Request};
use crate::error::ServerError;

impl Group {
    /// Answers `reply` once the entry proposed at `at` (index, term) is applied
    /// (or another entry took its index, or the deadline passed).
    pub(crate) fn answer_when_applied(
        &mut self,
        ctx: &NodeCtx,
        (index, term): (keel_raft::Index, keel_raft::Term),
        deadline: std::time::Instant,
        reply: tokio::sync::oneshot::Sender<super::requests::WriteResult>,
    ) -> Result<(), ServerError> {
        // Counted here, so a burst within one turn is bounded too; the apply
        // thread recounts as it answers.
        self.writes_in_flight.fetch_add(1, Ordering::Relaxed);
        let job = ApplyJob::Register {
            index,
            term,
            leader: self.raft.id(),
            deadline,
            reply,
        };
        self.hand_to_apply(ctx, job)
    }

    /// Serves one request, or refuses it (overload, not the leader, ...).
    pub(crate) fn handle_request(
        &mut self,
        ctx: &mut NodeCtx,
        r: Request,
    ) -> Result<(), ServerError> {
        // Control requests are few and must get through even under load.
        let r = match r {
            Request::TransferLeader { to, reply } => {
                self.transfer_leader(to, reply);
                return Ok(());
            }
            Request::ChangeMembers {
                change,
                deadline,
                reply,
            } => return self.change_members(ctx, change, deadline, reply),
            r => r,
        };
        let in_flight = self.writes_in_flight.load(Ordering::Relaxed) + self.reads.len();
        if in_flight >= ctx.max_pending {
            r.refuse(NodeError::Overloaded(format!(
                "{in_flight} requests in flight"
            )));
            return Ok(());
        }
        match r {
            Request::Write {
                data,
                deadline,
                reply,
            } => match self.raft.propose(data) {
                Ok((index, term)) => {
                    ctx.metrics.proposals.inc();
                    self.answer_when_applied(ctx, (index, term), deadline, reply)?;
                }
                Err(e) => {
                    let (err, reason) = match e {
                        ProposeError::NotLeader { leader } => {
                            (NodeError::NotLeader { leader }, "not_leader")
                        }
                        ProposeError::Overloaded { .. } => {
                            (NodeError::Overloaded(e.to_string()), "overloaded")
                        }
                        ProposeError::TooLarge { .. } => {
                            (NodeError::Invalid(e.to_string()), "too_large")
                        }
                        // The target is about to lead: send the client there.
                        ProposeError::TransferInProgress { to } => {
                            (NodeError::NotLeader { leader: to }, "transfer")
                        }
                        ProposeError::DiskFull => (
                            NodeError::DiskFull(ctx.disk.client_message(self.raft.id())),
                            "disk_full",
                        ),
                    };
                    ctx.metrics.refused(reason);
                    let _ = reply.send(Err(err));
                }
            },
            Request::ReadBarrier { deadline, reply } => {
                let read = self.reads.add(deadline, reply);
                if let Err(e) = self.raft.read_index(read) {
                    let err = match e {
                        ReadIndexError::NotLeader { leader } => NodeError::NotLeader { leader },
                        ReadIndexError::Overloaded { .. } => NodeError::Overloaded(e.to_string()),
                    };
                    self.reads.fail(read, err);
                }
            }
            Request::WaitApplied {
                index,
                deadline,
                reply,
            } => self.hand_to_apply(
                ctx,
                ApplyJob::Read {
                    index,
                    deadline,
                    reply,
                },
            )?,
            Request::TransferLeader { to, reply } => self.transfer_leader(to, reply),
            Request::ChangeMembers {
                change,
                deadline,
                reply,
            } => return self.change_members(ctx, change, deadline, reply),
        }
        Ok(())
    }
}
