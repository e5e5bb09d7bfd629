//! The client workload's commands: every proposal is an unconditional put of a
//! unique key to a unique value, encoded as `keel-storage`'s [`Command`], so that each
//! acknowledged write can be looked for, by key, in every replica after healing.

use bytes::Bytes;
use keel_storage::command::{Command, Expect};

/// The key written by proposal `id`.
pub fn key_of(id: u64) -> Bytes {
    Bytes::from(format!("k{id:08}"))
}

/// The value written by proposal `id` of the run with `seed`. The seed makes values
/// of different runs differ, so a stale disk could never pass by accident.
pub fn value_of(id: u64, seed: u64) -> Bytes {
    Bytes::from(format!("v{id}-{seed:x}"))
}

/// Encodes a put as an entry payload.
pub fn encode_put(key: &Bytes, value: &Bytes) -> Bytes {
    Command::Put {
        key: key.clone(),
        value: value.clone(),
        expect: Expect::Any,
    }
    .encode()
}

/// A log entry holding proposal `id`'s put, for tests.
#[cfg(test)]
pub(crate) fn put_entry(
    index: keel_raft::Index,
    term: keel_raft::Term,
    id: u64,
    seed: u64,
) -> keel_raft::Entry {
    keel_raft::Entry {
        term,
        index,
        kind: keel_raft::EntryKind::Normal,
        data: encode_put(&key_of(id), &value_of(id, seed)),
    }
}

/// Decodes a payload made by [`encode_put`]; `None` for anything else.
pub fn decode_put(data: &Bytes) -> Option<(Bytes, Bytes)> {
    match Command::decode_bytes(data).ok()? {
        Command::Put {
            key,
            value,
            expect: Expect::Any,
        } => Some((key, value)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_round_trips_and_other_payloads_are_rejected() {
        let data = encode_put(&key_of(7), &value_of(7, 99));
        let (k, v) = decode_put(&data).expect("decodes");
        assert_eq!(k, key_of(7));
        assert_eq!(v, value_of(7, 99));
        assert_eq!(decode_put(&Bytes::new()), None);
        assert_eq!(decode_put(&Bytes::from_static(b"garbage")), None);
        let delete = Command::Delete {
            key: key_of(1),
            expect: Expect::Any,
        };
        assert_eq!(decode_put(&delete.encode()), None);
        assert_ne!(value_of(1, 1), value_of(1, 2));
    }
}
