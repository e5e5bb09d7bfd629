//! The scenario's results: what each phase measured, as Markdown tables (ready for
//! BENCHMARKS.md) and as JSON.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::logs::Taken;

const MIB: f64 = (1u64 << 20) as f64;

/// Memory of one process over a phase (bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Memory {
    /// Resident memory when the phase started (the receiver: when it first
    /// answered, i.e. recovered and before any snapshot byte arrived).
    pub before: Option<u64>,
    /// Highest `VmRSS` sample in the phase.
    pub peak_sampled: Option<u64>,
    /// `VmHWM` at the end of the phase (reset at its start; for a process started
    /// in the phase: its lifetime peak).
    pub peak_hwm: Option<u64>,
    /// Resident memory a moment after the phase, once settled.
    pub after: Option<u64>,
}

impl Memory {
    /// The peak: the higher of the sampled and the kernel's.
    pub fn peak(&self) -> Option<u64> {
        self.peak_sampled.max(self.peak_hwm)
    }

    /// The peak above `before`, in MiB.
    pub fn rise_mib(&self) -> Option<f64> {
        Some((self.peak()? as f64 - self.before? as f64) / MIB)
    }
}

/// A follower (or joining node) catching up from the leader's snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CatchUp {
    /// Which catch-up this was.
    pub what: String,
    /// The sender.
    pub leader: u64,
    /// The receiver.
    pub follower: u64,
    /// The leader's `sent its snapshot` line: index, bytes, milliseconds (from
    /// the offer to the receiver's verified, fsynced file).
    pub sent: Option<(u64, u64, u64)>,
    /// The receiver's `installed the leader's snapshot` line: keys, milliseconds.
    pub installed: Option<(u64, u64)>,
    /// Rise of the leader's `keel_snapshot_sent_bytes_total` over the phase.
    pub sent_bytes_metric: Option<u64>,
    /// From the receiver's process start: first status answer (recovered).
    pub answered_s: Option<f64>,
    /// ... the leader starts sending (its `is sending its snapshot` line).
    pub sending_s: Option<f64>,
    /// ... applied index at or past the snapshot's.
    pub installed_s: Option<f64>,
    /// ... applied index at or past the leader's commit index.
    pub caught_up_s: f64,
    /// The sender's memory.
    pub leader_memory: Memory,
    /// The receiver's memory.
    pub follower_memory: Memory,
    /// A follower that did not receive anything, at the end: the steady state of
    /// a node holding the same data.
    pub reference_rss: Option<u64>,
    /// Every 100 ms from the receiver's start: seconds, leader and receiver RSS.
    pub rss_series: Vec<(f64, Option<u64>, Option<u64>)>,
}

impl CatchUp {
    /// Snapshot bytes per second of transfer, in MB/s (10^6 bytes).
    pub fn transfer_mb_per_s(&self) -> Option<f64> {
        let (_, bytes, ms) = self.sent?;
        Some(bytes as f64 / 1e3 / ms.max(1) as f64)
    }
}

/// A node restarted from its data directory.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Restart {
    /// Which restart this was.
    pub what: String,
    /// The node.
    pub node: u64,
    /// How it was stopped: `SIGKILL` or `SIGTERM`.
    pub stopped_by: String,
    /// Its WAL segment files before the restart (64 MiB each, preallocated).
    pub wal_segments: usize,
    /// Its state machine file before the restart.
    pub state_bytes: u64,
    /// Log entries it kept after its snapshot (`started:` line).
    pub log_entries: Option<u64>,
    /// From process start: first status answer (recovery done).
    pub answered_s: Option<f64>,
    /// ... applied index back at the commit index it had, with a leader known.
    pub serving_s: f64,
    /// Its peak memory while starting.
    pub peak_rss: Option<u64>,
}

/// Writes/s over one window of the load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Window {
    /// Length.
    pub seconds: f64,
    /// Writes completed in it.
    pub writes: u64,
}

impl Window {
    /// Writes per second.
    pub fn rate(&self) -> f64 {
        self.writes as f64 / self.seconds.max(1e-9)
    }
}

