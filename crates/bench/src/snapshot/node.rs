//! One node as the scenario watches it: its process (memory from `/proc`) and its
//! HTTP port (`/v1/status`, `/metrics`), over blocking loopback requests.

use std::net::SocketAddr;
use std::time::Duration;

use keel_testkit::{proc_usage, prometheus};
use serde::Deserialize;

/// How long one HTTP probe may take. A node that is still recovering has bound its
/// port but does not answer yet; the probe then fails after this long.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// The fields of `GET /v1/status` the scenario uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Status {
    /// Current term.
    pub term: u64,
    /// Known leader, or 0.
    pub leader_id: u64,
    /// Commit index.
    pub commit_index: u64,
    /// Applied index.
    pub applied_index: u64,
}

/// A node of the cluster under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    /// Node id.
    pub id: u64,
    /// Process id of the running process.
    pub pid: u32,
    /// HTTP address.
    pub http: SocketAddr,
}

impl Node {
    /// Its status, if it answers.
    pub fn status(&self) -> Option<Status> {
        let body = prometheus::http_get(self.http, "/v1/status", PROBE_TIMEOUT).ok()?;
        serde_json::from_str(&body).ok()
    }

    /// A sample of its `/metrics` page, if it answers and has it.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let page = prometheus::http_get(self.http, "/metrics", PROBE_TIMEOUT).ok()?;
        prometheus::sample(&page, name)
    }

    /// Resident memory now (`VmRSS`).
    pub fn rss(&self) -> Option<u64> {
        proc_usage::rss_bytes(self.pid).ok()
    }

    /// Peak resident memory since the process started or [`Node::reset_peak`]
    /// (`VmHWM`).
    pub fn peak_rss(&self) -> Option<u64> {
        proc_usage::peak_rss_bytes(self.pid).ok()
    }

    /// Starts a new peak-memory window.
    pub fn reset_peak(&self) {
        // Without the reset the peak is the process's lifetime peak; the sampled
        // peak is reported beside it either way.
        let _ = proc_usage::reset_peak_rss(self.pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ignores_fields_it_does_not_need() {
        let body = r#"{"id":2,"role":"follower","term":3,"leader_id":1,"commit_index":10,
            "applied_index":9,"last_index":10,"peers":[],"version":"0.1.0"}"#;
        let s: Status = serde_json::from_str(body).expect("status");
        assert_eq!(
            s,
            Status {
                term: 3,
                leader_id: 1,
                commit_index: 10,
                applied_index: 9
            }
        );
    }

    #[test]
    fn this_process_has_memory_and_no_status() {
        let me = Node {
            id: 1,
            pid: std::process::id(),
            http: "127.0.0.1:1".parse().expect("address"),
        };
        assert!(me.rss().is_some_and(|b| b > 0));
        assert!(me.peak_rss().is_some_and(|b| b > 0));
        assert_eq!(me.status(), None);
    }
}
