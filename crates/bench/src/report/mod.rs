//! Presenting results: the aligned table printed at the end of a run (one section
//! per kind of operation, keel/etcd ratio rows under each pair), and the JSON file.

pub mod chart;
pub mod json;
mod table;

use std::fmt::Write as _;

use crate::results::{PointResult, clients_text};
use crate::stats::OpSummary;
use crate::workload::OpKind;
use table::{Align, Table};

const COLUMNS: &[(&str, Align)] = &[
    ("system", Align::Left),
    ("clients", Align::Right),
    ("ops/s", Align::Right),
    ("p50 ms", Align::Right),
    ("p90 ms", Align::Right),
    ("p99 ms", Align::Right),
    ("p99.9 ms", Align::Right),
    ("max ms", Align::Right),
    ("errors", Align::Right),
    ("cpu s per node", Align::Right),
    ("cpu us/op", Align::Right),
    ("peak rss MiB", Align::Right),
    ("bench cpu s", Align::Right),
];

/// The tables (writes, then reads) and notes on errors and elections.
pub fn render(results: &[PointResult]) -> String {
    let mut out = String::new();
    for kind in [OpKind::Write, OpKind::Read] {
        let table = kind_table(results, kind);
        if let Some(table) = table {
            let _ = writeln!(out, "{}s\n{}", kind.name(), table.render());
        }
    }
    out.push_str(&notes(results));
    out
}

fn kind_table(results: &[PointResult], kind: OpKind) -> Option<Table> {
    let mut counts: Vec<usize> = Vec::new();
    for r in results.iter().filter(|r| r.ops(kind).is_some()) {
        if !counts.contains(&r.clients) {
            counts.push(r.clients);
        }
    }
    if counts.is_empty() {
        return None;
    }
    let mut table = Table::new(COLUMNS);
    for clients in counts {
        let here: Vec<&PointResult> = results.iter().filter(|r| r.clients == clients).collect();
        for r in &here {
            if let Some(s) = r.ops(kind) {
                table.push(row(r, s));
            }
        }
        let find = |name: &str| here.iter().find(|r| r.system == name).copied();
        if let (Some(keel), Some(etcd)) = (find("keel"), find("etcd"))
            && let Some(ratio) = ratio_row(keel, etcd, kind)
        {
            table.push(ratio);
        }
    }
    Some(table)
}

fn row(r: &PointResult, s: &OpSummary) -> Vec<String> {
    let cpu = r
        .nodes
        .iter()
        .map(|n| format!("{:.2}", n.cpu_seconds))
        .collect::<Vec<_>>()
        .join("/");
    vec![
        r.system.clone(),
        r.clients.to_string(),
        format!("{:.0}", s.ops_per_sec),
        ms(s.p50_ms),
        ms(s.p90_ms),
        ms(s.p99_ms),
        ms(s.p999_ms),
        ms(s.max_ms),
        s.errors.to_string(),
        cpu,
        r.cpu_us_per_op()
            .map(|us| format!("{us:.0}"))
            .unwrap_or_default(),
        peak_rss_mib(r)
            .map(|m| format!("{m:.0}"))
            .unwrap_or_default(),
        r.client_cpu_seconds
            .map(|s| format!("{s:.2}"))
            .unwrap_or_default(),
    ]
}

/// keel's figure over etcd's for throughput, latencies, CPU per op and memory.
fn ratio_row(keel: &PointResult, etcd: &PointResult, kind: OpKind) -> Option<Vec<String>> {
    let (k, e) = (keel.ops(kind)?, etcd.ops(kind)?);
    let opt = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => ratio(a, b),
        _ => String::new(),
    };
    Some(vec![
        "keel/etcd".to_owned(),
        keel.clients.to_string(),
        ratio(k.ops_per_sec, e.ops_per_sec),
        ratio(k.p50_ms, e.p50_ms),
        ratio(k.p90_ms, e.p90_ms),
        ratio(k.p99_ms, e.p99_ms),
        ratio(k.p999_ms, e.p999_ms),
        ratio(k.max_ms, e.max_ms),
        String::new(),
        String::new(),
        opt(keel.cpu_us_per_op(), etcd.cpu_us_per_op()),
        opt(peak_rss_mib(keel), peak_rss_mib(etcd)),
        String::new(),
    ])
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".to_owned()
    }
}

/// Latency in milliseconds with about three significant digits.
fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.3}")
    } else if v < 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

