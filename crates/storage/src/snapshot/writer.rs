//! Writing a snapshot file from a read view, streaming, in bounded memory.

use std::path::Path;
use std::sync::Arc;

use super::error::SnapshotError;
use super::format::{
    CHUNK_HEADER_LEN, CHUNK_MAGIC, MAX_CONF_BYTES, MAX_KEY_BYTES, MAX_STATE_RECORD_BYTES,
    MAX_VALUE_BYTES, RECORD_HEADER_LEN, STATE_CHUNK_MAGIC, STATE_RECORD_HEADER_LEN,
    STATE_REVISION_OFFSET, STATE_SESSION, STATE_SESSION_CLOCK, STATE_SLOT_TABLE, SnapshotHeader,
    chunk_header, encode_record, encode_state_record, footer_body,
};
use crate::kv::KvReadView;
use crate::vfs::VfsFile;

/// Appends to a new snapshot file, keeping the running whole-file checksum.
struct Out<'a> {
    file: &'a dyn VfsFile,
    path: &'a Path,
    pos: u64,
    crc: u32,
}

impl Out<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.file
            .write_all_at(self.pos, bytes)
            .map_err(SnapshotError::io("write snapshot", self.path))?;
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.pos += bytes.len() as u64;
        Ok(())
    }
}

/// Collects records of one kind into chunks of about `target` bytes and writes
/// each chunk once full. A record larger than `target` gets a chunk of its own.
struct Chunker {
    magic: [u8; 4],
    /// Room for the chunk header, then the records.
    buf: Vec<u8>,
    records: u32,
    target: usize,
}

const HEADER_ROOM: usize = CHUNK_HEADER_LEN as usize;

impl Chunker {
    fn new(magic: [u8; 4], target: usize) -> Self {
        let mut buf = Vec::with_capacity(HEADER_ROOM + target);
        buf.resize(HEADER_ROOM, 0);
        Chunker {
            magic,
            buf,
            records: 0,
            target,
        }
    }

    /// Adds a record of `len` bytes, which `encode` appends to the buffer; first
    /// writes the current chunk if the record would overfill it.
    fn push(
        &mut self,
        len: usize,
        out: &mut Out<'_>,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), SnapshotError> {
        if self.records > 0 && self.buf.len() - HEADER_ROOM + len > self.target {
            self.flush(out)?;
        }
        encode(&mut self.buf);
        self.records += 1;
        Ok(())
    }

    /// Writes the chunk, if it holds anything.
    fn flush(&mut self, out: &mut Out<'_>) -> Result<(), SnapshotError> {
        if self.records == 0 {
            return Ok(());
        }
        let head = chunk_header(self.magic, &self.buf[HEADER_ROOM..], self.records);
        self.buf[..HEADER_ROOM].copy_from_slice(&head);
        out.write(&self.buf)?;
        self.buf.truncate(HEADER_ROOM);
        self.records = 0;
        Ok(())
    }
}

/// Parks an error for after the view's walk (its callbacks speak `KvError`);
/// whether the walk goes on.
fn parked(result: Result<(), SnapshotError>, failed: &mut Option<SnapshotError>) -> bool {
    match result {
        Ok(()) => true,
        Err(e) => {
            *failed = Some(e);
            false
        }
    }
}

/// Ends a section of chunks: the error parked during it, or else its last chunk
/// written (the buffer is freed before the next section's is allocated).
fn end_section(
    mut chunks: Chunker,
    failed: Option<SnapshotError>,
    out: &mut Out<'_>,
) -> Result<(), SnapshotError> {
    match failed {
        Some(e) => Err(e),
        None => chunks.flush(out),
    }
}

/// What [`write_view`] wrote.
pub(crate) struct Written {
    /// File length.
    pub(crate) len: u64,
    /// Key records.
    pub(crate) keys: u64,
    /// Client sessions (state records other than the clock).
    pub(crate) sessions: u64,
}

