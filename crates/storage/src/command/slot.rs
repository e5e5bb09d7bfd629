//! The slot-move commands: what a data group's log records about moving one hash
//! slot to another group (`docs/sharding.md`, *Moving a slot*).
//!
//! Each names the slot and the move's epoch (the placement map version at which
//! the move began), so a late entry from an abandoned attempt cannot act on a
//! newer one. What each step does to the group's slot table is the state
//! machine's business (`kv/slots/`); this file holds the commands and the rules
//! that make an ingest page canonical, which the decoder enforces.

use bytes::Bytes;
use keel_placement::Slot;

/// Most puts and deletes one [`IngestPage`] may carry together. The copier pages
/// by this count as well as by bytes (1 MiB), so a page of tiny keys cannot make
/// one entry's apply arbitrarily long.
pub const MAX_INGEST_ITEMS: usize = 4096;

/// One step of moving a slot, as a group's log carries it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SlotCommand {
    /// The slot being moved.
    pub slot: Slot,
    /// The move's epoch: the map version its `BeginSlotMove` produced. Never 0.
    pub epoch: u64,
    /// What this entry does.
    pub step: MoveStep,
}

/// What a [`SlotCommand`] does. The source group (A) fences, unfences and drops;
/// the target group (B) ingests, seals and owns; B also drops to discard an
/// abandoned copy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MoveStep {
    /// A stops serving the slot (`FenceSlot`): from this entry on, writes and
    /// reads of it are refused as moving.
    Fence,
    /// A serves the slot again after the move was aborted (`UnfenceSlot`).
    Unfence,
    /// B stores a page of the slot's data, which nothing serves yet
    /// (`IngestSlot`). Round 0, page 0 begins the copy.
    Ingest(IngestPage),
    /// B has the slot's complete data as of A's fence (`SlotIngested`).
    Ingested {
        /// The index of A's fence entry: the evidence B copied after it.
        fence_index: u64,
        /// A's revision at the fence: B's later revisions are all above it.
        revision: u64,
    },
    /// B serves the slot: the map named it the owner (`OwnSlot`).
    Own {
        /// The map version that made B the owner.
        map_version: u64,
    },
    /// Delete the slot's data, a bounded batch per entry, and stop holding it
    /// (`DropSlot`): A after the move committed, B after it was aborted.
    Drop {
        /// The map version that decided it (the commit, or the abort).
        map_version: u64,
    },
}

impl MoveStep {
    /// The step's name as the design and `keel wal dump` spell it.
    pub fn name(&self) -> &'static str {
        match self {
            MoveStep::Fence => "FENCE-SLOT",
            MoveStep::Unfence => "UNFENCE-SLOT",
            MoveStep::Ingest(_) => "INGEST-SLOT",
            MoveStep::Ingested { .. } => "SLOT-INGESTED",
            MoveStep::Own { .. } => "OWN-SLOT",
            MoveStep::Drop { .. } => "DROP-SLOT",
        }
    }
}

/// A key copied into the target group, with the version it had in the source.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IngestPut {
    /// The key; it must hash to the command's slot.
    pub key: Bytes,
    /// Its version in the source group (kept, so versions never go backwards).
    pub version: u64,
    /// Its value.
    pub value: Bytes,
}

/// One page of a slot's data: keys to store and keys to delete.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct IngestPage {
    /// Which copy round this page belongs to (0: the bulk copy).
    pub round: u64,
    /// The page's number within its round, from 0.
    pub page: u64,
    /// Keys to store, in strictly increasing key order.
    pub puts: Vec<IngestPut>,
    /// Keys to delete (gone from the source since an earlier round), in strictly
    /// increasing key order, none of them among `puts`.
    pub deletes: Vec<Bytes>,
}

impl IngestPage {
    /// Whether this page begins the copy (round 0, page 0).
    pub fn begins_copy(&self) -> bool {
        self.round == 0 && self.page == 0
    }

