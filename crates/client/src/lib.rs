//! The Rust client for keel.
//!
//! ```no_run
//! # async fn example() -> Result<(), keel_client::Error> {
//! use keel_client::{Client, ClientConfig, Compare, Precondition, ReadMode, Txn, TxnOp};
//!
//! let client = Client::new(ClientConfig::with_endpoints(["10.0.0.1:7001", "10.0.0.2:7001"]))?;
//! let revision = client.put("greeting", "hello").await?;
//! let got = client.get("greeting", ReadMode::Linearizable).await?;
//! let version = got.kv.map(|kv| kv.version).unwrap_or(revision);
//! // Compare-and-set: only if nobody wrote the key since we read it.
//! client.put_with("greeting", "hello again", Precondition::Version(version)).await?;
//! // A transaction: compare, then one of two branches, atomically (see `Txn`).
//! client
//!     .txn(Txn::new().when(Compare::absent("lock")).then(TxnOp::put("lock", "me")))
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Finding the leader
//!
//! Writes (and by default reads) are served by the leader. The client remembers the
//! last leader it learned of and tries it first. A member that is not the leader
//! answers NOT_LEADER with the leader's address, and the client goes straight there,
//! even if that address is not among the configured endpoints. When no member knows
//! a leader (an election is under way), or a member cannot be reached, the client
//! tries the configured endpoints in turn, with exponential backoff and jitter.
//!
//! A sharded cluster has a leader per group. The client then keeps the
//! cluster map (fetched when an answer shows it is needed or stale) and a
//! leader per group, and sends each key operation to the leader of the group
//! that owns the key's hash slot, or, until it knows that leader, to one of
//! the group's members.
//!
//! # Calls made together travel together
//!
//! Key-value calls made at the same time to the same member (from many tasks
//! sharing one `Client`) go out together, several per message of one
//! `keel.v1.Kv/Batch` stream per connection, and their answers come back the same
//! way, as each completes. gRPC's per-call cost (an HTTP/2 stream, headers, a
//! write per answer on both ends) is then shared, which is most of the cost of a
//! lease or stale read. Each call is still its own call: its own attempt timeout,
//! retries and error, judged exactly as below (a request still queued when the
//! stream failed counts as never sent; one handed to the stream, as possibly
//! applied). Scans, and requests over 16 KiB, go as unary calls; so does
//! everything to a member without the Batch method. [`ClientConfig::batching`]
//! turns it off.
//!
//! # What is retried, and why
//!
//! A retry must never apply a write twice. So every failed attempt is judged by what
//! it proves:
//!
//! - **Reads** are retried after any failure that may be temporary (no leader, not
//!   the leader, overloaded, shutting down, a connection that failed or timed out),
//!   until the deadline.
//! - **Writes of a client session** — every write, unless
//!   [`ClientConfig::sessions`] is off — are exactly-once: each carries the
//!   client's random session id and a sequence number, and the cluster answers a
//!   repeated number with the result of its first execution (the same revision, or
//!   the same CONFLICT) instead of executing it again. So they are retried like
//!   reads, also after a timeout or a leader change, for up to 30 seconds after the
//!   first attempt (the cluster remembers a session for at least a minute). Only a
//!   write still unanswered after that, or at the deadline, ends in
//!   [`Error::OutcomeUnknown`]. If the cluster forgot the session (idle for longer
//!   than its session idle time), a write that cannot have been applied is sent
//!   again in a new session. Sessions are per Raft group: the client numbers
//!   each group's writes on its own, picking a write's group from its cached
//!   cluster map, and a write whose outcome is unknown is only ever retried in
//!   the group of its first attempt; one its group proves it did not apply
//!   (the key's slot moved away, or is in hand-off) is sent again, as a new
//!   write, to the slot's owner. See `docs/sessions.md`.
//! - **Writes without a session** are retried only when the failure proves the
//!   write was not applied:
//!   the server answered NOT_LEADER, NO_LEADER, OVERLOADED or SHUTTING_DOWN, or the
//!   connection the request needed could not be established, so the request never
//!   left this process. A write without a session that may have reached a member
//!   and then failed — the connection broke mid-call, the attempt timed out, the
//!   server answered OUTCOME_UNKNOWN or INTERNAL — is **not** retried: the call
//!   returns [`Error::OutcomeUnknown`]. The caller decides: read to find out, or
//!   retry if applying twice is harmless.
//! - Answers that no retry can change (CONFLICT, INVALID_ARGUMENT) end the call at
//!   once.
//!
//! Every attempt is bounded by `request_timeout`, every call by its deadline
//! (`ClientConfig::deadline`, or [`Client::with_deadline`]), so no call hangs. A call
//! whose deadline passes returns [`Error::Unavailable`] (or [`Error::Overloaded`]),
//! which — for writes too — means the request was definitely not applied (a
//! session's write that may have been applied returns `OutcomeUnknown` instead); see
//! [`Error::is_definite_failure`].

mod address;
mod backoff;
mod call;
mod channel;
mod client;
mod cluster;
mod config;
mod error;
mod failure;
mod kv;
mod kv_conn;
mod map;
mod map_cache;
mod map_change;
mod mux;
mod pool;
mod reroute;
mod router;
mod session;
mod tls;
mod token;
mod txn;
mod types;
mod write;

pub use channel::AuthChannel;
pub use client::Client;
pub use cluster::SnapshotStream;
pub use config::{ClientConfig, ConfigError};
pub use error::Error;
pub use keel_placement::{
    ClusterMap, Command as MapCommand, GroupId, NodeState, Slot, slot_for_key,
};
pub use keel_proto::v1::{
    GroupStatus, Member, MembersResponse, PeerProgress, SnapshotSaveChunk, StatusResponse,
};
pub use map_change::ChangeMapOutcome;
pub use tls::{TlsConfig, TlsIdentity, endpoint};
pub use token::BearerToken;
pub use txn::{Compare, CompareOp, CompareTarget, Txn, TxnOp, TxnOpResult, TxnResponse};
pub use types::{
    DeleteResponse, GetResponse, KeyValue, Precondition, ReadMode, ScanOptions, ScanResponse,
};
