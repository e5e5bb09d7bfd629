//! The calling side of the slot-move peer calls: what a mover uses to read a
//! slot out of the source group and to propose slot-move commands in either
//! group, on whichever node it names by address (`docs/sharding.md`, *The
//! copy engine*).
//!
//! A [`SlotPeer`] talks to one node. Answers come back as the copy engine's
//! own types ([`SlotPage`], [`VersionPage`], [`ValuePage`], [`ChangePage`],
//! [`SourceView`]),
//! so the mover feeds them to `plan_delta`, `PageBuilder` and `FenceWitness`
//! as if the source were local.
//!
//! Commands go to the group's leader only: a node that is not the leader
//! answers [`SlotPeerError::NotLeader`] with the leader's id (0: none known)
//! rather than forwarding, because the mover knows every member's address
//! from the cluster map and one less hop keeps the outcome's meaning simple.

use std::time::Duration;

use bytes::Bytes;
use keel_placement::Slot;
use keel_proto::error::{Kind, error_detail};
use keel_proto::raft::raft_client::RaftClient;
use keel_proto::raft::{
    SlotCommandReply, SlotCommandRequest, SlotFetchKind, SlotFetchReply, SlotFetchRequest,
};
use keel_raft::{GroupId, Index, NodeId};
use keel_storage::command::{Command, SlotCommand};
use keel_storage::kv::SlotState;
use keel_storage::kv::slots::Changes;
use keel_storage::kv::slots::copy::{
    ChangePage, CopyError, SlotPage, SourceView, ValuePage, VersionPage,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::slot_wire::{
    WireError, copy_error_of, item_from_wire, refusal_in, state_from_wire, view_from_wire,
};
use super::{LocalIdentity, MAX_PEER_MESSAGE_BYTES, PeerConnector};

/// Why a slot-move call did not get an answer to use.
#[derive(Debug, thiserror::Error)]
pub enum SlotPeerError {
    /// The address could not be turned into an endpoint, or connected to.
    #[error("cannot reach {addr}: {why}")]
    Connect {
        /// The peer's address.
        addr: String,
        /// Why.
        why: String,
    },
    /// The source's copy engine refused (not the move's source, or a key of
    /// another slot): the move must look again before going on.
    #[error("the source refused: {0}")]
    Refused(CopyError),
    /// The node does not host the group.
    #[error("the node does not host the group: {0}")]
    NotHosted(String),
    /// The node is not the group's leader (`leader` 0: none known now);
    /// nothing was proposed. Ask the leader.
    #[error("not the leader (leader: {leader})")]
    NotLeader {
        /// The leader's node id, or 0.
        leader: NodeId,
    },
    /// A command was proposed but whether it applied is not known: read the
    /// slot's state (or propose it again: the steps are idempotent).
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The peer refused the request as malformed or over a limit.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The peer refused this node (another cluster, not a member, wiped).
    #[error("refused by the peer: {0}")]
    Denied(String),
    /// The peer's answer did not make sense.
    #[error(transparent)]
    Malformed(#[from] WireError),
    /// Any other failure (unavailable, overloaded, shutting down...): worth a
    /// retry later; nothing was applied.
    #[error("{0}")]
    Unavailable(String),
}

impl SlotPeerError {
    /// The error a failed call's status describes.
    fn of(status: Status) -> SlotPeerError {
        if let Some(refusal) = refusal_in(&status) {
            return match copy_error_of(&refusal) {
                Ok(e) => SlotPeerError::Refused(e),
                Err(e) => SlotPeerError::Malformed(e),
            };
        }
        let message = status.message().to_string();
        if let Some(detail) = error_detail(&status) {
            match detail.kind() {
                Kind::NotLeader => {
                    return SlotPeerError::NotLeader {
                        leader: detail.leader_id,
                    };
                }
                Kind::NoLeader => return SlotPeerError::NotLeader { leader: 0 },
                Kind::OutcomeUnknown => return SlotPeerError::OutcomeUnknown(message),
                Kind::InvalidArgument => return SlotPeerError::Invalid(message),
                _ => {}
            }
        }
        match status.code() {
            Code::NotFound => SlotPeerError::NotHosted(message),
            Code::InvalidArgument => SlotPeerError::Invalid(message),
            Code::PermissionDenied | Code::Unauthenticated => SlotPeerError::Denied(message),
            _ => SlotPeerError::Unavailable(format!("{:?}: {message}", status.code())),
        }
    }
}

/// What the state machine did with a proposed slot-move command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotApplied {
    /// The node's applied index once the command applied (at or after the
    /// command's own entry).
    pub applied_index: Index,
    /// The step's result: the slot's state after it and the keys a `DropSlot`
    /// deleted, or why the state machine refused it (nothing changed).
    pub result: Result<(SlotState, u64), String>,
}

/// A connection to one node's slot-move calls. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SlotPeer {
    client: RaftClient<Channel>,
    local: LocalIdentity,
}