/// Writes the snapshot of `view` into the empty `file` (not synced: the caller
/// syncs and renames): the keys, then the state section (session clock, client
/// sessions, revision offset, slot table). Holds at most one chunk
/// (`chunk_bytes`, or one record if larger) in memory.
pub(crate) fn write_view(
    file: &Arc<dyn VfsFile>,
    path: &Path,
    header: &SnapshotHeader,
    view: &KvReadView,
    chunk_bytes: usize,
) -> Result<Written, SnapshotError> {
    if header.conf.len() as u64 > MAX_CONF_BYTES {
        return Err(SnapshotError::Limit(format!(
            "membership of {} bytes, the limit is {MAX_CONF_BYTES}",
            header.conf.len()
        )));
    }
    let mut out = Out {
        file: &**file,
        path,
        pos: 0,
        crc: 0,
    };
    out.write(&header.encode())?;
    // I/O errors cannot travel through the view's callbacks (they speak
    // `KvError`), so the first one is parked here and the walk stopped.
    let mut failed: Option<SnapshotError> = None;
    let mut written = Written {
        len: 0,
        keys: 0,
        sessions: 0,
    };
    let mut chunks = Chunker::new(CHUNK_MAGIC, chunk_bytes);
    view.for_each(None, |key, version, value| {
        if key.len() as u64 > MAX_KEY_BYTES || value.len() as u64 > MAX_VALUE_BYTES {
            failed = Some(SnapshotError::Limit(format!(
                "key of {} bytes with a value of {} bytes exceeds the snapshot format's \
                 limits ({MAX_KEY_BYTES}, {MAX_VALUE_BYTES})",
                key.len(),
                value.len()
            )));
            return Ok(false);
        }
        let len = RECORD_HEADER_LEN + key.len() + value.len();
        let pushed = chunks.push(len, &mut out, |buf| {
            encode_record(buf, key, version, value);
        });
        written.keys += 1;
        Ok(parked(pushed, &mut failed))
    })?;
    end_section(chunks, failed.take(), &mut out)?;

    let mut chunks = Chunker::new(STATE_CHUNK_MAGIC, chunk_bytes);
    let clock = view.session_clock_ms().to_le_bytes();
    chunks.push(STATE_RECORD_HEADER_LEN + clock.len(), &mut out, |buf| {
        encode_state_record(buf, STATE_SESSION_CLOCK, &[&clock]);
    })?;
    view.for_each_session(|id, row| {
        let id = id.to_be_bytes();
        let body = id.len() + row.len();
        if body as u64 > MAX_STATE_RECORD_BYTES {
            failed = Some(SnapshotError::Limit(format!(
                "a client session of {body} bytes exceeds the snapshot format's limit \
                 ({MAX_STATE_RECORD_BYTES})"
            )));
            return Ok(false);
        }
        let pushed = chunks.push(STATE_RECORD_HEADER_LEN + body, &mut out, |buf| {
            encode_state_record(buf, STATE_SESSION, &[&id, row]);
        });
        written.sessions += 1;
        Ok(parked(pushed, &mut failed))
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    let offset = view.revision_offset().to_le_bytes();
    chunks.push(STATE_RECORD_HEADER_LEN + offset.len(), &mut out, |buf| {
        encode_state_record(buf, STATE_REVISION_OFFSET, &[&offset]);
    })?;
    let slots = view.slot_table()?.encode();
    chunks.push(STATE_RECORD_HEADER_LEN + slots.len(), &mut out, |buf| {
        encode_state_record(buf, STATE_SLOT_TABLE, &[&slots]);
    })?;
    end_section(chunks, None, &mut out)?;

    // Every record: keys, the clock, the sessions, the offset, the slot table.
    let records = written.keys + 1 + written.sessions + 2;
    written.len = out.pos + super::format::FOOTER_LEN;
    out.write(&footer_body(records, written.len))?;
    let crc = out.crc;
    out.write(&crc.to_le_bytes())?;
    debug_assert_eq!(out.pos, written.len);
    Ok(written)
}
