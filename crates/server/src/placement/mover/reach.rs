//! How the mover reaches a group: reads of a slot from the source group (this
//! node's own replica when it hosts one, else a member over `SlotFetch`), and
//! slot-move commands proposed at a group's leader (here when this node leads
//! it, else over `SlotCommand` at the leader the members name).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use keel_placement::{ClusterMap, Slot};
use keel_raft::{GroupId, Index, NodeId, Role};
use keel_storage::command::{Command, SlotCommand};
use keel_storage::kv::slots::copy::{
    self, ChangePage, CopyError, SlotPage, ValuePage, VersionPage,
};
use keel_storage::kv::{ApplyOutcome, KvReadView, SlotState};

use super::error::MoveError;
use crate::node::{GroupDirectory, NodeHandle};
use crate::transport::slot_service::FETCH_BARRIER_TIMEOUT;
use crate::transport::slots::{SlotPeer, SlotPeerError};
use crate::transport::{LocalIdentity, PeerConnector};

/// How long a proposed slot-move command may take to apply.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many NOT_LEADER hints a proposal follows before giving up this attempt.
const MAX_HINTS: usize = 3;

/// A group as the map describes it: its members and their addresses.
#[derive(Clone, Debug)]
pub(crate) struct GroupAt {
    pub(crate) group: GroupId,
    pub(crate) members: Vec<(NodeId, String)>,
}

impl GroupAt {
    /// `group`'s members in `map` with the addresses the map gives them.
    pub(crate) fn of(map: &ClusterMap, group: GroupId) -> GroupAt {
        let members = map
            .groups()
            .get(&group)
            .map(|g| {
                g.members
                    .iter()
                    .filter_map(|id| map.nodes().get(id).map(|n| (*id, n.address.clone())))
                    .collect()
            })
            .unwrap_or_default();
        GroupAt { group, members }
    }

    fn address(&self, id: NodeId) -> Option<&str> {
        self.members
            .iter()
            .find(|(m, _)| *m == id)
            .map(|(_, a)| a.as_str())
    }
}

/// What a source read asks for.
#[derive(Clone, Debug)]
pub(crate) enum Read {
    /// A page of keys with versions and values, after a key.
    Page(Option<Bytes>),
    /// A page of the key list with versions, after a key.
    Versions(Option<Bytes>),
    /// The values of these keys.
    Values(Vec<Bytes>),
    /// The keys written since this baseline, by the source's change index
    /// (`None`: start tracking).
    Changes(Option<Index>),
}

/// What a source read answered.
#[derive(Clone, Debug)]
pub(crate) enum Answer {
    Page(SlotPage),
    Versions(VersionPage),
    Values(ValuePage),
    Changes(ChangePage),
}

/// This node's ways to other groups' replicas. Shared by every move the node
/// drives.
#[derive(Debug)]
pub(crate) struct Reach {
    pub(crate) me: NodeId,
    pub(crate) groups: GroupDirectory,
    pub(crate) connector: PeerConnector,
    pub(crate) local: LocalIdentity,
    peers: Mutex<HashMap<String, SlotPeer>>,
}

impl Reach {
    pub(crate) fn new(
        me: NodeId,
        groups: GroupDirectory,
        connector: PeerConnector,
        local: LocalIdentity,
    ) -> Reach {
        Reach {
            me,
            groups,
            connector,
            local,
            peers: Mutex::new(HashMap::new()),
        }
    }

    async fn peer(&self, addr: &str) -> Result<SlotPeer, SlotPeerError> {
        if let Some(peer) = self.peers.lock().expect("peers lock").get(addr) {
            return Ok(peer.clone());
        }
        let peer = SlotPeer::connect(&self.connector, addr, self.local).await?;
        self.peers
            .lock()
            .expect("peers lock")
            .insert(addr.to_string(), peer.clone());
        Ok(peer)
    }

    fn forget(&self, addr: &str) {
        self.peers.lock().expect("peers lock").remove(addr);
    }

