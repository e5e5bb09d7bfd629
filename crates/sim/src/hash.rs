//! A small deterministic 64-bit hash, for the trace fingerprint, the checker's
//! prefix hashes and state machine digests.
//!
//! `std`'s `DefaultHasher` is randomly keyed per process on some paths and is
//! documented as unstable across releases; a run's fingerprint must be the same in
//! every process, so the simulator hashes with its own function.

use std::hash::Hasher;

/// Mixes `value` into `state` (a multiply-xorshift round in the style of the
/// MurmurHash3/SplitMix finalizers). Not cryptographic; collisions only need to be
/// unlikely among the few million values one run produces.
pub fn mix(state: u64, value: u64) -> u64 {
    let mut z = (state ^ value).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a byte string, length included (so `"ab" + "c"` and `"a" + "bc"` differ
/// when folded in sequence).
pub fn mix_bytes(state: u64, data: &[u8]) -> u64 {
    let mut h = mix(state, data.len() as u64);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        h = mix(
            h,
            u64::from_le_bytes(c.try_into().expect("chunks_exact yields 8 bytes")),
        );
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        h = mix(h, u64::from_le_bytes(last));
    }
    h
}

/// One key of a state machine, as it counts toward a [`StateDigest`].
fn state_item(key: &[u8], value: &[u8], version: u64) -> u64 {
    mix(mix_bytes(mix_bytes(0, key), value), version)
}

/// An order-independent digest of a key-value state machine's contents (every key,
/// value and version): equal contents give equal digests, and one put updates it
/// in constant time, so the checker can keep the digest of the reference state
/// machine at every applied index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StateDigest(u64);

impl StateDigest {
    /// Counts a key in.
    pub fn add(&mut self, key: &[u8], value: &[u8], version: u64) {
        self.0 = self.0.wrapping_add(state_item(key, value, version));
    }

    /// Counts a key out (it is deleted or about to be overwritten).
    pub fn remove(&mut self, key: &[u8], value: &[u8], version: u64) {
        self.0 = self.0.wrapping_sub(state_item(key, value, version));
    }
}

/// A [`Hasher`] over [`mix`], so `#[derive(Hash)]` types can be fingerprinted
/// deterministically.
#[derive(Clone, Copy, Debug, Default)]
pub struct StableHasher {
    state: u64,
}

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        self.state
    }

    fn write(&mut self, data: &[u8]) {
        self.state = mix_bytes(self.state, data);
    }

    fn write_u8(&mut self, v: u8) {
        self.state = mix(self.state, u64::from(v));
    }

    fn write_u32(&mut self, v: u32) {
        self.state = mix(self.state, u64::from(v));
    }

    fn write_u64(&mut self, v: u64) {
        self.state = mix(self.state, v);
    }

    fn write_usize(&mut self, v: usize) {
        self.state = mix(self.state, v as u64);
    }

    fn write_isize(&mut self, v: isize) {
        self.state = mix(self.state, v as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;

    #[test]
    fn hash_depends_on_content_and_split() {
        assert_ne!(mix_bytes(0, b"abc"), mix_bytes(0, b"abd"));
        assert_ne!(
            mix_bytes(mix_bytes(0, b"ab"), b"c"),
            mix_bytes(mix_bytes(0, b"a"), b"bc")
        );
        assert_eq!(mix_bytes(5, b"0123456789"), mix_bytes(5, b"0123456789"));
    }

    #[test]
    fn state_digest_ignores_order_and_tracks_overwrites() {
        let (mut a, mut b) = (StateDigest::default(), StateDigest::default());
        a.add(b"k1", b"x", 1);
        a.add(b"k2", b"y", 2);
        b.add(b"k2", b"y", 2);
        b.add(b"k1", b"x", 1);
        assert_eq!(a, b);
        b.remove(b"k1", b"x", 1);
        b.add(b"k1", b"x", 3);
        assert_ne!(a, b, "the version counts");
        b.remove(b"k1", b"x", 3);
        b.remove(b"k2", b"y", 2);
        assert_eq!(b, StateDigest::default());
    }

    #[test]
    fn stable_hasher_is_stable() {
        let fp = |v: &(u64, &str, bool)| {
            let mut h = StableHasher::default();
            v.hash(&mut h);
            h.finish()
        };
        assert_eq!(fp(&(1, "x", true)), fp(&(1, "x", true)));
        assert_ne!(fp(&(1, "x", true)), fp(&(1, "x", false)));
    }
}
