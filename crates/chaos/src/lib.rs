//! Chaos testing for keel: real clusters under faults, concurrent clients whose
//! every operation is recorded, and a checker that judges the history.
//!
//! - [`history`]: the JSON-lines history format.
//! - [`checker`]: per-key linearizability (Wing–Gong/Lowe search) and cheap checks.

pub mod checker;
pub mod history;
