//! What a run hands back: a summary when every check passed, or a [`Failure`] that
//! says which check failed, where, what led up to it, and how to replay it.

use std::fmt;

use keel_raft::NodeId;

use crate::checker::Invariant;
use crate::config::{SimConfig, TICK, Time};

/// Which liveness bound was exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LivenessBound {
    /// No leader was established in time after healing.
    Leader,
    /// A client request was not acknowledged in time.
    Commit,
    /// Replicas did not all apply everything committed in time.
    Convergence,
}

impl LivenessBound {
    /// Human-readable name.
    pub fn name(self) -> &'static str {
        match self {
            LivenessBound::Leader => "leader election bound",
            LivenessBound::Commit => "request commit bound",
            LivenessBound::Convergence => "replica convergence bound",
        }
    }
}

/// The category of a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// A safety invariant broke.
    Safety(Invariant),
    /// The cluster did not make progress within a bound after healing.
    Liveness(LivenessBound),
    /// Storage returned an error although the only fault was a clean crash.
    Storage,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Safety(inv) => write!(f, "safety violation: {inv}"),
            FailureKind::Liveness(bound) => write!(f, "liveness failure: {}", bound.name()),
            FailureKind::Storage => write!(f, "storage error after a clean crash"),
        }
    }
}

/// A failed run.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The run (its seed and knobs).
    pub config: SimConfig,
    /// What failed.
    pub kind: FailureKind,
    /// Scheduler step at which it was detected.
    pub step: u64,
    /// Simulated time at which it was detected.
    pub time: Time,
    /// Nodes involved.
    pub nodes: Vec<NodeId>,
    /// What exactly was seen.
    pub detail: String,
    /// The last trace lines involving those nodes.
    pub trace: Vec<String>,
}

impl Failure {
    /// The one-line command that replays the run.
    pub fn replay_command(&self) -> String {
        self.config.replay_command()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "keel-sim FAILED: {}", self.kind)?;
        writeln!(
            f,
            "  seed {}, {} nodes, step {}, t={}.{:02} ticks",
            self.config.seed,
            self.config.nodes,
            self.step,
            self.time / TICK,
            self.time % TICK
        )?;
        writeln!(f, "  {}", self.detail)?;
        if !self.trace.is_empty() {
            let who: Vec<String> = self.nodes.iter().map(|n| n.to_string()).collect();
            writeln!(
                f,
                "  last {} events involving node(s) {}:",
                self.trace.len(),
                if who.is_empty() {
                    "any".to_string()
                } else {
                    who.join(", ")
                }
            )?;
            for line in &self.trace {
                writeln!(f, "    {line}")?;
            }
        }
        write!(f, "  replay: {}", self.replay_command())
    }
}

impl std::error::Error for Failure {}

