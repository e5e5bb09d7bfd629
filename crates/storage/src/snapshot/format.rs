//! The snapshot file's byte layout. `docs/snapshot-format.md` is the prose version
//! of this file; keep them in step.
//!
//! All integers are little-endian; checksums are CRC-32C (Castagnoli).

use bytes::Bytes;
use keel_raft::{GroupId, Index, Term};

use crate::wal::MAX_ENTRY_BYTES;

/// First bytes of every snapshot file.
pub(crate) const MAGIC: [u8; 8] = *b"KEELSNAP";
/// The format version this code writes. Version 2 added the state section
/// (client sessions) after the keys; version 3 added the revision offset and the
/// slot table at its end. This code reads all three.
pub(crate) const FORMAT_VERSION: u32 = 3;
/// The format version with a state section but no slot records.
pub(crate) const FORMAT_VERSION_SESSIONS: u32 = 2;
/// The oldest format version this code reads: no state section.
pub(crate) const FORMAT_VERSION_KEYS_ONLY: u32 = 1;
/// Bytes of the header before the membership bytes.
pub(crate) const HEADER_FIXED_LEN: u64 = 44;
/// Largest header (fixed part, membership bytes and checksum).
pub const MAX_HEADER_BYTES: u64 = 64 << 10;
/// Largest membership (configuration) blob a header can carry.
pub const MAX_CONF_BYTES: u64 = MAX_HEADER_BYTES - HEADER_FIXED_LEN - 4;

/// First bytes of a data chunk (key records).
pub(crate) const CHUNK_MAGIC: [u8; 4] = *b"KSDC";
/// First bytes of a state chunk (state records; format version 2).
pub(crate) const STATE_CHUNK_MAGIC: [u8; 4] = *b"KSST";
/// Bytes before a state record's body: kind, body length.
pub(crate) const STATE_RECORD_HEADER_LEN: usize = 5;
/// State record kind: the session clock, body `clock_ms:u64`. Exactly one, first.
pub(crate) const STATE_SESSION_CLOCK: u8 = 0x01;
/// State record kind: a client session, body `client_id:u128` (big-endian) then
/// the session's stored row. In increasing client id order.
pub(crate) const STATE_SESSION: u8 = 0x02;
/// State record kind (format 3): the revision offset, body `offset:u64`.
/// Exactly one, after the sessions.
pub(crate) const STATE_REVISION_OFFSET: u8 = 0x03;
/// State record kind (format 3): the slot table as the state machine stores it
/// (`SLOT_TABLE_BYTES`). Exactly one, last.
pub(crate) const STATE_SLOT_TABLE: u8 = 0x04;
/// Largest state record body a reader accepts: far above the largest session
/// (16 bytes of id and a row of at most 1024 remembered results, ~22 KiB) and
/// the slot table (36 KiB).
pub const MAX_STATE_RECORD_BYTES: u64 = 64 << 10;
const _: () = assert!(crate::kv::slots::SLOT_TABLE_BYTES as u64 <= MAX_STATE_RECORD_BYTES);
/// Bytes of a chunk header.
pub(crate) const CHUNK_HEADER_LEN: u64 = 16;
/// Bytes before a record's key: key length, value length, version.
pub(crate) const RECORD_HEADER_LEN: usize = 16;
/// Largest key a snapshot may hold. Far above what the server accepts (4 KiB); the
/// state machine itself enforces no limit, so this is the format's own bound.
pub const MAX_KEY_BYTES: u64 = 64 << 10;
/// Largest value a snapshot may hold: a value arrived in one log entry, so it can
/// never exceed the WAL's entry limit.
pub const MAX_VALUE_BYTES: u64 = MAX_ENTRY_BYTES;
/// Largest chunk payload a reader accepts: one maximal record. A header claiming more
/// is damage, and this bounds what a reader allocates for one chunk.
pub const MAX_CHUNK_PAYLOAD: u64 = RECORD_HEADER_LEN as u64 + MAX_KEY_BYTES + MAX_VALUE_BYTES;

/// First bytes of the footer.
pub(crate) const FOOTER_MAGIC: [u8; 4] = *b"KSFT";
/// Bytes of the footer.
pub(crate) const FOOTER_LEN: u64 = 32;

/// Suffix of finished snapshot files.
pub(crate) const SUFFIX: &str = ".keel";
/// Suffix of a snapshot being written locally (removed at open).
pub(crate) const TMP_SUFFIX: &str = ".keel.tmp";
/// Suffix of a snapshot being received from a peer (removed at open).
pub(crate) const PARTIAL_SUFFIX: &str = ".keel.partial";

/// What a snapshot's header says: which group and log position it captures, and the
/// membership at that position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// The Raft group.
    pub group: GroupId,
    /// Last log index the snapshot covers; also the state machine's applied index.
    pub index: Index,
    /// Term of the entry at `index`.
    pub term: Term,
    /// The membership (configuration) as of `index`, opaque to storage: the caller
    /// encodes it (e.g. the core's `ConfState`) and decodes it after reading.
    pub conf: Bytes,
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4-byte slice"))
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8-byte slice"))
}

