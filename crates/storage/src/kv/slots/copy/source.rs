//! The source side: reading a slot out of one state-machine view of A.

use bytes::Bytes;
use keel_placement::{Slot, slot_for_key};
use keel_raft::Index;

use super::{CopyError, MAX_PAGE_BYTES, MAX_VERSION_KEYS, item_cost};
use crate::command::{IngestPut, MAX_INGEST_ITEMS};
use crate::kv::KvReadView;
use crate::kv::slots::SlotState;

/// What the view an answer was read from says about the source: the fence
/// evidence travels with every answer (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceView {
    /// The view's applied index.
    pub applied_index: Index,
    /// A's revision in the view (applied index plus revision offset): at least
    /// every version A ever handed out, for any key.
    pub revision: u64,
    /// The slot's state in the view: serving, or fenced for the move's epoch.
    pub state: SlotState,
}

impl SourceView {
    /// Reads the view's evidence, refusing a view that is not the move's
    /// source: one releasing the slot has lost part of it, and one absent,
    /// staging or fenced for another epoch is not where this move copies from.
    pub(super) fn of(view: &KvReadView, slot: Slot, epoch: u64) -> Result<SourceView, CopyError> {
        let state = view.slot_table()?.get(slot);
        let source = matches!(state, SlotState::Serving) || state == (SlotState::Fenced { epoch });
        if !source {
            return Err(CopyError::NotSource {
                slot,
                epoch,
                found: state,
            });
        }
        Ok(SourceView {
            applied_index: view.applied_index(),
            revision: view.applied_index().saturating_add(view.revision_offset()),
            state,
        })
    }

    /// Whether the view had fenced the slot for `epoch`.
    pub fn is_fenced_for(&self, epoch: u64) -> bool {
        self.state == SlotState::Fenced { epoch }
    }
}

/// A page of the slot's keys with versions and values ([`fetch_page`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotPage {
    /// The view it was read from.
    pub source: SourceView,
    /// Keys in increasing order with their versions and values.
    pub puts: Vec<IngestPut>,
    /// Whether the slot has keys after the last one.
    pub more: bool,
}

/// A page of the slot's key list with versions ([`fetch_versions`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionPage {
    /// The view it was read from.
    pub source: SourceView,
    /// Keys in increasing order with their versions.
    pub versions: Vec<(Bytes, u64)>,
    /// Whether the slot has keys after the last one.
    pub more: bool,
}

/// The values of a prefix of the keys asked for ([`fetch_values`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValuePage {
    /// The view it was read from.
    pub source: SourceView,
    /// The keys present in the view, with versions and values, in the order
    /// asked.
    pub puts: Vec<IngestPut>,
    /// How many of the keys asked for this answers (present or not); ask again
    /// for the rest.
    pub covered: usize,
}

/// Adds one item to a page under construction unless the page is full: at
/// most [`MAX_INGEST_ITEMS`] items and `budget` bytes, but always the first
/// item, so a value over the budget still moves (alone).
fn fits(items: usize, used: &mut usize, cost: usize, budget: usize) -> bool {
    if items >= MAX_INGEST_ITEMS || (items > 0 && used.saturating_add(cost) > budget) {
        return false;
    }
    *used += cost;
    true
}

/// Up to `max_bytes` (at most [`MAX_PAGE_BYTES`]) and [`MAX_INGEST_ITEMS`] of
/// the slot's keys after `after_key`, in key order, with versions and values.
pub fn fetch_page(
    view: &KvReadView,
    slot: Slot,
    epoch: u64,
    after_key: Option<&[u8]>,
    max_bytes: usize,
) -> Result<SlotPage, CopyError> {
    let source = SourceView::of(view, slot, epoch)?;
    let budget = max_bytes.min(MAX_PAGE_BYTES);
    let (mut puts, mut used, mut more) = (Vec::new(), 0, false);
    view.for_each_in_slot(slot, after_key, |key, version, value| {
        if !fits(puts.len(), &mut used, item_cost(key, value), budget) {
            more = true;
            return Ok(false);
        }
        puts.push(IngestPut {
            key: Bytes::copy_from_slice(key),
            version,
            value: Bytes::copy_from_slice(value),
        });
        Ok(true)
    })?;
    Ok(SlotPage { source, puts, more })
}

/// Up to `max_keys` (at most [`MAX_VERSION_KEYS`], and [`MAX_PAGE_BYTES`] of
/// keys) of the slot's keys after `after_key`, in key order, with versions and
/// no values: a catch-up round's key list.
pub fn fetch_versions(
    view: &KvReadView,
    slot: Slot,
    epoch: u64,
    after_key: Option<&[u8]>,
    max_keys: usize,
) -> Result<VersionPage, CopyError> {
    let source = SourceView::of(view, slot, epoch)?;
    let limit = max_keys.clamp(1, MAX_VERSION_KEYS);
    let (mut versions, mut used, mut more) = (Vec::new(), 0usize, false);
    view.for_each_in_slot(slot, after_key, |key, version, _| {
        let full = versions.len() >= limit
            || (!versions.is_empty() && used.saturating_add(key.len()) > MAX_PAGE_BYTES);
        if full {
            more = true;
            return Ok(false);
        }
        used += key.len();
        versions.push((Bytes::copy_from_slice(key), version));
        Ok(true)
    })?;
    Ok(VersionPage {
        source,
        versions,
        more,
    })
}

/// The versions and values of a prefix of `keys` (keys of the slot, in the
/// order the page should hold them), within `max_bytes` (at most
/// [`MAX_PAGE_BYTES`]) and [`MAX_INGEST_ITEMS`]. A key absent in the view is
/// covered but not returned: it was deleted since the key list was read, and
/// the next round (or the final one, which reads a frozen slot) deletes it.
pub fn fetch_values(
    view: &KvReadView,
    slot: Slot,
    epoch: u64,
    keys: &[Bytes],
    max_bytes: usize,
) -> Result<ValuePage, CopyError> {
    let source = SourceView::of(view, slot, epoch)?;
    let budget = max_bytes.min(MAX_PAGE_BYTES);
    let (mut puts, mut used, mut covered) = (Vec::new(), 0, 0);
    for key in keys {
        if slot_for_key(key) != slot {
            return Err(CopyError::KeyOutsideSlot {
                slot,
                key: key.clone(),
            });
        }
        if let Some((value, version)) = view.get(key)? {
            if !fits(puts.len(), &mut used, item_cost(key, &value), budget) {
                break;
            }
            puts.push(IngestPut {
                key: key.clone(),
                version,
                value,
            });
        }
        covered += 1;
    }
    Ok(ValuePage {
        source,
        puts,
        covered,
    })
}
