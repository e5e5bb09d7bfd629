//! Streaming, verifying reader of a snapshot file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::error::SnapshotError;
use super::format::{
    CHUNK_HEADER_LEN, CHUNK_MAGIC, FOOTER_LEN, FOOTER_MAGIC, FORMAT_VERSION,
    FORMAT_VERSION_KEYS_ONLY, FORMAT_VERSION_SESSIONS, HEADER_FIXED_LEN, MAGIC, MAX_CHUNK_PAYLOAD,
    MAX_HEADER_BYTES, MAX_KEY_BYTES, MAX_STATE_RECORD_BYTES, MAX_VALUE_BYTES, RECORD_HEADER_LEN,
    STATE_CHUNK_MAGIC, STATE_RECORD_HEADER_LEN, STATE_REVISION_OFFSET, STATE_SESSION,
    STATE_SESSION_CLOCK, STATE_SLOT_TABLE, SnapshotHeader, u32_at, u64_at,
};
use crate::kv::SlotTable;
use crate::vfs::{Vfs, VfsFile};

/// A snapshot file that passed a full verification pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Where it is.
    pub path: PathBuf,
    /// What it captures.
    pub header: SnapshotHeader,
    /// Number of keys.
    pub records: u64,
    /// Number of client sessions (0 in a format-1 file, which has none).
    pub sessions: u64,
    /// File length in bytes.
    pub len: u64,
}

/// One key of a snapshot, borrowed from the reader's chunk buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotRecord<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The log index that last wrote it.
    pub version: u64,
    /// The value.
    pub value: &'a [u8],
}

/// One item of a snapshot, borrowed from the reader's chunk buffer: the keys come
/// first, then (format 2) the state section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotItem<'a> {
    /// A key with its value and version.
    Key(SnapshotRecord<'a>),
    /// The state machine's session clock (milliseconds of log time); exactly one,
    /// before any session.
    SessionClock(u64),
    /// A client session: its id and its stored row (format in `docs/sessions.md`).
    Session {
        /// The session's client id.
        client_id: u128,
        /// The session's row as the state machine stores it.
        row: &'a [u8],
    },
    /// The group's revision offset (format 3; exactly one, after the sessions).
    RevisionOffset(u64),
    /// The group's slot table (format 3; exactly one, last). A file without one
    /// comes from before sharding: every slot served.
    SlotTable(&'a SlotTable),
}

/// Where the reader is in the state section: each record kind may only follow
/// the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StatePhase {
    /// Nothing read yet: the session clock comes first.
    Clock,
    /// After the clock: sessions, then (format 3) the revision offset.
    Sessions,
    /// After the revision offset: the slot table.
    SlotTable,
    /// After the slot table: nothing more.
    Done,
}

/// Where the current item lies in the chunk buffer; turned into a borrowed
/// [`SnapshotItem`] only when handed out.
#[derive(Clone, Copy)]
enum At {
    Key {
        key: (usize, usize),
        version: u64,
        value: (usize, usize),
    },
    Clock(u64),
    Session {
        client_id: u128,
        row: (usize, usize),
    },
    Offset(u64),
    /// The table is decoded into the reader's `slot_table`.
    Slots,
}

/// Reads a snapshot front to back, one chunk in memory at a time, verifying every
/// chunk checksum, key order, the state section's order, the footer and the
/// whole-file checksum. A record is only as trustworthy as its chunk's checksum
/// until [`SnapshotReader::next_item`] (or `next_record`) has returned `None`
/// (which means the whole file verified): an install must not make anything
/// visible before that.
#[derive(Debug)]
pub struct SnapshotReader {
    file: Arc<dyn VfsFile>,
    path: PathBuf,
    len: u64,
    header: SnapshotHeader,
    /// Offset of the next chunk (or the footer).
    pos: u64,
    /// CRC-32C of bytes `0..pos`.
    crc: u32,
    /// The current chunk's payload and the read position in it.
    chunk: Vec<u8>,
    chunk_at: u64,
    cursor: usize,
    chunk_records_left: u32,
    records: u64,
    prev_key: Vec<u8>,
    have_prev: bool,
    finished: bool,
    /// The file's format version (1 to 3).
    version: u32,
    /// Whether the current chunk holds state records (else key records); once
    /// one does, no key chunk may follow.
    in_state: bool,
    /// State records read: the clock, the sessions, the offset, the slot table.
    state_records: u64,
    phase: StatePhase,
    sessions: u64,
    prev_session: Option<u128>,
    /// The slot table, once read (a verified, decoded copy).
    slot_table: Option<SlotTable>,
}

