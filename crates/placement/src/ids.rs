//! Identifiers and the limits every part of the map is held to.

/// A node (a `keel serve` process); the same number as `keel_raft::NodeId`.
/// `0` is never a node.
pub type NodeId = u64;

/// A Raft group; the same number as `keel_raft::GroupId`. `0` is never a group.
pub type GroupId = u64;

/// The first data group's id. It is the group a single-group keel has always
/// used (`keel_server::node::KV_GROUP`), so an existing cluster's data becomes
/// group 1 of a sharded one without being rewritten.
pub const FIRST_DATA_GROUP: GroupId = 1;

/// The placement group's id. It is reserved: data groups are numbered from
/// [`FIRST_DATA_GROUP`] upwards and never reach it.
pub const PLACEMENT_GROUP: GroupId = u64::MAX;

/// Most nodes a map registers. Every node caches the whole map, so it must stay
/// small; a thousand nodes is far beyond what keel is built for today.
pub const MAX_NODES: usize = 1024;

/// Most data groups a map holds (each owns at least one slot once balanced, and
/// there are 4096 slots; every node ticks every group it hosts).
pub const MAX_GROUPS: usize = 1024;

/// Most members (voters and learners alike) of one data group, and the largest
/// target replica count. Seven tolerates three failures; more only slows
/// commits down.
pub const MAX_REPLICAS: usize = 7;

/// Most slot moves in flight at once. A move pauses writes to its slot during
/// the hand-off and holds a copy of the slot's data twice; bounding them bounds
/// both.
pub const MAX_MOVES: usize = 256;

/// Longest node address (`host:port`), in bytes.
pub const MAX_ADDRESS_BYTES: usize = 256;

/// Largest encoded command [`crate::Command::decode`] reads.
pub const MAX_ENCODED_COMMAND_BYTES: usize = 64 << 10;

/// Largest encoded map [`crate::ClusterMap::decode`] reads. A map at every limit
/// (1024 nodes with the longest addresses, 1024 groups of 7, 4096 slot runs, 256
/// moves) encodes to well under 2 MiB.
pub const MAX_ENCODED_MAP_BYTES: usize = 4 << 20;
