//! Adding groups to the running node: at start-up every recovered group, and
//! later each group the cluster map gives this node (an order from the map's
//! reconciler, `crate::placement::reconcile`). Adding one builds its table
//! entry (`hosting.rs`), starts its apply thread, lets its peer messages and
//! snapshots in, and lists its handle in the [`GroupDirectory`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;
use keel_raft::{GroupId, Message, NodeId};
use tokio::sync::oneshot;

use super::ctx::NodeCtx;
use super::directory::GroupDirectory;
use super::driver::ApplyThread;
use super::group::GroupTable;
use super::hosting::{GroupBoot, GroupSettings, host};
use super::lease::LeaseClock;
use super::recover::{group_label, open_new_group, prepare_group_files};
use super::requests::{NodeError, Request};
use super::unhost::UnhostOrder;
use super::{NodeHandle, spawn};
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::events::EventLog;
use crate::metrics::Metrics;
use crate::transport::{HostedGroups, SnapshotInbox, SnapshotInboxes};

/// An order to host a replica of `group`, starting from the configuration
/// `voters` (the group's initial members, with addresses). Answered with the
/// group's handle; hosting a group already hosted just answers its handle.
pub(crate) struct HostOrder {
    pub(crate) group: GroupId,
    pub(crate) voters: BTreeMap<NodeId, String>,
    pub(crate) reply: oneshot::Sender<Result<NodeHandle, NodeError>>,
}

/// An order about which groups the node hosts, for the consensus thread.
#[derive(Debug)]
pub(crate) enum Order {
    /// Host a replica of a group.
    Host(HostOrder),
    /// Stop hosting one and delete it (`unhost.rs`).
    Unhost(UnhostOrder),
    /// The nodes of the cluster map with their addresses: the transport keeps
    /// a connection to each, besides group 1's members.
    Peers(BTreeMap<NodeId, String>),
}

/// Where host and unhost orders go: the consensus thread. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HostSender {
    tx: Sender<Order>,
}

impl HostSender {
    pub(crate) fn new(tx: Sender<Order>) -> Self {
        HostSender { tx }
    }

    fn send(&self, order: Order) -> Result<(), NodeError> {
        self.tx.try_send(order).map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(_) => {
                NodeError::Overloaded("host orders queue is full".into())
            }
            crossbeam_channel::TrySendError::Disconnected(_) => NodeError::ShuttingDown,
        })
    }

    /// Asks the consensus thread to stop hosting `group` and delete this
    /// node's replica of it (tombstone first, then its files), and waits until
    /// it is done. Stopping a group not hosted here changes nothing; group 1
    /// and the placement group are refused.
    pub async fn unhost(&self, group: GroupId) -> Result<(), NodeError> {
        let (reply, rx) = oneshot::channel();
        self.send(Order::Unhost(UnhostOrder { group, reply }))?;
        rx.await.map_err(|_| NodeError::ShuttingDown)?
    }

    /// Tells the consensus thread the cluster map's nodes (id → address), so
    /// this node reaches the members of its groups that group 1 does not
    /// list. Does not wait.
    pub fn set_peers(&self, peers: BTreeMap<NodeId, String>) -> Result<(), NodeError> {
        self.send(Order::Peers(peers))
    }

    /// Asks the consensus thread to host a replica of `group` from `voters`,
    /// and waits for its handle.
    pub async fn host(
        &self,
        group: GroupId,
        voters: BTreeMap<NodeId, String>,
    ) -> Result<NodeHandle, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.send(Order::Host(HostOrder {
            group,
            voters,
            reply,
        }))?;
        rx.await.map_err(|_| NodeError::ShuttingDown)?
    }
}

impl std::fmt::Debug for HostOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostOrder")
            .field("group", &self.group)
            .field("voters", &self.voters)
            .finish_non_exhaustive()
    }
}

