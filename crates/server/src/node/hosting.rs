//! Hosting a group: building its entry in the consensus thread's table from
//! what start-up recovered, with its own apply side (queue and thread),
//! snapshot runtime and membership state, and the handles the API reads it by.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_raft::Raft;
use keel_storage::kv::KvStore;
use tokio::sync::watch;

use super::apply::{Applier, ApplyState, apply_side};
use super::ctx::NodeCtx;
use super::group::Group;
use super::lease::LeaseCell;
use super::membership::Membership;
use super::reads::UnconfirmedReads;
use super::snapshots::{SnapshotState, Snapshots};
use super::status::NodeStatus;
use super::waiters::Waiters;
use crate::events::EventLog;
use crate::members::MemberBook;
use crate::peers::PeerIncarnations;
use crate::transport::SnapshotOutbox;

/// Settings every hosted group is started with.
pub(crate) struct GroupSettings {
    pub(crate) flush_interval: Duration,
    pub(crate) tick: Duration,
    /// Entries applied between snapshots (0: never), and kept behind one.
    pub(crate) snapshot_entries: u64,
    pub(crate) snapshot_trailing_entries: u64,
    pub(crate) incarnations: Arc<PeerIncarnations>,
    /// A learner is promoted once within this many entries of the leader's log.
    pub(crate) promote_lag_entries: u64,
    /// The runtime snapshot transfers run on (groups added at run time are
    /// built on the consensus thread, outside it).
    pub(crate) runtime: tokio::runtime::Handle,
}

/// A group as start-up recovered it.
pub(crate) struct GroupBoot {
    pub(crate) raft: Raft,
    pub(crate) kv: Arc<KvStore>,
    pub(crate) snapshots: SnapshotState,
    /// Members' addresses as of the recovered log.
    pub(crate) book: Arc<MemberBook>,
    /// Index of the newest membership change in the recovered log (0: none).
    pub(crate) conf_index: u64,
}

/// A group ready to be added to the table: its entry, its apply thread's loop
/// (to be spawned), and what API handlers read it by.
pub(crate) struct HostedGroup {
    pub(crate) group: Group,
    pub(crate) applier: Applier,
    pub(crate) status: watch::Receiver<NodeStatus>,
}

/// Builds the table entry for `boot`; its events go to `events`.
pub(crate) fn host(
    ctx: &NodeCtx,
    settings: &GroupSettings,
    boot: GroupBoot,
    events: Arc<Mutex<EventLog>>,
) -> HostedGroup {
    let GroupBoot {
        raft,
        kv,
        snapshots,
        book,
        conf_index,
    } = boot;
    let (status_tx, status) = watch::channel(NodeStatus::initial(raft.id()));
    let writes_in_flight = Arc::new(AtomicUsize::new(0));
    let (apply, applier) = apply_side(
        ApplyState {
            kv: kv.clone(),
            waiters: Waiters::default(),
            events: events.clone(),
            writes_in_flight: writes_in_flight.clone(),
            metrics: ctx.metrics.clone(),
            primary: raft.group() == super::KV_GROUP,
            durable_applied: snapshots.durable_applied.clone(),
            asleep: false,
        },
        settings.flush_interval,
        settings.tick,
    );
    // One transfer per peer at a time: this bounds the outcomes in flight.
    let (done, outcomes) = crossbeam_channel::bounded(256);
    let outbox = SnapshotOutbox {
        local: ctx.transport.local(),
        group: raft.group(),
        store: snapshots.store.clone(),
        metrics: ctx.metrics.clone(),
        connector: ctx.transport.connector(),
        runtime: settings.runtime.clone(),
        done,
    };
    let snapshots = Snapshots::new(
        snapshots,
        settings.snapshot_entries,
        settings.snapshot_trailing_entries,
        outbox,
        outcomes,
    );
    let membership = Membership::new(
        book,
        settings.incarnations.clone(),
        settings.promote_lag_entries,
        conf_index,
    );
    let hs = raft.hard_state();
    let role = raft.role();
    let group_id = raft.group();
    let group = Group {
        raft,
        kv,
        apply,
        durable_term_vote: (hs.term, hs.vote),
        status_tx,
        writes_in_flight,
        reads: UnconfirmedReads::default(),
        role,
        heartbeats_out: std::collections::BTreeMap::new(),
        last_leader: keel_raft::NO_NODE,
        snapshots,
        membership,
        lease: Arc::new(LeaseCell::default()),
        events,
        gauges: ctx.metrics.groups.handles(group_id),
    };
    HostedGroup {
        group,
        applier,
        status,
    }
}