/// Writes/s before and while the leader takes a snapshot and sends it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WritesDuringSnapshot {
    /// Concurrent clients.
    pub clients: usize,
    /// From the end of the warm-up to the start of the leader's snapshot.
    pub baseline: Window,
    /// From the start of the snapshot to the follower's catch-up.
    pub during: Window,
    /// After the catch-up (three nodes up).
    pub after: Window,
    /// The `during` window in parts: snapshot written, receiver recovering,
    /// transfer and install, log tail.
    pub parts: Vec<(String, Window)>,
    /// The leader's snapshot.
    pub snapshot: Taken,
    /// The follower's catch-up from it.
    pub catch_up: CatchUp,
    /// Writes that failed.
    pub errors: u64,
}

impl WritesDuringSnapshot {
    /// `during / baseline` writes/s.
    pub fn ratio(&self) -> f64 {
        self.during.rate() / self.baseline.rate().max(1e-9)
    }
}

/// Everything the scenario measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Results {
    /// Keys preloaded.
    pub keys: u64,
    /// Bytes per value.
    pub value_size: usize,
    /// `--snapshot-entries` while preloading.
    pub snapshot_entries: u64,
    /// Seconds the preload took (64 concurrent writers, two nodes up).
    pub preload_s: f64,
    /// The leader's snapshot after the preload.
    pub preload_snapshot: Taken,
    /// Catch-ups, in order.
    pub catch_ups: Vec<CatchUp>,
    /// Restarts, in order.
    pub restarts: Vec<Restart>,
    /// Seconds from starting every node of the stopped cluster until a leader and
    /// every node back at its commit index.
    pub cluster_restart_s: Option<f64>,
    /// The write-load phase.
    pub writes: Option<WritesDuringSnapshot>,
}

impl Results {
    /// Writes the results as pretty JSON.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Markdown tables of every phase.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let t = &self.preload_snapshot;
        let _ = writeln!(
            out,
            "Preload: {} keys of {} bytes in {:.1} s ({:.0} writes/s); the leader's snapshot: \
             index {}, {} keys, {:.1} MB, written in {:.2} s.\n",
            self.keys,
            self.value_size,
            self.preload_s,
            self.keys as f64 / self.preload_s.max(1e-9),
            t.index,
            t.keys,
            t.bytes as f64 / 1e6,
            t.ms as f64 / 1e3,
        );
        out.push_str(&catch_up_table(&self.catch_ups));
        out.push_str(&memory_table(&self.catch_ups));
        out.push_str(&restart_table(&self.restarts));
        if let Some(s) = self.cluster_restart_s {
            let _ = writeln!(
                out,
                "Whole cluster stopped (SIGTERM) and started again: leader elected and every \
                 node back at its commit index after {s:.2} s.\n"
            );
        }
        if let Some(w) = &self.writes {
            out.push_str(&writes_table(w));
        }
        out
    }
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

fn mib(v: Option<u64>) -> String {
    opt(v.map(|b| b as f64 / MIB), 0)
}

fn table(out: &mut String, header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push('\n');
}

fn catch_up_table(catch_ups: &[CatchUp]) -> String {
    let mut out = String::new();
    table(
        &mut out,
        &[
            "catch-up",
            "snapshot MB",
            "transfer s",
            "MB/s",
            "install s",
            "recovered s",
            "sending s",
            "installed s",
            "caught up s",
        ],
        catch_ups.iter().map(|c| {
            let sent = c.sent;
            vec![
                format!("{} (node {} → {})", c.what, c.leader, c.follower),
                opt(sent.map(|s| s.1 as f64 / 1e6), 1),
                opt(sent.map(|s| s.2 as f64 / 1e3), 2),
                opt(c.transfer_mb_per_s(), 0),
                opt(c.installed.map(|i| i.1 as f64 / 1e3), 2),
                opt(c.answered_s, 2),
                opt(c.sending_s, 2),
                opt(c.installed_s, 2),
                format!("{:.2}", c.caught_up_s),
            ]
        }),
    );
    out
}

