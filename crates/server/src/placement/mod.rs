//! The node's side of the placement group (docs/sharding.md, *The placement
//! group*): the cluster map kept as one key of the placement group's
//! key-value state machine, changed only by compare-and-set (`cas.rs`, over
//! the group's handle: `node_store.rs`); the node's cached copy (`cache.rs`),
//! fed from the local replica on placement members (`member.rs`) and from a
//! member's `WatchMap` stream elsewhere (`follow.rs`); and the groups the node
//! hosts kept in line with it (`reconcile.rs`), as are their configurations
//! (`conf_sync.rs`), and the slots moving between them (`mover/`); the node
//! keeps itself registered in the map (`register.rs`), and group 1's leader
//! keeps group 1's members in the map in line with its configuration
//! (`group1_mirror.rs`).

pub mod cache;
pub mod cas;
pub(crate) mod conf_sync;
pub(crate) mod follow;
pub(crate) mod group1_mirror;
pub(crate) mod member;
pub(crate) mod mover;
pub mod node_store;
pub(crate) mod reconcile;
pub(crate) mod register;
#[cfg(test)]
pub(crate) mod test_maps;

pub use cache::{CachedMap, MapCache};
pub use cas::{CasError, Changed, Created, MAP_KEY, MapStore, Written, change_map, create_map};
pub use node_store::NodeMapStore;
