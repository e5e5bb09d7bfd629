//! The final round's evidence that A fenced the slot, and the seal built from
//! it.

use keel_placement::Slot;
use keel_raft::Index;

use super::{CopyError, SourceView};
use crate::command::{MoveStep, SlotCommand};
use crate::kv::slots::SlotState;

/// Collects, over the final round, what every source answer said, and builds
/// `SlotIngested` only if each came from a view that had fenced the slot for
/// the move's epoch (`docs/sharding.md`, step 5: B refuses to go on without
/// that evidence). Such views all hold the slot's data as at the fence, so a
/// round read from them is the complete copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FenceWitness {
    slot: Slot,
    epoch: u64,
    /// The earliest fenced view's applied index and the largest revision seen.
    seen: Option<(Index, u64)>,
}

impl FenceWitness {
    /// A witness of the final round of the move of `slot` at `epoch`.
    pub fn new(slot: Slot, epoch: u64) -> FenceWitness {
        FenceWitness {
            slot,
            epoch,
            seen: None,
        }
    }

    /// Records one answer the round uses; refuses one from a view that had not
    /// fenced the slot for this epoch (the round must start over, after the
    /// fence).
    pub fn witness(&mut self, source: &SourceView) -> Result<(), CopyError> {
        if !source.is_fenced_for(self.epoch) {
            return Err(CopyError::NotFenced {
                slot: self.slot,
                epoch: self.epoch,
                found: source.state,
            });
        }
        let (index, revision) = self
            .seen
            .get_or_insert((source.applied_index, source.revision));
        *index = (*index).min(source.applied_index);
        *revision = (*revision).max(source.revision);
        Ok(())
    }

    /// `SlotIngested{fence_index, revision}`: the earliest fenced view's
    /// applied index (at or after the fence) and A's largest revision seen (at
    /// least its revision at the fence). Refused if the round witnessed
    /// nothing.
    pub fn seal(&self) -> Result<SlotCommand, CopyError> {
        let (fence_index, revision) = self.seen.ok_or(CopyError::NotFenced {
            slot: self.slot,
            epoch: self.epoch,
            found: SlotState::Absent,
        })?;
        Ok(SlotCommand {
            slot: self.slot,
            epoch: self.epoch,
            step: MoveStep::Ingested {
                fence_index,
                revision,
            },
        })
    }
}
