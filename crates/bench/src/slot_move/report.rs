//! The scenario's results: figures per window, the move's duration, the
//! targets met or not; as a Markdown table (ready for BENCHMARKS.md) and JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use super::load::PhaseRecords;
use crate::stats::{ErrorTally, OpStats, OpSummary, Recorder};
use crate::workload::OpKind;

/// The target for the move's duration (seconds).
pub const TARGET_MOVE_S: f64 = 5.0;
/// The target for p99 during the move over steady p99.
pub const TARGET_P99_RATIO: f64 = 3.0;

/// One window of the load.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Window {
    /// `steady`, `during the move` or `after`.
    pub name: String,
    /// Length.
    pub seconds: f64,
    /// Every operation, reads and writes together.
    pub all: OpSummary,
    /// Reads.
    pub reads: OpSummary,
    /// Writes.
    pub writes: OpSummary,
    /// Operations on the moving slot's keys.
    pub moving_slot: OpSummary,
    /// Operations on other keys.
    pub other_keys: OpSummary,
    /// Share of the window's operations (successful or not) on the moving slot.
    pub moving_share: f64,
    /// Each node's CPU time in the window (seconds), by node id.
    pub cpu_seconds: BTreeMap<u64, f64>,
}

impl Window {
    /// Summarizes `records` over `length`.
    pub fn new(name: &str, length: Duration, records: &PhaseRecords) -> Self {
        let both = |r: &Recorder| merged([r.get(OpKind::Read), r.get(OpKind::Write)]);
        let moving = both(&records.moving_slot);
        let other = both(&records.other);
        let all = merged([&moving, &other]);
        let kind = |k| merged([records.moving_slot.get(k), records.other.get(k)]);
        let count = |s: &OpStats| s.ok_count() + s.error_count();
        Window {
            name: name.to_owned(),
            seconds: length.as_secs_f64(),
            all: all.summary(length),
            reads: kind(OpKind::Read).summary(length),
            writes: kind(OpKind::Write).summary(length),
            moving_slot: moving.summary(length),
            other_keys: other.summary(length),
            moving_share: count(&moving) as f64 / count(&all).max(1) as f64,
            cpu_seconds: BTreeMap::new(),
        }
    }
}

fn merged<'a>(parts: impl IntoIterator<Item = &'a OpStats>) -> OpStats {
    let mut all = OpStats::default();
    for p in parts {
        all.merge(p);
    }
    all
}

/// A target of the issue and whether the run met it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// What is measured.
    pub what: String,
    /// The measured value.
    pub value: f64,
    /// Its limit (at most).
    pub target: f64,
    /// `value <= target`.
    pub met: bool,
}

impl Check {
    fn new(what: &str, value: f64, target: f64) -> Self {
        Check {
            what: what.to_owned(),
            value,
            target,
            met: value <= target,
        }
    }
}

/// Everything the scenario measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Results {
    /// The moving slot.
    pub slot: u16,
    /// The group it moved to.
    pub to_group: u64,
    /// Keys in the moving slot.
    pub slot_keys: u64,
    /// Ordinary keys.
    pub keys: u64,
    /// Bytes per value.
    pub value_size: usize,
    /// Clients of the load.
    pub clients: usize,
    /// Fraction of operations that are reads.
    pub read_fraction: f64,
    /// How reads are served.
    pub read_mode: String,
    /// Share of operations the load sends to the moving slot.
    pub moving_fraction: f64,
    /// Seconds the preload took (both key sets).
    pub preload_s: f64,
    /// Seconds the `BeginSlotMove` map change took to be accepted.
    pub begin_s: f64,
    /// Seconds from the begin accepted until the map named the new owner with
    /// no move in flight.
    pub move_s: f64,
    /// Steady, during the move, after.
    pub windows: Vec<Window>,
    /// Moved keys read back with their values after the move.
    pub verified_keys: u64,
    /// The targets.
    pub checks: Vec<Check>,
}

impl Results {
    /// p99 during the move over steady p99 (all operations), if both exist.
    pub fn p99_ratio(&self) -> Option<f64> {
        let steady = self.window("steady")?.all.p99_ms;
        let during = self.window("during the move")?.all.p99_ms;
        (steady > 0.0).then(|| during / steady)
    }

    fn window(&self, name: &str) -> Option<&Window> {
        self.windows.iter().find(|w| w.name == name)
    }

    /// Fills in [`Results::checks`] from the figures.
    pub fn check(&mut self) {
        let mut checks = vec![Check::new("move duration (s)", self.move_s, TARGET_MOVE_S)];
        if let Some(r) = self.p99_ratio() {
            checks.push(Check::new("p99 during / steady", r, TARGET_P99_RATIO));
        }
        self.checks = checks;
    }