/// Counters of a run, for summaries and for tuning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Scheduler steps taken.
    pub steps: u64,
    /// Messages handed to the network.
    pub messages: u64,
    /// Crashes injected.
    pub crashes: u64,
    /// Crashes that hit a node with an fsync in flight.
    pub crashes_mid_sync: u64,
    /// Crashes that hit a node with more than one `Ready` handed out but not yet
    /// durable (asynchronous nodes only).
    pub crashes_many_in_flight: u64,
    /// Process starts (first starts and restarts).
    pub starts: u64,
    /// Process starts that drive the core asynchronously.
    pub async_starts: u64,
    /// Fsyncs that covered more than one `Ready` (group commits).
    pub group_commits: u64,
    /// Fsyncs of nodes' WALs (of either form of the contract).
    pub fsyncs: u64,
    /// Fsyncs that covered the writes of more than one Raft group: a node's turn
    /// wrote several groups' `Ready`s into its one WAL and synced once.
    pub shared_fsyncs: u64,
    /// Restarts at which WAL recovery discarded a torn tail.
    pub torn_tails: u64,
    /// Faults injected (of every kind, crashes included).
    pub faults: u64,
    /// Terms that had a leader.
    pub leader_terms: u64,
    /// Length of the committed log at the end.
    pub committed: u64,
    /// Proposals made / acknowledged.
    pub proposals: u64,
    /// Proposals acknowledged to the client.
    pub acked: u64,
    /// Ticks from healing until a leader was established.
    pub ticks_to_leader: u64,
    /// Slowest liveness request, in ticks from issue to acknowledgement.
    pub max_request_ticks: u64,
    /// Membership changes appended by a leader.
    pub conf_changes: u64,
    /// Leadership transfers started.
    pub transfers: u64,
    /// Snapshots written and made durable by nodes of their own state machine.
    pub snapshots_taken: u64,
    /// Snapshot transfers started by leaders (an `InstallSnapshot` to send).
    pub snapshots_sent: u64,
    /// Transfers reported failed to the leader (lost, cut off, recipient down).
    pub snapshots_failed: u64,
    /// Leaders' snapshots installed by followers (`Ready::snapshot`).
    pub snapshots_installed: u64,
    /// Restarts whose state machine was behind the newest snapshot and was
    /// replaced by it.
    pub snapshots_loaded: u64,
    /// WAL compactions behind a durable snapshot.
    pub wal_compactions: u64,
    /// Pauses injected (processes stopped and later resumed).
    pub pauses: u64,
    /// Reads the client issued.
    pub reads_issued: u64,
    /// Reads served under a leader lease.
    pub reads_lease: u64,
    /// Reads served by a leader through its own ReadIndex.
    pub reads_leader_index: u64,
    /// Reads served by a follower through the leader's read index.
    pub reads_follower_index: u64,
    /// Reads served from local state at once (stale mode).
    pub reads_local: u64,
    /// Lease reads that found no valid lease and went through ReadIndex.
    pub lease_fallbacks: u64,
    /// Reads never answered: refused (no leader known), lost with a crash or a
    /// core that dropped them, or timed out.
    pub reads_unanswered: u64,
    /// Leaders that quiesced their idle group (`SimConfig::quiesce`).
    pub quiesces: u64,
    /// Quiesced followers woken by node-level failure detection (their leader's
    /// node down, paused, cut off, or no longer leading).
    pub liveness_wakes: u64,
    /// Simulated time spent in the quiet part of idle stretches, in ticks
    /// (`SimConfig::idle_stretches`).
    pub quiet_ticks: u64,
    /// Messages handed to the network during the quiet part of idle stretches.
    pub quiet_messages: u64,
}

impl Stats {
    /// The crash counters, as summaries print them.
    pub fn crashes(&self) -> impl fmt::Display + '_ {
        CrashCounts(self)
    }

    /// The snapshot counters, as summaries print them.
    pub fn snapshots(&self) -> impl fmt::Display + '_ {
        SnapshotCounts(self)
    }

    /// The read counters, as summaries print them.
    pub fn reads(&self) -> impl fmt::Display + '_ {
        ReadCounts(self)
    }

    /// Adds another run's counters to these (for a campaign's totals): counts add
    /// up, the liveness times keep the worst.
    pub fn accumulate(&mut self, s: &Stats) {
        self.steps += s.steps;
        self.messages += s.messages;
        self.crashes += s.crashes;
        self.crashes_mid_sync += s.crashes_mid_sync;
        self.crashes_many_in_flight += s.crashes_many_in_flight;
        self.starts += s.starts;
        self.async_starts += s.async_starts;
        self.group_commits += s.group_commits;
        self.fsyncs += s.fsyncs;
        self.shared_fsyncs += s.shared_fsyncs;
        self.torn_tails += s.torn_tails;
        self.faults += s.faults;
        self.leader_terms += s.leader_terms;
        self.committed += s.committed;
        self.proposals += s.proposals;
        self.acked += s.acked;
        self.ticks_to_leader = self.ticks_to_leader.max(s.ticks_to_leader);
        self.max_request_ticks = self.max_request_ticks.max(s.max_request_ticks);
        self.conf_changes += s.conf_changes;
        self.quiesces += s.quiesces;
        self.liveness_wakes += s.liveness_wakes;
        self.quiet_ticks += s.quiet_ticks;
        self.quiet_messages += s.quiet_messages;
        self.transfers += s.transfers;
        self.snapshots_taken += s.snapshots_taken;
        self.snapshots_sent += s.snapshots_sent;
        self.snapshots_failed += s.snapshots_failed;
        self.snapshots_installed += s.snapshots_installed;
        self.snapshots_loaded += s.snapshots_loaded;
        self.wal_compactions += s.wal_compactions;
        self.pauses += s.pauses;
        self.reads_issued += s.reads_issued;
        self.reads_lease += s.reads_lease;
        self.reads_leader_index += s.reads_leader_index;
        self.reads_follower_index += s.reads_follower_index;
        self.reads_local += s.reads_local;
        self.lease_fallbacks += s.lease_fallbacks;
        self.reads_unanswered += s.reads_unanswered;
    }
}

