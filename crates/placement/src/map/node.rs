//! Nodes as the map records them.

use serde::{Deserialize, Serialize};

use crate::ids::MAX_ADDRESS_BYTES;

/// A registered node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Where peers and clients reach it (`host:port`, its advertised address).
    pub address: String,
    /// Whether it takes new replicas.
    pub state: NodeState,
}

/// Whether a node takes new replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Serving, and a candidate for new replicas.
    Active,
    /// On its way out: it keeps its replicas until they are moved, and gets no
    /// new ones.
    Draining,
}

/// Checks the shape of an address. Resolving it is the runtime's business; the
/// map only refuses what can never be an address, so that a typo is caught when
/// the node registers rather than when a peer first dials it.
pub(crate) fn check_address(address: &str) -> Result<(), &'static str> {
    if address.is_empty() {
        return Err("it is empty");
    }
    if address.len() > MAX_ADDRESS_BYTES {
        return Err("it is longer than 256 bytes");
    }
    if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it contains whitespace or control characters");
    }
    Ok(())
}
