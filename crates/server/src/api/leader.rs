//! Leader transfer (`keel leader transfer`, gRPC `Cluster.TransferLeader`):
//! hand group 1's leadership to another voter for planned maintenance. On a
//! node outside group 1 the call is asked of group 1's members
//! (`group1_calls.rs`), whose leader carries it out.

use keel_proto::error::ErrorDetail;
use keel_proto::v1::{TransferLeaderRequest, TransferLeaderResponse};

use super::ApiContext;

impl ApiContext {
    /// Hands leadership to voter `req.to` (0: the most caught-up one) and
    /// answers the new leader once it leads. Served by the leader; another
    /// member answers NOT_LEADER naming it.
    pub(crate) async fn transfer_leader(
        &self,
        req: TransferLeaderRequest,
    ) -> Result<TransferLeaderResponse, ErrorDetail> {
        if self.asks_group_1() {
            // Not a write: starting a transfer twice is harmless, so a call
            // cut off after sending may simply be retried.
            return self
                .ask_group_1(
                    false,
                    req,
                    |mut c, r| async move { c.transfer_leader(r).await },
                )
                .await;
        }
        let to = req.to;
        let conf = self.members.conf();
        if to != 0 && !conf.voters.contains(&to) {
            let why = if conf.learners.contains(&to) {
                format!("node {to} is a learner: only a voter can lead")
            } else {
                format!("node {to} is not a member")
            };
            return Err(ErrorDetail::invalid_argument(why));
        }
        let leader_id = self
            .node
            .transfer_leader(to, self.limits.request_timeout)
            .await
            .map_err(|e| self.error(e))?;
        Ok(TransferLeaderResponse { leader_id })
    }
}
