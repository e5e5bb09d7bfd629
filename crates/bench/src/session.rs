//! A bench session: start (or reach) each system in turn, run every client count
//! against it, stop it, and collect the results.
//!
//! Systems run one after the other, never together, so that on a small machine
//! neither steals the other's CPU or disk.

use std::path::Path;

use crate::driver::{self, RunSpec, StopAt};
use crate::plan::{Plan, SystemPlan};
use crate::preload::preload;
use crate::results::{PointResult, clients_text};
use crate::scenario_files::run_dir;
use crate::stats::OpSummary;
use crate::systems::{EtcdSystem, KeelSystem, LocalOptions, System};
use crate::workload::OpKind;

/// Runs the whole plan; returns one result per system and client count, in the
/// order measured.
pub async fn execute(plan: &Plan) -> anyhow::Result<Vec<PointResult>> {
    // With --keep-data the directory outlives the run, failed runs included.
    let (dir, _removed_at_end) = run_dir(&plan.work_dir, "keel-bench-", plan.keep_data)?;
    eprintln!("{}", describe(plan));
    let mut results = Vec::new();
    for system in &plan.systems {
        let mut system = start(system, &dir).await?;
        results.extend(measure(&mut system, plan).await?);
        eprintln!("Stopping {}.", system.name());
    }
    Ok(results)
}

fn describe(plan: &Plan) -> String {
    let w = &plan.workload;
    let length = match plan.stop {
        StopAt::Elapsed(d) => format!("{:?} each", d),
        StopAt::Ops(n) => format!("{n} ops each"),
    };
    format!(
        "Workload: {} keys, {}-byte values, read fraction {} ({:?} reads), {} connection(s); \
         clients {:?}; {:?} warm-up, then {length}.",
        w.keys,
        w.value_size,
        w.read_fraction,
        plan.reads,
        plan.connections,
        plan.client_counts,
        plan.warmup,
    )
}

async fn start(plan: &SystemPlan, dir: &Path) -> anyhow::Result<System> {
    Ok(match plan {
        SystemPlan::KeelAt(endpoints) => {
            eprintln!("Using the keel cluster at {} ...", endpoints.join(","));
            System::Keel(KeelSystem::external(endpoints.clone()).await?)
        }
        SystemPlan::KeelLocal {
            nodes,
            bin,
            event_logs,
            extra_args,
        } => {
            let base = dir.join("keel");
            eprintln!(
                "Starting a {nodes}-node keel cluster in {} ...",
                base.display()
            );
            let options = LocalOptions {
                nodes: *nodes,
                bin: bin.clone(),
                base_dir: base,
                event_logs: *event_logs,
                extra_args: extra_args.clone(),
            };
            System::Keel(KeelSystem::start_local(options).await?)
        }
        SystemPlan::Etcd { members, bin } => {
            let base = dir.join("etcd");
            eprintln!(
                "Starting a {members}-member etcd cluster ({}) in {} ...",
                bin.display(),
                base.display()
            );
            System::Etcd(EtcdSystem::start(*members, bin, base).await?)
        }
    })
}

async fn measure(system: &mut System, plan: &Plan) -> anyhow::Result<Vec<PointResult>> {
    let target = system
        .target(plan.connections, plan.reads, plan.keel_batching)
        .await?;
    if plan.preload {
        eprintln!(
            "Preloading {} keys into {} ...",
            plan.workload.keys,
            system.name()
        );
        preload(&target, &plan.workload).await?;
    }
    let probe = system.probe();
    let mut results = Vec::new();
    for &clients in &plan.client_counts {
        let spec = RunSpec {
            clients,
            warmup: plan.warmup,
            stop: plan.stop,
            label: format!("{} with {}", system.name(), clients_text(clients)),
            progress: plan.progress,
        };
        let before = system.election_counter().await;
        let outcome = driver::run(&target, &plan.workload, &spec, &probe).await;
        let after = system.election_counter().await;
        let elections = before.zip(after).map(|(b, a)| a.saturating_sub(b));
        let result = PointResult::new(
            system.name(),
            clients,
            plan.workload.read_fraction,
            &outcome,
            elections,
        );
        eprintln!("{}", one_line(&result));
        results.push(result);
    }
    Ok(results)
}

/// A result in one line, printed as soon as it is measured.
fn one_line(r: &PointResult) -> String {
    let part = |kind: OpKind, s: &OpSummary| {
        format!(
            "{:.0} {}s/s (p50 {:.3} ms, p99 {:.3} ms, {} errors)",
            s.ops_per_sec,
            kind.name(),
            s.p50_ms,
            s.p99_ms,
            s.errors
        )
    };
    let parts: Vec<String> = [OpKind::Write, OpKind::Read]
        .into_iter()
        .filter_map(|k| r.ops(k).map(|s| part(k, s)))
        .collect();
    format!(
        "{} with {}: {}",
        r.system,
        clients_text(r.clients),
        parts.join(", ")
    )
}
