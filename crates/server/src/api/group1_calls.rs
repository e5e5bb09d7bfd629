//! Group 1's cluster calls on a node outside group 1's configuration (one that
//! joined through placement: docs/sharding.md, *Serving*). Such a node keeps
//! an inert replica of group 1 that never hears of a change and knows no
//! leader, so answering from it would be stale (the member list) or fail with
//! NO_LEADER (member changes, leader transfer). Instead these calls are asked
//! of group 1's members from the cluster map (`placement/group1_mirror.rs`
//! keeps them in line with group 1's configuration), the way key operations
//! of a group the node does not host are forwarded (`group_forward.rs`): a
//! member that does not lead answers NOT_LEADER naming the leader, who is
//! asked next, and the first answer goes back to the client as it came.
//!
//! One hop only: a forwarded call carries [`super::group_forward::GROUP_FORWARDED_HEADER`],
//! and a node outside group 1 that receives one answers NO_LEADER instead of
//! forwarding it again (a stale map could otherwise pass it around).

use keel_client::AuthChannel;
use keel_proto::error::ErrorDetail;
use keel_proto::v1::cluster_client::ClusterClient;

use super::forward::Forwarder;
use super::group_forward::{Hop, Members, other_members};
use super::{ApiContext, DetailExt};
use crate::node::KV_GROUP;

impl ApiContext {
    /// Whether group 1's cluster calls are asked of group 1's members rather
    /// than answered here: this node joined through placement and group 1's
    /// configuration does not list it. (A placed node later added to group 1
    /// answers from its replica, like any member.)
    pub(crate) fn asks_group_1(&self) -> bool {
        !self.serves_kv_group()
    }

    /// Makes `call` with `req` on group 1's members from the cached map (see
    /// the module docs) and returns the first answer. `is_write` says whether
    /// a transport failure after sending leaves the outcome unknown. When no
    /// member answers: NO_LEADER (retryable; nothing was applied) saying so.
    pub(crate) async fn ask_group_1<Req, T, Fut>(
        &self,
        is_write: bool,
        req: Req,
        call: impl Fn(ClusterClient<AuthChannel>, tonic::Request<Req>) -> Fut,
    ) -> Result<T, ErrorDetail>
    where
        Req: Clone,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let members = self
            .maps
            .current()
            .map(|m| other_members(&m.map, KV_GROUP, self.id))
            .unwrap_or_default();
        let to = Members {
            group: KV_GROUP,
            members: &members,
            is_write,
        };
        self.ask_members(to, req, Forwarder::cluster, call)
            .await
            .map_err(|last| no_member_answered(self.id, last))
    }

    /// Refuses a group 1 call another node forwarded here if this node would
    /// forward it again (see the module docs): NO_LEADER, so that the sender
    /// asks its next member.
    pub(crate) fn one_hop(&self, hop: Hop) -> Result<(), ErrorDetail> {
        if hop == Hop::Forwarded && self.asks_group_1() {
            return Err(ErrorDetail::no_leader().with_message(format!(
                "node {} is outside group 1 and does not forward a forwarded call again",
                self.id
            )));
        }
        Ok(())
    }
}

/// The answer once no member of group 1 could serve the call: every answer
/// before proved nothing was applied, so the client may simply retry.
fn no_member_answered(me: u64, last: Option<ErrorDetail>) -> ErrorDetail {
    ErrorDetail::no_leader().with_message(format!(
        "node {me} is outside group 1 and no member of group 1 answered \
         (nothing was applied){}",
        last.map(|e| format!("; last: {}", e.message))
            .unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use keel_proto::error::Kind;

    use super::*;

    #[test]
    fn when_no_member_answers_the_client_may_retry_and_learns_why() {
        let none = no_member_answered(5, None);
        assert_eq!(none.kind(), Kind::NoLeader);
        assert!(
            none.message.contains("node 5 is outside group 1"),
            "{none:?}"
        );
        let down = ErrorDetail::no_leader().with_message("127.0.0.1:1 answered: down".into());
        let last = no_member_answered(5, Some(down));
        assert_eq!(last.kind(), Kind::NoLeader);
        assert!(last.message.ends_with("; last: 127.0.0.1:1 answered: down"));
    }
}
