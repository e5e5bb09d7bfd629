//! Configuration of one core. Times are in logical ticks: the runtime decides how long
//! a tick is (the server uses `tick_ms`), the simulator advances them at will. The
//! one exception is the leader lease, which is measured on the runtime's monotonic
//! clock (see [`crate::Raft::set_clock`]): a lease must stay safe when a process
//! pauses, and ticks stop while a process is paused, clocks do not.

use crate::error::ConfigError;
use crate::types::{GroupId, NO_NODE, NodeId};

/// Tunables of one Raft core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id (non-zero).
    pub id: NodeId,
    /// The group this core replicates.
    pub group: GroupId,
    /// Minimum election timeout in ticks. Each follower draws its timeout uniformly
    /// from `[election_ticks, 2 * election_ticks)` (Raft §5.2, randomized timeouts).
    pub election_ticks: u32,
    /// Ticks between leader heartbeats. Must be well below `election_ticks`.
    pub heartbeat_ticks: u32,
    /// Run a pre-vote round before a real election (thesis §9.6), so that a node
    /// that was partitioned away cannot disrupt the cluster by raising the term.
    pub pre_vote: bool,
    /// A leader steps down if it has not heard from a quorum within an election
    /// timeout, and voters ignore vote requests while they hear from a live leader
    /// (thesis §6.2, §4.2.3).
    pub check_quorum: bool,
    /// Bound on un-acknowledged AppendEntries messages to one follower.
    pub max_inflight_msgs: usize,
    /// Bound on un-acknowledged entry bytes to one follower.
    pub max_inflight_bytes: u64,
    /// Soft bound on entry bytes in one AppendEntries (at least one entry is sent).
    pub max_msg_bytes: u64,
    /// Bound on the bytes of proposed-but-uncommitted entries on a leader; proposals
    /// beyond it are refused with [`crate::ProposeError::Overloaded`].
    pub max_uncommitted_bytes: u64,
    /// Soft bound on committed entry bytes handed out in one [`crate::Ready`].
    pub max_apply_bytes: u64,
    /// Length of a leader lease in clock units (the server uses nanoseconds), or 0
    /// for no leases. Heartbeats carry it; a voter remembers it and hands what
    /// remains to the candidate it votes for, which waits it out before committing
    /// anything. Should not exceed the minimum election timeout.
    pub lease_duration: u64,
    /// How far two nodes' clocks may drift apart over one lease, in clock units: the
    /// leader trusts its lease only until `lease_duration - max_clock_drift` after
    /// the heartbeat round a quorum acknowledged was sent.
    pub max_clock_drift: u64,
    /// Heartbeat intervals a leader must have seen no proposal, read, membership
    /// change or transfer for before [`crate::Raft::can_quiesce`] may say yes, or 0
    /// to never quiesce. Default 3: a few intervals, so that a client pausing
    /// between bursts does not make the group flap between quiet and awake (each
    /// wake costs a heartbeat round), yet short against any idle period worth
    /// saving heartbeats over. Counted in heartbeat intervals rather than ticks so
    /// that the default suits any heartbeat setting. The core never quiesces by
    /// itself, only when the runtime calls [`crate::Raft::quiesce`] (which it must
    /// do only if it detects failed nodes itself, see the `quiesce` module), so a
    /// runtime that does not is unaffected by the default.
    pub quiesce_after_heartbeats: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            id: NO_NODE,
            group: 0,
            election_ticks: 10,
            heartbeat_ticks: 2,
            pre_vote: true,
            check_quorum: true,
            max_inflight_msgs: 256,
            max_inflight_bytes: 32 << 20,
            max_msg_bytes: 1 << 20,
            max_uncommitted_bytes: 64 << 20,
            max_apply_bytes: 16 << 20,
            lease_duration: 0,
            max_clock_drift: 0,
            quiesce_after_heartbeats: 3,
        }
    }
}

impl Config {
    /// Checks the fields against each other; a core refuses to start on an error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == NO_NODE {
            return Err(ConfigError::Invalid("id must be non-zero".into()));
        }
        if self.heartbeat_ticks == 0 {
            return Err(ConfigError::Invalid(
                "heartbeat_ticks must be at least 1".into(),
            ));
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return Err(ConfigError::Invalid(format!(
                "election_ticks ({}) must be greater than heartbeat_ticks ({})",
                self.election_ticks, self.heartbeat_ticks
            )));
        }
        if self.max_inflight_msgs == 0 {
            return Err(ConfigError::Invalid(
                "max_inflight_msgs must be at least 1".into(),
            ));
        }
        if self.max_msg_bytes == 0 || self.max_inflight_bytes == 0 {
            return Err(ConfigError::Invalid(
                "max_msg_bytes and max_inflight_bytes must be non-zero".into(),
            ));
        }
        if self.max_uncommitted_bytes == 0 || self.max_apply_bytes == 0 {
            return Err(ConfigError::Invalid(
                "max_uncommitted_bytes and max_apply_bytes must be non-zero".into(),
            ));
        }
        if self.lease_duration > 0 && self.max_clock_drift >= self.lease_duration {
            return Err(ConfigError::Invalid(format!(
                "max_clock_drift ({}) must be less than lease_duration ({})",
                self.max_clock_drift, self.lease_duration
            )));
        }
        if self.quiesce_after_ticks().is_none() {
            return Err(ConfigError::Invalid(format!(
                "quiesce_after_heartbeats ({}) times heartbeat_ticks ({}) overflows",
                self.quiesce_after_heartbeats, self.heartbeat_ticks
            )));
        }
        Ok(())
    }

    /// Idle leader ticks before quiescing is allowed (0: never); `None` if the
    /// product overflows.
    pub(crate) fn quiesce_after_ticks(&self) -> Option<u32> {
        self.quiesce_after_heartbeats
            .checked_mul(self.heartbeat_ticks)
    }
}