impl SnapshotHeader {
    /// Encoded size of this header.
    pub(crate) fn encoded_len(&self) -> u64 {
        HEADER_FIXED_LEN + self.conf.len() as u64 + 4
    }

    /// The header bytes:
    ///
    /// | offset | size | field |
    /// |---|---|---|
    /// | 0 | 8 | magic `KEELSNAP` |
    /// | 8 | 4 | format version ([`FORMAT_VERSION`]) |
    /// | 12 | 4 | header length `h` (all of it, checksum included) |
    /// | 16 | 8 | group id |
    /// | 24 | 8 | last included index |
    /// | 32 | 8 | last included term |
    /// | 40 | 4 | membership length `n` |
    /// | 44 | n | membership bytes |
    /// | 44+n | 4 | CRC-32C of bytes 0..44+n |
    ///
    /// The caller checks `conf` against [`MAX_CONF_BYTES`] first.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let len = self.encoded_len();
        let mut b = Vec::with_capacity(len as usize);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&(len as u32).to_le_bytes());
        b.extend_from_slice(&self.group.to_le_bytes());
        b.extend_from_slice(&self.index.to_le_bytes());
        b.extend_from_slice(&self.term.to_le_bytes());
        b.extend_from_slice(&(self.conf.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.conf);
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }
}

/// Encodes a chunk header for `payload` holding `records` records.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | magic: `KSDC` (key records) or `KSST` (state records) |
/// | 4 | 4 | payload length `p` |
/// | 8 | 4 | number of records in the payload |
/// | 12 | 4 | CRC-32C of bytes 0..12 followed by the payload |
pub(crate) fn chunk_header(
    magic: [u8; 4],
    payload: &[u8],
    records: u32,
) -> [u8; CHUNK_HEADER_LEN as usize] {
    let mut h = [0u8; CHUNK_HEADER_LEN as usize];
    h[0..4].copy_from_slice(&magic);
    h[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[8..12].copy_from_slice(&records.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[..12]), payload);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Appends one record: `key_len:u32 value_len:u32 version:u64 key value`.
pub(crate) fn encode_record(buf: &mut Vec<u8>, key: &[u8], version: u64, value: &[u8]) {
    buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
    buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
    buf.extend_from_slice(&version.to_le_bytes());
    buf.extend_from_slice(key);
    buf.extend_from_slice(value);
}

/// Appends one state record: `kind:u8 body_len:u32` and the body's parts.
pub(crate) fn encode_state_record(buf: &mut Vec<u8>, kind: u8, body: &[&[u8]]) {
    let len: usize = body.iter().map(|b| b.len()).sum();
    buf.push(kind);
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    for part in body {
        buf.extend_from_slice(part);
    }
}

/// The footer without its checksum (bytes 0..28); the last 4 bytes are the CRC-32C of
/// the whole file before them.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | magic `KSFT` |
/// | 4 | 4 | reserved, zero |
/// | 8 | 8 | number of records in the file (key and state records) |
/// | 16 | 8 | file length in bytes, footer included |
/// | 24 | 4 | reserved, zero |
/// | 28 | 4 | CRC-32C of every byte of the file before this field |
pub(crate) fn footer_body(records: u64, file_len: u64) -> [u8; 28] {
    let mut f = [0u8; 28];
    f[0..4].copy_from_slice(&FOOTER_MAGIC);
    f[8..16].copy_from_slice(&records.to_le_bytes());
    f[16..24].copy_from_slice(&file_len.to_le_bytes());
    f
}

/// The file name of the snapshot at (`term`, `index`): fixed-width hex so that name
/// order is log order.
pub(crate) fn file_name(term: Term, index: Index) -> String {
    format!("snap-{term:016x}-{index:016x}{SUFFIX}")
}

/// `(term, index)` of a finished snapshot's file name; `None` for other files.
pub(crate) fn parse_name(name: &str) -> Option<(Term, Index)> {
    let rest = name.strip_prefix("snap-")?.strip_suffix(SUFFIX)?;
    let (term, index) = rest.split_once('-')?;
    let hex = |s: &str| {
        (s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
    };
    Some((hex(term)?, hex(index)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_others() {
        let n = file_name(3, 0x1234);
        assert_eq!(n, "snap-0000000000000003-0000000000001234.keel");
        assert_eq!(parse_name(&n), Some((3, 0x1234)));
        for other in [
            "snap-3-4.keel",
            "snap-0000000000000003-0000000000001234.keel.tmp",
            "snap-0000000000000003-0000000000001234.keel.partial",
            "LOCK",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }

    #[test]
    fn header_length_matches_encoding() {
        let h = SnapshotHeader {
            group: 1,
            index: 2,
            term: 3,
            conf: Bytes::from_static(b"abc"),
        };
        assert_eq!(h.encode().len() as u64, h.encoded_len());
    }
}
