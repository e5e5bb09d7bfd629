//! Streaming, verifying reader of a snapshot file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::error::SnapshotError;
use super::format::{
    CHUNK_HEADER_LEN, CHUNK_MAGIC, FOOTER_LEN, FOOTER_MAGIC, FORMAT_VERSION, HEADER_FIXED_LEN,
    MAGIC, MAX_CHUNK_PAYLOAD, MAX_HEADER_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES, RECORD_HEADER_LEN,
    SnapshotHeader, u32_at, u64_at,
};
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

/// Reads a snapshot front to back, one chunk in memory at a time, verifying every
/// chunk checksum, key order, the footer and the whole-file checksum. A record is
/// only as trustworthy as its chunk's checksum until [`SnapshotReader::next_record`]
/// has returned `None` (which means the whole file verified): an install must not
/// make anything visible before that.
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

    /// Records returned so far.
    pub fn records(&self) -> u64 {
        self.records
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
        if version != FORMAT_VERSION {
            return Err(self.corrupt(
                8,
                format!("unsupported format version {version} (this build reads {FORMAT_VERSION})"),
            ));
        }
        rest.truncate(crc_at);
        self.header = SnapshotHeader {
            group: u64_at(&fixed, 16),
            index: u64_at(&fixed, 24),
            term: u64_at(&fixed, 32),
            conf: Bytes::from(rest),
        };
        Ok(())
    }

    /// The next key in key order, or `None` once the footer and the whole-file
    /// checksum have been verified.
    pub fn next_record(&mut self) -> Result<Option<SnapshotRecord<'_>>, SnapshotError> {
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
        self.chunk_records_left -= 1;
        self.records += 1;
        Ok(Some(SnapshotRecord {
            key: &self.chunk[key_start..key_end],
            version,
            value: &self.chunk[key_end..self.cursor],
        }))
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
        if head[0..4] != CHUNK_MAGIC {
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
        if file_len != self.len {
            return Err(self.corrupt(
                at + 16,
                format!(
                    "footer says the file is {file_len} bytes, it is {}",
                    self.len
                ),
            ));
        }
        if records != self.records {
            return Err(self.corrupt(
                at + 8,
                format!(
                    "footer says {records} records, the chunks hold {}",
                    self.records
                ),
            ));
        }
        if u32::from_le_bytes(tail) != self.crc {
            return Err(self.corrupt(at + FOOTER_LEN - 4, "whole-file checksum mismatch"));
        }
        Ok(())
    }

    /// Reads the rest of the file, verifying everything; returns the summary.
    pub fn verify(mut self) -> Result<SnapshotInfo, SnapshotError> {
        while self.next_record()?.is_some() {}
        Ok(SnapshotInfo {
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
