//! A short run of a real 5-node cluster under every nemesis (kill, pause,
//! partitions, delay, loss, clock skew, membership changes, WAL damage, a leader
//! cut off after a write lull), with concurrent clients; fails on any violation the checker or the final checks
//! find. Nodes run in network namespaces when the test runs as root (as CI does),
//! on loopback otherwise. The seed is printed (set `KEEL_CHAOS_SEED` to replay its
//! schedule), and on failure the run's directory (history, node logs, HTML
//! timelines) is kept and named.
//!
//! `KEEL_CHAOS_BUG=NAME cargo test -p keel-chaos --test chaos_run -- --ignored`
//! runs the same with a deliberately broken keel (see docs/chaos.md) and expects
//! the run to fail.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use keel_chaos::checker::CheckOptions;
use keel_chaos::nemesis::{Nemesis, Schedule, Skew};
use keel_chaos::net::NetMode;
use keel_chaos::report::summary_table;
use keel_chaos::run::{RunConfig, RunSummary, run};
use keel_chaos::workload::WorkloadConfig;

fn seed() -> u64 {
    std::env::var("KEEL_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 % 1_000_000)
        })
}

/// Runs 30 s of every nemesis; returns the summary, its table, and the kept
/// results directory.
fn mixed_run(bug: Option<String>) -> (RunSummary, String, tempfile::TempDir) {
    let keel_bin = match bug {
        None => keel_chaos::binary::keel_bin(),
        Some(_) => keel_chaos::binary::keel_bug_bin(),
    }
    .expect("the keel binary");
    let seed = seed();
    let dir = tempfile::Builder::new()
        .prefix("keel-chaos-")
        .tempdir()
        .expect("temp dir");
    // A loopback address of its own (proxy mode), so parallel tests never collide.
    let ip = IpAddr::V4(Ipv4Addr::new(127, 77, (seed % 200) as u8 + 1, 2));
    let cfg = RunConfig {
        nodes: 5,
        duration: Duration::from_secs(30),
        seed,
        nemeses: Nemesis::ALL.to_vec(),
        out: dir.path().join("run"),
        keel_bin,
        ip,
        net: NetMode::Auto,
        skew: Skew::setup(true, Vec::new()),
        bug,
        workload: WorkloadConfig::default(),
        schedule: Schedule::default(),
        check: CheckOptions::default(),
        // Snapshots every 2,000 entries, so that some followers catch up by
        // snapshot while faults come and go.
        keel_args: vec!["--io-threads=1".into(), "--snapshot-entries=2000".into()],
    };
    eprintln!("chaos run with seed {seed} in {}", cfg.out.display());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (summary, report) = runtime.block_on(run(&cfg)).expect("the run completes");
    let table = summary_table(&summary, &report);
    eprintln!("{table}");
    (summary, table, dir)
}

#[test]
fn short_mixed_fault_run_finds_no_violation() {
    let (summary, table, dir) = mixed_run(None);
    if !summary.passed() {
        let kept = dir.keep();
        panic!(
            "chaos run with seed {} failed; results kept in {}:\n{table}",
            summary.seed,
            kept.display()
        );
    }
    assert!(summary.ops > 1_000, "too little happened:\n{table}");
}

#[test]
#[ignore = "builds keel-test-bugs; run with KEEL_CHAOS_BUG=NAME and --ignored"]
fn a_broken_keel_is_caught() {
    let bug = std::env::var("KEEL_CHAOS_BUG")
        .unwrap_or_else(|_| "follower-read-without-read-index".into());
    let (summary, table, dir) = mixed_run(Some(bug.clone()));
    let kept = dir.keep();
    assert!(
        !summary.passed(),
        "the run with test bug {bug} (seed {}) found nothing; results in {}:\n{table}",
        summary.seed,
        kept.display()
    );
}
