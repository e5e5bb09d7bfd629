//! The result of one measurement: one system at one client count.

use serde::Serialize;

use crate::driver::RunOutcome;
use crate::stats::OpSummary;
use crate::usage::NodeUsage;
use crate::workload::OpKind;

/// One system at one client count.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PointResult {
    /// `"keel"` or `"etcd"`.
    pub system: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Length of the measurement window (seconds).
    pub measured_seconds: f64,
    /// Reads, if the workload had any.
    pub reads: Option<OpSummary>,
    /// Writes, if the workload had any.
    pub writes: Option<OpSummary>,
    /// Each node's CPU time and peak memory in the window (empty if the bench did not
    /// start the cluster).
    pub nodes: Vec<NodeUsage>,
    /// CPU time of the load generator itself in the window (seconds): it shares the
    /// machine with the cluster.
    pub client_cpu_seconds: Option<f64>,
    /// Elections during the run, warm-up included (see
    /// `System::election_counter`), if they could be counted.
    pub elections: Option<u64>,
}

impl PointResult {
    /// Summarizes a run. Kinds the workload never issues (`read_fraction` 0 or 1)
    /// are left out.
    pub fn new(
        system: &str,
        clients: usize,
        read_fraction: f64,
        outcome: &RunOutcome,
        elections: Option<u64>,
    ) -> Self {
        let summary = |kind| outcome.recorder.get(kind).summary(outcome.measured);
        PointResult {
            system: system.to_owned(),
            clients,
            measured_seconds: outcome.measured.as_secs_f64(),
            reads: (read_fraction > 0.0).then(|| summary(OpKind::Read)),
            writes: (read_fraction < 1.0).then(|| summary(OpKind::Write)),
            nodes: outcome.usage.clone(),
            client_cpu_seconds: outcome.client_cpu_seconds,
            elections,
        }
    }

    /// The summary of `kind`, if the workload issued it.
    pub fn ops(&self, kind: OpKind) -> Option<&OpSummary> {
        match kind {
            OpKind::Read => self.reads.as_ref(),
            OpKind::Write => self.writes.as_ref(),
        }
    }

    /// CPU time of all nodes per successful operation (microseconds), if measured.
    pub fn cpu_us_per_op(&self) -> Option<f64> {
        let ops: u64 = [OpKind::Read, OpKind::Write]
            .into_iter()
            .filter_map(|k| self.ops(k))
            .map(|s| s.ops)
            .sum();
        if self.nodes.is_empty() || ops == 0 {
            return None;
        }
        let cpu: f64 = self.nodes.iter().map(|n| n.cpu_seconds).sum();
        Some(cpu * 1e6 / ops as f64)
    }
}

/// `1 client`, `16 clients`.
pub fn clients_text(n: usize) -> String {
    if n == 1 {
        "1 client".to_owned()
    } else {
        format!("{n} clients")
    }
}
