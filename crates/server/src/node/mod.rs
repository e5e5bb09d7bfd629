//! The node runtime: dedicated threads. The consensus thread owns a table of
//! hosted Raft groups (`group.rs`; group 1 only until placement creates others)
//! and the node's one WAL (`ctx.rs`): each turn it steps every group with input,
//! writes every group's Ready into one WAL batch with one fsync (`driver.rs`,
//! `persist.rs`), and applies committed entries inline when it can; each group's
//! apply thread takes over while its state machine is busy, and flushes it
//! (`apply.rs`). Everything else talks to the consensus thread through bounded
//! channels via a [`NodeHandle`] per hosted group: group 1 (the key-value
//! group) always, and the placement group on its members (`recover.rs`).

mod apply;
mod boot_file;
mod ctx;
mod directory;
mod disk;
mod driver;
mod group;
mod host_runtime;
mod hosting;
mod leadership;
mod lease;
mod liveness;
mod membership;
mod persist;
mod pressure;
mod propose;
mod quiet;
mod reads;
mod ready;
mod recover;
mod requests;
mod snapshots;
mod status;
mod unhost;
mod waiters;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Sender, TrySendError};
use keel_raft::{GroupId, Message, NodeId, Role};
use keel_storage::kv::{ApplyOutcome, KvStore};
use tokio::sync::{oneshot, watch};

pub use directory::GroupDirectory;
pub use host_runtime::HostSender;
pub use lease::{LeaseCell, LeaseClock, LeaseRead};
pub use recover::{KV_GROUP, group_state_path, state_path};
#[cfg(test)]
pub(crate) use requests::slot_refusal_as_error;
pub use requests::{ChangeProposed, MemberChange, NodeError};
pub use snapshots::snapshot_dir;
pub use status::NodeStatus;

use driver::Driver;
pub(crate) use recover::{PLACEMENT_LABEL, Recovered, recover};
use requests::Request;

use crate::error::ServerError;
use crate::events::EventLog;
use crate::transport::Transport;

/// How API handlers reach one group hosted by the node. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    /// The group this handle serves; every request it sends names it.
    group: GroupId,
    req_tx: Sender<(GroupId, Request)>,
    kv: Arc<KvStore>,
    status: watch::Receiver<NodeStatus>,
    lease: Arc<LeaseCell>,
    clock: LeaseClock,
}

/// Everything the node's threads need, assembled by the server.
pub(crate) struct NodeParts {
    pub(crate) recovered: Recovered,
    pub(crate) transport: Transport,
    pub(crate) events: EventLog,
    pub(crate) peer_rx: crossbeam_channel::Receiver<Message>,
    /// The groups the transport's receiver lets in; the node adds the groups it
    /// hosts.
    pub(crate) hosted: crate::transport::HostedGroups,
    pub(crate) tick: Duration,
    pub(crate) flush_interval: Duration,
    pub(crate) max_pending: usize,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Entries applied between snapshots (0: never), and kept behind one.
    pub(crate) snapshot_entries: u64,
    pub(crate) snapshot_trailing_entries: u64,
    /// Peer incarnations (a re-added member's old one is forgotten).
    pub(crate) incarnations: Arc<crate::peers::PeerIncarnations>,
    /// A learner is promoted once within this many entries of the leader's log.
    pub(crate) promote_lag_entries: u64,
    /// The clock the core's leases are measured on.
    pub(crate) clock: LeaseClock,
    /// The data directory, whose free space is watched (`disk.rs`).
    pub(crate) data_dir: std::path::PathBuf,
    /// Writes are refused while less than this is free (0: no floor).
    pub(crate) min_free_disk_bytes: u64,
    /// The node's settings, for groups created at run time.
    pub(crate) cfg: crate::config::ServerConfig,
    /// Where the transport's receiver finds each hosted group's snapshot inbox.
    pub(crate) inboxes: crate::transport::SnapshotInboxes,
    /// The sending side of `peer_rx`, where received snapshots are announced.
    pub(crate) peer_tx: Sender<Message>,
}