struct CrashCounts<'a>(&'a Stats);

impl fmt::Display for CrashCounts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        write!(
            f,
            "{} crashes, {} during an fsync, {} with several Readys not yet durable, {} torn \
             WAL tails recovered",
            s.crashes, s.crashes_mid_sync, s.crashes_many_in_flight, s.torn_tails
        )
    }
}

struct SnapshotCounts<'a>(&'a Stats);

impl fmt::Display for SnapshotCounts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        write!(
            f,
            "snapshots: {} taken, {} sent, {} transfers failed, {} installed, {} loaded at \
             restart, {} WAL compactions",
            s.snapshots_taken,
            s.snapshots_sent,
            s.snapshots_failed,
            s.snapshots_installed,
            s.snapshots_loaded,
            s.wal_compactions
        )
    }
}

struct ReadCounts<'a>(&'a Stats);

impl fmt::Display for ReadCounts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        write!(
            f,
            "reads: {} issued, {} served under a lease ({} lease reads fell back to \
             ReadIndex), {} through the leader's ReadIndex, {} through a follower's, {} \
             stale, {} unanswered; {} pauses",
            s.reads_issued,
            s.reads_lease,
            s.lease_fallbacks,
            s.reads_leader_index,
            s.reads_follower_index,
            s.reads_local,
            s.reads_unanswered,
            s.pauses
        )
    }
}

/// A passed run.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// The run.
    pub config: SimConfig,
    /// Fingerprint of the whole trace: equal for equal runs.
    pub fingerprint: u64,
    /// Simulated time at the end.
    pub time: Time,
    /// Counters.
    pub stats: Stats,
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        write!(
            f,
            "seed {} ({} nodes, {} group(s)): ok in {} steps, {} ticks; {} messages, {} faults \
             ({}), {}/{} starts async, {} group commits, {} fsyncs ({} for several groups), {} \
             leader terms, {} committed, {}/{} proposals acked, {} membership changes, {} \
             transfers, {}; {}; leader after healing in {} ticks, slowest request {} ticks; \
             fingerprint {:016x}",
            self.config.seed,
            self.config.nodes,
            self.config.groups,
            s.steps,
            self.time / TICK,
            s.messages,
            s.faults,
            s.crashes(),
            s.async_starts,
            s.starts,
            s.group_commits,
            s.fsyncs,
            s.shared_fsyncs,
            s.leader_terms,
            s.committed,
            s.acked,
            s.proposals,
            s.conf_changes,
            s.transfers,
            s.snapshots(),
            s.reads(),
            s.ticks_to_leader,
            s.max_request_ticks,
            self.fingerprint
        )?;
        if self.config.quiesce || self.config.idle_stretches {
            write!(
                f,
                "; {} quiesces, {} liveness wakes, {} messages in {} quiet ticks",
                s.quiesces, s.liveness_wakes, s.quiet_messages, s.quiet_ticks
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_report_names_kind_place_detail_trace_and_replay() {
        let failure = Failure {
            config: SimConfig::new(9, 5),
            kind: FailureKind::Storage,
            step: 12,
            time: 345,
            nodes: vec![2],
            detail: "node 2: WAL: corrupt".to_string(),
            trace: vec!["[step 11] node 2 CRASHES".to_string()],
        };
        let text = failure.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "keel-sim FAILED: storage error after a clean crash"
        );
        assert_eq!(lines[1], "  seed 9, 5 nodes, step 12, t=3.45 ticks");
        assert_eq!(lines[2], "  node 2: WAL: corrupt");
        assert_eq!(lines[3], "  last 1 events involving node(s) 2:");
        assert_eq!(lines[4], "    [step 11] node 2 CRASHES");
        assert_eq!(
            lines[5],
            "  replay: cargo run -p keel-sim --release -- --seed 9 --nodes 5 --verbose"
        );
        assert_eq!(
            FailureKind::Liveness(LivenessBound::Leader).to_string(),
            "liveness failure: leader election bound"
        );
    }
}
