//! Atomic adds (`Kv.Add`, and the Redis protocol's INCR family): one
//! [`Command::Add`], executed by the state machine, so concurrent adds never lose
//! an update.

use keel_proto::error::ErrorDetail;
use keel_proto::v1::{AddRequest, AddResponse};
use keel_storage::command::{Command, Envelope};
use keel_storage::kv::ApplyOutcome;

use super::ops::Forwarding;
use super::{ApiContext, validate};
use crate::node::NodeError;

impl ApiContext {
    pub(crate) async fn add(
        &self,
        req: AddRequest,
        fwd: Forwarding,
    ) -> Result<AddResponse, ErrorDetail> {
        validate::key(&req.key)?;
        let node = self.group_for_key(&req.key)?;
        let cmd = Envelope::from(Command::Add {
            key: req.key.clone(),
            delta: req.delta,
        });
        match self.propose(&node, cmd).await {
            Ok(outcome) => add_response(outcome),
            Err(NodeError::NotLeader { leader }) if leader != 0 && fwd == Forwarding::Allowed => {
                self.forward_kv(&self.address_of(leader), true, |mut c| async move {
                    c.add(req).await
                })
                .await
            }
            Err(e) => Err(self.error(e)),
        }
    }
}

/// The answer to an applied add: the new value, or why nothing changed.
pub(crate) fn add_response(outcome: ApplyOutcome) -> Result<AddResponse, ErrorDetail> {
    match outcome {
        ApplyOutcome::Added { revision, value } => Ok(AddResponse { value, revision }),
        ApplyOutcome::AddRefused(why) => Err(ErrorDetail::invalid_argument(why.to_string())),
        other => Err(ErrorDetail::internal(format!(
            "unexpected outcome of an add: {other:?}"
        ))),
    }
}