/// A running consensus thread: how to reach it, how to stop it, and how it ended.
pub(crate) struct RunningNode {
    /// The key-value group.
    pub(crate) handle: NodeHandle,
    /// The placement group, when this node hosts it.
    pub(crate) placement: Option<NodeHandle>,
    /// Every hosted group's handle, kept current as groups are added.
    pub(crate) directory: GroupDirectory,
    /// Where orders to host more groups go.
    pub(crate) hosts: HostSender,
    /// Sending (or dropping) stops the thread.
    pub(crate) stop: Sender<()>,
    /// Yields an error if the thread stopped on a fatal failure.
    pub(crate) join: std::thread::JoinHandle<Result<(), ServerError>>,
}

/// Starts the node's threads: the consensus thread with its table of hosted
/// groups (group 1, and the placement group on its members), and an apply
/// thread per group. The returned join handle covers them all: it yields once
/// they have stopped, with the first fatal error if any.
pub(crate) fn start(parts: NodeParts) -> Result<RunningNode, ServerError> {
    let (req_tx, req_rx) = crossbeam_channel::bounded(parts.max_pending);
    let (shutdown_tx, shutdown_rx) = crossbeam_channel::bounded(1);
    let (fatal_tx, fatal_rx) = crossbeam_channel::bounded::<String>(4);
    let (host_tx, host_rx) = crossbeam_channel::bounded(MAX_QUEUED_HOST_ORDERS);
    let Recovered {
        wal,
        kv_group,
        placement,
        others,
    } = parts.recovered;
    let id = kv_group.raft.id();
    let labelled = |label: String| Arc::new(std::sync::Mutex::new(parts.events.labelled(label)));
    let placement_events = placement
        .as_ref()
        .map(|_| labelled(PLACEMENT_LABEL.to_string()));
    let other_events: Vec<_> = others
        .iter()
        .map(|g| labelled(recover::group_label(g.raft.group())))
        .collect();
    let events = Arc::new(std::sync::Mutex::new(parts.events));
    let clock = parts.clock;
    let ctx = ctx::NodeCtx::new(
        parts.transport,
        events.clone(),
        wal,
        parts.metrics.clone(),
        disk::DiskWatch::new(
            Arc::new(keel_storage::vfs::StdVfs::new()),
            parts.data_dir,
            parts.min_free_disk_bytes,
        ),
        fatal_rx,
        clock,
        parts.max_pending,
    );
    let directory = GroupDirectory::default();
    let (election_ticks, heartbeat_ticks) = parts.cfg.ticks();
    let liveness = liveness::NodeLiveness::new(heartbeat_ticks, election_ticks);
    let mut hosts = host_runtime::Hosts {
        cfg: parts.cfg,
        settings: hosting::GroupSettings {
            flush_interval: parts.flush_interval,
            tick: parts.tick,
            snapshot_entries: parts.snapshot_entries,
            snapshot_trailing_entries: parts.snapshot_trailing_entries,
            incarnations: parts.incarnations,
            promote_lag_entries: parts.promote_lag_entries,
            runtime: tokio::runtime::Handle::current(),
        },
        req_tx,
        clock,
        directory: directory.clone(),
        hosted: parts.hosted.clone(),
        inboxes: parts.inboxes,
        peer_tx: parts.peer_tx,
        metrics: parts.metrics,
        fatal_tx,
        applies: Vec::new(),
    };
    let mut groups = group::GroupTable::default();
    let handle = hosts.add(&ctx, &mut groups, kv_group, events.clone())?;
    let placement = match (placement, placement_events) {
        (Some(boot), Some(events)) => Some(hosts.add(&ctx, &mut groups, boot, events)?),
        _ => None,
    };
    for (boot, events) in others.into_iter().zip(other_events) {
        hosts.add(&ctx, &mut groups, boot, events)?;
    }
    let driver = Driver {
        ctx,
        groups,
        hosts,
        host_rx,
        _host_tx: host_tx.clone(),
        hosted: parts.hosted,
        peer_rx: parts.peer_rx,
        req_rx,
        shutdown_rx,
        tick: parts.tick,
        liveness,
        parked_checked_at: 0,
        relieve_pressure: parts.snapshot_entries != 0,
        next_pressure_check: Instant::now(),
    };
    let join = std::thread::Builder::new()
        .name(format!("keel-raft-{id}"))
        .spawn(move || {
            // The driver hangs up on the apply threads when it returns; each
            // finishes its queue (applies done, the state machine flushed)
            // before it stops.
            let (mut result, applies) = driver.run();
            for apply in applies {
                let apply = apply
                    .join()
                    .unwrap_or_else(|_| Err(ServerError::Fatal("an apply thread panicked".into())));
                result = result.and(apply);
            }
            let mut events = events.lock().expect("event log lock poisoned");
            match &result {
                Ok(()) => events.note(&format!("Node {id} shut down cleanly.")),
                Err(e) => {
                    tracing::error!("node stopping: {e}");
                    events.note(&format!("Node {id} stopped: {e}"));
                }
            }
            events.flush();
            result
        })
        .map_err(|e| ServerError::Fatal(format!("cannot start the consensus thread: {e}")))?;
    Ok(RunningNode {
        handle,
        placement,
        directory,
        hosts: HostSender::new(host_tx),
        stop: shutdown_tx,
        join,
    })
}

