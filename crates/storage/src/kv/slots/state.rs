//! What a group holds of one slot, and its stored form.

use std::fmt;

/// What a group holds of one hash slot: its own, replicated record of what it may
/// serve. Only [`SlotState::Serving`] slots take reads and writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SlotState {
    /// The group holds nothing of the slot.
    #[default]
    Absent,
    /// The group serves the slot.
    Serving,
    /// The group (the move's source) stopped serving the slot for the move of
    /// this epoch; its data stays until the move commits (then it is dropped) or
    /// aborts (then the slot is served again).
    Fenced {
        /// The move's epoch.
        epoch: u64,
    },
    /// The group (the move's target) is receiving the slot's data for the move
    /// of this epoch; nothing serves it.
    Staging {
        /// The move's epoch.
        epoch: u64,
    },
    /// The target holds the slot's complete data as of the source's fence and
    /// waits for the map to name it the owner.
    Ingested {
        /// The move's epoch.
        epoch: u64,
    },
    /// The slot's data is being deleted, a bounded batch per `DropSlot` entry.
    Releasing {
        /// The move's epoch.
        epoch: u64,
    },
}

/// Bytes of one stored state: a tag and the epoch (0 for the states without one).
pub(crate) const STATE_LEN: usize = 9;

const ABSENT: u8 = 0;
const SERVING: u8 = 1;
const FENCED: u8 = 2;
const STAGING: u8 = 3;
const INGESTED: u8 = 4;
const RELEASING: u8 = 5;

impl SlotState {
    /// The move epoch the state belongs to (`None` for absent and serving).
    pub fn epoch(self) -> Option<u64> {
        match self {
            SlotState::Absent | SlotState::Serving => None,
            SlotState::Fenced { epoch }
            | SlotState::Staging { epoch }
            | SlotState::Ingested { epoch }
            | SlotState::Releasing { epoch } => Some(epoch),
        }
    }

    /// Whether the slot is in the middle of a move through this group (fenced,
    /// staging or ingested): a request for it should be retried, not redirected.
    pub fn is_moving(self) -> bool {
        matches!(
            self,
            SlotState::Fenced { .. } | SlotState::Staging { .. } | SlotState::Ingested { .. }
        )
    }

    /// `tag:u8 epoch:u64` (little-endian).
    pub(crate) fn encode(self) -> [u8; STATE_LEN] {
        let tag = match self {
            SlotState::Absent => ABSENT,
            SlotState::Serving => SERVING,
            SlotState::Fenced { .. } => FENCED,
            SlotState::Staging { .. } => STAGING,
            SlotState::Ingested { .. } => INGESTED,
            SlotState::Releasing { .. } => RELEASING,
        };
        let mut out = [0u8; STATE_LEN];
        out[0] = tag;
        out[1..].copy_from_slice(&self.epoch().unwrap_or(0).to_le_bytes());
        out
    }

    /// Parses [`SlotState::encode`]'s bytes. A state with an epoch must have a
    /// non-zero one, and the others zero, so every state has one encoding.
    pub(crate) fn decode(bytes: [u8; STATE_LEN]) -> Result<SlotState, (u8, u64)> {
        let tag = bytes[0];
        let epoch = u64::from_le_bytes(bytes[1..].try_into().expect("8 bytes"));
        let state = match (tag, epoch) {
            (ABSENT, 0) => SlotState::Absent,
            (SERVING, 0) => SlotState::Serving,
            (FENCED, 1..) => SlotState::Fenced { epoch },
            (STAGING, 1..) => SlotState::Staging { epoch },
            (INGESTED, 1..) => SlotState::Ingested { epoch },
            (RELEASING, 1..) => SlotState::Releasing { epoch },
            _ => return Err((tag, epoch)),
        };
        Ok(state)
    }
}

impl fmt::Display for SlotState {
    /// `serving`, `fenced(5)`, ...: the words of `docs/sharding.md`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            SlotState::Absent => return f.write_str("absent"),
            SlotState::Serving => return f.write_str("serving"),
            SlotState::Fenced { .. } => "fenced",
            SlotState::Staging { .. } => "staging",
            SlotState::Ingested { .. } => "ingested",
            SlotState::Releasing { .. } => "releasing",
        };
        write!(f, "{name}({})", self.epoch().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [SlotState; 6] = [
        SlotState::Absent,
        SlotState::Serving,
        SlotState::Fenced { epoch: 3 },
        SlotState::Staging { epoch: 4 },
        SlotState::Ingested { epoch: u64::MAX },
        SlotState::Releasing { epoch: 1 },
    ];

    #[test]
    fn states_round_trip_and_print() {
        for state in ALL {
            assert_eq!(SlotState::decode(state.encode()), Ok(state));
        }
        let printed: Vec<String> = ALL.iter().map(ToString::to_string).collect();
        assert_eq!(
            printed,
            [
                "absent",
                "serving",
                "fenced(3)",
                "staging(4)",
                "ingested(18446744073709551615)",
                "releasing(1)"
            ]
        );
    }

    #[test]
    fn pinned_bytes_and_non_canonical_forms_are_refused() {
        assert_eq!(SlotState::Serving.encode(), [1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            SlotState::Fenced { epoch: 0x0102 }.encode(),
            [2, 2, 1, 0, 0, 0, 0, 0, 0]
        );
        // A serving slot with an epoch, a fenced one without, an unknown tag.
        for bad in [
            [1, 5, 0, 0, 0, 0, 0, 0, 0],
            [2, 0, 0, 0, 0, 0, 0, 0, 0],
            [6, 1, 0, 0, 0, 0, 0, 0, 0],
        ] {
            assert!(SlotState::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_mid_move_states_are_moving() {
        let moving: Vec<bool> = ALL.iter().map(|s| s.is_moving()).collect();
        assert_eq!(moving, [false, false, true, true, true, false]);
    }
}
