//! One chaos run: start a cluster behind the proxies, run the workload while the
//! nemesis injects faults, heal, read every key once more, compare the replicas,
//! check the history, and write the results.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use keel_client::Client;
use serde::Serialize;

use crate::checker::{self, CheckOptions, CheckReport};
use crate::cluster;
use crate::history::Outcome;
use crate::lull::WriteLull;
use crate::nemesis::{self, FaultEvent, Nemesis, Schedule, Skew, Target};
use crate::net::{NetMode, Network};
use crate::nodes::Nodes;
use crate::report;
use crate::rng::Rng;
use crate::workload::{self, Recorder, WorkloadConfig};

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Cluster size.
    pub nodes: u64,
    /// How long the workload runs (faults stop a little before).
    pub duration: Duration,
    /// Seed of every random choice.
    pub seed: u64,
    /// Faults to inject.
    pub nemeses: Vec<Nemesis>,
    /// Where everything goes (history, logs, summary, report).
    pub out: PathBuf,
    /// The `keel` binary.
    pub keel_bin: PathBuf,
    /// Loopback address for nodes and proxies (proxy mode).
    pub ip: IpAddr,
    /// Network namespaces or loopback proxies.
    pub net: NetMode,
    /// The clock nemesis's library and rates.
    pub skew: Skew,
    /// A deliberately broken variant (`KEEL_TEST_BUG`) for every node; `keel_bin`
    /// must then be the `keel-test-bugs` binary.
    pub bug: Option<String>,
    /// The workload.
    pub workload: WorkloadConfig,
    /// Fault timing.
    pub schedule: Schedule,
    /// The checker's limits.
    pub check: CheckOptions,
    /// Extra `keel serve` flags.
    pub keel_args: Vec<String>,
}

/// What a run found.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    /// Seed.
    pub seed: u64,
    /// `netns` or `proxy`.
    pub net: String,
    /// The test bug switched on, if any.
    pub bug: Option<String>,
    /// Operations in the history, final reads included.
    pub ops: usize,
    /// Outcome counts.
    pub ok: usize,
    /// Definite failures.
    pub fail: usize,
    /// Unknown outcomes.
    pub unknown: usize,
    /// Workload throughput (all outcomes), operations per second.
    pub ops_per_sec: f64,
    /// Faults injected, per kind.
    pub faults: BTreeMap<String, usize>,
    /// Keys checked.
    pub keys: usize,
    /// Checker wall time, seconds.
    pub checker_secs: f64,
    /// `valid`, `INVALID` or `unknown (budget exceeded)`.
    pub verdict: String,
    /// Problems outside the history: no recovery, replicas differing, panics.
    pub problems: Vec<String>,
    /// Each replica's digest after healing.
    pub digests: Vec<String>,
}

impl RunSummary {
    /// Whether the run found nothing wrong (an undecided key is not a failure).
    pub fn passed(&self) -> bool {
        self.verdict != "INVALID" && self.problems.is_empty()
    }
}

