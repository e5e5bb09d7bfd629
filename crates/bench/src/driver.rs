//! The closed loop: N clients, each issuing its next operation as soon as the
//! previous one completes, through a warm-up and then a measurement window.
//!
//! An operation counts if it starts inside the window and, when the window is a
//! duration, completes inside it too. Each client records into its own histograms;
//! they are merged at the end, so the loop shares nothing but two counters for the
//! progress line.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::progress::{Counters, Progress};
use crate::stats::Recorder;
use crate::target::{Conn, Target};
use crate::usage::{NodeUsage, UsageProbe};
use crate::workload::{OpStream, Workload};

/// Pause after a failed operation, so that a client facing an unreachable cluster
/// does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// When a measurement ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopAt {
    /// After this long.
    Elapsed(Duration),
    /// After this many operations (successful or not), across all clients.
    Ops(u64),
}

/// One run: how many clients, how long.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// Concurrent clients.
    pub clients: usize,
    /// Load before measuring, excluded from every figure.
    pub warmup: Duration,
    /// The measurement's end.
    pub stop: StopAt,
    /// Shown on the progress line.
    pub label: String,
    /// Whether to show the progress line.
    pub progress: bool,
}

/// What a run measured.
#[derive(Debug)]
pub struct RunOutcome {
    /// Every client's records, merged.
    pub recorder: Recorder,
    /// Length of the measurement window.
    pub measured: Duration,
    /// Each watched node's CPU time and peak memory over the window.
    pub usage: Vec<NodeUsage>,
    /// CPU time of this process (the load generator) over the window, if readable.
    pub client_cpu_seconds: Option<f64>,
}

/// The window every client checks.
struct Window {
    start: Instant,
    /// End of a duration-bounded window.
    end: Option<Instant>,
    /// Operation budget of a count-bounded window.
    budget: Option<u64>,
    /// Operations started in the window (count-bounded only).
    issued: AtomicU64,
}

impl Window {
    /// Whether an operation about to start at `now` is measured, or `None` if the
    /// client should stop.
    fn admit(&self, now: Instant) -> Option<bool> {
        if self.end.is_some_and(|end| now >= end) {
            return None;
        }
        if now < self.start {
            return Some(false);
        }
        match self.budget {
            Some(budget) if self.issued.fetch_add(1, Ordering::Relaxed) >= budget => None,
            _ => Some(true),
        }
    }
}

/// Drives `workload` against `target` as `spec` says, measuring the nodes `probe`
/// watches.
pub async fn run(
    target: &Target,
    workload: &Workload,
    spec: &RunSpec,
    probe: &UsageProbe,
) -> RunOutcome {
    let begin = Instant::now();
    let start = begin + spec.warmup;
    let window = Arc::new(Window {
        start,
        end: match spec.stop {
            StopAt::Elapsed(d) => Some(start + d),
            StopAt::Ops(_) => None,
        },
        budget: match spec.stop {
            StopAt::Ops(n) => Some(n),
            StopAt::Elapsed(_) => None,
        },
        issued: AtomicU64::new(0),
    });
    let counters = Arc::new(Counters::default());
    let planned = match spec.stop {
        StopAt::Elapsed(d) => Some(d),
        StopAt::Ops(_) => None,
    };
    let progress = Progress::start(
        spec.progress,
        spec.label.clone(),
        counters.clone(),
        start,
        planned,
    );

    let value = workload.value();
    let clients: Vec<_> = (0..spec.clients)
        .map(|i| {
            tokio::spawn(client_loop(
                target.conn(i),
                workload.ops(i),
                value.clone(),
                window.clone(),
                counters.clone(),
            ))
        })
        .collect();

    tokio::time::sleep_until(start).await;
    let usage_start = probe.start();
    let own_cpu_start = own_cpu_seconds();
    let mut recorder = Recorder::default();
    let mut last_end = start;
    for client in clients {
        // A client task only ends by returning; a panic in one is a bug worth
        // surfacing rather than hiding in the figures.
        let (r, end) = client.await.expect("a bench client panicked");
        recorder.merge(&r);
        last_end = last_end.max(end);
    }
    let usage = probe.finish(&usage_start);
    let client_cpu_seconds = own_cpu_seconds()
        .zip(own_cpu_start)
        .map(|(end, start)| end - start);
    progress.finish();

    let measured = match window.end {
        Some(end) => end - start,
        None => last_end - start,
    };
    RunOutcome {
        recorder,
        measured,
        usage,
        client_cpu_seconds,
    }
}

fn own_cpu_seconds() -> Option<f64> {
    keel_testkit::proc_usage::cpu_time(std::process::id())
        .ok()
        .map(|d| d.as_secs_f64())
}

/// One client: returns its records and when its last measured operation ended.
async fn client_loop(
    mut conn: Conn,
    mut ops: OpStream,
    value: Bytes,
    window: Arc<Window>,
    counters: Arc<Counters>,
) -> (Recorder, Instant) {
    let mut recorder = Recorder::default();
    let mut last_end = window.start;
    while let Some(measured) = window.admit(Instant::now()) {
        let op = ops.next_op();
        let began = Instant::now();
        let result = conn.execute(&op, &value).await;
        let ended = Instant::now();
        counters.count(result.is_ok());
        let in_window = measured && window.end.is_none_or(|end| ended <= end);
        if in_window {
            last_end = ended;
            let stats = recorder.get_mut(op.kind);
            match &result {
                Ok(()) => stats.record_ok(ended - began),
                Err(e) => stats.record_error(e.kind, &e.message),
            }
        }
        if result.is_err() {
            tokio::time::sleep(ERROR_PAUSE).await;
        }
    }
    (recorder, last_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(warmup_ms: u64, end_ms: Option<u64>, budget: Option<u64>) -> (Instant, Window) {
        let now = Instant::now();
        let start = now + Duration::from_millis(warmup_ms);
        let w = Window {
            start,
            end: end_ms.map(|ms| start + Duration::from_millis(ms)),
            budget,
            issued: AtomicU64::new(0),
        };
        (now, w)
    }

    #[test]
    fn warmup_ops_run_but_are_not_measured() {
        let (now, w) = window(100, Some(1000), None);
        assert_eq!(w.admit(now), Some(false));
        assert_eq!(w.admit(w.start), Some(true));
        let end = w.end.expect("duration-bounded");
        assert_eq!(w.admit(end - Duration::from_millis(1)), Some(true));
        assert_eq!(w.admit(end), None);
    }

    #[test]
    fn an_op_budget_admits_exactly_that_many() {
        let (now, w) = window(0, None, Some(3));
        let admitted = (0..10).map_while(|_| w.admit(now)).count();
        assert_eq!(admitted, 3);
        assert_eq!(w.admit(now + Duration::from_secs(100)), None);
    }
}
