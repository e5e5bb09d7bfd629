//! Turning a round's puts and deletes into `IngestSlot` commands.

use bytes::Bytes;
use keel_placement::{Slot, slot_for_key};

use super::{CopyError, MAX_PAGE_BYTES, item_cost};
use crate::command::{IngestPage, IngestPut, MAX_INGEST_ITEMS, MoveStep, SlotCommand};

/// Builds one round's `IngestSlot` commands: pages of at most
/// [`MAX_INGEST_ITEMS`] items and the byte budget (one oversized item alone),
/// numbered from 0 within the round. Items must come in strictly increasing
/// key order over the whole round, which makes every page canonical (each list
/// sorted, no key both stored and deleted).
///
/// Round 0 always yields at least its page 0, even for an empty slot: that
/// page begins the copy (absent → staging). Later rounds yield nothing when
/// nothing changed.
#[derive(Debug)]
pub struct PageBuilder {
    slot: Slot,
    epoch: u64,
    round: u64,
    budget: usize,
    /// Pages sealed so far in this round.
    numbered: u64,
    page: IngestPage,
    used: usize,
    last_key: Option<Bytes>,
    ready: Vec<SlotCommand>,
}

impl PageBuilder {
    /// A builder for `round` of the move of `slot` at `epoch`, with pages of
    /// at most `max_bytes` (at most [`MAX_PAGE_BYTES`]).
    pub fn new(slot: Slot, epoch: u64, round: u64, max_bytes: usize) -> PageBuilder {
        PageBuilder {
            slot,
            epoch,
            round,
            budget: max_bytes.min(MAX_PAGE_BYTES),
            numbered: 0,
            page: IngestPage {
                round,
                ..IngestPage::default()
            },
            used: 0,
            last_key: None,
            ready: Vec::new(),
        }
    }

    /// Adds one step's puts and deletes (each in key order, no key in both),
    /// merged by key.
    pub fn add(&mut self, puts: Vec<IngestPut>, deletes: Vec<Bytes>) -> Result<(), CopyError> {
        let mut deletes = deletes.into_iter().peekable();
        for put in puts {
            while let Some(key) = deletes.next_if(|key| *key < put.key) {
                self.push(None, key)?;
            }
            let key = put.key.clone();
            self.push(Some(put), key)?;
        }
        for key in deletes {
            self.push(None, key)?;
        }
        Ok(())
    }

    /// The full pages so far, in the order they must be proposed.
    pub fn take_ready(&mut self) -> Vec<SlotCommand> {
        std::mem::take(&mut self.ready)
    }

    /// The remaining pages, the last one included (see the type's docs for
    /// round 0).
    pub fn finish(mut self) -> Vec<SlotCommand> {
        let empty = self.page.puts.is_empty() && self.page.deletes.is_empty();
        if !empty || (self.round == 0 && self.numbered == 0) {
            self.seal();
        }
        self.ready
    }

    /// Adds a put (`Some`) or a delete of `key`.
    fn push(&mut self, put: Option<IngestPut>, key: Bytes) -> Result<(), CopyError> {
        if slot_for_key(&key) != self.slot {
            return Err(CopyError::KeyOutsideSlot {
                slot: self.slot,
                key,
            });
        }
        if self.last_key.as_ref().is_some_and(|last| *last >= key) {
            return Err(CopyError::OutOfOrder { key });
        }
        let value = put.as_ref().map_or(&[][..], |p| &p.value[..]);
        let cost = item_cost(&key, value);
        let items = self.page.puts.len() + self.page.deletes.len();
        if items >= MAX_INGEST_ITEMS || (items > 0 && self.used.saturating_add(cost) > self.budget)
        {
            self.seal();
        }
        self.used += cost;
        self.last_key = Some(key.clone());
        match put {
            Some(put) => self.page.puts.push(put),
            None => self.page.deletes.push(key),
        }
        Ok(())
    }

    /// Closes the current page as the round's next command.
    fn seal(&mut self) {
        let next = IngestPage {
            round: self.round,
            page: self.numbered + 1,
            ..IngestPage::default()
        };
        let page = std::mem::replace(&mut self.page, next);
        self.numbered += 1;
        self.used = 0;
        self.ready.push(SlotCommand {
            slot: self.slot,
            epoch: self.epoch,
            step: MoveStep::Ingest(page),
        });
    }
}