    /// Checks the rules that make a page canonical: at most
    /// [`MAX_INGEST_ITEMS`] items, each list in strictly increasing key order,
    /// no key both stored and deleted, no version 0 (which means "absent").
    pub fn validate(&self) -> Result<(), IngestError> {
        let items = self.puts.len() + self.deletes.len();
        if items > MAX_INGEST_ITEMS {
            return Err(IngestError::TooManyItems(items));
        }
        if self.puts.iter().any(|p| p.version == 0) {
            return Err(IngestError::ZeroVersion);
        }
        if !self.puts.windows(2).all(|w| w[0].key < w[1].key) {
            return Err(IngestError::PutsOutOfOrder);
        }
        if !self.deletes.windows(2).all(|w| w[0] < w[1]) {
            return Err(IngestError::DeletesOutOfOrder);
        }
        // Both lists are sorted, so one merge finds any key in both.
        let (mut p, mut d) = (0, 0);
        while p < self.puts.len() && d < self.deletes.len() {
            match self.puts[p].key.cmp(&self.deletes[d]) {
                std::cmp::Ordering::Less => p += 1,
                std::cmp::Ordering::Greater => d += 1,
                std::cmp::Ordering::Equal => return Err(IngestError::PutAndDelete),
            }
        }
        Ok(())
    }
}

/// Why an [`IngestPage`] is not canonical.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// More puts and deletes than [`MAX_INGEST_ITEMS`].
    #[error("{0} items in one ingest page, the limit is {MAX_INGEST_ITEMS}")]
    TooManyItems(usize),
    /// The puts are not in strictly increasing key order.
    #[error("ingest page puts are not in strictly increasing key order")]
    PutsOutOfOrder,
    /// The deletes are not in strictly increasing key order.
    #[error("ingest page deletes are not in strictly increasing key order")]
    DeletesOutOfOrder,
    /// A key is both stored and deleted (which wins would be a guess).
    #[error("an ingest page both stores and deletes one key")]
    PutAndDelete,
    /// A key with version 0, which no write ever gets (comparisons read it as
    /// "absent").
    #[error("an ingest page stores a key at version 0")]
    ZeroVersion,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &'static str) -> IngestPut {
        IngestPut {
            key: Bytes::from_static(key.as_bytes()),
            version: 1,
            value: Bytes::new(),
        }
    }

    fn page(puts: &[&'static str], deletes: &[&'static str]) -> IngestPage {
        IngestPage {
            round: 1,
            page: 0,
            puts: puts.iter().map(|k| put(k)).collect(),
            deletes: deletes
                .iter()
                .map(|k| Bytes::from_static(k.as_bytes()))
                .collect(),
        }
    }

    #[test]
    fn page_rules() {
        assert_eq!(page(&["a", "c"], &["b", "d"]).validate(), Ok(()));
        assert_eq!(page(&[], &[]).validate(), Ok(()));
        let mut zero = page(&["a"], &[]);
        zero.puts[0].version = 0;
        assert_eq!(zero.validate(), Err(IngestError::ZeroVersion));
        assert_eq!(
            page(&["b", "a"], &[]).validate(),
            Err(IngestError::PutsOutOfOrder)
        );
        assert_eq!(
            page(&["a", "a"], &[]).validate(),
            Err(IngestError::PutsOutOfOrder)
        );
        assert_eq!(
            page(&[], &["b", "b"]).validate(),
            Err(IngestError::DeletesOutOfOrder)
        );
        assert_eq!(
            page(&["a", "c"], &["b", "c"]).validate(),
            Err(IngestError::PutAndDelete)
        );
        let mut big = page(&[], &[]);
        big.deletes = (0..=MAX_INGEST_ITEMS)
            .map(|i| Bytes::from(format!("{i:08}")))
            .collect();
        assert_eq!(
            big.validate(),
            Err(IngestError::TooManyItems(MAX_INGEST_ITEMS + 1))
        );
        big.deletes.pop();
        assert_eq!(big.validate(), Ok(()));
    }

    #[test]
    fn only_round_0_page_0_begins_a_copy() {
        let mut p = page(&[], &[]);
        assert!(!p.begins_copy());
        p.round = 0;
        assert!(p.begins_copy());
        p.page = 1;
        assert!(!p.begins_copy());
    }
}
