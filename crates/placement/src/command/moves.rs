//! Beginning, committing and aborting slot moves.

use super::apply::Effect;
use crate::error::CommandError;
use crate::ids::{GroupId, MAX_MOVES};
use crate::map::{ClusterMap, SlotMove};
use crate::slot::Slot;

impl ClusterMap {
    pub(super) fn begin_slot_move(
        &mut self,
        slot: Slot,
        to: GroupId,
    ) -> Result<Effect, CommandError> {
        if !self.groups.contains_key(&to) {
            return Err(CommandError::UnknownGroup { group: to });
        }
        // A group exists, so every slot has an owner.
        let from = self
            .owner(slot)
            .ok_or(CommandError::UnknownGroup { group: to })?;
        if let Some(current) = self.moves.get(&slot) {
            if current.to == to {
                return Ok(Effect::Unchanged);
            }
            return Err(CommandError::SlotAlreadyMoving {
                slot,
                to: current.to,
                epoch: current.epoch,
            });
        }
        if from == to {
            return Err(CommandError::AlreadyOwner { slot, group: to });
        }
        if self.moves.len() >= MAX_MOVES {
            return Err(CommandError::TooManyMoves { limit: MAX_MOVES });
        }
        // The version this command is about to produce names the move.
        let epoch = self.version + 1;
        self.moves.insert(slot, SlotMove { from, to, epoch });
        Ok(Effect::Changed)
    }

    pub(super) fn commit_slot_move(
        &mut self,
        slot: Slot,
        epoch: u64,
    ) -> Result<Effect, CommandError> {
        let to = self.move_in_flight(slot, epoch)?.to;
        self.moves.remove(&slot);
        self.owners[slot.index()] = to;
        Ok(Effect::Changed)
    }

    pub(super) fn abort_slot_move(
        &mut self,
        slot: Slot,
        epoch: u64,
    ) -> Result<Effect, CommandError> {
        self.move_in_flight(slot, epoch)?;
        self.moves.remove(&slot);
        Ok(Effect::Changed)
    }

    /// The move of `slot` begun at `epoch`, if it is still in flight.
    fn move_in_flight(&self, slot: Slot, epoch: u64) -> Result<SlotMove, CommandError> {
        match self.moves.get(&slot) {
            Some(m) if m.epoch == epoch => Ok(*m),
            other => Err(CommandError::MoveNotFound {
                slot,
                epoch,
                current: other.map(|m| m.epoch),
            }),
        }
    }
}