/// What adding a group needs, held by the consensus thread.
pub(crate) struct Hosts {
    pub(crate) cfg: ServerConfig,
    pub(crate) settings: GroupSettings,
    pub(crate) req_tx: Sender<(GroupId, Request)>,
    pub(crate) clock: LeaseClock,
    pub(crate) directory: GroupDirectory,
    pub(crate) hosted: HostedGroups,
    pub(crate) inboxes: SnapshotInboxes,
    /// The consensus thread's own peer queue, where received snapshots go.
    pub(crate) peer_tx: Sender<Message>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) fatal_tx: Sender<String>,
    /// Apply threads started so far, joined when the node stops.
    pub(crate) applies: Vec<ApplyThread>,
}

impl Hosts {
    /// Adds `boot` to `groups` and starts its apply thread; its events go to
    /// `events`. Returns its handle (also listed in the directory).
    pub(crate) fn add(
        &mut self,
        ctx: &NodeCtx,
        groups: &mut GroupTable,
        boot: GroupBoot,
        events: Arc<Mutex<EventLog>>,
    ) -> Result<NodeHandle, ServerError> {
        let kv = boot.kv.clone();
        let store = boot.snapshots.store.clone();
        let hosted = host(ctx, &self.settings, boot, events);
        let group = hosted.group.id();
        let handle = NodeHandle {
            group,
            req_tx: self.req_tx.clone(),
            kv,
            status: hosted.status,
            lease: hosted.group.lease.clone(),
            clock: self.clock,
        };
        let id = self.cfg.id;
        // Group 1's thread keeps its name; others are numbered after it.
        let name = match self.applies.len() {
            0 => format!("keel-apply-{id}"),
            n => format!("keel-apply-{id}-{n}"),
        };
        let applier = hosted.applier;
        self.applies
            .push(spawn(name, self.fatal_tx.clone(), move || applier.run())?);
        groups.insert(hosted.group);
        self.inboxes.register(SnapshotInbox::new(
            id,
            store,
            self.peer_tx.clone(),
            self.metrics.clone(),
        ));
        self.hosted.host(group);
        self.directory.insert(handle.clone());
        Ok(handle)
    }

    /// Carries out `order`. Only a failure that leaves the WAL and the files
    /// out of step is fatal (a restart recovers from both); one before
    /// anything changed is answered to the orderer.
    pub(crate) fn carry_out(
        &mut self,
        ctx: &mut NodeCtx,
        groups: &mut GroupTable,
        order: HostOrder,
    ) -> Result<(), ServerError> {
        let HostOrder {
            group,
            voters,
            reply,
        } = order;
        if let Some(handle) = self.directory.get(group) {
            let _ = reply.send(Ok(handle));
            return Ok(());
        }
        if voters.is_empty() || voters.contains_key(&0) {
            let _ = reply.send(Err(NodeError::Invalid(format!(
                "group {group} needs a configuration of non-zero node ids to start from"
            ))));
            return Ok(());
        }
        let mut events = ctx
            .events
            .lock()
            .expect("event log lock poisoned")
            .labelled(group_label(group));
        events.note(&format!(
            "Node {} hosts a replica of group {group} from now on, starting from voters {:?}.",
            self.cfg.id,
            voters.keys().collect::<Vec<_>>()
        ));
        if let Err(e) = prepare_group_files(&self.cfg, group, &voters) {
            let line = format!("Node {} could not host group {group}: {e}", self.cfg.id);
            tracing::error!("{line}");
            events.note(&line);
            events.flush();
            let _ = reply.send(Err(NodeError::Refused(line)));
            return Ok(());
        }
        let boot = match open_new_group(&self.cfg, &mut ctx.wal, group, voters, &mut events) {
            Ok(boot) => boot,
            Err(e) => {
                events.flush();
                let _ = reply.send(Err(NodeError::ShuttingDown));
                // The WAL may hold the group's new life already: stop, and
                // let recovery sort the files out.
                return Err(ServerError::Fatal(format!(
                    "hosting group {group} failed half-way: {e}"
                )));
            }
        };
        events.flush();
        let handle = self.add(ctx, groups, boot, Arc::new(Mutex::new(events)))?;
        let _ = reply.send(Ok(handle));
        Ok(())
    }
}