    /// Reads `slot` of `source` (at `epoch`) as `read` asks: from this node's
    /// replica after a read barrier if it hosts one, else from each member in
    /// turn until one answers. A refusal of the copy engine is an answer.
    pub(crate) async fn read(
        &self,
        source: &GroupAt,
        slot: Slot,
        epoch: u64,
        read: Read,
    ) -> Result<Answer, MoveError> {
        if let Some(handle) = self.groups.get(source.group) {
            match read_local(&handle, slot, epoch, read.clone()).await {
                Ok(answer) => return Ok(answer),
                Err(MoveError::Copy(e)) => return Err(MoveError::Copy(e)),
                Err(e) => tracing::debug!("reading slot {slot} here failed ({e}); asking members"),
            }
        }
        let mut last = String::from("no member with an address in the map");
        for (id, addr) in source.members.iter().filter(|(id, _)| *id != self.me) {
            match self
                .read_remote(addr, source.group, slot, epoch, read.clone())
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(SlotPeerError::Refused(e)) => return Err(MoveError::Copy(e)),
                Err(e) => {
                    self.forget(addr);
                    last = format!("node {id}: {e}");
                }
            }
        }
        Err(MoveError::Unavailable {
            group: source.group,
            why: last,
        })
    }

    async fn read_remote(
        &self,
        addr: &str,
        group: GroupId,
        slot: Slot,
        epoch: u64,
        read: Read,
    ) -> Result<Answer, SlotPeerError> {
        let peer = self.peer(addr).await?;
        let max = copy::MAX_PAGE_BYTES;
        Ok(match read {
            Read::Page(after) => {
                Answer::Page(peer.fetch_page(group, slot, epoch, after, max).await?)
            }
            Read::Versions(after) => Answer::Versions(
                peer.fetch_versions(group, slot, epoch, after, copy::MAX_VERSION_KEYS)
                    .await?,
            ),
            Read::Values(keys) => {
                Answer::Values(peer.fetch_values(group, slot, epoch, keys, max).await?)
            }
            Read::Changes(since) => {
                Answer::Changes(peer.fetch_changes(group, slot, epoch, since).await?)
            }
        })
    }

    /// Proposes `cmd` in `at`'s group at its leader and answers the slot's
    /// state after it: here if this node's replica leads, else at the leader
    /// its replica or the members name.
    pub(crate) async fn propose(
        &self,
        at: &GroupAt,
        cmd: SlotCommand,
    ) -> Result<SlotState, MoveError> {
        let group = at.group;
        let mut hint = 0;
        if let Some(handle) = self.groups.get(group) {
            let status = handle.status();
            if status.role == Role::Leader {
                return propose_local(&handle, cmd).await;
            }
            hint = status.leader;
        }
        let mut tried = Vec::new();
        let mut last = String::from("no leader found");
        let mut hints = 0;
        loop {
            let next =
                if hint != 0 && hint != self.me && !tried.contains(&hint) && hints < MAX_HINTS {
                    hints += 1;
                    Some(hint)
                } else {
                    at.members
                        .iter()
                        .map(|(id, _)| *id)
                        .find(|id| *id != self.me && !tried.contains(id))
                };
            let Some(id) = next else {
                return Err(MoveError::Unavailable { group, why: last });
            };
            tried.push(id);
            hint = 0;
            let Some(addr) = at.address(id) else {
                continue;
            };
            let result = match self.peer(addr).await {
                Ok(peer) => peer.propose(group, cmd.clone(), STEP_TIMEOUT).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(applied) => {
                    return applied.result.map(|(state, _)| state).map_err(|why| {
                        MoveError::StepRefused {
                            group,
                            step: cmd.step.name(),
                            why,
                        }
                    });
                }
                Err(SlotPeerError::NotLeader { leader }) => {
                    hint = leader;
                    last = format!("node {id} does not lead group {group}");
                }
                Err(e) => {
                    self.forget(addr);
                    last = format!("node {id}: {e}");
                }
            }
        }
    }
}

/// Proposes `cmd` through this node's replica, which should lead its group.
pub(crate) async fn propose_local(
    handle: &NodeHandle,
    cmd: SlotCommand,
) -> Result<SlotState, MoveError> {
    let group = handle.group();
    let step = cmd.step.name();
    let outcome = handle
        .write(Command::Slot(cmd).encode(), STEP_TIMEOUT)
        .await
        .map_err(|e| MoveError::local(group, e))?;
    match outcome {
        ApplyOutcome::SlotStep { state, .. } => Ok(state),
        ApplyOutcome::SlotStepRefused(why) => Err(MoveError::StepRefused {
            group,
            step,
            why: why.to_string(),
        }),
        other => Err(MoveError::Unavailable {
            group,
            why: format!("{step} applied with an unexpected outcome: {other:?}"),
        }),
    }
}

/// Runs `f` on a fresh read view of `handle`'s state machine, off the async
/// runtime (it may read up to a page of values from disk).
pub(crate) async fn with_view<T: Send + 'static>(
    handle: &NodeHandle,
    f: impl FnOnce(&KvReadView) -> Result<T, CopyError> + Send + 'static,
) -> Result<T, MoveError> {
    let group = handle.group();
    let handle = handle.clone();
    tokio::task::spawn_blocking(move || {
        let view = handle.kv().read_view().map_err(CopyError::from)?;
        f(&view).map_err(MoveError::Copy)
    })
    .await
    .map_err(|e| MoveError::Unavailable {
        group,
        why: format!("a slot read stopped: {e}"),
    })?
}

async fn read_local(
    handle: &NodeHandle,
    slot: Slot,
    epoch: u64,
    read: Read,
) -> Result<Answer, MoveError> {
    let group = handle.group();
    handle
        .read_barrier(FETCH_BARRIER_TIMEOUT)
        .await
        .map_err(|e| MoveError::local(group, e))?;
    let max = copy::MAX_PAGE_BYTES;
    let kv = handle.clone();
    with_view(handle, move |view| {
        Ok(match read {
            Read::Page(after) => {
                Answer::Page(copy::fetch_page(view, slot, epoch, after.as_deref(), max)?)
            }
            Read::Versions(after) => Answer::Versions(copy::fetch_versions(
                view,
                slot,
                epoch,
                after.as_deref(),
                copy::MAX_VERSION_KEYS,
            )?),
            Read::Values(keys) => {
                Answer::Values(copy::fetch_values(view, slot, epoch, &keys, max)?)
            }
            Read::Changes(since) => {
                Answer::Changes(copy::fetch_changes(kv.kv(), view, slot, epoch, since)?)
            }
        })
    })
    .await
}
