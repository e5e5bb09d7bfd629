//! The target side: what one step of a catch-up round must change in B's
//! staged copy.

use std::cmp::Ordering;

use bytes::Bytes;
use keel_placement::Slot;

use super::{CopyError, MAX_VERSION_KEYS, VersionPage};
use crate::kv::KvReadView;
use crate::kv::slots::SlotState;

/// What B must change over one key range of its staged copy to match A's key
/// list there ([`plan_delta`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundDelta {
    /// Keys A has that B lacks or holds at another version, in key order:
    /// fetch their values ([`super::fetch_values`]).
    pub fetch: Vec<Bytes>,
    /// Keys B holds that A no longer has, in key order.
    pub delete: Vec<Bytes>,
    /// Where the next step of the round starts (after this key); `None` when
    /// this step reached the end of the slot and the round is planned.
    pub next: Option<Bytes>,
}

/// Compares `source`, a page of A's key list read after `after_key`, with the
/// keys `staged` (a view of B, staging the slot for `epoch`) holds in the same
/// range, and names the keys to fetch and to delete.
///
/// The range ends at the page's last key when A has more, else at the end of
/// the slot; it ends earlier if B holds more than [`MAX_VERSION_KEYS`] keys in
/// it (A deleted many), so a step's work stays bounded either way. Versions are
/// compared for equality, not order: B must hold what A holds.
pub fn plan_delta(
    staged: &KvReadView,
    slot: Slot,
    epoch: u64,
    after_key: Option<&[u8]>,
    source: &VersionPage,
) -> Result<RoundDelta, CopyError> {
    let found = staged.slot_table()?.get(slot);
    if found != (SlotState::Staging { epoch }) {
        return Err(CopyError::NotStaging { slot, epoch, found });
    }
    let upper: Option<&[u8]> = match source.versions.last() {
        Some((key, _)) if source.more => Some(key),
        _ => None,
    };
    let mut held: Vec<(Bytes, u64)> = Vec::new();
    staged.for_each_in_slot(slot, after_key, |key, version, _| {
        if upper.is_some_and(|upper| key > upper) {
            return Ok(false);
        }
        held.push((Bytes::copy_from_slice(key), version));
        // One more than the limit tells whether B's range was cut short.
        Ok(held.len() <= MAX_VERSION_KEYS)
    })?;
    let cut = held.len() > MAX_VERSION_KEYS;
    held.truncate(MAX_VERSION_KEYS);
    // The range this step covers ends at `end` (inclusive; `None`: the slot's end).
    let end: Option<Bytes> = if cut {
        held.last().map(|(key, _)| key.clone())
    } else {
        upper.map(Bytes::copy_from_slice)
    };
    let wanted = source
        .versions
        .iter()
        .take_while(|(key, _)| end.as_ref().is_none_or(|end| key <= end));
    let mut delta = merge(wanted, &held);
    delta.next = end;
    Ok(delta)
}

/// Walks A's and B's sorted lists together.
fn merge<'a>(
    mut wanted: impl Iterator<Item = &'a (Bytes, u64)>,
    held: &[(Bytes, u64)],
) -> RoundDelta {
    let mut delta = RoundDelta::default();
    let mut held = held.iter().peekable();
    let mut next_wanted = wanted.next();
    loop {
        let order = match (next_wanted, held.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((a, _)), Some((b, _))) => a.cmp(b),
        };
        match order {
            Ordering::Less => {
                let (key, _) = next_wanted.expect("compared");
                delta.fetch.push(key.clone());
                next_wanted = wanted.next();
            }
            Ordering::Greater => {
                let (key, _) = held.next().expect("compared");
                delta.delete.push(key.clone());
            }
            Ordering::Equal => {
                let (key, version) = next_wanted.expect("compared");
                let (_, staged) = held.next().expect("compared");
                if version != staged {
                    delta.fetch.push(key.clone());
                }
                next_wanted = wanted.next();
            }
        }
    }
    delta
}