/// Host orders waiting for the consensus thread (the reconciler sends one per
/// group it finds missing, and waits for each).
const MAX_QUEUED_HOST_ORDERS: usize = 64;

/// Spawns a helper thread that reports a fatal error to the consensus thread
/// before returning it.
fn spawn(
    name: String,
    fatal: Sender<String>,
    run: impl FnOnce() -> Result<(), ServerError> + Send + 'static,
) -> Result<std::thread::JoinHandle<Result<(), ServerError>>, ServerError> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let result = run();
            if let Err(e) = &result {
                let _ = fatal.send(e.to_string());
            }
            result
        })
        .map_err(|e| ServerError::Fatal(format!("cannot start {name}: {e}")))
}

impl NodeHandle {
    /// Proposes an encoded command and waits until it is committed and applied, or
    /// the deadline passes.
    pub async fn write(&self, data: Bytes, timeout: Duration) -> Result<ApplyOutcome, NodeError> {
        self.start_write(data, timeout)?.await
    }

    /// Hands an encoded command to the consensus thread now, and returns a future
    /// that waits until it is committed and applied (or the deadline passes).
    ///
    /// The consensus thread proposes requests in the order they were handed over,
    /// so writes started one after another by one task land in the log in that
    /// order, while their proposals still share a turn (and an fsync) when they
    /// arrive together: what a pipelining front end needs.
    pub fn start_write(
        &self,
        data: Bytes,
        timeout: Duration,
    ) -> Result<impl Future<Output = Result<ApplyOutcome, NodeError>> + Send + 'static, NodeError>
    {
        let (reply, rx) = oneshot::channel();
        let deadline = Instant::now() + timeout;
        self.submit(Request::Write {
            data,
            deadline,
            reply,
        })?;
        Ok(async move {
            match tokio::time::timeout(timeout + Duration::from_millis(100), rx).await {
                Ok(Ok(result)) => requests::slot_refusal_as_error(result),
                // The consensus thread answers every request it accepted; a dropped
                // channel means it stopped with the write possibly in the log.
                Ok(Err(_)) => Err(NodeError::OutcomeUnknown(
                    "the node stopped while the write was in flight".into(),
                )),
                Err(_) => Err(NodeError::OutcomeUnknown(
                    "no answer before the deadline".into(),
                )),
            }
        })
    }

    /// Waits until a read of local state is linearizable (ReadIndex).
    pub async fn read_barrier(&self, timeout: Duration) -> Result<u64, NodeError> {
        if crate::test_bugs::active(crate::test_bugs::TestBug::FollowerReadWithoutReadIndex) {
            let status = self.status.borrow();
            if status.leader != 0 && status.leader != status.id {
                return Ok(self.kv.applied_index());
            }
        }
        let (reply, rx) = oneshot::channel();
        let deadline = Instant::now() + timeout;
        self.submit(Request::ReadBarrier { deadline, reply })?;
        match tokio::time::timeout(timeout + Duration::from_millis(100), rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(NodeError::ShuttingDown),
            Err(_) => Err(NodeError::Timeout("no answer before the deadline".into())),
        }
    }

