//! The wire form of the copy engine's answers (`SlotFetch`): slot states,
//! source views, items and refusals, converted both ways so that the caller
//! rebuilds exactly the [`SourceView`] the source read. Free functions, not
//! `From` impls: both sides' types live in other crates.

use bytes::Bytes;
use keel_placement::Slot;
use keel_proto::raft::slot_refusal::Kind as RefusalKind;
use keel_proto::raft::{SlotItem, SlotRefusal, SlotStateKind, SlotStateMsg, SourceViewMsg};
use keel_storage::command::IngestPut;
use keel_storage::kv::SlotState;
use keel_storage::kv::slots::copy::{CopyError, SourceView};
use prost::Message as _;
use tonic::Status;
use tonic::metadata::MetadataValue;

/// The binary metadata entry of a `SlotFetch` refusal that carries an encoded
/// [`SlotRefusal`].
pub const SLOT_REFUSAL_METADATA_KEY: &str = "keel-slot-refusal-bin";

/// A wire message that does not describe a valid value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed slot message: {0}")]
pub struct WireError(pub String);

/// A slot state's wire form.
pub fn state_to_wire(state: SlotState) -> SlotStateMsg {
    {
        let (kind, epoch) = match state {
            SlotState::Absent => (SlotStateKind::Absent, 0),
            SlotState::Serving => (SlotStateKind::Serving, 0),
            SlotState::Fenced { epoch } => (SlotStateKind::Fenced, epoch),
            SlotState::Staging { epoch } => (SlotStateKind::Staging, epoch),
            SlotState::Ingested { epoch } => (SlotStateKind::Ingested, epoch),
            SlotState::Releasing { epoch } => (SlotStateKind::Releasing, epoch),
        };
        SlotStateMsg {
            kind: kind.into(),
            epoch,
        }
    }
}

/// The slot state a wire message describes.
pub fn state_from_wire(msg: &SlotStateMsg) -> Result<SlotState, WireError> {
    {
        let kind = SlotStateKind::try_from(msg.kind)
            .map_err(|_| WireError(format!("unknown slot state {}", msg.kind)))?;
        let epoch = msg.epoch;
        // An epoch exactly where the state has one: anything else would not
        // convert back to the same message.
        let state = match (kind, epoch) {
            (SlotStateKind::Absent, 0) => SlotState::Absent,
            (SlotStateKind::Serving, 0) => SlotState::Serving,
            (SlotStateKind::Fenced, e) if e > 0 => SlotState::Fenced { epoch },
            (SlotStateKind::Staging, e) if e > 0 => SlotState::Staging { epoch },
            (SlotStateKind::Ingested, e) if e > 0 => SlotState::Ingested { epoch },
            (SlotStateKind::Releasing, e) if e > 0 => SlotState::Releasing { epoch },
            (SlotStateKind::Unspecified, _) => {
                return Err(WireError("slot state unspecified".into()));
            }
            (kind, epoch) => {
                return Err(WireError(format!(
                    "slot state {} with epoch {epoch}",
                    kind.as_str_name()
                )));
            }
        };
        Ok(state)
    }
}

/// A source view's wire form.
pub fn view_to_wire(view: SourceView) -> SourceViewMsg {
    {
        SourceViewMsg {
            applied_index: view.applied_index,
            revision: view.revision,
            state: Some(state_to_wire(view.state)),
        }
    }
}

/// The source view a wire message describes, exactly as the source read it.
pub fn view_from_wire(msg: &SourceViewMsg) -> Result<SourceView, WireError> {
    {
        let state = msg
            .state
            .as_ref()
            .ok_or_else(|| WireError("source view without a slot state".into()))?;
        Ok(SourceView {
            applied_index: msg.applied_index,
            revision: msg.revision,
            state: state_from_wire(state)?,
        })
    }
}

/// A key with its version and value, as a wire item.
pub fn item_to_wire(put: IngestPut) -> SlotItem {
    {
        SlotItem {
            key: put.key,
            version: put.version,
            value: put.value,
        }
    }
}

/// The key, version and value a wire item carries.
pub fn item_from_wire(item: SlotItem) -> IngestPut {
    {
        IngestPut {
            key: item.key,
            version: item.version,
            value: item.value,
        }
    }
}

/// The wire form of a copy refusal, or `None` for a failure that is not a
/// refusal the caller can act on (a store error, or a target-side check).
pub fn refusal_of(e: &CopyError) -> Option<SlotRefusal> {
    let (kind, slot, epoch, found, key) = match e {
        CopyError::NotSource { slot, epoch, found } => (
            RefusalKind::NotSource,
            *slot,
            *epoch,
            Some(state_to_wire(*found)),
            Bytes::new(),
        ),
        CopyError::KeyOutsideSlot { slot, key } => {
            (RefusalKind::KeyOutsideSlot, *slot, 0, None, key.clone())
        }
        _ => return None,
    };
    Some(SlotRefusal {
        kind: kind.into(),
        slot: u32::from(slot.get()),
        epoch,
        found,
        key,
    })
}

