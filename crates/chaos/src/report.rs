//! What a run shows a person: a summary table at the end of every run, and for a
//! violation a self-contained HTML timeline of the key's operations, one lane per
//! client, the operations at fault outlined in red, faults as shaded bands.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::checker::{Anomaly, CheckReport};
use crate::history::{Call, Op, Outcome};
use crate::nemesis::FaultEvent;
use crate::run::RunSummary;

/// The table printed at the end of every run.
pub fn summary_table(s: &RunSummary, report: &CheckReport) -> String {
    let faults = if s.faults.is_empty() {
        "none".to_owned()
    } else {
        let parts: Vec<String> = s.faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
        parts.join(", ")
    };
    let rows = [
        ("seed", s.seed.to_string()),
        (
            "network",
            match &s.bug {
                Some(bug) => format!("{} (test bug {bug})", s.net),
                None => s.net.clone(),
            },
        ),
        ("operations", s.ops.to_string()),
        (
            "ok / fail / unknown",
            format!("{} / {} / {}", s.ok, s.fail, s.unknown),
        ),
        ("throughput", format!("{:.0} ops/s", s.ops_per_sec)),
        ("faults injected", faults),
        ("keys checked", s.keys.to_string()),
        ("checker time", format!("{:.2} s", s.checker_secs)),
        ("replica digests", summarize_digests(&s.digests)),
        ("verdict", verdict(s)),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        let _ = writeln!(out, "| {k:<width$} | {v}");
    }
    for p in &s.problems {
        let _ = writeln!(out, "problem: {p}");
    }
    for a in &report.anomalies {
        let _ = writeln!(out, "{} on {:?}: {}", a.kind.name(), a.key, a.message);
    }
    let undecided = report.undecided();
    if !undecided.is_empty() {
        let _ = writeln!(
            out,
            "undecided keys (search budget exceeded): {undecided:?}"
        );
    }
    out
}

fn summarize_digests(digests: &[String]) -> String {
    match digests.first() {
        None => "not compared".to_owned(),
        Some(first) if digests.iter().all(|d| d == first) => {
            format!("{} identical ({first})", digests.len())
        }
        Some(_) => format!("DIFFER: {}", digests.join(" ")),
    }
}

