//! `keel bench snapshot`: what snapshots cost a running cluster, measured on a
//! 3-node loopback cluster of real `keel serve` processes (see [`SnapshotArgs`]
//! for the phases).
//!
//! Times come from two sources: the nodes' own sentences in their process logs
//! (`took a snapshot ... in N ms`, `sent its snapshot ... (B bytes in N ms)`,
//! `installed the leader's snapshot ... in N ms`), and a [`sampler`] that reads
//! each watched node's `VmRSS` and `/v1/status` every `--sample-every`, from
//! which the phase works out when a node answered, installed and caught up.
//! Peak memory is the higher of the sampled `VmRSS` and the kernel's `VmHWM`
//! (reset at the start of each phase; for a process started in the phase, its
//! lifetime peak).

mod args;
mod load;
mod logs;
mod node;
mod report;
mod sampler;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use keel_testkit::local_cluster::{ClusterSpec, LocalCluster};
use tokio::runtime::Runtime;

pub use args::SnapshotArgs;

use crate::target::{KeelTarget, ReadConsistency, Target};
use crate::workload::Workload;
use load::WriteLoad;
use logs::{LogEvent, LogMark, Taken, seconds_between, time_of_day_now};
use node::Node;
use report::{CatchUp, Memory, Restart, Results, Window, WritesDuringSnapshot};
use sampler::{Sampler, Timeline};

/// How long memory is left to settle before a "before" or "after" reading.
const SETTLE: Duration = Duration::from_secs(2);
/// How long a new or restarted cluster may take to elect a leader.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a clean stop may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often log files are polled.
const LOG_POLL: Duration = Duration::from_millis(20);