    /// Writes the results as pretty JSON.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The results as Markdown.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Slot {} ({} keys of {} bytes) moved to group {}: begin accepted in {:.3} s, \
             done {:.2} s later. Load: {} clients, read fraction {} ({} reads), {:.1}% of \
             operations on the moving slot, {} ordinary keys. Preload {:.1} s.\n",
            self.slot,
            self.slot_keys,
            self.value_size,
            self.to_group,
            self.begin_s,
            self.move_s,
            self.clients,
            self.read_fraction,
            self.read_mode,
            self.moving_fraction * 100.0,
            self.keys,
            self.preload_s,
        );
        window_table(&mut out, &self.windows);
        let _ = writeln!(
            out,
            "| p99 ms by keys | {} |",
            self.windows
                .iter()
                .map(|w| w.name.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(out, "|---|{}", "---|".repeat(self.windows.len()));
        type Pick = fn(&Window) -> &OpSummary;
        let rows: [(&str, Pick); 4] = [
            ("moving slot", |w| &w.moving_slot),
            ("other keys", |w| &w.other_keys),
            ("reads", |w| &w.reads),
            ("writes", |w| &w.writes),
        ];
        for (name, pick) in rows {
            let cells: Vec<String> = self
                .windows
                .iter()
                .map(|w| format!("{:.2}", pick(w).p99_ms))
                .collect();
            let _ = writeln!(out, "| {name} | {} |", cells.join(" | "));
        }
        out.push('\n');
        for w in &self.windows {
            if !w.all.errors_by_kind.is_empty() {
                let _ = writeln!(out, "Errors {}: {}", w.name, errors(&w.all.errors_by_kind));
            }
        }
        let _ = writeln!(
            out,
            "\n{} moved keys read back with their own values after the move.\n",
            self.verified_keys
        );
        for c in &self.checks {
            let _ = writeln!(
                out,
                "Target: {} = {:.2} (≤ {}): {}",
                c.what,
                c.value,
                c.target,
                if c.met { "met" } else { "NOT met" }
            );
        }
        out
    }
}

fn window_table(out: &mut String, windows: &[Window]) {
    let nodes: Vec<u64> = windows
        .iter()
        .flat_map(|w| w.cpu_seconds.keys().copied())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut header = [
        "window", "seconds", "ops/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    header.extend(nodes.iter().map(|n| format!("node {n} CPU s")));
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|---|{}", "--:|".repeat(header.len() - 1));
    for w in windows {
        let a = &w.all;
        let mut row = vec![
            w.name.clone(),
            format!("{:.2}", w.seconds),
            format!("{:.0}", a.ops_per_sec),
            format!("{:.2}", a.p50_ms),
            format!("{:.2}", a.p99_ms),
            format!("{:.2}", a.p999_ms),
            format!("{:.2}", a.max_ms),
            a.errors.to_string(),
        ];
        row.extend(nodes.iter().map(|n| {
            w.cpu_seconds
                .get(n)
                .map_or_else(|| "-".to_owned(), |s| format!("{s:.2}"))
        }));
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push('\n');
}

fn errors(by_kind: &BTreeMap<String, ErrorTally>) -> String {
    by_kind
        .iter()
        .map(|(kind, t)| format!("{kind} × {} (e.g. {})", t.count, t.example))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(moving_us: &[u64], other_us: &[u64]) -> PhaseRecords {
        let mut r = PhaseRecords::default();
        for &us in moving_us {
            r.moving_slot
                .get_mut(OpKind::Write)
                .record_ok(Duration::from_micros(us));
        }
        for &us in other_us {
            r.other
                .get_mut(OpKind::Read)
                .record_ok(Duration::from_micros(us));
        }
        r
    }

    #[test]
    fn a_window_merges_keys_and_kinds() {
        let mut r = records(&[1000; 10], &[500; 30]);
        r.moving_slot
            .get_mut(OpKind::Read)
            .record_error("unavailable", "no leader");
        let w = Window::new("steady", Duration::from_secs(2), &r);
        assert_eq!(w.all.ops, 40);
        assert_eq!(w.all.ops_per_sec, 20.0);
        assert_eq!(w.writes.ops, 10);
        assert_eq!(w.reads.ops, 30);
        assert_eq!(w.reads.errors, 1);
        assert_eq!(w.moving_slot.ops, 10);
        assert_eq!(w.other_keys.ops, 30);
        assert!((w.moving_share - 11.0 / 41.0).abs() < 1e-12);
        assert_eq!(w.all.errors_by_kind["unavailable"].count, 1);
    }

    fn results(steady_p99: f64, during_p99: f64, move_s: f64) -> Results {
        let window = |name: &str, p99_ms| Window {
            name: name.to_owned(),
            all: OpSummary {
                p99_ms,
                ..OpSummary::default()
            },
            ..Window::default()
        };
        let mut r = Results {
            move_s,
            windows: vec![
                window("steady", steady_p99),
                window("during the move", during_p99),
                window("after", steady_p99),
            ],
            ..Results::default()
        };
        r.check();
        r
    }

    #[test]
    fn targets_are_checked_at_their_limits() {
        let r = results(10.0, 30.0, 5.0);
        assert_eq!(r.p99_ratio(), Some(3.0));
        assert!(r.checks.iter().all(|c| c.met), "{:?}", r.checks);
        let r = results(10.0, 31.0, 5.01);
        assert!(r.checks.iter().all(|c| !c.met), "{:?}", r.checks);
        let r = results(0.0, 31.0, 1.0);
        assert_eq!(r.p99_ratio(), None);
        assert_eq!(r.checks.len(), 1);
    }

    #[test]
    fn renders_every_window_and_target() {
        let mut r = results(10.0, 40.0, 2.5);
        r.windows[1].cpu_seconds.insert(2, 1.25);
        r.windows[1].all.errors_by_kind.insert(
            "unavailable".into(),
            ErrorTally {
                count: 3,
                example: "x".into(),
            },
        );
        let text = r.render();
        assert!(text.contains("| during the move |"), "{text}");
        assert!(text.contains("node 2 CPU s"), "{text}");
        assert!(text.contains("| 1.25 |"), "{text}");
        assert!(text.contains("unavailable × 3"), "{text}");
        assert!(
            text.contains("p99 during / steady = 4.00 (≤ 3): NOT met"),
            "{text}"
        );
        assert!(
            text.contains("move duration (s) = 2.50 (≤ 5): met"),
            "{text}"
        );
        assert!(serde_json::to_string(&r).is_ok());
    }
}
