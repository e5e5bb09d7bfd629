//! `Cluster.ChangeMap` and `POST /v1/cluster/map`: an operator's change to the
//! cluster map. The node whose replica leads the placement group applies the
//! command by compare-and-set ([`crate::placement::change_map`]); any other
//! node forwards the call there (`map_route.rs`). Every failure says whether
//! anything may have changed, in keel's error kinds.

use bytes::Bytes;
use keel_placement::Command;
use keel_proto::error::ErrorDetail;
use keel_proto::v1::{ChangeMapRequest, ChangeMapResponse};
use keel_raft::Role;

use super::{ApiContext, DetailExt};
use crate::node::{NodeError, NodeHandle};
use crate::placement::{CachedMap, CasError, Changed, NodeMapStore, change_map};

/// Whether a `ChangeMap` call came from another node (which found this one as
/// the placement leader) or from a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MapCall {
    /// From a client: a node that cannot apply it forwards it. A client may
    /// not commit a slot move: only the mover knows that the target holds
    /// the slot's data (`docs/sharding.md`, *Moving a slot*).
    Client,
    /// From this node's own tasks ([`ApiContext::change_map_as_node`]: the
    /// slot mover in `placement/mover/`, registration, group 1's mirror):
    /// forwarded like a client's; the mover is the one caller that commits
    /// moves.
    Mover,
    /// Forwarded by another node: never forwarded again (one hop), so two
    /// nodes with stale views of the leader cannot pass it back and forth.
    Forwarded,
}

impl ApiContext {
    /// Applies `command` for one of this node's own tasks (a [`MapCall::Mover`]
    /// call), as [`ApiContext::change_map`] does.
    pub(crate) async fn change_map_as_node(
        &self,
        command: &Command,
    ) -> Result<ChangeMapResponse, ErrorDetail> {
        // A command encodes as JSON, which is UTF-8.
        let command_json = String::from_utf8_lossy(&command.encode()).into_owned();
        self.change_map(ChangeMapRequest { command_json }, MapCall::Mover)
            .await
    }

    /// Applies the command in `req` to the cluster map, here if this node's
    /// placement replica leads, else at the placement leader.
    pub(crate) async fn change_map(
        &self,
        req: ChangeMapRequest,
        call: MapCall,
    ) -> Result<ChangeMapResponse, ErrorDetail> {
        // Checked here, before any forwarding: bad input never leaves the node
        // it was sent to.
        let command = parse_command(&req.command_json)?;
        if call == MapCall::Client && matches!(command, Command::CommitSlotMove { .. }) {
            return Err(ErrorDetail::invalid_argument(
                "a slot move commits only through the mover of its target group, once the \
                 group holds the slot's data; begin a move and let it finish, or abort it",
            ));
        }
        if let Some(node) = &self.placement.node
            && node.status().role == Role::Leader
        {
            return self.change_map_here(node, &command).await;
        }
        match call {
            MapCall::Client | MapCall::Mover => self.forward_map_change(req).await,
            MapCall::Forwarded => Err(self.not_placement_leader()),
        }
    }

    /// Runs the compare-and-set on this node's placement replica.
    async fn change_map_here(
        &self,
        node: &NodeHandle,
        command: &Command,
    ) -> Result<ChangeMapResponse, ErrorDetail> {
        let store = NodeMapStore::new(node.clone(), self.limits.request_timeout);
        match change_map(&store, command).await {
            Ok(changed) => {
                let response = response(&changed);
                // This node's own cache follows its replica anyway; offering the
                // map now lets the caller read its change back here at once.
                let _ = self.maps.offer(CachedMap {
                    map: changed.map.into(),
                    encoded: Bytes::from(response.map_json.clone().into_bytes()),
                });
                Ok(response)
            }
            Err(e) => Err(cas_error(e, |n| self.error(n))),
        }
    }

    /// The answer of a node asked (by another node) to apply a change while
    /// its placement replica does not lead: the leader it knows of, if any,
    /// for the forwarding node to try next. Nothing was applied.
    fn not_placement_leader(&self) -> ErrorDetail {
        let leader = self
            .placement
            .node
            .as_ref()
            .map_or(0, |n| n.status().leader);
        let address = self.placement_address(leader);
        if leader == 0 || leader == self.id || address.is_empty() {
            return ErrorDetail::no_leader().with_message(format!(
                "node {} does not lead the placement group and knows no leader",
                self.id
            ));
        }
        let mut e = ErrorDetail::not_leader(leader, address);
        e.message = format!("node {leader} leads the placement group");
        e
    }
}

