//! Leadership transfer on the consensus thread (thesis §3.10): start it in the
//! core, choosing the target when the caller leaves it open.

use keel_raft::{NO_NODE, NodeId, TransferError};
use tokio::sync::oneshot;

use super::group::Group;
use super::requests::NodeError;

impl Group {
    /// Starts a transfer to `to`, or to the best target when `to` is 0, and
    /// answers with the target.
    pub(crate) fn transfer_leader(
        &mut self,
        to: NodeId,
        reply: oneshot::Sender<Result<NodeId, NodeError>>,
    ) {
        let target = if to == NO_NODE {
            match self.best_transfer_target() {
                Some(id) => id,
                None => {
                    let _ = reply.send(Err(NodeError::Invalid(
                        "no other voter is reachable to take over".into(),
                    )));
                    return;
                }
            }
        } else {
            to
        };
        let result = self
            .raft
            .transfer_leader(target)
            .map(|()| target)
            .map_err(|e| match e {
                TransferError::NotLeader { leader } => NodeError::NotLeader { leader },
                TransferError::ToSelf { .. } | TransferError::NotVoter { .. } => {
                    NodeError::Invalid(e.to_string())
                }
            });
        let _ = reply.send(result);
    }

    /// The active voter with the most of the log: the quickest to take over.
    pub(super) fn best_transfer_target(&self) -> Option<NodeId> {
        let status = self.raft.status();
        status
            .peers
            .iter()
            .filter(|p| p.active && p.id != status.id && status.conf.voters.contains(&p.id))
            .max_by_key(|p| (p.match_index, std::cmp::Reverse(p.id)))
            .map(|p| p.id)
    }
}
