//! The scenario's keys and values: the moving slot's keys (one hash tag), the
//! ordinary keys, a value of its own for every key (so that a key read back
//! after the move proves it holds its own data), and each client's choices.

use bytes::Bytes;
use keel_client::{Slot, slot_for_key};

use crate::rng::Rng;
use crate::workload::{Op, OpKind, key};

/// The two key sets and the value size.
#[derive(Clone, Debug, PartialEq)]
pub struct KeySpace {
    /// The moving slot's hash tag.
    pub tag: String,
    /// Keys of the moving slot.
    pub slot_keys: u64,
    /// Ordinary keys.
    pub keys: u64,
    /// Bytes per value.
    pub value_size: usize,
}

impl KeySpace {
    /// Moving-slot key number `i`: `{tag}key-000042`.
    pub fn slot_key(&self, i: u64) -> Bytes {
        Bytes::from(format!("{{{}}}key-{i:06}", self.tag))
    }

    /// The slot every [`KeySpace::slot_key`] is in.
    pub fn slot(&self) -> Slot {
        slot_for_key(&self.slot_key(0))
    }

    /// The value of `key`: `value_size` printable bytes drawn from a seed that
    /// is a hash of the key (FNV-1a), the same at every write.
    pub fn value(&self, key: &[u8]) -> Bytes {
        let seed = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        let mut rng = Rng::new(seed);
        (0..self.value_size)
            .map(|_| b'a' + rng.below(26) as u8)
            .collect::<Vec<u8>>()
            .into()
    }

    /// The operations of client number `client`.
    pub fn ops(&self, seed: u64, client: usize, read_fraction: f64, moving: f64) -> Chooser {
        Chooser {
            space: self.clone(),
            rng: Rng::new(seed.wrapping_add(client as u64)),
            read_fraction,
            moving,
        }
    }
}

/// One client's endless sequence of operations.
#[derive(Clone, Debug)]
pub struct Chooser {
    space: KeySpace,
    rng: Rng,
    read_fraction: f64,
    moving: f64,
}

impl Chooser {
    /// The next operation: a read with probability `read_fraction`, of a
    /// moving-slot key with probability `moving`, else of an ordinary key
    /// (each set's keys chosen uniformly).
    pub fn next_op(&mut self) -> Op {
        let read = self.rng.next_f64() < self.read_fraction;
        let moving = self.space.keys == 0 || self.rng.next_f64() < self.moving;
        let key = if moving {
            self.space
                .slot_key(self.rng.below(self.space.slot_keys.max(1)))
        } else {
            key(self.rng.below(self.space.keys))
        };
        Op {
            kind: if read { OpKind::Read } else { OpKind::Write },
            key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> KeySpace {
        KeySpace {
            tag: "mv".into(),
            slot_keys: 1000,
            keys: 1000,
            value_size: 32,
        }
    }

    #[test]
    fn slot_keys_share_one_slot_and_ordinary_keys_spread() {
        let s = space();
        assert_eq!(s.slot_key(7), Bytes::from_static(b"{mv}key-000007"));
        assert!((0..1000).all(|i| slot_for_key(&s.slot_key(i)) == s.slot()));
        let slots: std::collections::BTreeSet<_> =
            (0..1000).map(|i| slot_for_key(&key(i))).collect();
        assert!(slots.len() > 500, "{}", slots.len());
    }

    #[test]
    fn every_key_has_its_own_stable_value() {
        let s = space();
        let a = s.value(&s.slot_key(1));
        assert_eq!(a.len(), 32);
        assert_eq!(a, s.value(&s.slot_key(1)));
        assert_ne!(a, s.value(&s.slot_key(2)));
        assert!(a.iter().all(u8::is_ascii_lowercase));
    }

    #[test]
    fn the_moving_share_and_read_fraction_are_respected() {
        let s = space();
        let slot = s.slot();
        let mut ops = s.ops(1, 3, 0.5, 0.2);
        let picked: Vec<Op> = (0..10_000).map(|_| ops.next_op()).collect();
        let moving = picked
            .iter()
            .filter(|o| slot_for_key(&o.key) == slot)
            .count();
        let reads = picked.iter().filter(|o| o.kind == OpKind::Read).count();
        assert!((1_800..2_200).contains(&moving), "{moving}");
        assert!((4_700..5_300).contains(&reads), "{reads}");
        let mut only = KeySpace { keys: 0, ..s }.ops(1, 0, 0.0, 0.0);
        assert!((0..100).all(|_| slot_for_key(&only.next_op().key) == slot));
    }
}