impl SnapshotReader {
    /// Opens `path` and verifies its header.
    pub fn open(vfs: &dyn Vfs, path: &Path) -> Result<SnapshotReader, SnapshotError> {
        let file = vfs
            .open(path, false)
            .map_err(SnapshotError::io("open snapshot", path))?;
        let len = file
            .len()
            .map_err(SnapshotError::io("stat snapshot", path))?;
        let mut r = SnapshotReader {
            file,
            path: path.to_path_buf(),
            len,
            header: SnapshotHeader {
                group: 0,
                index: 0,
                term: 0,
                conf: Bytes::new(),
            },
            pos: 0,
            crc: 0,
            chunk: Vec::new(),
            chunk_at: 0,
            cursor: 0,
            chunk_records_left: 0,
            records: 0,
            prev_key: Vec::new(),
            have_prev: false,
            finished: false,
            version: FORMAT_VERSION,
            in_state: false,
            state_records: 0,
            phase: StatePhase::Clock,
            sessions: 0,
            prev_session: None,
            slot_table: None,
        };
        r.read_header()?;
        Ok(r)
    }

    /// The verified header.
    pub fn header(&self) -> &SnapshotHeader {
        &self.header
    }

    /// The file's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty (never true for an opened snapshot).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Key records returned so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Client sessions returned so far.
    pub fn sessions(&self) -> u64 {
        self.sessions
    }

    fn corrupt(&self, offset: u64, reason: impl Into<String>) -> SnapshotError {
        SnapshotError::Corrupt {
            file: self.path.clone(),
            offset,
            reason: reason.into(),
        }
    }

    fn truncated(&self, offset: u64, reason: impl Into<String>) -> SnapshotError {
        SnapshotError::Truncated {
            file: self.path.clone(),
            offset,
            len: self.len,
            reason: reason.into(),
        }
    }

    /// Reads `n` bytes at `self.pos` into `buf`, adds them to the running checksum
    /// and advances.
    fn take(&mut self, buf: &mut Vec<u8>, n: u64) -> Result<(), SnapshotError> {
        buf.clear();
        buf.resize(
            usize::try_from(n).expect("reads are bounded by format limits"),
            0,
        );
        self.file
            .read_exact_at(self.pos, buf)
            .map_err(SnapshotError::io("read snapshot", &self.path))?;
        self.crc = crc32c::crc32c_append(self.crc, buf);
        self.pos += n;
        Ok(())
    }