/// Runs the scenario, prints the tables on stdout, and writes JSON if asked.
pub fn run(args: SnapshotArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.keys > 0, "--keys must be greater than zero");
    anyhow::ensure!(args.clients > 0, "--clients must be greater than zero");
    let workspace = args.files.workspace("keel-bench-snapshot-")?;
    let (bin, dir) = (workspace.bin.clone(), workspace.dir.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("keel-bench")
        .build()
        .context("cannot start the async runtime")?;
    let mut scenario = Scenario::start(&args, &rt, bin, dir.join("keel"))?;
    let results = scenario.run_all();
    let results = match results {
        Ok(r) => r,
        Err(e) => return Err(e.context(scenario.log_tails())),
    };
    print!("\n{}", results.render());
    if let Some(path) = &args.files.json {
        results.write_json(path)?;
        eprintln!("Results written to {}.", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The cluster under test and what the phases share.
struct Scenario<'a> {
    args: &'a SnapshotArgs,
    rt: &'a Runtime,
    cluster: LocalCluster,
    workload: Workload,
    snapshot_entries: u64,
}

/// How a catch-up's receiver is started.
enum Receiver {
    /// A node of the cluster that is down, restarted from its data.
    Restart(u64),
    /// A new node joining through the leader (`keel serve --join`).
    Join,
}

/// A catch-up being measured inside a sampler's timeline.
struct Pending {
    result: CatchUp,
    /// When the receiver's process started and when it caught up.
    started: Duration,
    caught_up: Duration,
    reference: Option<u64>,
}

impl<'a> Scenario<'a> {
    fn start(
        args: &'a SnapshotArgs,
        rt: &'a Runtime,
        bin: PathBuf,
        base: PathBuf,
    ) -> anyhow::Result<Self> {
        let snapshot_entries = args.snapshot_entries.unwrap_or(args.keys);
        let mut spec =
            ClusterSpec::on_free_ports(3, std::net::Ipv4Addr::LOCALHOST.into(), base, bin.clone())
                .context("cannot find free ports")?;
        spec.extra_args = extra_args(args, snapshot_entries);
        eprintln!(
            "Starting a 3-node keel cluster in {} (--snapshot-entries {snapshot_entries}) ...",
            spec.base_dir.display()
        );
        let cluster = LocalCluster::start_with_event_logs(spec, false)
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(Scenario {
            args,
            rt,
            cluster,
            workload: Workload {
                keys: args.keys,
                value_size: args.value_size,
                read_fraction: 0.0,
                seed: 1,
            },
            snapshot_entries,
        })
    }

    fn run_all(&mut self) -> anyhow::Result<Results> {
        let mut results = Results {
            keys: self.args.keys,
            value_size: self.args.value_size,
            snapshot_entries: self.snapshot_entries,
            ..Results::default()
        };
        let (leader, _, other) = self.after_preload(&mut results)?;
        eprintln!("Restarting node {other} (its WAL still holds every entry) ...");
        results
            .restarts
            .push(self.restart("WAL holding the whole preload", other, false)?);
        results
            .restarts
            .push(self.restart("the same, clean stop", other, true)?);
        if self.args.no_write_load {
            return Ok(results);
        }
        results.cluster_restart_s = Some(self.restart_cluster()?);
        let writes = self.writes_during_snapshot()?;
        results.catch_ups.push(writes.catch_up.clone());
        results.writes = Some(writes);
        let leader = self.leader().unwrap_or(leader);
        let other = self.followers(leader)[0];
        eprintln!("Restarting node {other} (its WAL now starts after the first snapshot) ...");
        results
            .restarts
            .push(self.restart("snapshot + WAL tail of the load", other, false)?);
        if self.args.join {
            results.catch_ups.push(self.join()?);
        }
        Ok(results)
    }

    /// Phase 1: a follower down during the preload catches up from the leader's
    /// snapshot. Returns (leader, that follower, the other follower).
    fn after_preload(&mut self, results: &mut Results) -> anyhow::Result<(u64, u64, u64)> {
        let leader = self.leader()?;
        let [follower, other] = self.followers(leader)[..] else {
            anyhow::bail!("expected two followers");
        };
        self.cluster.kill(follower)?;
        let mark = self.mark(leader);
        eprintln!(
            "Node {leader} leads; node {follower} is down. Preloading {} keys of {} bytes ...",
            self.args.keys, self.args.value_size
        );
        let target = self.target()?;
        let started = Instant::now();
        self.rt
            .block_on(crate::preload::preload(&target, &self.workload))?;
        results.preload_s = started.elapsed().as_secs_f64();
        let taken = self.wait_log(&mark, LogEvent::Took, "the leader's snapshot", |n| {
            n[0] >= self.snapshot_entries
        })?;
        results.preload_snapshot = Taken::from_numbers(&taken).unwrap_or_default();
        eprintln!(
            "Preloaded in {:.1} s; the leader took a snapshot at index {} ({} bytes, {} ms).",
            results.preload_s,
            results.preload_snapshot.index,
            results.preload_snapshot.bytes,
            results.preload_snapshot.ms
        );
        eprintln!("Restarting node {follower}; it catches up from the snapshot ...");
        let catch_up = self.idle_catch_up(
            "after the preload",
            leader,
            Receiver::Restart(follower),
            other,
        )?;
        results.catch_ups.push(catch_up);
        Ok((leader, follower, other))
    }

    /// Starts the receiver under `sampler`, waits until it has applied the
    /// leader's commit index, then lets memory settle.
    fn catch_up(
        &mut self,
        sampler: &mut Sampler,
        what: &str,
        leader: Node,
        receiver: Receiver,
        reference: Option<u64>,
    ) -> anyhow::Result<Pending> {
        let id = match receiver {
            Receiver::Restart(id) => id,
            Receiver::Join => self.cluster.spec().nodes + 1,
        };
        let leader_mark = self.mark(leader.id);
        let receiver_mark = self.mark(id);
        let sent_before = leader.metric("keel_snapshot_sent_bytes_total");
        leader.reset_peak();
        let started = sampler.now();
        let spawned_at = time_of_day_now();
        match receiver {
            Receiver::Restart(id) => self.cluster.spawn(id)?,
            Receiver::Join => {
                let joined = self.cluster.add_node(leader.id, &[])?;
                anyhow::ensure!(joined == id, "the new node got id {joined}, not {id}");
            }
        }
        let node = self.node(id)?;
        sampler.watch(node);
        let caught_up = sampler.wait(
            self.args.step_timeout,
            &format!("node {id} to catch up"),
            |s| {
                let commit = s.status(leader.id).map_or(u64::MAX, |s| s.commit_index);
                s.status(id).is_some_and(|s| s.applied_index >= commit)
            },
        )?;
        std::thread::sleep(SETTLE);
        let to_receiver = |n: &[u64]| n.get(1) == Some(&id);
        let sent = poll(Duration::from_secs(5), || {
            leader_mark.find_last(LogEvent::Sent, to_receiver)
        })
        .map(|(_, n)| {
            (
                n[0],
                n.get(2).copied().unwrap_or(0),
                n.get(3).copied().unwrap_or(0),
            )
        });
        let sending_s = leader_mark
            .find_last(LogEvent::Sending, to_receiver)
            .and_then(|(at, _)| Some(seconds_between(spawned_at, at?)));
        let installed = receiver_mark.last(LogEvent::Installed).map(|n| {
            (
                n.get(2).copied().unwrap_or(0),
                n.get(4).copied().unwrap_or(0),
            )
        });
        let sent_after = leader.metric("keel_snapshot_sent_bytes_total");
        let result = CatchUp {
            what: what.to_owned(),
            leader: leader.id,
            follower: id,
            sending_s,
            sent,
            installed,
            sent_bytes_metric: sent_after.zip(sent_before).map(|(a, b)| (a - b) as u64),
            caught_up_s: (caught_up - started).as_secs_f64(),
            leader_memory: Memory {
                peak_hwm: leader.peak_rss(),
                after: leader.rss(),
                ..Memory::default()
            },
            follower_memory: Memory {
                peak_hwm: node.peak_rss(),
                after: node.rss(),
                ..Memory::default()
            },
            reference_rss: reference
                .map(|r| self.node(r))
                .transpose()?
                .and_then(|n| n.rss()),
            ..CatchUp::default()
        };
        eprintln!(
            "Node {id} caught up {:.2} s after it started.",
            result.caught_up_s
        );
        Ok(Pending {
            result,
            started,
            caught_up,
            reference,
        })
    }

    /// Phase 2 and 4: stops node `id` (SIGKILL, or SIGTERM if `clean`), starts it
    /// again, and times it until it serves again.
    fn restart(&mut self, what: &str, id: u64, clean: bool) -> anyhow::Result<Restart> {
        self.wait_caught_up(id)?;
        let before = self
            .node(id)?
            .status()
            .with_context(|| format!("node {id} does not answer"))?;
        let data = self.cluster.data_dir(id);
        let wal_segments = wal_segments(&data.join("wal"));
        let state_bytes = std::fs::metadata(data.join("state.redb")).map_or(0, |m| m.len());
        let mark = self.mark(id);
        if clean {
            self.cluster.stop(id, STOP_TIMEOUT)?;
        } else {
            self.cluster.kill(id)?;
        }
        let spawned = Instant::now();
        self.cluster.spawn(id)?;
        let node = self.node(id)?;
        let sampler = Sampler::start(&[node], self.args.sample_every, None);
        let offset = sampler.started() - spawned;
        let serving = sampler.wait(
            self.args.step_timeout,
            &format!("node {id} to serve again"),
            |s| {
                s.status(id)
                    .is_some_and(|s| s.leader_id != 0 && s.applied_index >= before.commit_index)
            },
        )?;
        let timeline = sampler.finish();
        let restart = Restart {
            what: what.to_owned(),
            node: id,
            stopped_by: if clean { "SIGTERM" } else { "SIGKILL" }.to_owned(),
            wal_segments,
            state_bytes,
            log_entries: mark.last(LogEvent::Started).and_then(|n| n.get(1).copied()),
            answered_s: timeline
                .first_status(id, |_| true)
                .map(|t| (t + offset).as_secs_f64()),
            serving_s: (serving + offset).as_secs_f64(),
            peak_rss: node
                .peak_rss()
                .max(timeline.peak_rss(id, Duration::ZERO, serving)),
        };
        eprintln!(
            "Node {id} ({}) served again {:.2} s after it started.",
            restart.stopped_by, restart.serving_s
        );
        Ok(restart)
    }

    /// Stops every node (SIGTERM) and starts them again with the write-load
    /// phase's `--snapshot-entries`; returns the seconds until a leader and every
    /// node back at its commit index.
    fn restart_cluster(&mut self) -> anyhow::Result<f64> {
        let ids = self.cluster.running();
        let mut commits = Vec::new();
        for &id in &ids {
            self.wait_caught_up(id)?;
            commits.push(self.node(id)?.status().map_or(0, |s| s.commit_index));
        }
        eprintln!(
            "Stopping the cluster and starting it with --snapshot-entries {} ...",
            self.args.load_snapshot_entries
        );
        for &id in &ids {
            self.cluster.stop(id, STOP_TIMEOUT)?;
        }
        let mut spec = self.cluster.spec().clone();
        spec.extra_args = extra_args(self.args, self.args.load_snapshot_entries);
        let started = Instant::now();
        self.cluster = LocalCluster::start_with_event_logs(spec, false)?;
        let nodes: Vec<Node> = ids
            .iter()
            .map(|&id| self.node(id))
            .collect::<Result<_, _>>()?;
        let sampler = Sampler::start(&nodes, self.args.sample_every, None);
        sampler.wait(self.args.step_timeout, "the cluster to serve again", |s| {
            ids.iter().zip(&commits).all(|(&id, &commit)| {
                s.status(id)
                    .is_some_and(|s| s.leader_id != 0 && s.applied_index >= commit)
            })
        })?;
        drop(sampler.finish());
        Ok(started.elapsed().as_secs_f64())
    }

    /// Phase 3: writes/s before the leader's next snapshot, and while it is taken
    /// and sent to a follower restarted for it.
    fn writes_during_snapshot(&mut self) -> anyhow::Result<WritesDuringSnapshot> {
        let leader = self.leader()?;
        let [follower, other] = self.followers(leader)[..] else {
            anyhow::bail!("expected two followers");
        };
        self.cluster.kill(follower)?;
        let mark = self.mark(leader);
        let target = self.target()?;
        let clients = self.args.clients;
        eprintln!(
            "Node {leader} leads; node {follower} is down. {clients} clients write until node \
             {leader} has applied {} more entries and snapshots ...",
            self.args.load_snapshot_entries
        );
        let load = WriteLoad::start(self.rt, &target, &self.workload, clients);
        let watched = [self.node(leader)?, self.node(other)?];
        let mut sampler = Sampler::start(&watched, self.args.sample_every, Some(load.completed()));
        let took = self.wait_log(&mark, LogEvent::Took, "the leader's snapshot", |_| true)?;
        let snapshot = Taken::from_numbers(&took).context("unreadable snapshot line")?;
        let snapshot_start = sampler
            .now()
            .saturating_sub(Duration::from_millis(snapshot.ms));
        eprintln!(
            "Node {leader} took a snapshot at index {} in {} ms; restarting node {follower} ...",
            snapshot.index, snapshot.ms
        );
        let pending = self.catch_up(
            &mut sampler,
            "under write load",
            watched[0],
            Receiver::Restart(follower),
            Some(other),
        )?;
        let after_end = pending.caught_up + self.args.after;
        std::thread::sleep(after_end.saturating_sub(sampler.now()));
        let end = sampler.now();
        let timeline = sampler.finish();
        let (_, errors) = load.stop(self.rt);
        let window = |from: Duration, to: Duration| Window {
            seconds: to.saturating_sub(from).as_secs_f64(),
            writes: timeline.writes_at(to) - timeline.writes_at(from),
        };
        let warmup = self.args.warmup;
        anyhow::ensure!(
            snapshot_start > warmup,
            "the snapshot started {snapshot_start:?} into the load, before the end of the \
             {warmup:?} warm-up: raise --load-snapshot-entries"
        );
        let restarted = pending.started;
        let caught_up = pending.caught_up;
        let catch_up = pending.finish(&timeline, self.args.sample_every);
        let at = |s: Option<f64>| restarted + Duration::from_secs_f64(s.unwrap_or(0.0));
        let (answered, installed) = (at(catch_up.answered_s), at(catch_up.installed_s));
        let parts = [
            ("snapshot written", snapshot_start, restarted),
            ("receiver recovering", restarted, answered),
            ("transfer and install", answered, installed),
            ("log tail", installed, caught_up),
        ];
        Ok(WritesDuringSnapshot {
            clients,
            baseline: window(warmup, snapshot_start),
            during: window(snapshot_start, caught_up),
            after: window(caught_up, end),
            parts: parts
                .into_iter()
                .map(|(name, from, to)| (name.to_owned(), window(from, to)))
                .collect(),
            snapshot,
            catch_up,
            errors,
        })
    }

    /// Phase 5 (`--join`): a new node joins through the leader and catches up.
    fn join(&mut self) -> anyhow::Result<CatchUp> {
        let leader = self.leader()?;
        let reference = self.followers(leader)[0];
        eprintln!("A new node joins through node {leader} ...");
        self.idle_catch_up("a new node joining", leader, Receiver::Join, reference)
    }

    /// A catch-up without load: once `reference` (a follower that stays up) has
    /// caught up and memory has settled, starts the receiver and measures.
    fn idle_catch_up(
        &mut self,
        what: &str,
        leader: u64,
        receiver: Receiver,
        reference: u64,
    ) -> anyhow::Result<CatchUp> {
        self.wait_caught_up(reference)?;
        let watched = [self.node(leader)?, self.node(reference)?];
        settle(&watched);
        let mut sampler = Sampler::start(&watched, self.args.sample_every, None);
        let pending = self.catch_up(&mut sampler, what, watched[0], receiver, Some(reference))?;
        Ok(pending.finish(&sampler.finish(), self.args.sample_every))
    }

    fn node(&mut self, id: u64) -> anyhow::Result<Node> {
        let pid = self
            .cluster
            .pid(id)
            .with_context(|| format!("node {id} is not running"))?;
        Ok(Node {
            id,
            pid,
            http: self.cluster.http_addr(id),
        })
    }

    /// The node that says it leads.
    fn leader(&mut self) -> anyhow::Result<u64> {
        let nodes: Vec<Node> = self
            .cluster
            .running()
            .into_iter()
            .map(|id| self.node(id))
            .collect::<Result<_, _>>()?;
        poll(ELECTION_TIMEOUT, || {
            nodes
                .iter()
                .find(|n| n.status().is_some_and(|s| s.leader_id == n.id))
                .map(|n| n.id)
        })
        .context("no leader")
    }

    /// The running nodes other than `leader`.
    fn followers(&mut self, leader: u64) -> Vec<u64> {
        let mut ids = self.cluster.running();
        ids.retain(|&id| id != leader);
        ids
    }

    /// Waits until node `id` has applied the leader's commit index (no load).
    fn wait_caught_up(&mut self, id: u64) -> anyhow::Result<()> {
        let leader = self.leader()?;
        let leader = self.node(leader)?;
        let node = self.node(id)?;
        poll(self.args.step_timeout, || {
            let commit = leader.status()?.commit_index;
            (node.status()?.applied_index >= commit).then_some(())
        })
        .with_context(|| format!("node {id} did not catch up"))
    }

    fn mark(&self, id: u64) -> LogMark {
        LogMark::at_end(&self.cluster.log_path(id))
    }

    /// Waits for a log line of kind `event` after `mark` whose numbers satisfy `ok`.
    fn wait_log(
        &self,
        mark: &LogMark,
        event: LogEvent,
        what: &str,
        ok: impl Fn(&[u64]) -> bool,
    ) -> anyhow::Result<Vec<u64>> {
        poll(self.args.step_timeout, || {
            mark.lines()
                .iter()
                .filter_map(|l| event.parse(l))
                .find(|n| ok(n))
        })
        .with_context(|| format!("no log line for {what}"))
    }

    fn target(&self) -> anyhow::Result<Target> {
        let keel = KeelTarget::new(
            &self.cluster.endpoints(),
            1,
            ReadConsistency::Linearizable,
            true,
        )
        .context("cannot create a keel client")?;
        Ok(Target::Keel(keel))
    }

    /// The last lines of every node's log, for a failure report.
    fn log_tails(&self) -> String {
        (1..=self.cluster.spec().nodes)
            .map(|id| {
                format!(
                    "\n--- keel node {id} log ---\n{}",
                    self.cluster.log_tail(id, 10)
                )
            })
            .collect()
    }
}

impl Pending {
    /// Fills in what only the whole timeline tells: when the receiver answered and
    /// installed, memory before and sampled peaks.
    fn finish(mut self, timeline: &Timeline, every: Duration) -> CatchUp {
        let r = &mut self.result;
        let since = |t: Duration| t.saturating_sub(self.started).as_secs_f64();
        let answered = timeline.first_status(r.follower, |_| true);
        r.answered_s = answered.map(since);
        if let Some((index, _, _)) = r.sent {
            r.installed_s = timeline
                .first_status(r.follower, |s| s.applied_index >= index)
                .map(since);
        }
        let end = self.caught_up + SETTLE;
        r.leader_memory.before = timeline.rss_at(r.leader, self.started);
        r.leader_memory.peak_sampled = timeline.peak_rss(r.leader, self.started, end);
        // The receiver's steady state before the transfer: when it first answered
        // (recovered, and about to be sent the snapshot).
        r.follower_memory.before =
            timeline.rss_at(r.follower, answered.unwrap_or(self.started) + every);
        r.follower_memory.peak_sampled = timeline.peak_rss(r.follower, self.started, end);
        if r.reference_rss.is_none() {
            r.reference_rss = self.reference.and_then(|id| timeline.rss_at(id, end));
        }
        let mut at = self.started;
        while at <= end {
            let point = (
                since(at),
                timeline.rss_at(r.leader, at),
                timeline.rss_at(r.follower, at),
            );
            r.rss_series.push(point);
            at += Duration::from_millis(100);
        }
        self.result
    }
}

/// Waits (up to a minute) until every node's resident memory has changed by less
/// than 2 MiB over the last two seconds: a node that just dropped a large log or
/// finished a snapshot returns memory to the system over a few seconds, and a
/// "before" reading should not catch it half-way.
fn settle(nodes: &[Node]) {
    const STEP: Duration = Duration::from_millis(250);
    const WINDOW: usize = 8;
    let mut history: Vec<Vec<u64>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        history.push(nodes.iter().map(|n| n.rss().unwrap_or(0)).collect());
        if history.len() >= WINDOW {
            let recent = &history[history.len() - WINDOW..];
            let stable = (0..nodes.len()).all(|i| {
                let values = recent.iter().map(|r| r[i]);
                let spread = values.clone().max().unwrap_or(0) - values.min().unwrap_or(0);
                spread < 2 << 20
            });
            if stable {
                return;
            }
        }
        std::thread::sleep(STEP);
    }
}

/// The flags every node gets: the user's, then `--snapshot-entries`.
fn extra_args(args: &SnapshotArgs, snapshot_entries: u64) -> Vec<String> {
    let mut extra = args.files.keel_arg.clone();
    extra.extend([
        "--snapshot-entries".to_owned(),
        snapshot_entries.to_string(),
    ]);
    extra
}

/// Calls `f` every few milliseconds until it returns something, for up to `timeout`.
fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(LOG_POLL);
    }
}

