//! Why a command, a decode or a route was refused.
//!
//! A refused command changed nothing; every replica of the placement group
//! refuses the same command the same way, so the error is itself part of the
//! replicated outcome and may be shown to the operator who asked.

use crate::ids::{GroupId, NodeId};
use crate::slot::Slot;

/// Why [`crate::ClusterMap::apply`] refused a command. The map is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Node id 0 means "no node".
    #[error("node id 0 is reserved; node ids start at 1")]
    InvalidNodeId,
    /// The address is empty, too long, or holds whitespace or control bytes.
    #[error("invalid address {address:?}: {reason}")]
    InvalidAddress {
        /// The address given.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Another node is registered at this address.
    #[error("address {address} is already node {node}'s")]
    AddressInUse {
        /// The address given.
        address: String,
        /// The node registered there.
        node: NodeId,
    },
    /// The map holds [`crate::MAX_NODES`] nodes already.
    #[error("the cluster already has the most nodes it may have ({limit})")]
    TooManyNodes {
        /// The limit.
        limit: usize,
    },
    /// No such node is registered.
    #[error("node {node} is not registered")]
    UnknownNode {
        /// The node named.
        node: NodeId,
    },
    /// The node is being drained: it takes no new replicas.
    #[error("node {node} is being drained and takes no new replicas")]
    NodeDraining {
        /// The node named.
        node: NodeId,
    },
    /// The node still holds replicas; move them first (`plan::node_removal`).
    #[error("node {node} still holds replicas of groups {groups:?}; move them first")]
    NodeHoldsReplicas {
        /// The node named.
        node: NodeId,
        /// The groups it is a member of.
        groups: Vec<GroupId>,
    },
    /// No such data group.
    #[error("group {group} does not exist")]
    UnknownGroup {
        /// The group named.
        group: GroupId,
    },
    /// A group needs at least one member.
    #[error("a group needs at least one member")]
    EmptyGroup,
    /// More members than [`crate::MAX_REPLICAS`], or than the group's target
    /// replica count when it is created.
    #[error("{members} members is too many (at most {limit})")]
    TooManyMembers {
        /// The member count the command would produce.
        members: usize,
        /// The limit that applies.
        limit: usize,
    },
    /// A target replica count must be between 1 and [`crate::MAX_REPLICAS`].
    #[error(
        "target replica count {target} is out of range (1..={})",
        crate::MAX_REPLICAS
    )]
    InvalidTarget {
        /// The count given.
        target: u8,
    },
    /// The map holds [`crate::MAX_GROUPS`] groups already.
    #[error("the cluster already has the most groups it may have ({limit})")]
    TooManyGroups {
        /// The limit.
        limit: usize,
    },
    /// Group ids are never reused, and the next one would be the placement
    /// group's.
    #[error("no group ids are left")]
    GroupIdsExhausted,
    /// Removing the last member would leave a group with nobody to hold its data.
    #[error("node {node} is group {group}'s last member; remove the group instead")]
    LastMember {
        /// The group.
        group: GroupId,
        /// Its only member.
        node: NodeId,
    },
    /// A group that owns slots cannot be removed; move them away first.
    #[error("group {group} still owns {slots} slots; move them away first")]
    GroupOwnsSlots {
        /// The group.
        group: GroupId,
        /// How many slots it owns.
        slots: usize,
    },
    /// A group that a slot move comes from or goes to cannot be removed.
    #[error("group {group} takes part in the move of slot {slot}")]
    GroupInMove {
        /// The group.
        group: GroupId,
        /// The moving slot.
        slot: Slot,
    },
    /// The slot already belongs to the group it would move to.
    #[error("slot {slot} already belongs to group {group}")]
    AlreadyOwner {
        /// The slot.
        slot: Slot,
        /// Its owner.
        group: GroupId,
    },
    /// Another move of the slot is in flight (at most one per slot).
    #[error("slot {slot} is already moving to group {to} (move {epoch})")]
    SlotAlreadyMoving {
        /// The slot.
        slot: Slot,
        /// Where the move in flight goes.
        to: GroupId,
        /// That move's epoch.
        epoch: u64,
    },
    /// [`crate::MAX_MOVES`] moves are in flight already.
    #[error("{limit} slot moves are in flight already; wait for one to finish")]
    TooManyMoves {
        /// The limit.
        limit: usize,
    },
    /// The move named is not in flight: it was committed or aborted already, or
    /// never began. A mover must read the map to learn which.
    #[error("slot {slot} has no move {epoch} in flight (in flight: {current:?})")]
    MoveNotFound {
        /// The slot.
        slot: Slot,
        /// The epoch named.
        epoch: u64,
        /// The epoch of the slot's move in flight, if any.
        current: Option<u64>,
    },
}