fn verdict(s: &RunSummary) -> String {
    if s.passed() {
        format!("PASS ({})", s.verdict)
    } else if s.verdict == "INVALID" {
        "FAIL (history INVALID)".to_owned()
    } else {
        "FAIL (see problems)".to_owned()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn label(op: &Op) -> String {
    let shown = |v: Option<&str>| v.unwrap_or("∅").to_owned();
    let body = match &op.call {
        Call::Get if op.outcome == Outcome::Ok => {
            format!("get → {}", shown(op.result.value.as_deref()))
        }
        Call::Get => "get".to_owned(),
        Call::Put { value } => format!("put {value}"),
        Call::Cas { expected, new } => format!("cas {}→{new}", shown(expected.as_deref())),
    };
    format!("#{} {body}", op.id)
}

/// The timeline of `anomaly.key`'s operations.
pub fn timeline_html(history: &[Op], anomaly: &Anomaly, faults: &[FaultEvent]) -> String {
    let ops: Vec<&Op> = history.iter().filter(|o| o.key == anomaly.key).collect();
    let t0 = ops.iter().map(|o| o.invoke_ns).min().unwrap_or(0);
    // The window ends with the last answer that matters: unknown outcomes (drawn to
    // the end) and final reads long after the workload would otherwise squeeze
    // everything else to the left edge.
    let t1 = ops
        .iter()
        .filter(|o| o.outcome != Outcome::Unknown)
        .filter(|o| !o.final_read || anomaly.ops.contains(&o.id))
        .map(|o| o.complete_ns)
        .max()
        .unwrap_or(t0)
        .max(t0 + 1);
    let mut lanes: BTreeMap<u64, usize> = BTreeMap::new();
    for o in &ops {
        let n = lanes.len();
        lanes.entry(o.client).or_insert(n);
    }
    let x = |t: u64| 100.0 * (t.clamp(t0, t1) - t0) as f64 / (t1 - t0) as f64;
    let lane_px = 34;
    let mut bars = String::new();
    for f in faults.iter().filter(|f| f.end_ns >= t0 && f.start_ns <= t1) {
        let _ = write!(
            bars,
            r#"<div class="fault" style="left:{:.3}%;width:{:.3}%" title="{}"></div>"#,
            x(f.start_ns),
            (x(f.end_ns) - x(f.start_ns)).max(0.2),
            escape(&f.detail)
        );
    }
    for o in ops.iter().filter(|o| o.invoke_ns <= t1) {
        let lane = lanes[&o.client];
        let end = if o.outcome == Outcome::Unknown {
            t1
        } else {
            o.complete_ns
        };
        let class = match o.outcome {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Unknown => "unknown",
        };
        let culprit = if anomaly.ops.contains(&o.id) {
            " culprit"
        } else {
            ""
        };
        let _ = write!(
            bars,
            r#"<div class="op {class}{culprit}" style="top:{}px;left:{:.3}%;width:{:.3}%" title="{}">{}</div>"#,
            lane * lane_px + 4,
            x(o.invoke_ns),
            (x(end) - x(o.invoke_ns)).max(0.3),
            escape(&format!(
                "{} client {} [{} .. {} ms] {:?} {}",
                label(o),
                o.client,
                (o.invoke_ns - t0) as f64 / 1e6,
                (o.complete_ns.saturating_sub(t0)) as f64 / 1e6,
                o.outcome,
                o.result.error.as_deref().unwrap_or("")
            )),
            escape(&label(o))
        );
    }
    let mut names = String::new();
    for (client, lane) in &lanes {
        let who = if *client == 0 {
            "final reads".to_owned()
        } else {
            format!("client {client}")
        };
        let _ = write!(
            names,
            r#"<div class="lane" style="top:{}px">{who}</div>"#,
            lane * lane_px + 4
        );
    }
    let mut rows = String::new();
    for o in &ops {
        let culprit = if anomaly.ops.contains(&o.id) {
            r#" class="culprit""#
        } else {
            ""
        };
        let _ = write!(
            rows,
            "<tr{culprit}><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:?}</td><td>{}</td></tr>",
            o.id,
            o.client,
            escape(&label(o)),
            (o.invoke_ns - t0) as f64 / 1e6,
            o.complete_ns.saturating_sub(t0) as f64 / 1e6,
            o.outcome,
            escape(&serde_json::to_string(&o.result).unwrap_or_default())
        );
    }
    let height = lanes.len() * lane_px + 8;
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>keel chaos: {kind} on {key}</title>
<style>
body {{ font: 13px sans-serif; margin: 1.5em; }}
.wrap {{ display: flex; }}
.names {{ position: relative; width: 110px; height: {height}px; }}
.lane {{ position: absolute; left: 0; height: 26px; line-height: 26px; color: #555; }}
.chart {{ position: relative; flex: 1; height: {height}px; border-left: 1px solid #999; background: repeating-linear-gradient(#fff 0 {lane_px}px, #f4f4f4 {lane_px}px {lane2}px); }}
.op {{ position: absolute; height: 24px; line-height: 24px; overflow: hidden; white-space: nowrap; font-size: 11px; padding: 0 3px; box-sizing: border-box; border: 1px solid #555; border-radius: 3px; }}
.ok {{ background: #b7e1b0; }}
.fail {{ background: #ddd; color: #666; }}
.unknown {{ background: repeating-linear-gradient(45deg, #ffd8a8 0 6px, #fff0dd 6px 12px); }}
.culprit {{ border: 3px solid #d00; z-index: 2; }}
tr.culprit {{ background: #fdd; }}
.fault {{ position: absolute; top: 0; bottom: 0; background: rgba(120, 120, 255, 0.15); }}
table {{ border-collapse: collapse; margin-top: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; }}
</style></head><body>
<h1>{kind} on key {key}</h1>
<p>{message}</p>
<p>Time runs left to right over {span:.1} ms. Green: ok; grey: failed (no effect); striped orange: outcome unknown (may take effect any time after it began, drawn to the end); red outline: the operations at fault; blue bands: faults. Hover for details.</p>
<div class="wrap"><div class="names">{names}</div><div class="chart">{bars}</div></div>
<table><tr><th>id</th><th>client</th><th>operation</th><th>invoke ms</th><th>complete ms</th><th>outcome</th><th>result</th></tr>{rows}</table>
</body></html>
"#,
        kind = anomaly.kind.name(),
        key = escape(&anomaly.key),
        message = escape(&anomaly.message),
        span = (t1 - t0) as f64 / 1e6,
        lane2 = lane_px * 2,
    )
}

/// Writes the timelines of the first `limit` anomalies into `dir`; returns the
/// files written.
pub fn write_timelines(
    dir: &std::path::Path,
    history: &[Op],
    anomalies: &[Anomaly],
    faults: &[FaultEvent],
    limit: usize,
) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut written = Vec::new();
    for anomaly in anomalies.iter().take(limit) {
        let file = dir.join(format!(
            "anomaly-{}-{}.html",
            anomaly.key,
            anomaly.kind.name()
        ));
        std::fs::write(&file, timeline_html(history, anomaly, faults))?;
        written.push(file);
    }
    Ok(written)
}
