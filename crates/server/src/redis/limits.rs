//! Bounds on what one Redis connection may make the node hold, derived from the
//! node's own limits so that Redis accepts exactly what gRPC and HTTP accept.

use crate::api::ApiLimits;
use crate::api::txn::TXN_OVERHEAD_BYTES;
use crate::config::MAX_KEY_BYTES;

/// Most connections served at once; the next is told so and closed (Redis's
/// `maxclients` default).
pub(crate) const MAX_CONNECTIONS: usize = 10_000;

/// Limits of one connection.
#[derive(Clone, Debug)]
pub(crate) struct RedisLimits {
    /// Longest bulk string (a key, a value, an argument): the larger of the key
    /// and value limits.
    pub(crate) max_bulk_bytes: usize,
    /// Most elements in one request array (the command name included).
    pub(crate) max_args: usize,
    /// Most bytes one request may take on the wire: what the largest
    /// transaction may take, the same slack the gRPC message limit has.
    pub(crate) max_request_bytes: usize,
    /// Longest inline command line (`PING\r\n` typed into a terminal).
    pub(crate) max_inline_bytes: usize,
    /// Most pipelined requests executed as one batch; the rest wait in the
    /// socket (TCP flow control) rather than in memory.
    pub(crate) max_pipeline: usize,
    /// Reply bytes buffered before they are written out, so a pipeline of large
    /// reads never holds all its answers at once.
    pub(crate) flush_bytes: usize,
    /// Most bytes of keys and values one MGET, or one run of pipelined reads
    /// between flushes, may gather: the value limit plus 4 KiB, like a
    /// transaction's gets.
    pub(crate) max_read_bytes: usize,
    /// Largest value (for SET, MSET, ...).
    pub(crate) max_value_bytes: usize,
    /// Largest SCAN page (COUNT is capped to it).
    pub(crate) max_scan_keys: usize,
}

impl RedisLimits {
    /// The limits of a node with `api`'s limits.
    pub(crate) fn from_api(api: &ApiLimits) -> Self {
        RedisLimits {
            max_bulk_bytes: api.max_value_bytes.max(MAX_KEY_BYTES),
            max_args: 4096,
            max_request_bytes: api.max_value_bytes + TXN_OVERHEAD_BYTES,
            max_inline_bytes: 64 << 10,
            max_pipeline: 1024,
            flush_bytes: 256 << 10,
            max_read_bytes: api.max_value_bytes + MAX_KEY_BYTES,
            max_value_bytes: api.max_value_bytes,
            max_scan_keys: api.max_scan_limit as usize,
        }
    }
}
