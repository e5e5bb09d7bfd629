//! Changing the cluster map: an operator's command (create or remove a group,
//! change its target replica count, ...), applied by the placement group.

use keel_placement::{ClusterMap, Command, GroupId};
use keel_proto::v1::{self, ChangeMapResponse};

use crate::call::{Op, Route};
use crate::client::Client;
use crate::error::Error;

/// What a map change did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeMapOutcome {
    /// Whether the map changed (false: the command was already true).
    pub changed: bool,
    /// The map after the command, as the placement leader wrote (or read) it.
    pub map: ClusterMap,
    /// The id a [`Command::CreateGroup`] gave the new group.
    pub created_group: Option<GroupId>,
}

impl Client {
    /// Applies `command` to the cluster map. Any endpoint takes the call and
    /// passes it to the placement group's leader; the command is checked
    /// completely there before anything changes.
    ///
    /// Errors: [`Error::Refused`] when the map refuses the command (the
    /// message says why; nothing changed, and retrying fails the same way),
    /// [`Error::InvalidArgument`] for a command the server cannot read.
    /// Failures that prove nothing changed (no placement leader, the map
    /// changing under the change) are retried until the deadline, then
    /// reported as [`Error::Unavailable`] or [`Error::Overloaded`]. A change
    /// that may or may not have been applied is [`Error::OutcomeUnknown`] and
    /// is not retried: read the map first, since [`Command::CreateGroup`]
    /// applied twice makes two groups (and a slot move's commit or abort
    /// applied twice is refused the second time).
    pub async fn change_map(&self, command: &Command) -> Result<ChangeMapOutcome, Error> {
        let command_json = String::from_utf8(command.encode())
            .map_err(|e| Error::InvalidArgument(format!("command is not UTF-8: {e}")))?;
        let message = v1::ChangeMapRequest { command_json };
        // Route::Leader only picks where to start: every node forwards the
        // call to the placement leader itself and never answers NOT_LEADER
        // for it, so the client's view of group 1's leader is left alone.
        let resp = self
            .cluster_call(Op::Write, Route::Leader, message, |mut c, r| async move {
                c.change_map(r).await
            })
            .await?;
        outcome(resp)
    }
}

/// The outcome a node sent, with its map checked as every copy is.
fn outcome(resp: ChangeMapResponse) -> Result<ChangeMapOutcome, Error> {
    let map = crate::map::checked_map(&resp.map_json, resp.version)?;
    Ok(ChangeMapOutcome {
        changed: resp.changed,
        map,
        created_group: (resp.created_group != 0).then_some(resp.created_group),
    })
}
