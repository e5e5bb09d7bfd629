//! `keel-chaos`: run keel under faults and check the history, or check a history
//! recorded before. See `docs/chaos.md`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use keel_chaos::checker::{self, CheckOptions};
use keel_chaos::nemesis::{FaultEvent, Nemesis, Schedule, Skew};
use keel_chaos::net::NetMode;
use keel_chaos::run::{RunConfig, run};
use keel_chaos::workload::WorkloadConfig;
use keel_chaos::{binary, history, report};
use keel_client::ReadMode;

/// Runs a keel cluster under faults with concurrent clients, records every
/// operation, and checks the history for linearizability and lost writes.
#[derive(Parser, Debug)]
#[command(name = "keel-chaos", version)]
struct Args {
    /// Faults to inject, comma-separated: kill, pause, partition, delay, loss,
    /// skew, member, wal, failover, rebalance (or "all", or "none").
    #[arg(long, default_value = "kill,pause,partition")]
    nemesis: String,
    /// How long the workload runs, e.g. 60s, 5m.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Cluster size.
    #[arg(long, default_value_t = 5)]
    nodes: u64,
    /// Seed of every random choice (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Output directory (default: chaos-out/seed-N). With --check: where to write
    /// the timelines of the anomalies found.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 12)]
    workers: usize,
    /// Keys in use at once.
    #[arg(long, default_value_t = 8)]
    keys: usize,
    /// Operations per key before it is replaced by a fresh key.
    #[arg(long, default_value_t = 150)]
    ops_per_key: u32,
    /// Search nodes per key before the checker gives up on it.
    #[arg(long, default_value_t = 1_000_000)]
    budget: u64,
    /// Loopback address for nodes and proxies (proxy mode).
    #[arg(long, default_value = "127.0.0.1")]
    ip: IpAddr,
    /// Hosts: "netns" (a network namespace per node, nftables faults; needs
    /// root), "proxy" (loopback and userspace proxies), or "auto".
    #[arg(long, default_value = "auto")]
    net: NetMode,
    /// Run every node with this deliberately broken variant (ack-before-fsync,
    /// no-noop, lease-without-drift-margin, follower-read-without-read-index),
    /// using the keel-test-bugs binary ($KEEL_BUG_BIN, else built).
    #[arg(long)]
    bug: Option<String>,
    /// Clock rates for the skew nemesis, comma-separated (default: two slow and
    /// two fast rates inside keel's drift bound for its default timeouts).
    #[arg(long, value_delimiter = ',')]
    skew_rate: Vec<f64>,
    /// Percent of reads sent to a random node instead of the leader.
    #[arg(long, default_value_t = 30)]
    any_node_reads: u64,
    /// The keel binary (default: $KEEL_BIN, else built with cargo).
    #[arg(long)]
    keel_bin: Option<PathBuf>,
    /// Extra flag for every `keel serve` (repeatable), e.g. --keel-arg=--snapshot-entries=500.
    #[arg(long = "keel-arg", allow_hyphen_values = true)]
    keel_args: Vec<String>,
    /// How the workload reads: linearizable, or "stale" — a deliberately broken
    /// workload (reads served from whatever the contacted node has applied), to
    /// see the checker catch stale reads.
    #[arg(long, default_value = "linearizable", value_parser = parse_read_mode)]
    read_mode: ReadMode,
    /// Do not run anything: check this JSON-lines history and print the verdict.
    #[arg(long, value_name = "HISTORY")]
    check: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    keel_bench::parse::duration(s).map_err(|e| e.to_string())
}

fn parse_read_mode(s: &str) -> Result<ReadMode, String> {
    match s {
        "linearizable" => Ok(ReadMode::Linearizable),
        "lease" => Ok(ReadMode::Lease),
        "stale" => Ok(ReadMode::Stale),
        _ => Err(format!(
            "unknown read mode {s:?}: use linearizable, lease or stale"
        )),
    }
}

fn parse_nemeses(s: &str) -> Result<Vec<Nemesis>, String> {
    match s {
        "all" => Ok(Nemesis::ALL.to_vec()),
        "none" | "" => Ok(Vec::new()),
        _ => s.split(',').map(|n| n.trim().parse()).collect(),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match real_main(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("keel-chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main(args: Args) -> anyhow::Result<bool> {
    let check = CheckOptions {
        budget_per_key: args.budget,
        ..CheckOptions::default()
    };
    if let Some(path) = &args.check {
        let ops = history::read_history_file(path).map_err(anyhow::Error::msg)?;
        let report = checker::check(&ops, &check);
        for a in &report.anomalies {
            println!("{} on {:?}: {}", a.kind.name(), a.key, a.message);
        }
        if let Some(out) = &args.out {
            // Faults recorded beside the history are drawn too.
            let faults: Vec<FaultEvent> = path
                .parent()
                .and_then(|d| std::fs::read_to_string(d.join("faults.jsonl")).ok())
                .map(|t| {
                    t.lines()
                        .filter_map(|l| serde_json::from_str(l).ok())
                        .collect()
                })
                .unwrap_or_default();
            std::fs::create_dir_all(out)?;
            for file in report::write_timelines(out, &ops, &report.anomalies, &faults, 20)? {
                println!("timeline: {}", file.display());
            }
        }
        println!(
            "{} operations, {} keys, checked in {:.2} s: {}",
            ops.len(),
            report.keys.len(),
            report.elapsed.as_secs_f64(),
            report.verdict()
        );
        return Ok(report.ok());
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 % 1_000_000)
    });
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("chaos-out/seed-{seed}")));
    let keel_bin = match (args.keel_bin, &args.bug) {
        (Some(b), _) => b,
        (None, None) => binary::keel_bin().map_err(anyhow::Error::msg)?,
        (None, Some(_)) => binary::keel_bug_bin().map_err(anyhow::Error::msg)?,
    };
    let nemeses = parse_nemeses(&args.nemesis).map_err(anyhow::Error::msg)?;
    let skew = Skew::setup(nemeses.contains(&Nemesis::Skew), args.skew_rate);
    let cfg = RunConfig {
        nodes: args.nodes,
        duration: args.duration,
        seed,
        nemeses,
        out: out.clone(),
        keel_bin,
        ip: args.ip,
        net: args.net,
        skew,
        bug: args.bug,
        workload: WorkloadConfig {
            workers: args.workers,
            active_keys: args.keys,
            ops_per_key: args.ops_per_key,
            read_mode: args.read_mode,
            any_node_read_percent: args.any_node_reads,
            ..WorkloadConfig::default()
        },
        schedule: Schedule::default(),
        check,
        keel_args: args.keel_args,
    };
    eprintln!(
        "keel-chaos: seed {seed}, {} nodes, {:?}, nemeses {:?}, output in {}",
        cfg.nodes,
        cfg.duration,
        cfg.nemeses,
        out.display()
    );
    let runtime = tokio::runtime::Runtime::new()?;
    let (summary, report) = runtime.block_on(run(&cfg))?;
    print!("{}", report::summary_table(&summary, &report));
    println!("results: {}", out.display());
    Ok(summary.passed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_nemeses_parse() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("5x").is_err());
        assert_eq!(
            parse_nemeses("kill,pause"),
            Ok(vec![Nemesis::Kill, Nemesis::Pause])
        );
        assert_eq!(parse_nemeses("all").map(|n| n.len()), Ok(10));
        assert!(parse_nemeses("kill,bogus").is_err());
    }
}