/// The copy error a wire refusal describes.
pub fn copy_error_of(refusal: &SlotRefusal) -> Result<CopyError, WireError> {
    let slot = u16::try_from(refusal.slot)
        .ok()
        .and_then(Slot::new)
        .ok_or_else(|| WireError(format!("slot {} out of range", refusal.slot)))?;
    match RefusalKind::try_from(refusal.kind) {
        Ok(RefusalKind::NotSource) => {
            let found = refusal
                .found
                .as_ref()
                .ok_or_else(|| WireError("NOT_SOURCE without the state found".into()))?;
            Ok(CopyError::NotSource {
                slot,
                epoch: refusal.epoch,
                found: state_from_wire(found)?,
            })
        }
        Ok(RefusalKind::KeyOutsideSlot) => Ok(CopyError::KeyOutsideSlot {
            slot,
            key: refusal.key.clone(),
        }),
        _ => Err(WireError(format!("unknown refusal kind {}", refusal.kind))),
    }
}

/// A FAILED_PRECONDITION status carrying `refusal` in
/// [`SLOT_REFUSAL_METADATA_KEY`], its message the refusal in words.
pub fn refusal_status(refusal: &SlotRefusal, message: String) -> Status {
    let mut status = Status::failed_precondition(message);
    status.metadata_mut().insert_bin(
        SLOT_REFUSAL_METADATA_KEY,
        MetadataValue::from_bytes(&refusal.encode_to_vec()),
    );
    status
}

/// The refusal a status carries, if any.
pub fn refusal_in(status: &Status) -> Option<SlotRefusal> {
    let value = status.metadata().get_bin(SLOT_REFUSAL_METADATA_KEY)?;
    let bytes = value.to_bytes().ok()?;
    SlotRefusal::decode(bytes.as_ref()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states() -> Vec<SlotState> {
        vec![
            SlotState::Absent,
            SlotState::Serving,
            SlotState::Fenced { epoch: 7 },
            SlotState::Staging { epoch: 1 },
            SlotState::Ingested { epoch: u64::MAX },
            SlotState::Releasing { epoch: 3 },
        ]
    }

    #[test]
    fn every_slot_state_survives_the_round_trip() {
        for state in states() {
            let msg = state_to_wire(state);
            assert_eq!(state_from_wire(&msg), Ok(state));
        }
    }

    #[test]
    fn states_that_no_slot_state_encodes_to_are_refused() {
        let bad = [
            (SlotStateKind::Unspecified, 0),
            (SlotStateKind::Serving, 2),
            (SlotStateKind::Absent, 1),
            (SlotStateKind::Fenced, 0),
            (SlotStateKind::Releasing, 0),
        ];
        for (kind, epoch) in bad {
            let msg = SlotStateMsg {
                kind: kind.into(),
                epoch,
            };
            assert!(state_from_wire(&msg).is_err(), "{kind:?} {epoch}");
        }
        let unknown = SlotStateMsg { kind: 99, epoch: 0 };
        assert!(state_from_wire(&unknown).is_err());
    }

    #[test]
    fn a_source_view_survives_the_round_trip_and_needs_its_state() {
        for state in states() {
            let view = SourceView {
                applied_index: 42,
                revision: 1042,
                state,
            };
            let msg = view_to_wire(view);
            assert_eq!(view_from_wire(&msg), Ok(view));
        }
        let stateless = SourceViewMsg {
            applied_index: 1,
            revision: 1,
            state: None,
        };
        assert!(view_from_wire(&stateless).is_err());
    }

    #[test]
    fn an_item_survives_the_round_trip() {
        let put = IngestPut {
            key: Bytes::from_static(b"k"),
            version: 9,
            value: Bytes::from_static(b"v"),
        };
        assert_eq!(item_from_wire(item_to_wire(put.clone())), put);
    }

    #[test]
    fn refusals_travel_in_the_status_and_come_back_typed() {
        let slot = Slot::new(17).expect("slot");
        let errors = [
            CopyError::NotSource {
                slot,
                epoch: 5,
                found: SlotState::Staging { epoch: 5 },
            },
            CopyError::KeyOutsideSlot {
                slot,
                key: Bytes::from_static(b"elsewhere"),
            },
        ];
        for e in errors {
            let refusal = refusal_of(&e).expect("a refusal");
            let status = refusal_status(&refusal, e.to_string());
            assert_eq!(status.code(), tonic::Code::FailedPrecondition);
            let back = refusal_in(&status).expect("carried");
            let again = copy_error_of(&back).expect("valid");
            assert_eq!(again.to_string(), e.to_string());
            assert_eq!(refusal_of(&again), Some(refusal));
        }
        assert_eq!(refusal_in(&Status::failed_precondition("plain")), None);
    }

    #[test]
    fn a_refusal_with_a_bad_slot_or_kind_is_malformed() {
        let mut refusal = SlotRefusal {
            kind: RefusalKind::KeyOutsideSlot.into(),
            slot: 4096,
            ..SlotRefusal::default()
        };
        assert!(copy_error_of(&refusal).is_err());
        refusal.slot = 1;
        refusal.kind = RefusalKind::Unspecified.into();
        assert!(copy_error_of(&refusal).is_err());
        refusal.kind = RefusalKind::NotSource.into();
        assert!(copy_error_of(&refusal).is_err(), "NOT_SOURCE needs `found`");
    }
}
