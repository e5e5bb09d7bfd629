//! One move driven by the target group's leader (`docs/sharding.md`, *Moving
//! a slot*, steps 2–7): copy the slot from the source in rounds, fence it at
//! the source, copy the final delta from fenced views only, seal the copy,
//! have placement commit the move, and serve the slot. The rounds after the
//! bulk copy are in `rounds.rs`.
//!
//! An attempt starts from whatever the target holds: nothing (bulk copy), a
//! copy in progress for this move (catch-up rounds converge on the source
//! whatever the copy holds, so a new leader resumes instead of starting
//! over), a sealed copy (straight to the commit), or a leftover of another
//! move (dropped first).

use std::time::Instant;

use bytes::Bytes;
use keel_placement::Slot;
use keel_storage::command::{MoveStep, SlotCommand};
use keel_storage::kv::SlotState;
use keel_storage::kv::slots::copy::{FenceWitness, MAX_PAGE_BYTES, PageBuilder};

use super::error::MoveError;
use super::pace::Pacer;
use super::reach::{Answer, GroupAt, Reach, Read, propose_local};
use super::timeline::{Phase, Timeline};
use crate::node::NodeHandle;

/// A catch-up round that changes at most this many keys ends the catch-up:
/// the final delta after the fence is about as small, so writes pause only
/// briefly.
pub(crate) const SMALL_ROUND: usize = 1000;
/// The largest ingest entry of a paced copy (see [`Drive::page_bytes`]).
const PACED_PAGE_BYTES: usize = 256 << 10;
/// Most catch-up rounds before fencing anyway (a slot written faster than it
/// can be copied still moves, with a longer pause).
pub(crate) const MAX_CATCH_UP_ROUNDS: u64 = 8;

/// Whether the catch-up ends after a round that changed `items` keys, the
/// round before it `previous` (none after a bulk copy): once a round is small,
/// or no longer shrinks by a quarter — the slot is being written about as fast
/// as a round copies it, so more rounds would only delay the fence (a move
/// under load ran all 8 rounds of 1,100–1,450 keys each, 3.5 s, for a final
/// delta no smaller than the first round's).
fn catch_up_done(items: usize, previous: Option<usize>) -> bool {
    items <= SMALL_ROUND || previous.is_some_and(|p| items.saturating_mul(4) > p.saturating_mul(3))
}

/// Where an attempt got to.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress {
    /// When the source fenced the slot for this move (writes to it pause).
    pub(crate) fenced_at: Option<Instant>,
    /// Where the time went, phase by phase.
    pub(crate) timeline: Timeline,
}

/// One move, seen from its target's leader.
pub(crate) struct Drive<'a> {
    pub(crate) reach: &'a Reach,
    /// This node's replica of the target group, which leads it.
    pub(crate) target: NodeHandle,
    /// The source group.
    pub(crate) source: GroupAt,
    pub(crate) slot: Slot,
    pub(crate) epoch: u64,
    /// Bytes a second the bulk copy and catch-up rounds may move (`None`: no
    /// limit); see `pace.rs`.
    pub(crate) copy_rate: Option<u64>,
}