/// Why an encoded command or map was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Longer than the limit for its kind; not parsed at all.
    #[error("{bytes} bytes is over the limit of {limit}")]
    TooLarge {
        /// Its length.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Not valid JSON of the expected shape.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Written by a newer keel, in a format this build does not know.
    #[error("format {format} is not supported (this build reads format {supported})")]
    UnsupportedFormat {
        /// The format found.
        format: u32,
        /// The format this build reads.
        supported: u32,
    },
    /// Well-formed, but breaks a rule of the map.
    #[error("invalid cluster map: {0}")]
    Invalid(#[from] InvariantError),
}

/// A broken rule of [`crate::ClusterMap`] (see `ClusterMap::validate`). Applying
/// commands never produces one; decoding a damaged or forged map may.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvariantError {
    /// Slots are owned although no group exists, or not owned although one does.
    #[error("slots are owned by groups exactly when groups exist")]
    SlotTableMismatch,
    /// A slot's owner is not a group of the map.
    #[error("slot {slot} is owned by group {group}, which does not exist")]
    OwnerUnknown {
        /// The slot.
        slot: Slot,
        /// Its owner.
        group: GroupId,
    },
    /// The slot runs of an encoded map do not cover 0..4096 in order, once each.
    #[error("slot runs must cover every slot once, in order: {0}")]
    SlotRuns(String),
    /// A move's source is not the slot's owner, its target is unknown or is the
    /// source, or its epoch is later than the map's version.
    #[error("the move of slot {slot} is inconsistent: {reason}")]
    BadMove {
        /// The slot.
        slot: Slot,
        /// What is wrong.
        reason: &'static str,
    },
    /// A group breaks a rule (members, target, id).
    #[error("group {group} is inconsistent: {reason}")]
    BadGroup {
        /// The group.
        group: GroupId,
        /// What is wrong.
        reason: &'static str,
    },
    /// A node breaks a rule (id, address).
    #[error("node {node} is inconsistent: {reason}")]
    BadNode {
        /// The node.
        node: NodeId,
        /// What is wrong.
        reason: &'static str,
    },
    /// More nodes, groups or moves than the limits allow.
    #[error("more {what} than the limit of {limit}")]
    OverLimit {
        /// What is counted.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
}

/// Why a request cannot be routed as asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The map has no data group yet (the cluster is still being formed).
    #[error("the cluster map (version {version}) has no data group yet")]
    NoGroups {
        /// The map's version.
        version: u64,
    },
    /// The keys of one request live in several groups (a transaction must stay
    /// in one; keys that share a `{hash tag}` always do).
    #[error(
        "the keys belong to groups {groups:?} (cluster map version {version}); a transaction \
         must stay within one group: give related keys a common {{hash tag}}"
    )]
    CrossGroup {
        /// The groups, ascending.
        groups: Vec<GroupId>,
        /// The map's version.
        version: u64,
    },
    /// The slot is not this group's (any more): refresh the map to at least
    /// `version` and retry at `owner`.
    #[error("slot {slot} belongs to group {owner} as of cluster map version {version}")]
    WrongGroup {
        /// The key's slot.
        slot: Slot,
        /// The slot's owner in this map.
        owner: GroupId,
        /// This map's version.
        version: u64,
    },
}