    fn read_header(&mut self) -> Result<(), SnapshotError> {
        if self.len < HEADER_FIXED_LEN + 4 + FOOTER_LEN {
            return Err(self.truncated(0, "shorter than a header and a footer"));
        }
        let mut fixed = Vec::new();
        self.take(&mut fixed, HEADER_FIXED_LEN)?;
        if fixed[0..8] != MAGIC {
            return Err(self.corrupt(0, "not a keel snapshot (wrong magic bytes)"));
        }
        let header_len = u64::from(u32_at(&fixed, 12));
        let conf_len = u64::from(u32_at(&fixed, 40));
        if header_len > MAX_HEADER_BYTES || header_len != HEADER_FIXED_LEN + conf_len + 4 {
            return Err(self.corrupt(
                12,
                format!("impossible header length {header_len} (membership {conf_len} bytes)"),
            ));
        }
        if header_len + FOOTER_LEN > self.len {
            return Err(self.truncated(HEADER_FIXED_LEN, "header runs past the end"));
        }
        let mut rest = Vec::new();
        self.take(&mut rest, conf_len + 4)?;
        let crc_at = conf_len as usize;
        let stored = u32_at(&rest, crc_at);
        let computed = crc32c::crc32c_append(crc32c::crc32c(&fixed), &rest[..crc_at]);
        if stored != computed {
            return Err(self.corrupt(0, "header checksum mismatch"));
        }
        let version = u32_at(&fixed, 8);
        if !(FORMAT_VERSION_KEYS_ONLY..=FORMAT_VERSION).contains(&version) {
            return Err(self.corrupt(
                8,
                format!(
                    "unsupported format version {version} (this build reads \
                     {FORMAT_VERSION_KEYS_ONLY} to {FORMAT_VERSION})"
                ),
            ));
        }
        self.version = version;
        rest.truncate(crc_at);
        self.header = SnapshotHeader {
            group: u64_at(&fixed, 16),
            index: u64_at(&fixed, 24),
            term: u64_at(&fixed, 32),
            conf: Bytes::from(rest),
        };
        Ok(())
    }

