//! keel's node runtime.
//!
//! One process runs one node: a dedicated thread drives the consensus core
//! (`node`), persisting to the WAL and applying to the state machine; tokio runs
//! the peer transport (`transport`) and the client APIs (`api`: gRPC and
//! HTTP/JSON; `redis`: the Redis protocol). [`run`] assembles everything from a [`ServerConfig`].

pub mod api;
pub mod auth;
pub mod backup;
pub mod config;
pub mod error;
pub mod events;
pub mod group_metrics;
pub mod identity;
mod join;
mod listeners;
mod log_limit;
pub mod members;
pub mod metrics;
pub mod node;
pub mod peers;
pub mod placement;
mod redis;
mod server;
pub mod shard_report;
pub mod test_bugs;
pub mod timeline;
pub mod tls;
pub mod transport;

pub use config::{DefaultReadMode, JoinAs, MAX_KEY_BYTES, ServerConfig, parse_initial_cluster};
pub use error::ServerError;
pub use server::run;
