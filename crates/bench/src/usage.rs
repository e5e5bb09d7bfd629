//! CPU time and peak memory of the cluster's processes over a measurement window.

use serde::Serialize;

use keel_testkit::proc_usage;

/// One node's cost over a measurement window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeUsage {
    /// Node (or etcd member) id.
    pub node: u64,
    /// User + system CPU time spent in the window (seconds).
    pub cpu_seconds: f64,
    /// Peak resident memory in the window (bytes).
    pub peak_rss_bytes: u64,
}

/// The processes to watch: `(node id, pid)`. Empty when the bench did not start the
/// cluster (then nothing is measured).
#[derive(Clone, Debug, Default)]
pub struct UsageProbe {
    nodes: Vec<(u64, u32)>,
}

/// CPU times at the start of a window.
#[derive(Clone, Debug)]
pub struct UsageStart {
    cpu_seconds: Vec<Option<f64>>,
}

impl UsageProbe {
    /// Watches these processes.
    pub fn new(nodes: Vec<(u64, u32)>) -> Self {
        UsageProbe { nodes }
    }

    /// Opens a window: notes CPU times and resets peak RSS.
    pub fn start(&self) -> UsageStart {
        let cpu_seconds = self
            .nodes
            .iter()
            .map(|&(_, pid)| {
                // Without the reset, the peak covers the process's whole life; still
                // worth reporting, so a failed reset is not an error.
                let _ = proc_usage::reset_peak_rss(pid);
                proc_usage::cpu_time(pid).ok().map(|d| d.as_secs_f64())
            })
            .collect();
        UsageStart { cpu_seconds }
    }

    /// Closes the window. Nodes whose numbers cannot be read (a process that
    /// exited) are left out.
    pub fn finish(&self, start: &UsageStart) -> Vec<NodeUsage> {
        self.nodes
            .iter()
            .zip(&start.cpu_seconds)
            .filter_map(|(&(node, pid), &before)| {
                let after = proc_usage::cpu_time(pid).ok()?.as_secs_f64();
                Some(NodeUsage {
                    node,
                    cpu_seconds: after - before?,
                    peak_rss_bytes: proc_usage::peak_rss_bytes(pid).ok()?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_live_process_and_skips_missing_ones() {
        let me = std::process::id();
        // pid 0 has no /proc entry.
        let probe = UsageProbe::new(vec![(1, me), (2, 0)]);
        let start = probe.start();
        let usage = probe.finish(&start);
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].node, 1);
        assert!(usage[0].cpu_seconds >= 0.0);
        assert!(usage[0].peak_rss_bytes > 0);
    }
}
