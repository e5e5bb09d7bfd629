//! Keys to hash slots.
//!
//! A key's slot is the low 12 bits of the CRC-32C (Castagnoli) of its *hashed
//! part*: the whole key, or its hash tag (below). CRC-32C was chosen because
//!
//! - it is a published standard (RFC 3720, with check value `0xE3069283` for
//!   `"123456789"`), so every client in every language can compute slots and
//!   agree bit for bit; a library's private hash could change with a version;
//! - it is already keel's checksum (WAL, snapshots), in hardware on x86 (SSE 4.2)
//!   and ARMv8, and the `crc32c` crate the workspace uses is fast on short keys;
//! - being linear, it sends keys that differ only in their last byte to 256
//!   different slots (tested below), and spreads long runs of sequential keys
//!   more evenly than a random function would.
//!
//! It is not a keyed or cryptographic hash: a client can aim many keys at one
//! slot. That only makes one group busier, which it could do anyway by writing
//! one hot key.
//!
//! **Hash tags** (Redis Cluster's rule): if a key contains `{`, and a `}` comes
//! after it with at least one byte in between, only the bytes between the first
//! `{` and the first `}` after it are hashed. `{user:42}:name` and
//! `{user:42}:email` share a slot, so a transaction over both never spans two
//! groups. `{}x` and `x{` have no tag and are hashed whole.
//!
//! The mapping is part of the on-disk format: a changed function would send
//! reads to groups that do not hold the keys. The golden tests pin it.

use serde::{Deserialize, Serialize};

/// Number of hash slots. Fixed forever: changing it moves almost every key.
pub const SLOT_COUNT: u16 = 4096;

/// The slot number is the CRC's low bits: [`SLOT_COUNT`] is a power of two.
const SLOT_MASK: u32 = SLOT_COUNT as u32 - 1;
const _: () = assert!(SLOT_COUNT.is_power_of_two());

/// A hash slot: a number below [`SLOT_COUNT`]. Construct with [`Slot::new`] or
/// [`slot_for_key`]; deserializing checks the range too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct Slot(u16);

impl Slot {
    /// The slot numbered `n`, if `n < SLOT_COUNT`.
    pub fn new(n: u16) -> Option<Slot> {
        (n < SLOT_COUNT).then_some(Slot(n))
    }

    /// The slot's number.
    pub fn get(self) -> u16 {
        self.0
    }

    /// Every slot, in order.
    pub fn all() -> impl Iterator<Item = Slot> {
        (0..SLOT_COUNT).map(Slot)
    }

    /// The slot's position in a table of [`SLOT_COUNT`] entries.
    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl TryFrom<u16> for Slot {
    type Error = String;

    fn try_from(n: u16) -> Result<Slot, String> {
        Slot::new(n).ok_or_else(|| format!("slot {n} is out of range (0..{SLOT_COUNT})"))
    }
}

impl From<Slot> for u16 {
    fn from(slot: Slot) -> u16 {
        slot.0
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The slot that holds `key`.
pub fn slot_for_key(key: &[u8]) -> Slot {
    let hashed = hash_tag(key).unwrap_or(key);
    // The mask keeps the value below SLOT_COUNT, which fits in u16.
    Slot((crc32c::crc32c(hashed) & SLOT_MASK) as u16)
}

/// The hash tag of `key`: the bytes between its first `{` and the first `}`
/// after that, if there is at least one. `None` means the whole key is hashed.
pub fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let rest = &key[open + 1..];
    let close = rest.iter().position(|&b| b == b'}')?;
    (close > 0).then(|| &rest[..close])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned outputs. They were computed by an independent implementation of
    /// CRC-32C (bitwise, reflected polynomial 0x82F63B78); if one changes, the
    /// function changed, and every existing cluster would misroute.
    #[test]
    fn golden_slots_never_change() {
        let golden: &[(&[u8], u16)] = &[
            (b"", 0),
            (b"a", 816),
            (b"foo", 3613),
            (b"user:1000", 1000),
            (b"hello world", 1450),
            (b"123456789", 0x283),
            // The tag is what is hashed (the whole key would give 2659).
            (b"{user1000}.following", 830),
            (b"user1000", 830),
            (b"\x00\xff\x10binary", 3106),
            (b"{}x", 2525),
            (b"x{", 4059),
            (b"a{b}{c}", 196),
            (b"{{b}}", 3041),
        ];
        for &(key, slot) in golden {
            assert_eq!(
                slot_for_key(key).get(),
                slot,
                "slot of {:?}",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn crc_is_the_standard_castagnoli() {
        // RFC 3720's check value: the hash is the published algorithm.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn hash_tags_follow_the_redis_rule() {
        assert_eq!(hash_tag(b"{user:42}:name"), Some(&b"user:42"[..]));
        assert_eq!(hash_tag(b"a{b}{c}"), Some(&b"b"[..]));
        assert_eq!(hash_tag(b"{{b}}"), Some(&b"{b"[..]));
        assert_eq!(hash_tag(b"x}{y}"), Some(&b"y"[..]));
        assert_eq!(hash_tag(b"{}x"), None, "an empty tag hashes the whole key");
        assert_eq!(hash_tag(b"{}{x}"), None, "only the first '{{' counts");
        assert_eq!(hash_tag(b"x{"), None);
        assert_eq!(hash_tag(b"plain"), None);
        assert_eq!(
            slot_for_key(b"{user:42}:name"),
            slot_for_key(b"{user:42}:email")
        );
        assert_eq!(slot_for_key(b"{user:42}:name"), slot_for_key(b"user:42"));
    }

    #[test]
    fn keys_differing_in_their_last_byte_never_share_a_slot() {
        for prefix in [&b""[..], b"k", b"user:", b"order-2024-11-"] {
            let mut seen = std::collections::BTreeSet::new();
            for last in 0..=255u8 {
                let key = [prefix, &[last]].concat();
                assert!(
                    seen.insert(slot_for_key(&key)),
                    "prefix {prefix:?}: two keys share a slot"
                );
            }
        }
    }

    #[test]
    fn sequential_keys_spread_evenly() {
        let mut counts = vec![0u32; usize::from(SLOT_COUNT)];
        for i in 0..409_600 {
            counts[slot_for_key(format!("key:{i}").as_bytes()).index()] += 1;
        }
        // 100 per slot on average; a uniform random function would stray by
        // about 10 (one standard deviation) and reach beyond ±30 now and then.
        let (min, max) = (counts.iter().min(), counts.iter().max());
        assert!(min >= Some(&80) && max <= Some(&120), "{min:?}..{max:?}");
    }

    #[test]
    fn slots_out_of_range_are_refused() {
        assert_eq!(Slot::new(4095).map(Slot::get), Some(4095));
        assert_eq!(Slot::new(4096), None);
        assert!(serde_json::from_str::<Slot>("4096").is_err());
        assert_eq!(serde_json::from_str::<Slot>("7").ok(), Slot::new(7));
        assert_eq!(Slot::all().count(), 4096);
    }
}