    /// The next item (keys in key order, then the state section), or `None` once
    /// the footer and the whole-file checksum have been verified.
    pub fn next_item(&mut self) -> Result<Option<SnapshotItem<'_>>, SnapshotError> {
        Ok(self.advance()?.map(|at| self.item(at)))
    }

    /// The next key in key order, skipping the state section, or `None` once the
    /// footer and the whole-file checksum have been verified.
    pub fn next_record(&mut self) -> Result<Option<SnapshotRecord<'_>>, SnapshotError> {
        loop {
            match self.advance()? {
                None => return Ok(None),
                Some(at @ At::Key { .. }) => match self.item(at) {
                    SnapshotItem::Key(r) => return Ok(Some(r)),
                    _ => unreachable!("a key position makes a key item"),
                },
                Some(_) => {}
            }
        }
    }

    fn item(&self, at: At) -> SnapshotItem<'_> {
        let bytes = |(start, end): (usize, usize)| &self.chunk[start..end];
        match at {
            At::Key {
                key,
                version,
                value,
            } => SnapshotItem::Key(SnapshotRecord {
                key: bytes(key),
                version,
                value: bytes(value),
            }),
            At::Clock(ms) => SnapshotItem::SessionClock(ms),
            At::Session { client_id, row } => SnapshotItem::Session {
                client_id,
                row: bytes(row),
            },
            At::Offset(offset) => SnapshotItem::RevisionOffset(offset),
            At::Slots => SnapshotItem::SlotTable(
                self.slot_table
                    .as_ref()
                    .expect("a slot-table position is made after decoding it"),
            ),
        }
    }

    /// Verifies and steps over the next item; says where it is.
    fn advance(&mut self) -> Result<Option<At>, SnapshotError> {
        if self.finished {
            return Ok(None);
        }
        while self.chunk_records_left == 0 {
            if self.cursor != self.chunk.len() {
                return Err(self.corrupt(self.chunk_at, "bytes left after the chunk's last record"));
            }
            if !self.next_chunk()? {
                self.finished = true;
                return Ok(None);
            }
        }
        let at = if self.in_state {
            self.state_record()?
        } else {
            self.key_record()?
        };
        self.chunk_records_left -= 1;
        Ok(Some(at))
    }

    fn key_record(&mut self) -> Result<At, SnapshotError> {
        let at = self.cursor;
        let rest = &self.chunk[at..];
        if rest.len() < RECORD_HEADER_LEN {
            return Err(self.corrupt(self.chunk_at, "chunk ends inside a record header"));
        }
        let key_len = u64::from(u32_at(rest, 0));
        let value_len = u64::from(u32_at(rest, 4));
        let version = u64_at(rest, 8);
        if key_len > MAX_KEY_BYTES || value_len > MAX_VALUE_BYTES {
            return Err(self.corrupt(
                self.chunk_at,
                format!(
                    "record of a {key_len}-byte key and {value_len}-byte value is over the limits"
                ),
            ));
        }
        let body = (key_len + value_len) as usize;
        if rest.len() - RECORD_HEADER_LEN < body {
            return Err(self.corrupt(self.chunk_at, "record runs past the end of its chunk"));
        }
        let key_start = at + RECORD_HEADER_LEN;
        let key_end = key_start + key_len as usize;
        let key = &self.chunk[key_start..key_end];
        if self.have_prev && key <= self.prev_key.as_slice() {
            return Err(self.corrupt(self.chunk_at, "keys are not in strictly increasing order"));
        }
        self.prev_key.clear();
        self.prev_key.extend_from_slice(key);
        self.have_prev = true;
        self.cursor = key_end + value_len as usize;
        self.records += 1;
        Ok(At::Key {
            key: (key_start, key_end),
            version,
            value: (key_end, self.cursor),
        })
    }

    /// A state record: the clock first (exactly once), then sessions in
    /// increasing client id order, then (format 3) the revision offset and the
    /// slot table, once each.
    fn state_record(&mut self) -> Result<At, SnapshotError> {
        let rest = &self.chunk[self.cursor..];
        if rest.len() < STATE_RECORD_HEADER_LEN {
            return Err(self.corrupt(self.chunk_at, "chunk ends inside a state record header"));
        }
        let kind = rest[0];
        let len = u64::from(u32_at(rest, 1));
        if len > MAX_STATE_RECORD_BYTES || len as usize > rest.len() - STATE_RECORD_HEADER_LEN {
            return Err(self.corrupt(
                self.chunk_at,
                format!("state record of {len} bytes runs past its chunk or the limit"),
            ));
        }
        let start = self.cursor + STATE_RECORD_HEADER_LEN;
        let end = start + len as usize;
        let slots_allowed = self.version >= FORMAT_VERSION;
        let at = match (self.phase, kind) {
            (StatePhase::Clock, STATE_SESSION_CLOCK) if len == 8 => {
                self.phase = StatePhase::Sessions;
                At::Clock(u64_at(&self.chunk, start))
            }
            (StatePhase::Sessions, STATE_SESSION) if len >= 16 => {
                let id: [u8; 16] = self.chunk[start..start + 16]
                    .try_into()
                    .expect("16-byte slice");
                let client_id = u128::from_be_bytes(id);
                if self.prev_session.is_some_and(|p| client_id <= p) {
                    return Err(self.corrupt(
                        self.chunk_at,
                        "client sessions are not in strictly increasing order",
                    ));
                }
                self.prev_session = Some(client_id);
                self.sessions += 1;
                At::Session {
                    client_id,
                    row: (start + 16, end),
                }
            }
            (StatePhase::Sessions, STATE_REVISION_OFFSET) if slots_allowed && len == 8 => {
                self.phase = StatePhase::SlotTable;
                At::Offset(u64_at(&self.chunk, start))
            }
            (StatePhase::SlotTable, STATE_SLOT_TABLE) => {
                let table = SlotTable::decode(&self.chunk[start..end])
                    .map_err(|e| self.corrupt(self.chunk_at, format!("slot table: {e}")))?;
                self.slot_table = Some(table);
                self.phase = StatePhase::Done;
                At::Slots
            }
            _ => {
                return Err(self.corrupt(
                    self.chunk_at,
                    format!(
                        "unexpected state record (kind {kind:#04x}, {len} bytes) at position {}",
                        self.state_records
                    ),
                ));
            }
        };
        self.cursor = end;
        self.state_records += 1;
        Ok(at)
    }

    /// Loads the next chunk; `false` when the footer was reached and verified.
    fn next_chunk(&mut self) -> Result<bool, SnapshotError> {
        let footer_at = self.len - FOOTER_LEN;
        if self.pos == footer_at {
            self.footer()?;
            return Ok(false);
        }
        let at = self.pos;
        if at + CHUNK_HEADER_LEN > footer_at {
            return Err(self.truncated(at, "no room for the next chunk and the footer"));
        }
        let mut head = Vec::new();
        self.take(&mut head, CHUNK_HEADER_LEN)?;
        let magic = &head[0..4];
        if magic == CHUNK_MAGIC && !self.in_state {
            // Another chunk of keys.
        } else if magic == STATE_CHUNK_MAGIC && self.version >= FORMAT_VERSION_SESSIONS {
            self.in_state = true;
        } else {
            return Err(self.corrupt(at, "expected a chunk header (wrong magic bytes)"));
        }
        let payload_len = u64::from(u32_at(&head, 4));
        let records = u32_at(&head, 8);
        let stored = u32_at(&head, 12);
        if payload_len > MAX_CHUNK_PAYLOAD {
            return Err(self.corrupt(
                at,
                format!("chunk claims {payload_len} bytes, over the limit"),
            ));
        }
        if self.pos + payload_len > footer_at {
            return Err(self.truncated(
                at,
                format!("chunk of {payload_len} bytes runs past the end of the file"),
            ));
        }
        let mut payload = std::mem::take(&mut self.chunk);
        self.take(&mut payload, payload_len)?;
        self.chunk = payload;
        let computed = crc32c::crc32c_append(crc32c::crc32c(&head[..12]), &self.chunk);
        if stored != computed {
            return Err(self.corrupt(at, "chunk checksum mismatch"));
        }
        if records == 0 {
            return Err(self.corrupt(at, "empty chunk"));
        }
        self.chunk_at = at;
        self.cursor = 0;
        self.chunk_records_left = records;
        Ok(true)
    }

    fn footer(&mut self) -> Result<(), SnapshotError> {
        let at = self.pos;
        let mut body = Vec::new();
        self.take(&mut body, FOOTER_LEN - 4)?;
        let mut tail = [0u8; 4];
        self.file
            .read_exact_at(self.pos, &mut tail)
            .map_err(SnapshotError::io("read snapshot", &self.path))?;
        if body[0..4] != FOOTER_MAGIC {
            return Err(self.truncated(at, "no footer at the end of the file"));
        }
        let records = u64_at(&body, 8);
        let file_len = u64_at(&body, 16);
        if self.version >= FORMAT_VERSION_SESSIONS && self.phase == StatePhase::Clock {
            return Err(self.corrupt(at, "the state section (session clock) is missing"));
        }
        if self.version >= FORMAT_VERSION && self.phase != StatePhase::Done {
            return Err(self.corrupt(
                at,
                "the revision offset or the slot table is missing from the state section",
            ));
        }
        if file_len != self.len {
            return Err(self.corrupt(
                at + 16,
                format!(
                    "footer says the file is {file_len} bytes, it is {}",
                    self.len
                ),
            ));
        }
        let held = self.records + self.state_records;
        if records != held {
            return Err(self.corrupt(
                at + 8,
                format!("footer says {records} records, the chunks hold {held}"),
            ));
        }
        if u32::from_le_bytes(tail) != self.crc {
            return Err(self.corrupt(at + FOOTER_LEN - 4, "whole-file checksum mismatch"));
        }
        Ok(())
    }

    /// Reads the rest of the file, verifying everything; returns the summary.
    pub fn verify(mut self) -> Result<SnapshotInfo, SnapshotError> {
        while self.advance()?.is_some() {}
        Ok(SnapshotInfo {
            sessions: self.sessions(),
            path: self.path,
            header: self.header,
            records: self.records,
            len: self.len,
        })
    }
}

/// Verifies the whole snapshot at `path` in one streaming pass.
pub fn validate(vfs: &dyn Vfs, path: &Path) -> Result<SnapshotInfo, SnapshotError> {
    SnapshotReader::open(vfs, path)?.verify()
}