impl Drive<'_> {
    fn command(&self, step: MoveStep) -> SlotCommand {
        SlotCommand {
            slot: self.slot,
            epoch: self.epoch,
            step,
        }
    }

    /// The most bytes one ingest entry carries: a paced copy proposes
    /// smaller entries, so that each fsync, replication and apply it adds to
    /// its nodes' turns is short (a 1 MiB entry holds up every write batched
    /// with it).
    pub(super) fn page_bytes(&self) -> usize {
        if self.copy_rate.is_some() {
            PACED_PAGE_BYTES
        } else {
            MAX_PAGE_BYTES
        }
    }

    /// Proposes a copy's ingest entries (`PageBuilder`'s pages) in the
    /// target group, in order.
    pub(super) async fn stage_pages(&self, pages: Vec<SlotCommand>) -> Result<(), MoveError> {
        for cmd in pages {
            propose_local(&self.target, cmd).await?;
        }
        Ok(())
    }

    /// Proposes `step` in the target group (here).
    async fn here(&self, step: MoveStep) -> Result<SlotState, MoveError> {
        propose_local(&self.target, self.command(step)).await
    }

    /// Brings the target to a sealed copy of the slot as of the source's
    /// fence; `progress` says how far it got, also when it fails.
    pub(crate) async fn seal(&self, progress: &mut Progress) -> Result<(), MoveError> {
        let held = self.target.kv().slot_state(self.slot);
        let mut round = 1;
        // The source's index the next round asks its changes since (none: a
        // resumed copy, whose rounds so far the source did not track).
        let mut baseline = None;
        match held {
            SlotState::Ingested { epoch } if epoch == self.epoch => return Ok(()),
            SlotState::Staging { epoch } if epoch == self.epoch => {}
            other => {
                self.clear(other).await?;
                let began = Instant::now();
                // Tracking starts before the first page is read, so every
                // write the copy might miss is recorded.
                baseline = self.track().await?;
                let keys = self.bulk_copy().await?;
                progress.timeline.bulk = Some(Phase::since(began, keys));
            }
        }
        let mut previous = None;
        while round <= MAX_CATCH_UP_ROUNDS {
            let began = Instant::now();
            let (items, listed) = self.round(round, &mut baseline, None).await?;
            progress
                .timeline
                .rounds
                .push(Phase::since(began, items).listed(listed));
            round += 1;
            if catch_up_done(items, previous) {
                break;
            }
            previous = Some(items);
        }
        let fenced = self
            .reach
            .propose(&self.source, self.command(MoveStep::Fence))
            .await?;
        if fenced != (SlotState::Fenced { epoch: self.epoch }) {
            return Err(MoveError::StepRefused {
                group: self.source.group,
                step: MoveStep::Fence.name(),
                why: format!("the slot is {fenced} after the fence"),
            });
        }
        let fenced_at = Instant::now();
        progress.fenced_at = Some(fenced_at);
        let mut witness = FenceWitness::new(self.slot, self.epoch);
        let (items, listed) = self.round(round, &mut baseline, Some(&mut witness)).await?;
        progress.timeline.last = Some(Phase::since(fenced_at, items).listed(listed));
        let seal = witness.seal()?;
        propose_local(&self.target, seal).await?;
        Ok(())
    }

    /// Drops whatever the target holds of the slot from an earlier move, a
    /// batch per entry, until it is absent.
    async fn clear(&self, mut held: SlotState) -> Result<(), MoveError> {
        while let Some(epoch) = held.epoch() {
            let drop = SlotCommand {
                slot: self.slot,
                epoch,
                step: MoveStep::Drop {
                    map_version: self.epoch,
                },
            };
            held = propose_local(&self.target, drop).await?;
        }
        if held == SlotState::Absent {
            Ok(())
        } else {
            Err(MoveError::StepRefused {
                group: self.target.group(),
                step: "INGEST-SLOT",
                why: format!("the target holds the slot as {held}, not absent"),
            })
        }
    }

    /// Round 0: every key of the source's slot into the target's staging;
    /// how many keys it copied.
    async fn bulk_copy(&self) -> Result<usize, MoveError> {
        let mut keys = 0;
        let mut builder = PageBuilder::new(self.slot, self.epoch, 0, self.page_bytes());
        let mut cursor: Option<Bytes> = None;
        let mut pace = Pacer::new(self.copy_rate);
        loop {
            let Answer::Page(page) = self
                .reach
                .read(
                    &self.source,
                    self.slot,
                    self.epoch,
                    Read::Page(cursor.clone()),
                )
                .await?
            else {
                unreachable!("a page read answers a page");
            };
            cursor = page.puts.last().map(|p| p.key.clone()).or(cursor);
            keys += page.puts.len();
            pace.after(&page.puts).await;
            builder.add(page.puts, Vec::new())?;
            self.stage_pages(builder.take_ready()).await?;
            if !page.more {
                break;
            }
        }
        self.stage_pages(builder.finish()).await?;
        Ok(keys)
    }

    /// Serves the slot here once the map names this group its owner
    /// (`OwnSlot`).
    pub(crate) async fn own(&self, map_version: u64) -> Result<SlotState, MoveError> {
        self.here(MoveStep::Own { map_version }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catch_up_ends_when_a_round_is_small_or_stops_shrinking() {
        // Small: done, whatever came before.
        assert!(catch_up_done(SMALL_ROUND, None));
        assert!(catch_up_done(10, Some(5)));
        // Large after the bulk copy: another round.
        assert!(!catch_up_done(63_000, None));
        // Shrinking by more than a quarter: another round.
        assert!(!catch_up_done(1_079, Some(3_033)));
        assert!(!catch_up_done(7_500, Some(10_000)));
        // Not shrinking (or by less than a quarter): fence now.
        assert!(catch_up_done(1_149, Some(1_079)));
        assert!(catch_up_done(7_501, Some(10_000)));
    }
}
