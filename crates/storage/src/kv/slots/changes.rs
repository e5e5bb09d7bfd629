//! The change index: which keys of a slot being moved out changed, and at
//! which entry, so that a catch-up round (and the final one, while writes to
//! the slot wait) fetches only those keys instead of listing the whole slot
//! (`docs/sharding.md`, *Moving a slot*, "The change index").
//!
//! It is this replica's memory, not replicated state: a slot is tracked from
//! the moment a mover asks this replica for its changes, the apply path
//! records every key of a tracked slot it writes with the entry's index, and
//! nothing of it is in snapshots. So each answer says from which index it is
//! complete, and the mover lists the slot in full whenever that does not
//! cover its last round's baseline: after a restart, a snapshot install, an
//! overflow, or on a replica that was never asked.
//!
//! Completeness rests on one rule: tracking begins at [`ChangeIndex::seen`],
//! the last index whose writes the apply path has looked at, under the same
//! lock the apply path holds for a whole batch. Every entry after it is
//! recorded if it writes the slot.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use keel_placement::{Slot, slot_for_key};
use keel_raft::Index;

use super::{SlotState, SlotTable};

/// Most keys one slot's index holds; past it the index only says it
/// overflowed (a slot written that much is copied faster by listing it).
pub const MAX_TRACKED_KEYS: usize = 64 * 1024;
/// Most bytes of keys one slot's index holds (see [`MAX_TRACKED_KEYS`]).
pub const MAX_TRACKED_BYTES: usize = 8 << 20;
/// Most slots tracked at once; asking for another forgets the one asked
/// least recently (a move that was given up never ends its tracking).
pub const MAX_TRACKED_SLOTS: usize = 16;

/// What the change index can say about a slot since an index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changes {
    /// Every key of the slot written after the asked index (and possibly a
    /// few more), in key order.
    Listed(Vec<Bytes>),
    /// The index cannot show which keys changed since the asked index: list
    /// the slot in full. Tracking (re)started at `from` (every write after it
    /// is recorded), which is the baseline a full listing read after this
    /// answer establishes.
    Unknown {
        /// The index tracking now runs from.
        from: Index,
    },
}

/// One tracked slot.
#[derive(Debug)]
struct Tracked {
    /// The move's epoch: tracking ends once the slot is neither serving nor
    /// fenced for it.
    epoch: u64,
    /// Every write of the slot after this index is in `keys` (unless
    /// `overflowed`).
    from: Index,
    /// Each written key and the index of its latest write.
    keys: HashMap<Bytes, Index>,
    /// Bytes of the keys in `keys`.
    bytes: usize,
    /// Whether a write was dropped for the caps: `keys` is then empty and
    /// proves nothing.
    overflowed: bool,
    /// When it was last asked for, in asks (for forgetting the stalest).
    asked: u64,
    /// Whether the slot was seen fenced for the move: serving again after
    /// that means the move was aborted.
    fenced: bool,
}

impl Tracked {
    fn new(epoch: u64, from: Index, asked: u64) -> Tracked {
        Tracked {
            epoch,
            from,
            keys: HashMap::new(),
            bytes: 0,
            overflowed: false,
            asked,
            fenced: false,
        }
    }

    fn record(&mut self, key: &Bytes, index: Index) {
        if self.overflowed {
            return;
        }
        if let Some(at) = self.keys.get_mut(key) {
            *at = index;
            return;
        }
        if self.keys.len() >= MAX_TRACKED_KEYS
            || self.bytes.saturating_add(key.len()) > MAX_TRACKED_BYTES
        {
            self.overflowed = true;
            self.keys = HashMap::new();
            self.bytes = 0;
            return;
        }
        self.bytes += key.len();
        self.keys.insert(key.clone(), index);
    }
}

/// The tracked slots of one replica, and how far the apply path got.
#[derive(Debug)]
pub struct ChangeIndex {
    tracked: BTreeMap<Slot, Tracked>,
    /// The last index whose writes the apply path has recorded (or that was
    /// applied when the index was made: nothing before it is known).
    seen: Index,
    /// Asks so far (a clock for [`Tracked::asked`]).
    asks: u64,
}