fn memory_table(catch_ups: &[CatchUp]) -> String {
    let mut out = String::new();
    let side = |m: &Memory| {
        [
            mib(m.before),
            mib(m.peak()),
            opt(m.rise_mib(), 0),
            mib(m.after),
        ]
    };
    table(
        &mut out,
        &[
            "RSS MiB",
            "leader before",
            "leader peak",
            "leader rise",
            "leader after",
            "receiver before",
            "receiver peak",
            "receiver rise",
            "receiver after",
            "idle follower",
        ],
        catch_ups.iter().map(|c| {
            let mut row = vec![c.what.clone()];
            row.extend(side(&c.leader_memory));
            row.extend(side(&c.follower_memory));
            row.push(mib(c.reference_rss));
            row
        }),
    );
    out
}

fn restart_table(restarts: &[Restart]) -> String {
    let mut out = String::new();
    table(
        &mut out,
        &[
            "restart",
            "WAL segments",
            "state MB",
            "log entries kept",
            "recovered s",
            "serving s",
            "peak RSS MiB",
        ],
        restarts.iter().map(|r| {
            vec![
                format!("{} (node {}, {})", r.what, r.node, r.stopped_by),
                r.wal_segments.to_string(),
                format!("{:.1}", r.state_bytes as f64 / 1e6),
                r.log_entries
                    .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                opt(r.answered_s, 2),
                format!("{:.2}", r.serving_s),
                mib(r.peak_rss),
            ]
        }),
    );
    out
}

fn writes_table(w: &WritesDuringSnapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Writes during a snapshot ({} clients; snapshot at index {}, {} keys, {:.1} MB, \
         written in {:.2} s; {} failed writes):\n",
        w.clients,
        w.snapshot.index,
        w.snapshot.keys,
        w.snapshot.bytes as f64 / 1e6,
        w.snapshot.ms as f64 / 1e3,
        w.errors
    );
    table(
        &mut out,
        &["window", "seconds", "writes", "writes/s"],
        std::iter::once(("baseline (2 nodes up)".to_owned(), w.baseline))
            .chain(std::iter::once((
                "snapshot taken and sent".to_owned(),
                w.during,
            )))
            .chain(
                w.parts
                    .iter()
                    .map(|(name, win)| (format!("- {name}"), *win)),
            )
            .chain(std::iter::once((
                "after catch-up (3 nodes)".to_owned(),
                w.after,
            )))
            .map(|(name, win)| {
                vec![
                    name,
                    format!("{:.2}", win.seconds),
                    win.writes.to_string(),
                    format!("{:.0}", win.rate()),
                ]
            }),
    );
    let _ = writeln!(
        out,
        "During / baseline: {:.2} (target ≥ 0.70).\n",
        w.ratio()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_rises() {
        let m = Memory {
            before: Some(100 << 20),
            peak_sampled: Some(150 << 20),
            peak_hwm: Some(160 << 20),
            after: None,
        };
        assert_eq!(m.peak(), Some(160 << 20));
        assert_eq!(m.rise_mib(), Some(60.0));
        assert_eq!(Memory::default().rise_mib(), None);
        let c = CatchUp {
            sent: Some((10, 300_000_000, 2_000)),
            ..CatchUp::default()
        };
        assert_eq!(c.transfer_mb_per_s(), Some(150.0));
        let w = WritesDuringSnapshot {
            baseline: Window {
                seconds: 10.0,
                writes: 100_000,
            },
            during: Window {
                seconds: 5.0,
                writes: 40_000,
            },
            ..WritesDuringSnapshot::default()
        };
        assert!((w.ratio() - 0.8).abs() < 1e-9);
    }

    #[test]
    fn renders_every_phase() {
        let r = Results {
            keys: 1000,
            value_size: 256,
            preload_s: 1.0,
            catch_ups: vec![CatchUp {
                what: "after preload".into(),
                leader: 1,
                follower: 2,
                caught_up_s: 1.5,
                ..CatchUp::default()
            }],
            restarts: vec![Restart {
                what: "long WAL".into(),
                stopped_by: "SIGKILL".into(),
                ..Restart::default()
            }],
            writes: Some(WritesDuringSnapshot::default()),
            ..Results::default()
        };
        let text = r.render();
        assert!(text.contains("| after preload (node 1 → 2) |"), "{text}");
        assert!(text.contains("long WAL (node 0, SIGKILL)"), "{text}");
        assert!(text.contains("During / baseline"), "{text}");
        assert!(serde_json::to_string(&r).is_ok());
    }
}
