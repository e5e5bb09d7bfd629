//! The placement group's commands: what its Raft log carries.
//!
//! Every command is validated against the map when it is applied; a refused
//! command changes nothing ([`crate::CommandError`]) and one that is already
//! true changes nothing either (registering a node twice at the same address,
//! adding a member twice, removing something already gone), so a command
//! retried after an unknown outcome is harmless. Only a change bumps the
//! version. The exceptions are [`Command::CommitSlotMove`] and
//! [`Command::AbortSlotMove`]: a move that is no longer in flight is an error,
//! because "already committed" and "already aborted" mean opposite things to
//! the groups that wait for the answer.

mod apply;
mod groups;
mod moves;
mod nodes;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::DecodeError;
use crate::ids::{GroupId, MAX_ENCODED_COMMAND_BYTES, NodeId};
use crate::map::check_format;
use crate::slot::Slot;

pub use apply::Applied;
pub(crate) use groups::check_target;

/// The format of an encoded command this build writes and reads.
const COMMAND_FORMAT: u32 = 1;

/// A change to the [`crate::ClusterMap`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Registers `node` at `address`, or moves a registered node to a new
    /// address. A new node is active and holds no replicas yet.
    RegisterNode {
        /// The node (non-zero).
        node: NodeId,
        /// Its advertised `host:port`.
        address: String,
    },
    /// A node joining the cluster through placement (`keel serve --join …
    /// --join-as placed`): registers `node` at `address` as
    /// [`Command::RegisterNode`] does, then gives it its first replica as
    /// [`crate::plan::join`] decides on the map as it is when the command
    /// applies — so two nodes joining at once are placed one after the other,
    /// never both into the last free place. Group 1 is never filled this way
    /// (its members are its Raft configuration's, changed by `keel member
    /// add`). A node that already holds a replica is only (re)registered, so a
    /// join retried after an unknown outcome places the node once.
    JoinNode {
        /// The node (non-zero).
        node: NodeId,
        /// Its advertised `host:port`.
        address: String,
        /// How many replicas a group formed for it should have.
        new_group_replicas: u8,
    },
    /// Marks `node` as leaving: it gets no new replicas. Its replicas stay until
    /// they are moved ([`crate::plan::node_removal`]).
    DrainNode {
        /// The node.
        node: NodeId,
    },
    /// Forgets `node`, which must hold no replicas.
    RemoveNode {
        /// The node.
        node: NodeId,
    },
    /// Creates a data group with the next free id. The first group ever created
    /// owns every slot; later ones start with none and receive slots by moves.
    CreateGroup {
        /// Its members: registered, active nodes, at most `target_replicas`.
        members: BTreeSet<NodeId>,
        /// How many replicas it should have (1..=[`crate::MAX_REPLICAS`]).
        target_replicas: u8,
    },
    /// Deletes a group that owns no slots and takes part in no move.
    RemoveGroup {
        /// The group.
        group: GroupId,
    },
    /// Changes how many replicas a group should have.
    SetTargetReplicas {
        /// The group.
        group: GroupId,
        /// The new target (1..=[`crate::MAX_REPLICAS`]).
        target_replicas: u8,
    },
    /// Adds a replica of `group` on `node` (an active node). A group may exceed
    /// its target while a replica is being replaced, up to
    /// [`crate::MAX_REPLICAS`].
    AddGroupMember {
        /// The group.
        group: GroupId,
        /// The node that gets a replica.
        node: NodeId,
    },
    /// Removes `node`'s replica of `group`; never the last one.
    RemoveGroupMember {
        /// The group.
        group: GroupId,
        /// The node that loses its replica.
        node: NodeId,
    },
    /// Starts moving `slot` from its owner to `to`. The owner keeps serving it
    /// until the hand-off; the move's epoch is the version this command
    /// produces.
    BeginSlotMove {
        /// The slot.
        slot: Slot,
        /// The group that will own it.
        to: GroupId,
    },
    /// Ends the move of `slot` begun at `epoch`: its target owns the slot now.
    /// Proposed once the target holds the slot's data as of the source's fence
    /// (`docs/sharding.md`, "Moving a slot").
    CommitSlotMove {
        /// The slot.
        slot: Slot,
        /// The move's epoch.
        epoch: u64,
    },
    /// Cancels the move of `slot` begun at `epoch`: the source keeps the slot.
    AbortSlotMove {
        /// The slot.
        slot: Slot,
        /// The move's epoch.
        epoch: u64,
    },
}

/// A command as stored in the placement group's log.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandRecord {
    format: u32,
    command: Command,
}

impl Command {
    /// The bytes of a log entry carrying this command (JSON with a format
    /// number, like the map).
    pub fn encode(&self) -> Vec<u8> {
        let record = CommandRecord {
            format: COMMAND_FORMAT,
            command: self.clone(),
        };
        serde_json::to_vec(&record).expect("a command holds only strings, numbers and lists")
    }

    /// Reads a command written by [`Command::encode`]. Only the syntax is
    /// checked here; whether the command makes sense is decided when it is
    /// applied, against the map.
    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        check_format(bytes, MAX_ENCODED_COMMAND_BYTES, COMMAND_FORMAT)?;
        let record: CommandRecord =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        Ok(record.command)
    }
}
