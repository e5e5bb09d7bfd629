//! Where a map change goes when this node cannot apply it: to the placement
//! group's leader, one hop, found by asking.
//!
//! Why forward rather than answer NOT_LEADER: clients follow NOT_LEADER hints
//! to group 1's leader, and the placement group's leader is another node in
//! general, so a hint would mislead the client's routing. Instead the node
//! forwards: first to the leader its own placement replica knows of (if it is
//! a member), then to each placement member in turn. A member that does not
//! lead answers a forwarded call with the leader it knows (NOT_LEADER), which
//! is tried next, a few times at most. Forwarded calls carry
//! [`FORWARDED_HEADER`] and are never forwarded again, so stale views cannot
//! pass a call around in a loop. If no member could apply it, the client gets
//! NO_LEADER (nothing changed) and retries.

use keel_proto::error::{ErrorDetail, Kind};
use keel_proto::v1::{ChangeMapRequest, ChangeMapResponse};
use keel_raft::NodeId;

use super::forward::call_leader;
use super::{ApiContext, DetailExt};

/// gRPC metadata marking a `ChangeMap` call forwarded by another node.
pub(crate) const FORWARDED_HEADER: &str = "keel-map-forwarded";

/// Leader hints followed within one call (two members naming each other
/// during an election cost a few hops, not a loop).
const MAX_REDIRECTS: usize = 3;

impl ApiContext {
    /// Sends `req` on to the placement leader and returns its answer.
    pub(super) async fn forward_map_change(
        &self,
        req: ChangeMapRequest,
    ) -> Result<ChangeMapResponse, ErrorDetail> {
        let hint = self
            .placement
            .node
            .as_ref()
            .map_or(0, |n| n.status().leader);
        let mut queue: Vec<String> = candidates(hint, &self.placement.members, self.id)
            .into_iter()
            .map(|id| self.placement_address(id))
            .filter(|a| !a.is_empty())
            .collect();
        // Tried in order: `queue` is used as a stack, so reverse it once.
        queue.reverse();
        if queue.is_empty() {
            return Err(ErrorDetail::no_leader().with_message(format!(
                "node {} knows no placement member to send the change to",
                self.id
            )));
        }
        let timeout = self.limits.request_timeout;
        let mut redirects = 0;
        let mut last = String::new();
        while let Some(address) = queue.pop() {
            let forwarded = req.clone();
            let result = call_leader(self.cluster_client(&address), true, |mut c| async move {
                let mut request = tonic::Request::new(forwarded);
                request.set_timeout(timeout);
                request
                    .metadata_mut()
                    .insert(FORWARDED_HEADER, tonic::metadata::MetadataValue::from(1u32));
                c.change_map(request).await
            })
            .await;
            let e = match result {
                Ok(response) => return Ok(response),
                Err(e) => e,
            };
            match next_step(&e, redirects) {
                Step::Redirect(to) => {
                    redirects += 1;
                    queue.push(to);
                }
                Step::NextMember => {}
                Step::Stop => return Err(e),
            }
            last = format!("; last answer, from {address}: {}", e.message);
        }
        Err(ErrorDetail::no_leader().with_message(format!(
            "no placement member could apply the change (nothing changed){last}"
        )))
    }

    /// A node's gRPC address: from the members this node knows, else from
    /// the cluster map (which holds every registered node's address).
    pub(super) fn placement_address(&self, id: NodeId) -> String {
        if id == 0 {
            return String::new();
        }
        let known = self.address_of(id);
        if !known.is_empty() {
            return known;
        }
        self.maps
            .current()
            .and_then(|m| m.map.nodes().get(&id).map(|n| n.address.clone()))
            .unwrap_or_default()
    }
}

/// The order in which to ask: the leader this node knows of, then every
/// other placement member. Never this node itself (it would only answer that
/// it does not lead).
fn candidates(hint: NodeId, members: &[NodeId], me: NodeId) -> Vec<NodeId> {
    let mut out = Vec::with_capacity(members.len() + 1);
    if hint != 0 && hint != me {
        out.push(hint);
    }
    for &m in members {
        if m != me && !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

/// What to do after a forwarded call failed with `e`.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Ask the leader this address belongs to next.
    Redirect(String),
    /// Nothing was applied there: ask the next member.
    NextMember,
    /// A definite answer (refused, invalid) or one that may have applied the
    /// change: the client gets it as it is.
    Stop,
}

fn next_step(e: &ErrorDetail, redirects: usize) -> Step {
    match e.kind() {
        Kind::NotLeader if !e.leader_addr.is_empty() && redirects < MAX_REDIRECTS => {
            Step::Redirect(e.leader_addr.clone())
        }
        Kind::NotLeader | Kind::NoLeader | Kind::ShuttingDown => Step::NextMember,
        _ => Step::Stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_known_leader_is_asked_first_and_never_this_node() {
        assert_eq!(candidates(2, &[1, 2, 3], 1), vec![2, 3]);
        assert_eq!(candidates(0, &[1, 2, 3], 4), vec![1, 2, 3]);
        assert_eq!(candidates(1, &[1, 2, 3], 1), vec![2, 3]);
        assert_eq!(candidates(3, &[1, 2, 3], 5), vec![3, 1, 2]);
        assert!(candidates(0, &[], 1).is_empty());
    }

    #[test]
    fn hints_are_followed_a_few_times_and_definite_answers_stop() {
        let hint = ErrorDetail::not_leader(3, "h:3");
        assert_eq!(next_step(&hint, 0), Step::Redirect("h:3".into()));
        assert_eq!(next_step(&hint, MAX_REDIRECTS), Step::NextMember);
        assert_eq!(next_step(&ErrorDetail::no_leader(), 0), Step::NextMember);
        assert_eq!(
            next_step(&ErrorDetail::shutting_down(), 0),
            Step::NextMember
        );
        assert_eq!(next_step(&ErrorDetail::refused("no"), 0), Step::Stop);
        assert_eq!(
            next_step(&ErrorDetail::invalid_argument("no"), 0),
            Step::Stop
        );
        assert_eq!(next_step(&ErrorDetail::outcome_unknown("?"), 0), Step::Stop);
        assert_eq!(next_step(&ErrorDetail::overloaded("busy"), 0), Step::Stop);
    }
}