impl SlotPeer {
    /// Connects to the node at `addr` (`host:port`) as `local`, with
    /// `connector`'s settings (plain or TLS).
    pub async fn connect(
        connector: &PeerConnector,
        addr: &str,
        local: LocalIdentity,
    ) -> Result<SlotPeer, SlotPeerError> {
        let unreachable = |why: String| SlotPeerError::Connect {
            addr: addr.to_string(),
            why,
        };
        let channel = connector
            .endpoint(addr)
            .map_err(unreachable)?
            .connect()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let client = RaftClient::new(channel)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES);
        Ok(SlotPeer { client, local })
    }

    fn request(&self, group: GroupId, slot: Slot, epoch: u64) -> SlotFetchRequest {
        SlotFetchRequest {
            cluster_id: self.local.cluster_id,
            from: self.local.node_id,
            incarnation: self.local.incarnation,
            group,
            slot: u32::from(slot.get()),
            epoch,
            ..SlotFetchRequest::default()
        }
    }

    async fn fetch(
        &self,
        req: SlotFetchRequest,
    ) -> Result<(SourceView, SlotFetchReply), SlotPeerError> {
        let reply = self
            .client
            .clone()
            .slot_fetch(req)
            .await
            .map_err(SlotPeerError::of)?
            .into_inner();
        let source = reply
            .source
            .as_ref()
            .ok_or_else(|| WireError("an answer without its source view".into()))?;
        Ok((view_from_wire(source)?, reply))
    }

    /// Up to `max_bytes` of `group`'s keys of `slot` after `after_key`, with
    /// versions and values, read at or after the call (`fetch_page`).
    pub async fn fetch_page(
        &self,
        group: GroupId,
        slot: Slot,
        epoch: u64,
        after_key: Option<Bytes>,
        max_bytes: usize,
    ) -> Result<SlotPage, SlotPeerError> {
        let req = SlotFetchRequest {
            kind: SlotFetchKind::Page.into(),
            after_key,
            max_bytes: max_bytes as u64,
            ..self.request(group, slot, epoch)
        };
        let (source, reply) = self.fetch(req).await?;
        Ok(SlotPage {
            source,
            puts: reply.items.into_iter().map(item_from_wire).collect(),
            more: reply.more,
        })
    }

    /// Up to `max_keys` of `group`'s keys of `slot` after `after_key`, with
    /// versions only (`fetch_versions`).
    pub async fn fetch_versions(
        &self,
        group: GroupId,
        slot: Slot,
        epoch: u64,
        after_key: Option<Bytes>,
        max_keys: usize,
    ) -> Result<VersionPage, SlotPeerError> {
        let req = SlotFetchRequest {
            kind: SlotFetchKind::Versions.into(),
            after_key,
            max_keys: max_keys as u64,
            ..self.request(group, slot, epoch)
        };
        let (source, reply) = self.fetch(req).await?;
        Ok(VersionPage {
            source,
            versions: reply
                .items
                .into_iter()
                .map(|item| (item.key, item.version))
                .collect(),
            more: reply.more,
        })
    }

    /// The versions and values of a prefix of `keys` in `group`
    /// (`fetch_values`); `covered` says how many of them the answer covers.
    pub async fn fetch_values(
        &self,
        group: GroupId,
        slot: Slot,
        epoch: u64,
        keys: Vec<Bytes>,
        max_bytes: usize,
    ) -> Result<ValuePage, SlotPeerError> {
        let asked = keys.len();
        let req = SlotFetchRequest {
            kind: SlotFetchKind::Values.into(),
            keys,
            max_bytes: max_bytes as u64,
            ..self.request(group, slot, epoch)
        };
        let (source, reply) = self.fetch(req).await?;
        let covered = usize::try_from(reply.covered)
            .ok()
            .filter(|c| *c <= asked)
            .ok_or_else(|| WireError(format!("{} keys covered of {asked}", reply.covered)))?;
        Ok(ValuePage {
            source,
            puts: reply.items.into_iter().map(item_from_wire).collect(),
            covered,
        })
    }

    /// The keys of `slot` that `group`'s replica on this node wrote after
    /// `since`, by its change index (`fetch_changes`); `since: None` starts
    /// tracking.
    pub async fn fetch_changes(
        &self,
        group: GroupId,
        slot: Slot,
        epoch: u64,
        since: Option<Index>,
    ) -> Result<ChangePage, SlotPeerError> {
        let req = SlotFetchRequest {
            kind: SlotFetchKind::Changes.into(),
            since,
            ..self.request(group, slot, epoch)
        };
        let (source, reply) = self.fetch(req).await?;
        Ok(ChangePage {
            source,
            changes: changes_of(reply),
        })
    }

    /// Proposes `command` in `group` on this node, which must be its leader,
    /// and waits up to `timeout` for it to apply.
    pub async fn propose(
        &self,
        group: GroupId,
        command: SlotCommand,
        timeout: Duration,
    ) -> Result<SlotApplied, SlotPeerError> {
        self.propose_encoded(group, Command::Slot(command).encode(), timeout)
            .await
    }

    /// Like [`SlotPeer::propose`], for an already encoded command (which the
    /// peer refuses unless it is a slot-move command).
    pub async fn propose_encoded(
        &self,
        group: GroupId,
        command: Bytes,
        timeout: Duration,
    ) -> Result<SlotApplied, SlotPeerError> {
        let req = SlotCommandRequest {
            cluster_id: self.local.cluster_id,
            from: self.local.node_id,
            incarnation: self.local.incarnation,
            group,
            command,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        let reply = self
            .client
            .clone()
            .slot_command(req)
            .await
            .map_err(SlotPeerError::of)?
            .into_inner();
        applied_of(reply)
    }
}

