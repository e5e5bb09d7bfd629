//! Unit tests of the core's rules, each naming the Raft paper (or thesis) section it
//! checks. `network` is a tiny synchronous harness: messages are delivered by hand or
//! all at once, storage is a vector, and every Ready is processed per the contract.

mod async_persistence;
mod disk_full;
mod election;
mod lease;
mod membership;
mod network;
mod quiesce;
mod read_index;
mod replication;
mod snapshot;
mod transfer;
