//! The slot mover (`docs/sharding.md`, *Moving a slot*): on every node, for
//! every data group whose replica here leads, the moves and leftovers the
//! cluster map and the group's slot table call for (`actions.rs`).
//!
//! - A move *to* the group is driven here (`drive.rs`): copy, fence the
//!   source, final delta, seal, `CommitSlotMove` through the placement group,
//!   `OwnSlot`. A failed attempt is tried again; a move that has not
//!   committed [`MOVE_TIMEOUT`] after this node began driving it, or
//!   [`HANDOFF_TIMEOUT`] after it fenced the source (writes to the slot are
//!   paused from the fence), is aborted (`AbortSlotMove`); as a backstop the
//!   placement leader aborts any move in flight for [`WATCHDOG_TIMEOUT`]
//!   (`watchdog.rs`).
//! - What a move that ended left behind is finished by whichever group holds
//!   it: the target serves a committed copy (`OwnSlot`), the source drops its
//!   copy after a commit (`DropSlot`) or serves it again after an abort
//!   (`UnfenceSlot`), the target of an aborted move drops its copy.
//!
//! The map is never trusted for what a group holds (its own slot table says),
//! only for what placement decided; a step that finds the world otherwise is
//! refused by the state machine and changes nothing.

mod actions;
mod drive;
mod error;
mod pace;
mod reach;
mod rounds;
mod timeline;
mod watchdog;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_placement::{Command, PLACEMENT_GROUP, Slot};
use keel_raft::{GroupId, Role};
use keel_storage::command::{MoveStep, SlotCommand};
use keel_storage::kv::SlotState;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::actions::{SlotAction, slot_actions};
use self::drive::{Drive, Progress};
use self::error::MoveError;
pub(crate) use self::reach::Reach;
use self::reach::{GroupAt, propose_local};
use self::watchdog::{WATCHDOG_TIMEOUT, Watchdog};
use crate::api::ApiContext;
use crate::node::NodeHandle;

