//! The JSON file `--json` writes: the settings, the machine, and every result.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::plan::Plan;
use crate::results::PointResult;
use crate::target::ReadConsistency;
use crate::workload::Workload;

/// Everything a run measured, with what it ran.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    /// The load.
    pub workload: &'a Workload,
    /// How reads were served.
    pub read_mode: ReadConsistency,
    /// Connections the clients shared.
    pub connections: usize,
    /// Warm-up before each measurement (seconds).
    pub warmup_seconds: f64,
    /// Logical CPUs of this machine.
    pub cpus: usize,
    /// The results, in the order they were measured.
    pub results: &'a [PointResult],
}

impl<'a> JsonReport<'a> {
    /// The report of `results`, measured under `plan`.
    pub fn new(plan: &'a Plan, results: &'a [PointResult]) -> Self {
        JsonReport {
            workload: &plan.workload,
            read_mode: plan.reads,
            connections: plan.connections,
            warmup_seconds: plan.warmup.as_secs_f64(),
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            results,
        }
    }

    /// Writes the report, pretty-printed, to `path`.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self).context("cannot encode the results")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))
    }
}