impl ChangeIndex {
    /// An empty index for a store applied up to `applied`.
    pub fn new(applied: Index) -> ChangeIndex {
        ChangeIndex {
            tracked: BTreeMap::new(),
            seen: applied,
            asks: 0,
        }
    }

    /// Forgets everything (a snapshot replaced the state, which was applied up
    /// to `applied`): no earlier tracking proves anything about it.
    pub fn reset(&mut self, applied: Index) {
        *self = ChangeIndex::new(applied);
    }

    /// The slots whose writes the apply path must record.
    pub fn watched(&self) -> Vec<Slot> {
        self.tracked.keys().copied().collect()
    }

    /// The last index whose writes were recorded.
    pub fn seen(&self) -> Index {
        self.seen
    }

    /// Records the keys (of watched slots) the entry at `index` wrote, and ends
    /// the tracking of any slot `slots` no longer shows serving or fenced for
    /// its move, or shows serving after it was fenced: the move committed
    /// (dropped) or was aborted (unfenced).
    pub fn after_entry(&mut self, index: Index, written: &[Bytes], slots: &SlotTable) {
        for key in written {
            if let Some(t) = self.tracked.get_mut(&slot_for_key(key)) {
                t.record(key, index);
            }
        }
        self.tracked.retain(|slot, t| match slots.get(*slot) {
            SlotState::Serving => !t.fenced,
            SlotState::Fenced { epoch } if epoch == t.epoch => {
                t.fenced = true;
                true
            }
            _ => false,
        });
        self.seen = self.seen.max(index);
    }

    /// The keys of `slot` written after `since` for the move at `epoch`, as a
    /// view at `view_applied` shows them (the view must be read before this
    /// call, so that every entry it holds is recorded). `since: None`, or an
    /// index that cannot show them, (re)starts tracking and answers
    /// [`Changes::Unknown`]. At most `max_keys` keys and `max_bytes` of them
    /// are listed; more is unknown too.
    pub fn since(
        &mut self,
        slot: Slot,
        epoch: u64,
        since: Option<Index>,
        view_applied: Index,
        (max_keys, max_bytes): (usize, usize),
    ) -> Changes {
        self.asks += 1;
        let asks = self.asks;
        if let (Some(since), Some(t)) = (since, self.tracked.get_mut(&slot)) {
            // A view older than the baseline cannot answer for it.
            let covers = t.epoch == epoch && !t.overflowed && t.from <= since;
            if covers && since <= view_applied {
                t.asked = asks;
                let mut keys: Vec<Bytes> = t
                    .keys
                    .iter()
                    .filter(|(_, at)| **at > since)
                    .map(|(key, _)| key.clone())
                    .collect();
                let bytes: usize = keys.iter().map(Bytes::len).sum();
                if keys.len() <= max_keys && bytes <= max_bytes {
                    // The mover's next baseline is at least `since`: what was
                    // written before it is never asked for again.
                    t.keys.retain(|_, at| *at > since);
                    t.bytes = t.keys.keys().map(Bytes::len).sum();
                    t.from = since;
                    keys.sort_unstable();
                    return Changes::Listed(keys);
                }
            }
        }
        Changes::Unknown {
            from: self.start(slot, epoch, asks),
        }
    }

    /// Tracks `slot` afresh from [`ChangeIndex::seen`]; returns that index.
    fn start(&mut self, slot: Slot, epoch: u64, asks: u64) -> Index {
        if !self.tracked.contains_key(&slot) && self.tracked.len() >= MAX_TRACKED_SLOTS {
            let stalest = self
                .tracked
                .iter()
                .min_by_key(|(_, t)| t.asked)
                .map(|(slot, _)| *slot);
            if let Some(stalest) = stalest {
                self.tracked.remove(&stalest);
            }
        }
        self.tracked
            .insert(slot, Tracked::new(epoch, self.seen, asks));
        self.seen
    }
}
