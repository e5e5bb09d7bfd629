//! `keel bench move`: moving a slot online, measured on a 3-node loopback
//! cluster of real `keel serve` processes (see [`MoveArgs`] for the steps).
//!
//! The move is timed from the client's side: from the moment the
//! `BeginSlotMove` map change is accepted until the map names the new owner
//! with no move of the slot in flight. The load's clients record every
//! operation in the window it started in (steady, during the move, after),
//! split by whether its key is in the moving slot. `SLOT_MOVING` answers are
//! retried inside keel's client (they show as latency); errors counted are
//! what the client finally returned.

mod args;
mod cluster;
mod keys;
mod load;
mod report;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use keel_testkit::local_cluster::{ClusterSpec, LocalCluster};
use keel_testkit::proc_usage;

pub use args::{ArgsError, MoveArgs};

use crate::preload::preload_with;
use crate::target::{KeelTarget, Target};
use crate::workload::key;
use keys::KeySpace;
use load::{Load, Phase};
use report::{Results, Window};

/// How long the cluster may take to elect leaders and create a group.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long every node's map may take to show the move after one did.
const MAPS_TIMEOUT: Duration = Duration::from_secs(30);
/// The nodes of the cluster; the new group gets all of them.
const NODES: u64 = 3;

/// Runs the scenario, prints the table on stdout, and writes JSON if asked.
pub fn run(args: MoveArgs) -> anyhow::Result<ExitCode> {
    args.validate()?;
    let workspace = args.files.workspace("keel-bench-move-")?;
    let (bin, dir) = (workspace.bin.clone(), workspace.dir.clone());
    let mut spec = ClusterSpec::on_free_ports(
        NODES,
        std::net::Ipv4Addr::LOCALHOST.into(),
        dir.join("keel"),
        bin.clone(),
    )
    .context("cannot find free ports")?;
    spec.extra_args = args.files.keel_arg.clone();
    eprintln!(
        "Starting a {NODES}-node keel cluster in {} ...",
        spec.base_dir.display()
    );
    let mut cluster = LocalCluster::start_with_event_logs(spec, false)
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let pids: Vec<(u64, u32)> = (1..=NODES)
        .filter_map(|id| cluster.pid(id).map(|pid| (id, pid)))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("keel-bench")
        .build()
        .context("cannot start the async runtime")?;
    let results = match rt.block_on(execute(&args, &cluster.endpoints(), &pids)) {
        Ok(r) => r,
        Err(e) => return Err(e.context(log_tails(&cluster))),
    };
    print!("\n{}", results.render());
    if let Some(path) = &args.files.json {
        results.write_json(path)?;
        eprintln!("Results written to {}.", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Sets up, loads, moves, measures and verifies.
async fn execute(
    args: &MoveArgs,
    endpoints: &[String],
    pids: &[(u64, u32)],
) -> anyhow::Result<Results> {
    let admin = cluster::admin(endpoints)?;
    let members: Vec<u64> = (1..=NODES).collect();
    let to = cluster::create_group(&admin, endpoints, &members, SETUP_TIMEOUT).await?;
    let space = KeySpace {
        tag: args.tag.clone(),
        slot_keys: args.slot_keys,
        keys: args.keys,
        value_size: args.value_size,
    };
    let slot = space.slot();
    eprintln!(
        "Group {to} has a leader. Preloading {} keys of slot {slot} and {} ordinary keys \
         ({} bytes each, {} writers) ...",
        args.slot_keys, args.keys, args.value_size, args.preload_clients
    );
    let keel = KeelTarget::with_sessions(endpoints, args.connections, args.read_mode, true, false)
        .context("cannot create keel clients")?;
    let target = Target::Keel(keel);
    let started = Instant::now();
    let s = space.clone();
    let slot_item = move |k| {
        let key = s.slot_key(k);
        let value = s.value(&key);
        (key, value)
    };
    preload_with(
        &target,
        args.slot_keys,
        args.preload_clients,
        Arc::new(slot_item),
    )
    .await?;
    let s = space.clone();
    let item = move |k| {
        let key = key(k);
        let value = s.value(&key);
        (key, value)
    };
    preload_with(&target, args.keys, args.preload_clients, Arc::new(item)).await?;
    let preload_s = started.elapsed().as_secs_f64();

    let moving = args.moving_share();
    eprintln!(
        "Preloaded in {preload_s:.1} s. {} clients run ({:.1}% of operations on slot {slot}): \
         {:?} warm-up, {:?} steady, then the move ...",
        args.clients,
        moving * 100.0,
        args.warmup,
        args.steady
    );
    let load = Load::start(&target, &space, args.clients, |i| {
        space.ops(args.seed, i, args.read_fraction, moving)
    });
    tokio::time::sleep(args.warmup).await;
    let cpu = |at: Instant| (at, cpu_seconds(pids));
    let steady = cpu(load.enter(Phase::Steady));
    tokio::time::sleep(args.steady).await;
    let during = cpu(load.enter(Phase::Moving));
    let moved = async {
        let begun = cluster::begin_move(&admin, slot, to).await?;
        eprintln!("The move of slot {slot} to group {to} began; waiting for it to end ...");
        let done = cluster::wait_moved(&admin, slot, to, begun, args.move_timeout).await?;
        Ok::<_, cluster::ClusterError>((begun, done))
    }
    .await;
    let after = cpu(load.enter(Phase::After));
    if moved.is_ok() {
        tokio::time::sleep(args.after).await;
    }
    let end = cpu(load.enter(Phase::Stop));
    let records = load.stop().await?;
    let (begun, done) = moved?;
    eprintln!(
        "Moved in {:.2} s. Checking every node's map and {} moved keys ...",
        (done - begun.at).as_secs_f64(),
        args.verify_keys.min(args.slot_keys)
    );

    let bounds = [
        ("steady", &steady, &during),
        ("during the move", &during, &after),
        ("after", &after, &end),
    ];
    let windows = bounds
        .iter()
        .zip(&records)
        .map(|((name, from, until), r)| {
            let mut w = Window::new(name, until.0 - from.0, r);
            w.cpu_seconds = cpu_delta(&from.1, &until.1);
            w
        })
        .collect();
    cluster::every_map_agrees(&admin, endpoints, slot, to, MAPS_TIMEOUT).await?;
    let verified_keys = cluster::verify(&admin, &space, args.verify_keys).await?;
    let mut results = Results {
        slot: slot.get(),
        to_group: to,
        slot_keys: args.slot_keys,
        keys: args.keys,
        value_size: args.value_size,
        clients: args.clients,
        read_fraction: args.read_fraction,
        read_mode: format!("{:?}", args.read_mode).to_lowercase(),
        moving_fraction: moving,
        preload_s,
        begin_s: (begun.at - during.0).as_secs_f64(),
        move_s: (done - begun.at).as_secs_f64(),
        windows,
        verified_keys,
        checks: Vec::new(),
    };
    results.check();
    Ok(results)
}

/// Each node's CPU time so far (seconds); nodes that cannot be read are left
/// out.
fn cpu_seconds(pids: &[(u64, u32)]) -> BTreeMap<u64, f64> {
    pids.iter()
        .filter_map(|&(id, pid)| Some((id, proc_usage::cpu_time(pid).ok()?.as_secs_f64())))
        .collect()
}

/// CPU seconds spent between two readings, per node present in both.
fn cpu_delta(from: &BTreeMap<u64, f64>, to: &BTreeMap<u64, f64>) -> BTreeMap<u64, f64> {
    to.iter()
        .filter_map(|(id, t)| Some((*id, t - from.get(id)?)))
        .collect()
}

/// The last lines of every node's log, and its last lines about slots (the
/// mover's), for a failure report.
fn log_tails(cluster: &LocalCluster) -> String {
    (1..=cluster.spec().nodes)
        .map(|id| {
            let text = std::fs::read_to_string(cluster.log_path(id)).unwrap_or_default();
            let slots: Vec<&str> = text.lines().filter(|l| l.contains("slot")).collect();
            format!(
                "\n--- keel node {id} log ---\n{}\n--- its last lines about slots ---\n{}",
                cluster.log_tail(id, 10),
                slots[slots.len().saturating_sub(10)..].join("\n")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_deltas_skip_nodes_missing_at_either_end() {
        let from = BTreeMap::from([(1, 1.0), (2, 2.0)]);
        let to = BTreeMap::from([(1, 3.5), (3, 9.0)]);
        assert_eq!(cpu_delta(&from, &to), BTreeMap::from([(1, 2.5)]));
        let me = cpu_seconds(&[(7, std::process::id()), (8, 0)]);
        assert!(me.contains_key(&7) && !me.contains_key(&8), "{me:?}");
    }
}