    /// Serves `read` under the leader lease, without a network round trip: `None`
    /// if this node holds no valid lease (the caller falls back to ReadIndex).
    /// The lease is checked again after `read` ran, so the result is never from a
    /// moment the lease did not cover.
    pub async fn lease_read<T>(
        &self,
        timeout: Duration,
        read: impl Fn(&KvStore) -> T,
    ) -> Result<Option<T>, NodeError> {
        let Some(started) = self.lease.begin(self.clock.now()) else {
            return Ok(None);
        };
        if self.kv.applied_index() < started.commit {
            // Everything this leader committed must be visible: another client may
            // already have seen it (a follower read, say).
            self.wait_applied(started.commit, timeout).await?;
        }
        let value = read(&self.kv);
        Ok(self
            .lease
            .still_valid(&started, self.clock.now())
            .then_some(value))
    }

    async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<u64, NodeError> {
        let (reply, rx) = oneshot::channel();
        let deadline = Instant::now() + timeout;
        self.submit(Request::WaitApplied {
            index,
            deadline,
            reply,
        })?;
        match tokio::time::timeout(timeout + Duration::from_millis(100), rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(NodeError::ShuttingDown),
            Err(_) => Err(NodeError::Timeout("no answer before the deadline".into())),
        }
    }

    /// Changes the membership (on the leader) and waits until the change is
    /// applied here, or `timeout` passes. Returns the change's log index.
    pub async fn change_members(
        &self,
        change: MemberChange,
        timeout: Duration,
    ) -> Result<u64, NodeError> {
        let (reply, rx) = oneshot::channel();
        let deadline = Instant::now() + timeout;
        self.submit(Request::ChangeMembers {
            change,
            deadline,
            reply,
        })?;
        let proposed = rx.await.map_err(|_| NodeError::ShuttingDown)??;
        let Some(applied) = proposed.applied else {
            return Ok(proposed.index);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left + Duration::from_millis(100), applied).await {
            Ok(Ok(Ok(_))) => Ok(proposed.index),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(NodeError::OutcomeUnknown(
                "the node stopped while the change was in flight".into(),
            )),
            Err(_) => Err(NodeError::OutcomeUnknown(format!(
                "the change at log index {} was not applied before the deadline",
                proposed.index
            ))),
        }
    }

    /// Hands leadership to voter `to` (0: the most caught-up active voter) and
    /// waits until another node leads, or `timeout` passes. Returns the new leader.
    ///
    /// Asked to hand it to itself while it leads, it answers itself at once:
    /// what the caller wants is already so (an operator's or a test's "make
    /// node 5 lead" should not fail because node 5 won the last election).
    pub async fn transfer_leader(
        &self,
        to: NodeId,
        timeout: Duration,
    ) -> Result<NodeId, NodeError> {
        {
            let now = self.status.borrow();
            if to != 0 && to == now.id && now.role == Role::Leader {
                return Ok(to);
            }
        }
        let (reply, rx) = oneshot::channel();
        let mut status = self.status.clone();
        self.submit(Request::TransferLeader { to, reply })?;
        let target = rx.await.map_err(|_| NodeError::ShuttingDown)??;
        let me = self.status.borrow().id;
        let done = status.wait_for(|s| s.leader != me && s.leader != 0 && s.role != Role::Leader);
        match tokio::time::timeout(timeout, done).await {
            Ok(Ok(s)) => Ok(s.leader),
            Ok(Err(_)) => Err(NodeError::ShuttingDown),
            Err(_) => Err(NodeError::Timeout(format!(
                "node {target} did not take over within {timeout:?}; this node still leads"
            ))),
        }
    }

    fn submit(&self, r: Request) -> Result<(), NodeError> {
        match self.req_tx.try_send((self.group, r)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                Err(NodeError::Overloaded("request queue is full".into()))
            }
            Err(TrySendError::Disconnected(_)) => Err(NodeError::ShuttingDown),
        }
    }

    /// The group this handle serves.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// The leader as last published (0 if unknown), without copying the status.
    pub fn leader(&self) -> NodeId {
        self.status.borrow().leader
    }

    /// The state machine (reads see applied state).
    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    /// The latest published consensus state.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// A receiver that wakes on every status change.
    pub fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }
}