fn peak_rss_mib(r: &PointResult) -> Option<f64> {
    r.nodes
        .iter()
        .map(|n| n.peak_rss_bytes as f64 / (1024.0 * 1024.0))
        .reduce(f64::max)
}

/// Errors by kind with an example message, and elections during runs.
fn notes(results: &[PointResult]) -> String {
    let mut out = String::new();
    for r in results {
        for kind in [OpKind::Write, OpKind::Read] {
            let Some(s) = r.ops(kind).filter(|s| s.errors > 0) else {
                continue;
            };
            let _ = writeln!(
                out,
                "{} with {}: {} {} errors:",
                r.system,
                clients_text(r.clients),
                s.errors,
                kind.name()
            );
            for (name, tally) in &s.errors_by_kind {
                let _ = writeln!(out, "  {name} x{} (e.g. {})", tally.count, tally.example);
            }
        }
        if let Some(n) = r.elections.filter(|&n| n > 0) {
            let _ = writeln!(
                out,
                "{} with {}: {n} election(s) during the run",
                r.system,
                clients_text(r.clients)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::NodeUsage;

    fn summary(ops_per_sec: f64, p50: f64, errors: u64) -> OpSummary {
        OpSummary {
            ops: (ops_per_sec * 10.0) as u64,
            ops_per_sec,
            mean_ms: p50,
            p50_ms: p50,
            p90_ms: p50 * 2.0,
            p99_ms: p50 * 4.0,
            p999_ms: p50 * 8.0,
            max_ms: p50 * 20.0,
            errors,
            errors_by_kind: Default::default(),
        }
    }

    fn point(system: &str, clients: usize, writes: OpSummary) -> PointResult {
        PointResult {
            system: system.to_owned(),
            clients,
            measured_seconds: 10.0,
            reads: None,
            writes: Some(writes),
            nodes: vec![
                NodeUsage {
                    node: 1,
                    cpu_seconds: 5.0,
                    peak_rss_bytes: 64 << 20,
                },
                NodeUsage {
                    node: 2,
                    cpu_seconds: 2.5,
                    peak_rss_bytes: 32 << 20,
                },
            ],
            client_cpu_seconds: Some(4.0),
            elections: Some(0),
        }
    }

    #[test]
    fn ratio_rows_follow_each_pair() {
        let results = [
            point("keel", 1, summary(2000.0, 0.5, 0)),
            point("keel", 64, summary(30000.0, 2.0, 1)),
            point("etcd", 1, summary(1000.0, 1.0, 0)),
            point("etcd", 64, summary(10000.0, 6.0, 0)),
        ];
        let text = render(&results);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "writes");
        let systems: Vec<&str> = lines[3..9]
            .iter()
            .map(|l| l.split_whitespace().next().expect("cell"))
            .collect();
        assert_eq!(
            systems,
            ["keel", "etcd", "keel/etcd", "keel", "etcd", "keel/etcd"]
        );
        let ratio_1: Vec<&str> = lines[5].split_whitespace().collect();
        assert_eq!(&ratio_1[..4], ["keel/etcd", "1", "2.00x", "0.50x"]);
        let ratio_64: Vec<&str> = lines[8].split_whitespace().collect();
        assert_eq!(&ratio_64[..4], ["keel/etcd", "64", "3.00x", "0.33x"]);
        // cpu per node, cpu per op (7.5 s over 20,000 ops), peak rss.
        let keel_1: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(&keel_1[9..], ["5.00/2.50", "375", "64", "4.00"]);
        assert!(!text.contains("reads\n"));
    }

    #[test]
    fn notes_name_errors_and_elections() {
        let mut r = point("keel", 16, summary(100.0, 1.0, 2));
        if let Some(w) = r.writes.as_mut() {
            w.errors_by_kind.insert(
                "unavailable".into(),
                crate::stats::ErrorTally {
                    count: 2,
                    example: "no leader".into(),
                },
            );
        }
        r.elections = Some(1);
        let text = notes(&[r]);
        assert!(
            text.contains("keel with 16 clients: 2 write errors:"),
            "{text}"
        );
        assert!(text.contains("unavailable x2 (e.g. no leader)"), "{text}");
        assert!(text.contains("1 election(s)"), "{text}");
    }

    #[test]
    fn latency_has_three_significant_digits() {
        assert_eq!(ms(0.41234), "0.412");
        assert_eq!(ms(12.345), "12.35");
        assert_eq!(ms(1234.5), "1234.5");
        assert_eq!(ratio(1.0, 0.0), "-");
    }
}