/// Decodes a command as the placement group stores it; bad input is
/// INVALID_ARGUMENT and changes nothing.
pub(crate) fn parse_command(json: &str) -> Result<Command, ErrorDetail> {
    Command::decode(json.as_bytes())
        .map_err(|e| ErrorDetail::invalid_argument(format!("not a cluster map command: {e}")))
}

/// The answer for a change that took (or was already true).
fn response(changed: &Changed) -> ChangeMapResponse {
    ChangeMapResponse {
        changed: changed.applied.changed,
        version: changed.map.version(),
        map_json: String::from_utf8_lossy(&changed.map.encode()).into_owned(),
        created_group: changed.applied.created_group.unwrap_or(0),
    }
}

/// The error a client sees for a failed compare-and-set. `node` maps the
/// placement group's node errors (as every API does); a lost leadership there
/// is "no leader" rather than a hint, since clients follow hints to group 1's
/// leader, not the placement group's.
pub(crate) fn cas_error(e: CasError, node: impl FnOnce(NodeError) -> ErrorDetail) -> ErrorDetail {
    match e {
        CasError::Refused(c) => ErrorDetail::refused(format!("the cluster map refused it: {c}")),
        CasError::NoMap => ErrorDetail::no_leader().with_message(
            "the placement group holds no cluster map yet; retry once it is created".into(),
        ),
        CasError::Contended { attempts } => ErrorDetail::overloaded(format!(
            "the cluster map kept changing ({attempts} attempts conflicted); nothing changed, \
             retry"
        )),
        CasError::Node(NodeError::NotLeader { .. }) => ErrorDetail::no_leader().with_message(
            "the placement group's leadership moved during the change; nothing changed".into(),
        ),
        CasError::Node(n) => node(n),
        CasError::Corrupt(d) => {
            ErrorDetail::internal(format!("the stored cluster map is unreadable: {d}"))
        }
        CasError::Storage(m) => ErrorDetail::internal(format!("the placement group's state: {m}")),
        // A put answered with something else: the write's fate is not known.
        CasError::Unexpected(m) => {
            ErrorDetail::outcome_unknown(format!("unexpected outcome of the map write: {m}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use keel_placement::CommandError;
    use keel_proto::error::Kind;

    use super::*;

    fn kind(e: CasError) -> Kind {
        cas_error(e, |n| ErrorDetail::internal(n.to_string())).kind()
    }

    #[test]
    fn cas_errors_say_whether_to_retry() {
        assert_eq!(
            kind(CasError::Refused(CommandError::UnknownNode { node: 9 })),
            Kind::Refused
        );
        assert_eq!(kind(CasError::NoMap), Kind::NoLeader);
        assert_eq!(kind(CasError::Contended { attempts: 8 }), Kind::Overloaded);
        assert_eq!(
            kind(CasError::Node(NodeError::NotLeader { leader: 2 })),
            Kind::NoLeader
        );
        assert_eq!(
            kind(CasError::Node(NodeError::ShuttingDown)),
            Kind::Internal,
            "other node errors go through the API's own mapping"
        );
        assert_eq!(kind(CasError::Unexpected("x".into())), Kind::OutcomeUnknown);
        assert_eq!(kind(CasError::Storage("x".into())), Kind::Internal);
    }

    #[test]
    fn a_refusal_names_the_reason() {
        let e = cas_error(
            CasError::Refused(CommandError::UnknownNode { node: 9 }),
            |_| unreachable!(),
        );
        assert!(e.message.contains('9'), "{}", e.message);
    }

    #[test]
    fn only_commands_parse() {
        let good = Command::RemoveGroup { group: 2 };
        let json = String::from_utf8(good.encode()).expect("JSON");
        assert_eq!(parse_command(&json).expect("a command"), good);
        for bad in [
            "",
            "{",
            "{\"format\":1}",
            "{\"format\":99,\"command\":{\"op\":\"remove_group\",\"group\":2}}",
            "{\"format\":1,\"command\":{\"op\":\"remove_group\",\"group\":2,\"x\":1}}",
            "{\"format\":1,\"command\":{\"op\":\"no_such_op\"}}",
        ] {
            let e = parse_command(bad).expect_err(bad);
            assert_eq!(e.kind(), Kind::InvalidArgument, "{bad}");
        }
        let huge = format!(
            "{{\"format\":1,\"command\":{{\"op\":\"register_node\",\"node\":5,\"address\":\"{}\"}}}}",
            "a".repeat(70 << 10)
        );
        assert_eq!(
            parse_command(&huge).expect_err("too big").kind(),
            Kind::InvalidArgument
        );
    }
}