/// How often the slot tables are looked at again though the map did not
/// change (a step that failed is retried then).
const RECHECK: Duration = Duration::from_secs(1);
/// Pause between two attempts of one move.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// A move this node drives that has not committed this long after it began
/// driving it is aborted.
pub(crate) const MOVE_TIMEOUT: Duration = Duration::from_secs(60);
/// A move whose source fenced the slot (so its writes pause) and that has not
/// committed this long after is aborted.
pub(crate) const HANDOFF_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one attempt at a move may take before it is given up (and tried
/// again, or aborted once a timeout above has passed).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Most moves one node drives at a time.
const MAX_DRIVES: usize = 4;

/// What the mover needs of the node.
pub(crate) struct Mover {
    pub(crate) ctx: Arc<ApiContext>,
    pub(crate) reach: Reach,
    /// Bytes a second a slot copy may move before its fence (`None`: no
    /// limit; `--slot-copy-bytes-per-sec`).
    pub(crate) copy_rate: Option<u64>,
}

/// Runs until `stop`: on every new map version and every [`RECHECK`], starts
/// a task for each action a led group needs and no task is working on yet.
pub(crate) async fn run(mover: Arc<Mover>, mut stop: watch::Receiver<bool>) {
    let mut updates = mover.ctx.maps.subscribe();
    let mut running: HashMap<(GroupId, Slot), (bool, JoinHandle<()>)> = HashMap::new();
    let mut watchdog = Watchdog::default();
    loop {
        running.retain(|_, (_, task)| !task.is_finished());
        let map = updates.borrow_and_update().clone();
        if let Some(map) = map {
            watch_moves(&mover, &map.map, &mut watchdog);
            for handle in mover.ctx.groups.all() {
                let group = handle.group();
                if group == PLACEMENT_GROUP || handle.status().role != Role::Leader {
                    continue;
                }
                let held = handle.kv().slots_in_moves();
                for action in slot_actions(&map.map, group, held) {
                    let (slot, drive) = match action {
                        SlotAction::Drive { slot, .. } => (slot, true),
                        SlotAction::Own { slot, .. }
                        | SlotAction::Unfence { slot, .. }
                        | SlotAction::Drop { slot, .. } => (slot, false),
                    };
                    let drives = running.values().filter(|(d, _)| *d).count();
                    if running.contains_key(&(group, slot)) || (drive && drives >= MAX_DRIVES) {
                        continue;
                    }
                    let task = tokio::spawn(act(mover.clone(), handle.clone(), action));
                    running.insert((group, slot), (drive, task));
                }
            }
        }
        tokio::select! {
            changed = updates.changed() => if changed.is_err() { break },
            () = tokio::time::sleep(RECHECK) => {}
            _ = stop.changed() => break,
        }
    }
    for (_, (_, task)) in running {
        task.abort();
    }
}

/// On the placement leader, aborts every move in flight for longer than
/// [`WATCHDOG_TIMEOUT`] (in the background: an abort is a map change).
fn watch_moves(mover: &Arc<Mover>, map: &keel_placement::ClusterMap, watchdog: &mut Watchdog) {
    let leads = mover
        .ctx
        .placement
        .node
        .as_ref()
        .is_some_and(|n| n.status().role == Role::Leader);
    if !leads {
        watchdog.reset();
        return;
    }
    for (slot, epoch) in watchdog.overdue(map, Instant::now(), WATCHDOG_TIMEOUT) {
        let mover = mover.clone();
        tokio::spawn(async move { abort(&mover, slot, epoch).await });
    }
}

/// Carries out one action on `handle`'s group; failures are logged and the
/// action comes up again at the next check.
async fn act(mover: Arc<Mover>, handle: NodeHandle, action: SlotAction) {
    let group = handle.group();
    let result = match action {
        SlotAction::Drive { slot, epoch, from } => {
            drive(&mover, handle, slot, epoch, from).await;
            return;
        }
        SlotAction::Own { slot, epoch } => {
            let map_version = mover.ctx.maps.version();
            step(&handle, slot, epoch, MoveStep::Own { map_version }).await
        }
        SlotAction::Unfence { slot, epoch } => step(&handle, slot, epoch, MoveStep::Unfence).await,
        SlotAction::Drop { slot, epoch } => {
            let map_version = mover.ctx.maps.version();
            let mut result = Ok(SlotState::Releasing { epoch });
            while matches!(result, Ok(SlotState::Releasing { .. })) {
                result = step(&handle, slot, epoch, MoveStep::Drop { map_version }).await;
            }
            result
        }
    };
    match result {
        Ok(state) => tracing::info!("group {group}: {action:?} done, the slot is {state}"),
        Err(e) => tracing::warn!("group {group}: {action:?} failed: {e}"),
    }
}

async fn step(
    handle: &NodeHandle,
    slot: Slot,
    epoch: u64,
    step: MoveStep,
) -> Result<SlotState, MoveError> {
    propose_local(handle, SlotCommand { slot, epoch, step }).await
}

/// Drives the move of `slot` at `epoch` from `from` into `target`'s group
/// until it commits and the slot is served here, the move ends otherwise,
/// this node stops leading the group, or the move times out and is aborted.
async fn drive(mover: &Mover, target: NodeHandle, slot: Slot, epoch: u64, from: GroupId) {
    let group = target.group();
    let began = Instant::now();
    let mut fenced_at: Option<Instant> = None;
    loop {
        let Some(map) = mover.ctx.maps.current() else {
            return;
        };
        let in_flight = map
            .map
            .moves()
            .get(&slot)
            .is_some_and(|mv| mv.epoch == epoch && mv.to == group);
        if !in_flight || target.status().role != Role::Leader {
            // Ended (the leftover rules finish it) or another leader drives it.
            return;
        }
        let run = Drive {
            reach: &mover.reach,
            target: target.clone(),
            source: GroupAt::of(&map.map, from),
            slot,
            epoch,
            copy_rate: mover.copy_rate,
        };
        let mut progress = Progress::default();
        let attempt = async {
            run.seal(&mut progress).await?;
            commit(mover, &run).await?;
            progress.timeline.paused = progress.fenced_at.map(|at| at.elapsed());
            Ok(())
        };
        // A call that hangs (a partitioned peer) ends the attempt, so the
        // timeouts below are checked.
        let result = tokio::time::timeout(ATTEMPT_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(MoveError::Unavailable {
                    group,
                    why: format!("no progress within {ATTEMPT_TIMEOUT:?}"),
                })
            });
        fenced_at = fenced_at.or(progress.fenced_at);
        let e = match result {
            Ok(()) => {
                tracing::info!(
                    "slot {slot} moved from group {from} to group {group} (epoch {epoch}) in \
                     {} ms: {}",
                    began.elapsed().as_millis(),
                    progress.timeline
                );
                return;
            }
            Err(MoveError::NotLeading(_)) => return,
            Err(e) => e,
        };
        let timed_out = began.elapsed() >= MOVE_TIMEOUT
            || fenced_at.is_some_and(|at| at.elapsed() >= HANDOFF_TIMEOUT);
        tracing::warn!("moving slot {slot} to group {group} (epoch {epoch}): {e}");
        if timed_out {
            abort(mover, slot, epoch).await;
            return;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// Has placement commit the move, then serves the slot here. If the
/// commit's outcome is unknown the next check reads the map: the target owns
/// the slot (the leftover rules serve it), or the move is still in flight
/// (the drive commits again), or it was aborted.
async fn commit(mover: &Mover, run: &Drive<'_>) -> Result<(), MoveError> {
    let command = Command::CommitSlotMove {
        slot: run.slot,
        epoch: run.epoch,
    };
    let version = change_map(&mover.ctx, &command).await?;
    run.own(version).await.map(|_| ())
}

/// Asks placement to abort the move; the leftover rules then unfence the
/// source and drop the target's copy. A failure is logged: the move comes up
/// again at the next check, and is aborted then.
async fn abort(mover: &Mover, slot: Slot, epoch: u64) {
    match change_map(&mover.ctx, &Command::AbortSlotMove { slot, epoch }).await {
        Ok(_) => tracing::warn!("aborted the move of slot {slot} (epoch {epoch}): it timed out"),
        Err(e) => tracing::warn!("cannot abort the move of slot {slot} (epoch {epoch}): {e}"),
    }
}

/// Applies `command` to the cluster map through the placement group (here or
/// forwarded to its leader); the map's version after it.
async fn change_map(ctx: &ApiContext, command: &Command) -> Result<u64, MoveError> {
    match ctx.change_map_as_node(command).await {
        Ok(resp) => Ok(resp.version),
        Err(e) => Err(MoveError::Map(format!("{:?}: {}", e.kind(), e.message))),
    }
}
