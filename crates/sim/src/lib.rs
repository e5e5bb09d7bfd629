//! keel's deterministic simulator.
//!
//! Runs clusters of real keel Raft cores ([`keel_raft::Raft`]) over the real storage
//! code (`keel-storage`'s WAL on a crash-simulating `MemVfs`), on a simulated network
//! that drops, delays, reorders and duplicates messages, with symmetric and one-way
//! partitions and power failures that lose whatever was not fsynced. Each node drives
//! its core through the `Ready` contract in one of its two forms — synchronous
//! (`advance` after each fsync) or asynchronous (`advance_async`, with a storage thread
//! that group-commits and reports back with `on_persisted`) — drawn per process
//! incarnation. Each node has its own clock, running at a rate within a drift bound,
//! on which its ticks are timed and its core's leader leases measured; processes are
//! paused (SIGSTOP/SIGCONT) for longer than a lease. A client writes, and reads in
//! three modes: linearizable (ReadIndex, on the leader or on a follower through the
//! leader), lease (under the leader's lease, else ReadIndex) and stale. One seeded
//! RNG drives everything, so a seed names a run and replays it exactly.
//!
//! After every step the [`checker`] verifies election safety, log matching, leader
//! completeness, state machine safety, monotonic commit and the durability of synced
//! state, and calls every touched core's `validate()`; every read that is not stale
//! must be consistent with a linearization of the history (and reflect everything
//! committed before it began). After the fault phase, everything heals and the run
//! must elect a leader, commit client requests and converge within bounds; finally
//! no acknowledged write may be missing anywhere.
//!
//! ```
//! let summary = keel_sim::run(keel_sim::SimConfig::new(7, 3)).expect("seed 7 passes");
//! assert!(summary.stats.acked > 0);
//! ```
//!
//! See `docs/simulation.md` for what is modelled and how to replay or run campaigns.

pub mod checker;
pub mod client;
pub mod config;
pub mod faults;
pub mod hash;
pub mod network;
pub mod node;
pub mod reads;
pub mod report;
pub mod rng;
pub mod storage;
pub mod trace;
pub mod workload;

mod sim;

pub use checker::{Invariant, Violation};
pub use config::{
    Bug, DEFAULT_CLOCK_DRIFT_PPM, DEFAULT_STEPS, LivenessBounds, Persistence, SimConfig,
    StorageKind, TICK, Time,
};
pub use report::{Failure, FailureKind, LivenessBound, RunSummary, Stats};
pub use sim::run;