/// What a `CHANGES` reply says: its keys if complete, else where tracking
/// runs from.
fn changes_of(reply: SlotFetchReply) -> Changes {
    if reply.complete {
        Changes::Listed(reply.items.into_iter().map(|item| item.key).collect())
    } else {
        Changes::Unknown {
            from: reply.tracked_from,
        }
    }
}

/// The outcome a `SlotCommand` reply describes.
fn applied_of(reply: SlotCommandReply) -> Result<SlotApplied, SlotPeerError> {
    let result = if reply.refused {
        Err(reply.refusal)
    } else {
        let state = reply
            .state
            .as_ref()
            .ok_or_else(|| WireError("an applied step without the slot's state".into()))?;
        Ok((state_from_wire(state)?, reply.keys_removed))
    };
    Ok(SlotApplied {
        applied_index: reply.applied_index,
        result,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::slot_wire::state_to_wire;
    use keel_proto::error::ErrorDetail;

    #[test]
    fn node_errors_come_back_typed() {
        let not_leader = ErrorDetail::not_leader(3, "").into_status();
        assert!(matches!(
            SlotPeerError::of(not_leader),
            SlotPeerError::NotLeader { leader: 3 }
        ));
        let no_leader = ErrorDetail::no_leader().into_status();
        assert!(matches!(
            SlotPeerError::of(no_leader),
            SlotPeerError::NotLeader { leader: 0 }
        ));
        let unknown = ErrorDetail::outcome_unknown("lost").into_status();
        assert!(matches!(
            SlotPeerError::of(unknown),
            SlotPeerError::OutcomeUnknown(_)
        ));
        assert!(matches!(
            SlotPeerError::of(Status::not_found("no group 9")),
            SlotPeerError::NotHosted(_)
        ));
        assert!(matches!(
            SlotPeerError::of(Status::invalid_argument("not a slot command")),
            SlotPeerError::Invalid(_)
        ));
        assert!(matches!(
            SlotPeerError::of(Status::permission_denied("wiped")),
            SlotPeerError::Denied(_)
        ));
    }

    #[test]
    fn command_replies_come_back_typed() {
        let ok = SlotCommandReply {
            applied_index: 12,
            state: Some(state_to_wire(SlotState::Fenced { epoch: 4 })),
            ..SlotCommandReply::default()
        };
        assert_eq!(
            applied_of(ok).expect("valid"),
            SlotApplied {
                applied_index: 12,
                result: Ok((SlotState::Fenced { epoch: 4 }, 0)),
            }
        );
        let refused = SlotCommandReply {
            applied_index: 13,
            refused: true,
            refusal: "wrong state".into(),
            ..SlotCommandReply::default()
        };
        assert_eq!(
            applied_of(refused).expect("valid").result,
            Err("wrong state".to_string())
        );
        let stateless = SlotCommandReply::default();
        assert!(applied_of(stateless).is_err());
    }
}
