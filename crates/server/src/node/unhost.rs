//! Deleting this node's replica of a data group, once the cluster map and the
//! group's configuration no longer have the node in it (the order comes from
//! `crate::placement::conf_sync`).
//!
//! Order matters for a crash at any point: the group leaves the table first
//! (nothing more is written for it), then its WAL tombstone is made durable,
//! and only then do its files go. A crash before the tombstone is durable
//! leaves a hosted group; one after finds the tombstone and a boot file at
//! start-up, and recovery finishes the deletion (`recover.rs`).

use keel_placement::PLACEMENT_GROUP;
use keel_raft::GroupId;
use tokio::sync::oneshot;

use super::ctx::NodeCtx;
use super::group::{GroupTable, group_note};
use super::host_runtime::Hosts;
use super::recover::{KV_GROUP, delete_group_files};
use super::requests::NodeError;
use crate::error::ServerError;

/// An order to stop hosting `group` and delete the replica.
#[derive(Debug)]
pub(crate) struct UnhostOrder {
    pub(crate) group: GroupId,
    pub(crate) reply: oneshot::Sender<Result<(), NodeError>>,
}

impl Hosts {
    /// Carries out `order`. A WAL failure other than a full disk is fatal (the
    /// WAL is poisoned); with a full disk the tombstone stays buffered and the
    /// files stay until a later write (or a restart) finishes the job.
    pub(crate) fn unhost(
        &mut self,
        ctx: &mut NodeCtx,
        groups: &mut GroupTable,
        order: UnhostOrder,
    ) -> Result<(), ServerError> {
        let UnhostOrder { group, reply } = order;
        if group == KV_GROUP || group == PLACEMENT_GROUP {
            let _ = reply.send(Err(NodeError::Invalid(format!(
                "group {group} is hosted from identity.json and is never deleted this way"
            ))));
            return Ok(());
        }
        let Some(mut gone) = groups.remove(group) else {
            let _ = reply.send(Ok(()));
            return Ok(());
        };
        // Nothing reaches the group from here on: requests still queued for
        // it are refused as for a group not hosted (`Driver::handle_request`).
        self.directory.remove(group);
        self.hosted.unhost(group);
        self.inboxes.unregister(group);
        // Nothing waiting in it was proposed: say why it will not be.
        let refusal = NodeError::Refused(format!("this node no longer hosts group {group}"));
        gone.reads.fail_all_with(&refusal);
        gone.refuse_deferred_changes(&refusal);
        let line = format!(
            "Node {} no longer hosts group {group}: the cluster map and the group's \
             configuration no longer list it; deleting its replica.",
            self.cfg.id
        );
        tracing::info!("{line}");
        group_note(&gone.events, &line);
        // Dropping the entry hangs up on its apply thread, which finishes its
        // queue and stops; its join handle stays in `applies` for shutdown.
        let events = gone.events.clone();
        drop(gone);
        ctx.metrics.groups.forget(group);
        if let Err(e) = ctx.wal.remove_group(group).and_then(|()| ctx.wal.sync()) {
            if e.is_no_space() {
                let line = format!(
                    "Node {}: group {group}'s tombstone waits for disk space; its files \
                     stay until it is written: {e}",
                    self.cfg.id
                );
                group_note(&events, &line);
                let _ = reply.send(Err(NodeError::DiskFull(line)));
                return Ok(());
            }
            let _ = reply.send(Err(NodeError::ShuttingDown));
            return Err(ServerError::Fatal(format!(
                "WAL write failed while deleting group {group}'s replica: {e}"
            )));
        }
        let result = delete_group_files(&self.cfg.data_dir, group);
        let line = match &result {
            Ok(()) => format!("Node {} deleted its replica of group {group}.", self.cfg.id),
            Err(e) => format!(
                "Node {} could not delete all files of group {group} (a restart finishes \
                 it): {e}",
                self.cfg.id
            ),
        };
        group_note(&events, &line);
        let _ = reply.send(result.map_err(|e| NodeError::Refused(e.to_string())));
        Ok(())
    }
}