/// The WAL segment files (`*.wal`) in `dir`.
fn wal_segments(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "wal"))
            .count()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario_files::ScenarioFiles;

    #[test]
    fn snapshot_entries_come_last_so_they_win() {
        let args = SnapshotArgs {
            keys: 10,
            value_size: 1,
            snapshot_entries: None,
            load_snapshot_entries: 5,
            clients: 1,
            warmup: Duration::ZERO,
            after: Duration::ZERO,
            sample_every: Duration::from_millis(20),
            step_timeout: Duration::from_secs(1),
            no_write_load: false,
            join: false,
            files: ScenarioFiles {
                keel_arg: vec!["--io-threads=1".into()],
                ..ScenarioFiles::default()
            },
        };
        assert_eq!(
            extra_args(&args, 7),
            ["--io-threads=1", "--snapshot-entries", "7"]
        );
    }

    #[test]
    fn poll_returns_the_first_value_or_gives_up() {
        let mut n = 0;
        assert_eq!(
            poll(Duration::from_secs(5), || {
                n += 1;
                (n == 3).then_some(n)
            }),
            Some(3)
        );
        assert_eq!(poll(Duration::from_millis(30), || None::<()>), None);
    }

    #[test]
    fn wal_segments_are_counted_by_extension() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["0000000000000001.wal", "0000000000000002.wal", "FIRST"] {
            std::fs::write(dir.path().join(name), [0u8; 10]).expect("write");
        }
        assert_eq!(wal_segments(dir.path()), 2);
        assert_eq!(wal_segments(&dir.path().join("missing")), 0);
    }
}
