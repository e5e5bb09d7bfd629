//! A deterministic fingerprint of the whole key space, to compare replicas.

use std::fmt;

use keel_raft::Index;

use super::KvStore;
use super::error::KvError;

/// What [`KvStore::digest`] returns.
///
/// Two replicas that applied the same log up to the same index have equal digests;
/// any difference in a key, a value, a version or a client session changes `hash`
/// (up to the odds of a 128-bit collision, which are irrelevant for catching
/// divergence, though it is not a cryptographic hash). The value is stable across
/// builds and platforms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KvDigest {
    /// The applied index the digest was taken at (not part of `hash`).
    pub applied_index: Index,
    /// Number of keys.
    pub keys: u64,
    /// Number of client sessions.
    pub sessions: u64,
    /// FNV-1a (128-bit) over every key in key order, each encoded as
    /// `key_len:u32 key version:u64 value_len:u32 value` (little-endian); then,
    /// unless there are no sessions and the session clock is 0 (so a store that
    /// never saw a session hashes as before sessions existed), the clock as
    /// `u64` and every session in id order as `id:u128 row_len:u32 row` (the id
    /// big-endian, the row as stored); then, unless every slot is served and the
    /// revision offset is 0 (so a store from before sharding hashes as before),
    /// the offset as `u64` and the slot table as stored (one `tag:u8 epoch:u64`
    /// per slot, in slot order).
    pub hash: u128,
}

impl fmt::Display for KvDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:032x} ({} keys, {} sessions at index {})",
            self.hash, self.keys, self.sessions, self.applied_index
        )
    }
}

const FNV_OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
const FNV_PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

/// Streaming FNV-1a, 128-bit.
struct Fnv(u128);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u128::from(b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }
}

impl KvStore {
    /// A deterministic hash of every key, value and version, read from one
    /// consistent view (see [`KvDigest`]). Reads the whole key space: meant for
    /// tests and consistency checks, not the hot path.
    pub fn digest(&self) -> Result<KvDigest, KvError> {
        let view = self.read_view()?;
        let mut h = Fnv(FNV_OFFSET);
        let mut keys = 0u64;
        // Keys, values and rows are far below 4 GiB (WAL entry limit); saturating
        // keeps this total even if that ever changed.
        let len = |b: &[u8]| u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes();
        view.for_each(None, |key, version, value| {
            h.write(&len(key));
            h.write(key);
            h.write(&version.to_le_bytes());
            h.write(&len(value));
            h.write(value);
            keys += 1;
            Ok(true)
        })?;
        let sessions = view.sessions_len()?;
        if sessions > 0 || view.session_clock_ms() > 0 {
            h.write(&view.session_clock_ms().to_le_bytes());
            view.for_each_session(|id, row| {
                h.write(&id.to_be_bytes());
                h.write(&len(row));
                h.write(row);
                Ok(true)
            })?;
        }
        let slots = view.slot_table()?;
        if !slots.is_all_serving() || view.revision_offset() != 0 {
            h.write(&view.revision_offset().to_le_bytes());
            h.write(&slots.encode());
        }
        Ok(KvDigest {
            applied_index: view.applied_index(),
            keys,
            sessions,
            hash: h.0,
        })
    }
}
