//! The chart `--chart` writes: throughput and p99 latency against the number of
//! clients, one line per system, as a self-contained SVG (no fonts or scripts
//! fetched; any browser or GitHub renders it).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use crate::results::PointResult;
use crate::workload::OpKind;

const PANEL_WIDTH: f64 = 420.0;
const PANEL_HEIGHT: f64 = 260.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_TOP: f64 = 50.0;
const MARGIN_BOTTOM: f64 = 50.0;
const GAP: f64 = 90.0;

/// Line colours by system, in the order systems first appear.
const COLOURS: [&str; 4] = ["#1f6feb", "#d1242f", "#1a7f37", "#8250df"];

/// One panel: a value of each result against its client count.
struct Panel {
    title: &'static str,
    unit: &'static str,
    value: fn(&PointResult, OpKind) -> Option<f64>,
}

const PANELS: [Panel; 2] = [
    Panel {
        title: "throughput",
        unit: "ops/s",
        value: |r, k| r.ops(k).map(|s| s.ops_per_sec),
    },
    Panel {
        title: "p99 latency",
        unit: "ms",
        value: |r, k| r.ops(k).map(|s| s.p99_ms),
    },
];

/// Writes the chart of `results` (writes if the workload had any, else reads),
/// titled `title`, to `path`.
pub fn write(results: &[PointResult], title: &str, path: &Path) -> anyhow::Result<()> {
    let svg = render(results, title);
    std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))
}

/// The chart as SVG text.
pub fn render(results: &[PointResult], title: &str) -> String {
    let kind = if results.iter().any(|r| r.writes.is_some()) {
        OpKind::Write
    } else {
        OpKind::Read
    };
    let mut systems: Vec<&str> = Vec::new();
    for r in results {
        if !systems.contains(&r.system.as_str()) {
            systems.push(&r.system);
        }
    }
    let mut clients: Vec<usize> = results.iter().map(|r| r.clients).collect();
    clients.sort_unstable();
    clients.dedup();

    let width = MARGIN_LEFT + 2.0 * PANEL_WIDTH + GAP + 30.0;
    let height = MARGIN_TOP + PANEL_HEIGHT + MARGIN_BOTTOM + 20.0 * systems.len() as f64;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{MARGIN_LEFT}" y="22" font-size="15" font-weight="bold">{} ({}s)</text>"#,
        escape(title),
        kind.name()
    );
    for (i, panel) in PANELS.iter().enumerate() {
        let left = MARGIN_LEFT + i as f64 * (PANEL_WIDTH + GAP);
        draw_panel(&mut svg, panel, left, results, &systems, &clients, kind);
    }
    // Legend under the panels.
    for (i, system) in systems.iter().enumerate() {
        let y = MARGIN_TOP + PANEL_HEIGHT + 42.0 + 20.0 * i as f64;
        let colour = COLOURS[i % COLOURS.len()];
        let _ = writeln!(
            svg,
            r#"<line x1="{MARGIN_LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="{colour}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            MARGIN_LEFT + 24.0,
            MARGIN_LEFT + 30.0,
            y + 4.0,
            escape(system)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn draw_panel(
    svg: &mut String,
    panel: &Panel,
    left: f64,
    results: &[PointResult],
    systems: &[&str],
    clients: &[usize],
    kind: OpKind,
) {
    let top = MARGIN_TOP;
    let bottom = top + PANEL_HEIGHT;
    let values: Vec<f64> = results
        .iter()
        .filter_map(|r| (panel.value)(r, kind))
        .collect();
    let max = nice_ceiling(values.iter().copied().fold(0.0, f64::max));
    let _ = writeln!(
        svg,
        r##"<text x="{left}" y="{}" font-weight="bold">{} ({})</text><rect x="{left}" y="{top}" width="{PANEL_WIDTH}" height="{PANEL_HEIGHT}" fill="none" stroke="#888"/>"##,
        top - 10.0,
        panel.title,
        panel.unit
    );
    // Horizontal grid lines with their values.
    for step in 0..=4 {
        let v = max * f64::from(step) / 4.0;
        let y = bottom - PANEL_HEIGHT * f64::from(step) / 4.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + PANEL_WIDTH,
            left - 6.0,
            y + 4.0,
            label(v)
        );
    }
    // Client counts are spread evenly (a sweep is usually 1, 16, 64, 256).
    let x_of = |c: usize| {
        let i = clients.iter().position(|&x| x == c).unwrap_or(0);
        if clients.len() < 2 {
            left + PANEL_WIDTH / 2.0
        } else {
            left + 20.0 + (PANEL_WIDTH - 40.0) * i as f64 / (clients.len() - 1) as f64
        }
    };
    for &c in clients {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{c}</text>"#,
            x_of(c),
            bottom + 16.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">clients</text>"#,
        left + PANEL_WIDTH / 2.0,
        bottom + 32.0
    );
    let y_of = |v: f64| {
        if max > 0.0 {
            bottom - PANEL_HEIGHT * v / max
        } else {
            bottom
        }
    };
    for (i, system) in systems.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<(f64, f64)> = results
            .iter()
            .filter(|r| r.system == *system)
            .filter_map(|r| (panel.value)(r, kind).map(|v| (x_of(r.clients), y_of(v))))
            .collect();
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for (x, y) in points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{colour}"/>"#
            );
        }
    }
}

/// A round number at or above `v` whose quarters are round too, for the top of
/// an axis with four grid lines.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    let mantissa = v / magnitude;
    let nice = [1.0, 1.2, 1.6, 2.0, 2.4, 3.2, 4.0, 4.8, 6.0, 8.0, 10.0]
        .into_iter()
        .find(|&m| m >= mantissa)
        .unwrap_or(10.0);
    nice * magnitude
}

/// An axis label: `12k` for thousands, two decimals below 10.
fn label(v: f64) -> String {
    if v >= 10_000.0 && (v / 1000.0).fract() == 0.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 10_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::OpSummary;

    fn point(system: &str, clients: usize, ops_per_sec: f64, p99_ms: f64) -> PointResult {
        PointResult {
            system: system.to_owned(),
            clients,
            measured_seconds: 10.0,
            reads: None,
            writes: Some(OpSummary {
                ops_per_sec,
                p99_ms,
                ..OpSummary::default()
            }),
            nodes: Vec::new(),
            client_cpu_seconds: None,
            elections: None,
        }
    }

    #[test]
    fn one_line_and_one_dot_per_point_for_each_system() {
        let results = [
            point("keel", 1, 1200.0, 1.5),
            point("keel", 64, 15000.0, 9.0),
            point("etcd", 1, 1000.0, 2.0),
            point("etcd", 64, 7000.0, 30.0),
        ];
        let svg = render(&results, "writes <256 B>");
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        // Two panels × two systems.
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert_eq!(svg.matches("<circle").count(), 8);
        assert!(svg.contains(">keel<") && svg.contains(">etcd<"));
        assert!(svg.contains("writes &lt;256 B&gt;"), "title is escaped");
        // The throughput axis tops out at a round number above the maximum.
        assert!(svg.contains(">16k<") && svg.contains(">4000<"), "{svg}");
    }

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_ceiling(15000.0), 16000.0);
        assert_eq!(nice_ceiling(21000.0), 24000.0);
        assert_eq!(nice_ceiling(30.0), 32.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(1.0), 1.0);
    }
}
