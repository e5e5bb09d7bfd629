//! Chaos testing for keel: real clusters under faults, concurrent clients whose
//! every operation is recorded, and a checker that judges the history.
//!
//! - [`history`]: the JSON-lines history format.
//! - [`checker`]: per-key linearizability (Wing–Gong/Lowe search) and cheap checks.
//! - [`nodes`], [`net`], [`proxy`], [`nemesis`]: the cluster, its hosts and links,
//!   and the faults.
//! - [`workload`]: the clients that make the history; [`lull`]: spells in which
//!   they only read.
//! - [`run`]: one whole run; [`report`]: its summary and violation timelines.
//!
//! See `docs/chaos.md`.

pub mod binary;
pub mod checker;
pub mod cluster;
pub mod history;
pub mod lull;
pub mod nemesis;
pub mod net;
pub mod nodes;
pub mod proxy;
pub mod report;
pub mod rng;
pub mod run;
pub mod workload;
