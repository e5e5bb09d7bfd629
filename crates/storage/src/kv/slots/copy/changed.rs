//! A round by the change index: the source names the keys of the slot
//! written since the last round's baseline ([`fetch_changes`]), and the
//! target turns their current values, or their absence, into puts and
//! deletes ([`plan_changed`]) — instead of comparing the whole key list.

use std::collections::HashSet;

use bytes::Bytes;
use keel_placement::{Slot, slot_for_key};
use keel_raft::Index;

use super::{CopyError, MAX_PAGE_BYTES, SourceView};
use crate::command::IngestPut;
use crate::kv::slots::{Changes, MAX_TRACKED_KEYS, SlotState};
use crate::kv::{KvReadView, KvStore};

/// What the source's change index said ([`fetch_changes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangePage {
    /// The view the answer goes with: every key written up to its applied
    /// index after the baseline is listed.
    pub source: SourceView,
    /// The keys, or why the slot must be listed in full.
    pub changes: Changes,
}

/// The keys of `slot` that `kv` (the source, whose view `view` is, read
/// just before) wrote after `since`, by its change index: at most
/// [`MAX_TRACKED_KEYS`] keys and [`MAX_PAGE_BYTES`] of them, so one answer
/// carries them (the caller fetches their values in `VALUES` fetches of at
/// most [`super::MAX_VERSION_KEYS`] keys). A bulk copy under load leaves
/// more than 16,384 keys written since it began (each page's keys are
/// written on after it was read), so the cap is the index's own.
/// `since: None`, or a baseline the index cannot answer
/// for, (re)starts tracking and answers [`Changes::Unknown`] with the index it
/// runs from. Refuses a view that is not the move's source, as every read of
/// the source does.
pub fn fetch_changes(
    kv: &KvStore,
    view: &KvReadView,
    slot: Slot,
    epoch: u64,
    since: Option<Index>,
) -> Result<ChangePage, CopyError> {
    let source = SourceView::of(view, slot, epoch)?;
    let changes = kv.lock_changes().since(
        slot,
        epoch,
        since,
        source.applied_index,
        (MAX_TRACKED_KEYS, MAX_PAGE_BYTES),
    );
    Ok(ChangePage { source, changes })
}

/// What B must change for keys A wrote since the baseline: `asked` are the
/// keys a `VALUES` answer covered (in key order) and `found` what it returned
/// for them. A key A returned at a version B does not hold is put; a key A no
/// longer has and B holds is deleted; the rest already match.
pub fn plan_changed(
    staged: &KvReadView,
    slot: Slot,
    epoch: u64,
    asked: &[Bytes],
    found: Vec<IngestPut>,
) -> Result<(Vec<IngestPut>, Vec<Bytes>), CopyError> {
    let state = staged.slot_table()?.get(slot);
    if state != (SlotState::Staging { epoch }) {
        return Err(CopyError::NotStaging {
            slot,
            epoch,
            found: state,
        });
    }
    if let Some(key) = asked.iter().find(|key| slot_for_key(key) != slot) {
        return Err(CopyError::KeyOutsideSlot {
            slot,
            key: key.clone(),
        });
    }
    let present: HashSet<&Bytes> = found.iter().map(|put| &put.key).collect();
    let mut deletes = Vec::new();
    for key in asked.iter().filter(|key| !present.contains(key)) {
        if staged.get(key)?.is_some() {
            deletes.push(key.clone());
        }
    }
    let mut puts = Vec::with_capacity(found.len());
    for put in found {
        let held = staged.get(&put.key)?.map(|(_, version)| version);
        if held != Some(put.version) {
            puts.push(put);
        }
    }
    Ok((puts, deletes))
}
