//! Latency histograms and error counts, recorded per client without sharing and
//! merged at the end of a run.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::workload::OpKind;

/// Largest latency recorded exactly, in microseconds; longer ones count as this.
const MAX_LATENCY_US: u64 = 60_000_000;

/// How often an error kind occurred, with one message as an example.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorTally {
    /// Occurrences.
    pub count: u64,
    /// The message of the first occurrence.
    pub example: String,
}

/// Successful latencies and errors of one kind of operation.
#[derive(Clone, Debug)]
pub struct OpStats {
    latency_us: Histogram<u64>,
    errors: BTreeMap<String, ErrorTally>,
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats {
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("constant histogram bounds are valid"),
            errors: BTreeMap::new(),
        }
    }
}

impl OpStats {
    /// Records a successful operation that took `latency`.
    pub fn record_ok(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us
            .saturating_record(us.clamp(1, MAX_LATENCY_US));
    }

    /// Records a failed operation.
    pub fn record_error(&mut self, kind: &str, message: &str) {
        match self.errors.get_mut(kind) {
            Some(tally) => tally.count += 1,
            None => {
                self.errors.insert(
                    kind.to_owned(),
                    ErrorTally {
                        count: 1,
                        example: message.to_owned(),
                    },
                );
            }
        }
    }

    /// Adds everything `other` recorded.
    pub fn merge(&mut self, other: &OpStats) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        for (kind, tally) in &other.errors {
            self.errors
                .entry(kind.clone())
                .and_modify(|t| t.count += tally.count)
                .or_insert_with(|| tally.clone());
        }
    }

    /// Successful operations recorded.
    pub fn ok_count(&self) -> u64 {
        self.latency_us.len()
    }

    /// Failed operations recorded.
    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|t| t.count).sum()
    }

    /// Throughput and latency percentiles over a measurement window of `elapsed`.
    pub fn summary(&self, elapsed: Duration) -> OpSummary {
        let h = &self.latency_us;
        let ms = |us: u64| us as f64 / 1000.0;
        let at = |q: f64| {
            if h.is_empty() {
                0.0
            } else {
                ms(h.value_at_quantile(q))
            }
        };
        let secs = elapsed.as_secs_f64();
        OpSummary {
            ops: self.ok_count(),
            ops_per_sec: if secs > 0.0 {
                self.ok_count() as f64 / secs
            } else {
                0.0
            },
            mean_ms: if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: if h.is_empty() { 0.0 } else { ms(h.max()) },
            errors: self.error_count(),
            errors_by_kind: self.errors.clone(),
        }
    }
}

/// What one kind of operation achieved in a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct OpSummary {
    /// Successful operations in the measurement window.
    pub ops: u64,
    /// Successful operations per second.
    pub ops_per_sec: f64,
    /// Mean latency of successful operations (milliseconds).
    pub mean_ms: f64,
    /// Median latency (milliseconds).
    pub p50_ms: f64,
    /// 90th percentile latency (milliseconds).
    pub p90_ms: f64,
    /// 99th percentile latency (milliseconds).
    pub p99_ms: f64,
    /// 99.9th percentile latency (milliseconds).
    pub p999_ms: f64,
    /// Largest latency (milliseconds).
    pub max_ms: f64,
    /// Failed operations in the measurement window.
    pub errors: u64,
    /// Failed operations by kind of error.
    pub errors_by_kind: BTreeMap<String, ErrorTally>,
}

/// One client's (or, merged, all clients') records, per kind of operation.
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    reads: OpStats,
    writes: OpStats,
}

impl Recorder {
    /// The records of `kind`.
    pub fn get(&self, kind: OpKind) -> &OpStats {
        match kind {
            OpKind::Read => &self.reads,
            OpKind::Write => &self.writes,
        }
    }

    /// The records of `kind`, to add to.
    pub fn get_mut(&mut self, kind: OpKind) -> &mut OpStats {
        match kind {
            OpKind::Read => &mut self.reads,
            OpKind::Write => &mut self.writes,
        }
    }

    /// Adds everything `other` recorded.
    pub fn merge(&mut self, other: &Recorder) {
        self.reads.merge(&other.reads);
        self.writes.merge(&other.writes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 0.002 + 1e-9
    }

    #[test]
    fn percentiles_and_rate() {
        let mut s = OpStats::default();
        for us in 1..=1000u64 {
            s.record_ok(Duration::from_micros(us));
        }
        let sum = s.summary(Duration::from_secs(2));
        assert_eq!(sum.ops, 1000);
        assert!(close(sum.ops_per_sec, 500.0));
        assert!(close(sum.p50_ms, 0.5), "{}", sum.p50_ms);
        assert!(close(sum.p90_ms, 0.9), "{}", sum.p90_ms);
        assert!(close(sum.p99_ms, 0.99), "{}", sum.p99_ms);
        assert!(close(sum.p999_ms, 0.999), "{}", sum.p999_ms);
        assert!(close(sum.max_ms, 1.0), "{}", sum.max_ms);
        assert!(close(sum.mean_ms, 0.5005), "{}", sum.mean_ms);
        assert_eq!(sum.errors, 0);
    }

    #[test]
    fn empty_stats_summarize_to_zero() {
        let sum = OpStats::default().summary(Duration::ZERO);
        assert_eq!(sum.ops, 0);
        assert_eq!(sum.ops_per_sec, 0.0);
        assert_eq!(sum.p99_ms, 0.0);
        assert_eq!(sum.max_ms, 0.0);
    }

    #[test]
    fn extremes_are_clamped_not_lost() {
        let mut s = OpStats::default();
        s.record_ok(Duration::ZERO);
        s.record_ok(Duration::from_secs(3600));
        assert_eq!(s.ok_count(), 2);
        assert!(close(s.summary(Duration::from_secs(1)).max_ms, 60_000.0));
    }

    #[test]
    fn merge_adds_latencies_and_errors_keeping_the_first_example() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        a.get_mut(OpKind::Write)
            .record_ok(Duration::from_micros(100));
        a.get_mut(OpKind::Write)
            .record_error("unavailable", "no leader");
        b.get_mut(OpKind::Write)
            .record_ok(Duration::from_micros(300));
        b.get_mut(OpKind::Write)
            .record_error("unavailable", "second");
        b.get_mut(OpKind::Write).record_error("timeout", "slow");
        b.get_mut(OpKind::Read).record_ok(Duration::from_micros(50));
        a.merge(&b);

        let w = a.get(OpKind::Write);
        assert_eq!(w.ok_count(), 2);
        assert_eq!(w.error_count(), 3);
        let sum = w.summary(Duration::from_secs(1));
        assert_eq!(sum.errors_by_kind["unavailable"].count, 2);
        assert_eq!(sum.errors_by_kind["unavailable"].example, "no leader");
        assert_eq!(sum.errors_by_kind["timeout"].count, 1);
        assert_eq!(a.get(OpKind::Read).ok_count(), 1);
    }
}