/// Runs one chaos test.
pub async fn run(cfg: &RunConfig) -> anyhow::Result<(RunSummary, CheckReport)> {
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {:?}", cfg.out))?;
    let rng = Rng::new(cfg.seed);
    let net = Arc::new(Network::start(cfg.net, cfg.nodes, cfg.ip, cfg.seed).await?);
    let net_mode = net.mode_name().to_owned();
    progress(&format!("network: {net_mode}"));
    let mut nodes = Nodes::new(
        cfg.keel_bin.clone(),
        cfg.out.clone(),
        net.specs(),
        cfg.keel_args.clone(),
    );
    if let Some(bug) = &cfg.bug {
        nodes.set_common_env(vec![("KEEL_TEST_BUG".into(), bug.clone())]);
    }
    nodes.start_all()?;
    net.set_owners(nodes.pids());
    let endpoints = nodes.endpoints();
    let nodes = Arc::new(Mutex::new(nodes));
    let admin = Client::new(workload::client_config(
        endpoints.clone(),
        Duration::from_secs(2),
    ))?;
    cluster::wait_converged(&admin, &endpoints, Duration::from_secs(30))
        .await
        .map_err(|e| anyhow::anyhow!("the cluster did not start: {e}"))?;
    progress("cluster up; starting the workload");

    let clock = Instant::now();
    let recorder = Arc::new(Recorder::create(&cfg.out.join("history.jsonl"), clock)?);
    let until = clock + cfg.duration;
    let lull = WriteLull::default();
    let target = Target {
        nodes: nodes.clone(),
        net: net.clone(),
        client: admin.clone(),
        clock,
        skew: cfg.skew.clone(),
        lull: lull.clone(),
        left_groups: Arc::default(),
    };
    if cfg.nemeses.contains(&Nemesis::Rebalance) {
        nemesis::rebalance::prepare(&target).await?;
        progress("group 2 up on every node; slots will move between groups 1 and 2");
    }
    let (keys, faults) = tokio::join!(
        workload::run(
            &cfg.workload,
            endpoints.clone(),
            recorder.clone(),
            rng.fork(1),
            lull,
            until
        ),
        nemesis::run(&target, &cfg.nemeses, &cfg.schedule, rng.fork(2), until),
    );
    let workload_secs = clock.elapsed().as_secs_f64();
    let (keys, faults) = (keys?, faults?);
    target.heal().await?;
    progress(&format!(
        "workload done after {workload_secs:.1} s, {} faults; healing",
        faults.len()
    ));

    let mut problems = Vec::new();
    if cfg.nemeses.contains(&Nemesis::Rebalance)
        && let Err(e) = nemesis::rebalance::settle(&target).await
    {
        problems.push(e);
    }
    // A cluster that did not recover gets its final reads tried briefly (they
    // record what can still be read), not ten seconds per key.
    let mut final_deadline = Duration::from_secs(10);
    if let Err(e) = cluster::wait_converged(&admin, &endpoints, Duration::from_secs(60)).await {
        problems.push(format!("the cluster did not recover after healing: {e}"));
        final_deadline = Duration::from_secs(1);
    }
    progress(&format!("final reads of {} keys", keys.len()));
    let final_client = admin.with_deadline(final_deadline);
    for key in &keys {
        recorder.final_read(&final_client, key).await;
    }
    progress("comparing replicas");
    let digests = compare_replicas(&admin, &endpoints, &nodes, &mut problems).await;
    let logs: Vec<(u64, PathBuf)> = {
        let nodes = nodes.lock().expect("nodes lock");
        nodes
            .ids()
            .into_iter()
            .map(|id| (id, nodes.log_path(id)))
            .collect()
    };
    for (id, log) in logs {
        for line in cluster::panics_in(&log).into_iter().take(3) {
            problems.push(format!("node {id} panicked: {line}"));
        }
    }
    drop(target);
    // The nodes stop before their namespaces go.
    drop(nodes);
    drop(net);

    let history = recorder.finish()?;
    progress(&format!("checking {} operations", history.len()));
    let report = checker::check(&history, &cfg.check);
    let count = |o| history.iter().filter(|op| op.outcome == o).count();
    let workload_ops = history.iter().filter(|op| !op.final_read).count();
    let mut fault_counts = BTreeMap::new();
    for f in &faults {
        *fault_counts.entry(f.nemesis.name().to_owned()).or_default() += 1;
    }
    let summary = RunSummary {
        seed: cfg.seed,
        net: net_mode,
        bug: cfg.bug.clone(),
        ops: history.len(),
        ok: count(Outcome::Ok),
        fail: count(Outcome::Fail),
        unknown: count(Outcome::Unknown),
        ops_per_sec: workload_ops as f64 / workload_secs.max(1e-9),
        faults: fault_counts,
        keys: report.keys.len(),
        checker_secs: report.elapsed.as_secs_f64(),
        verdict: report.verdict().to_owned(),
        problems,
        digests,
    };
    write_results(cfg, &summary, &report, &history, &faults)?;
    Ok((summary, report))
}

fn progress(what: &str) {
    eprintln!("keel-chaos: {what}");
}

/// Waits for every replica to apply everything, then compares their data.
async fn compare_replicas(
    admin: &Client,
    endpoints: &[String],
    nodes: &Arc<Mutex<Nodes>>,
    problems: &mut Vec<String>,
) -> Vec<String> {
    if let Err(e) = cluster::wait_converged(admin, endpoints, Duration::from_secs(30)).await {
        problems.push(format!(
            "replicas did not converge after the final reads: {e}"
        ));
        return Vec::new();
    }
    let https: Vec<(u64, SocketAddr)> = {
        let nodes = nodes.lock().expect("nodes lock");
        nodes
            .ids()
            .into_iter()
            .map(|id| (id, nodes.spec(id).http))
            .collect()
    };
    let mut datas = Vec::new();
    for (id, addr) in https {
        match cluster::replica_data(addr).await {
            Ok(d) => datas.push((id, d)),
            Err(e) => problems.push(format!("cannot read node {id}'s data: {e}")),
        }
    }
    if let Some((first_id, first)) = datas.first() {
        for (id, d) in &datas[1..] {
            if let Some(diff) = cluster::first_difference(first, d) {
                problems.push(format!(
                    "replicas differ: node {first_id} and node {id} at {diff}"
                ));
            }
        }
    }
    datas.into_iter().map(|(_, d)| d.digest).collect()
}

fn write_results(
    cfg: &RunConfig,
    summary: &RunSummary,
    report: &CheckReport,
    history: &[crate::history::Op],
    faults: &[FaultEvent],
) -> anyhow::Result<()> {
    let mut fault_lines = String::new();
    for f in faults {
        fault_lines.push_str(&serde_json::to_string(f)?);
        fault_lines.push('\n');
    }
    std::fs::write(cfg.out.join("faults.jsonl"), fault_lines)?;
    std::fs::write(
        cfg.out.join("check.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    std::fs::write(
        cfg.out.join("summary.json"),
        serde_json::to_string_pretty(summary)?,
    )?;
    std::fs::write(
        cfg.out.join("summary.txt"),
        report::summary_table(summary, report),
    )?;
    report::write_timelines(&cfg.out, history, &report.anomalies, faults, 5)?;
    Ok(())
}
