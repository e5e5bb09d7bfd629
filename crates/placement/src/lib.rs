//! keel's placement model: which Raft group serves which key.
//!
//! The key space is cut into [`SLOT_COUNT`] hash slots ([`slot_for_key`]); every
//! slot is owned by exactly one data group. The [`ClusterMap`] records the nodes,
//! the groups and their members, the owner of every slot and the slots being
//! moved, under a version that grows with every change. It is the state machine
//! of the *placement group*, a Raft group of its own: [`ClusterMap::apply`] takes
//! a [`Command`] from that group's log and either changes the map (bumping the
//! version) or refuses it with a typed error, changing nothing — the same way on
//! every replica, since nothing here reads a clock, a random number generator or
//! the file system.
//!
//! [`PlacementMachine`] wraps the map as the group's replicated state machine:
//! committed entries applied in log order, the map a new cluster starts with
//! ([`PlacementMachine::bootstrap`]), and the group's snapshot.
//!
//! The [`plan`] module decides what to do: where a joining node goes, how a
//! node's replicas leave before it is removed, which slots to move to even the
//! groups out. Its answers are commands; the runtime proposes them.
//!
//! The design of sharding as a whole, including what runs outside this crate,
//! is in `docs/sharding.md`.

mod command;
mod error;
mod ids;
mod machine;
mod map;
mod members;
pub mod plan;
mod route;
mod slot;

pub use command::{Applied, Command};
pub use error::{CommandError, DecodeError, InvariantError, RouteError};
pub use ids::{
    FIRST_DATA_GROUP, GroupId, MAX_ADDRESS_BYTES, MAX_ENCODED_COMMAND_BYTES, MAX_ENCODED_MAP_BYTES,
    MAX_GROUPS, MAX_MOVES, MAX_NODES, MAX_REPLICAS, NodeId, PLACEMENT_GROUP,
};
pub use machine::{ApplyError, BootstrapError, EntryOutcome, PlacementMachine, SnapshotError};
pub use map::{ClusterMap, Group, Node, NodeState, SlotMove};
pub use members::{MAX_PLACEMENT_MEMBERS, placement_members};
pub use route::Route;
pub use slot::{SLOT_COUNT, Slot, hash_tag, slot_for_key};
