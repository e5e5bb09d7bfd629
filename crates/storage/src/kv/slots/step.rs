//! Executing a slot-move command: the rules of each step.
//!
//! | step | from | to | already in effect |
//! |---|---|---|---|
//! | `FenceSlot(e)` | serving | fenced(e) | fenced(e) |
//! | `UnfenceSlot(e)` | fenced(e) | serving | serving |
//! | `IngestSlot(e)`, round 0 page 0 | absent | staging(e), offset raised | — |
//! | `IngestSlot(e)`, other pages | staging(e) | staging(e), offset raised | — |
//! | `SlotIngested(e)` | staging(e) | ingested(e), offset raised | ingested(e) |
//! | `OwnSlot(e)` | ingested(e) | serving | serving |
//! | `DropSlot(e)` | fenced, staging, ingested or releasing (e) | releasing(e), or absent once no key is left | absent |
//!
//! Anything else is refused. "Offset raised": the revision offset grows so that
//! every later revision exceeds the page's versions, or the source's revision
//! at the fence. Beginning a copy needs an absent slot, so a slot
//! with data from an abandoned attempt is dropped first: a drop deletes at most
//! [`MAX_DROP_KEYS`] keys per entry, which keeps every entry's work bounded.

use bytes::Bytes;
use keel_placement::{Slot, slot_for_key};
use keel_raft::Index;

use super::refusal::SlotCommandError;
use super::state::SlotState;
use super::{MAX_DROP_KEYS, MAX_REVISION};
use crate::command::{IngestPage, MoveStep, SlotCommand};
use crate::kv::apply::Machine;
use crate::kv::error::KvError;
use crate::kv::outcome::ApplyOutcome;

/// Runs `cmd`, committed at `index`.
pub(crate) fn execute(
    m: &mut Machine<'_, '_>,
    index: Index,
    cmd: &SlotCommand,
) -> Result<ApplyOutcome, KvError> {
    let (slot, epoch) = (cmd.slot, cmd.epoch);
    let found = m.slots.get(slot);
    let at_epoch = found.epoch() == Some(epoch);
    let refuse = |needs: &'static str| {
        Ok(ApplyOutcome::SlotStepRefused(
            SlotCommandError::WrongState {
                step: cmd.step.name(),
                slot,
                epoch,
                found,
                needs,
            },
        ))
    };
    let mut removed = 0;
    let next = match &cmd.step {
        MoveStep::Fence => match found {
            SlotState::Serving => SlotState::Fenced { epoch },
            SlotState::Fenced { .. } if at_epoch => found,
            _ => return refuse("serving"),
        },
        MoveStep::Unfence => match found {
            SlotState::Fenced { .. } if at_epoch => SlotState::Serving,
            SlotState::Serving => found,
            _ => return refuse("fenced at this epoch"),
        },
        MoveStep::Ingest(page) => {
            let may = if page.begins_copy() {
                found == SlotState::Absent
            } else {
                found == SlotState::Staging { epoch }
            };
            if !may {
                return refuse(if page.begins_copy() {
                    "absent (drop an earlier copy first)"
                } else {
                    "staging at this epoch"
                });
            }
            if let Some(refused) = key_outside(slot, page) {
                return Ok(ApplyOutcome::SlotStepRefused(refused));
            }
            let top = page.puts.iter().map(|p| p.version).max().unwrap_or(0);
            if top > MAX_REVISION {
                return Ok(ApplyOutcome::SlotStepRefused(
                    SlotCommandError::RevisionTooLarge(top),
                ));
            }
            for put in &page.puts {
                m.space.put(&put.key, put.version, &put.value)?;
            }
            for key in &page.deletes {
                m.space.remove(key)?;
            }
            raise_offset(m, index, top);
            SlotState::Staging { epoch }
        }
        MoveStep::Ingested { revision, .. } => {
            if *revision > MAX_REVISION {
                return Ok(ApplyOutcome::SlotStepRefused(
                    SlotCommandError::RevisionTooLarge(*revision),
                ));
            }
            let next = match found {
                SlotState::Staging { .. } if at_epoch => SlotState::Ingested { epoch },
                SlotState::Ingested { .. } if at_epoch => found,
                _ => return refuse("staging at this epoch"),
            };
            // Covers versions the copy does not show: a key the source deleted
            // still had them, and a compare-and-set may name one. Raised on a
            // retry too: the offset only grows, so that is harmless.
            raise_offset(m, index, *revision);
            next
        }
        MoveStep::Own { .. } => match found {
            SlotState::Ingested { .. } if at_epoch => SlotState::Serving,
            SlotState::Serving => found,
            _ => return refuse("ingested at this epoch"),
        },
        MoveStep::Drop { .. } => match found {
            SlotState::Absent => found,
            SlotState::Fenced { .. }
            | SlotState::Staging { .. }
            | SlotState::Ingested { .. }
            | SlotState::Releasing { .. }
                if at_epoch =>
            {
                let (count, left) = drop_batch(m, slot)?;
                removed = count;
                if left {
                    SlotState::Releasing { epoch }
                } else {
                    SlotState::Absent
                }
            }
            _ => return refuse("fenced, staging, ingested or releasing at this epoch"),
        },
    };
    if next != found {
        m.slots.set(slot, next);
        m.slots_changed = true;
    }
    Ok(ApplyOutcome::SlotStep {
        state: next,
        keys_removed: removed,
    })
}

/// Raises the revision offset so that the next entry's revision (index + 1 +
/// offset) exceeds `version`: a version stored or promised here is never
/// handed out again, so versions of a key never go backwards.
fn raise_offset(m: &mut Machine<'_, '_>, index: Index, version: u64) {
    m.revision_offset = m.revision_offset.max(version.saturating_sub(index));
}

/// The first key of `page` that belongs to another slot, as a refusal.
fn key_outside(slot: Slot, page: &IngestPage) -> Option<SlotCommandError> {
    let keys = page.puts.iter().map(|p| &p.key).chain(&page.deletes);
    keys.map(|key| (key, slot_for_key(key)))
        .find(|(_, key_slot)| *key_slot != slot)
        .map(|(key, key_slot)| SlotCommandError::KeyOutsideSlot {
            slot,
            key: Bytes::clone(key),
            key_slot,
        })
}

/// Deletes up to [`MAX_DROP_KEYS`] keys of `slot` (the first in key order, so
/// every replica deletes the same ones); returns how many, and whether any key
/// of the slot is left.
fn drop_batch(m: &mut Machine<'_, '_>, slot: Slot) -> Result<(u64, bool), KvError> {
    let keys = m.space.keys_in_slot(slot, MAX_DROP_KEYS + 1)?;
    let left = keys.len() > MAX_DROP_KEYS;
    let mut removed = 0;
    for key in keys.iter().take(MAX_DROP_KEYS) {
        m.space.remove(key)?;
        removed += 1;
    }
    Ok((removed, left))
}
