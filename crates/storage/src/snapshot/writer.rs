//! Writing a snapshot file from a read view, streaming, in bounded memory.

use std::path::Path;
use std::sync::Arc;

use super::error::SnapshotError;
use super::format::{
    CHUNK_HEADER_LEN, MAX_CONF_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES, RECORD_HEADER_LEN,
    SnapshotHeader, chunk_header, encode_record, footer_body,
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

/// Writes the snapshot of `view` into the empty `file` (not synced: the caller
/// syncs and renames). Holds at most one chunk (`chunk_bytes`, or one record if
/// larger) in memory. Returns the file length and the number of records.
pub(crate) fn write_view(
    file: &Arc<dyn VfsFile>,
    path: &Path,
    header: &SnapshotHeader,
    view: &KvReadView,
    chunk_bytes: usize,
) -> Result<(u64, u64), SnapshotError> {
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
    let header_room = CHUNK_HEADER_LEN as usize;
    let mut chunk: Vec<u8> = Vec::with_capacity(header_room + chunk_bytes);
    chunk.resize(header_room, 0);
    let mut in_chunk = 0u32;
    let mut records = 0u64;
    // I/O errors cannot travel through the view's callback (it speaks `KvError`),
    // so the first one is parked here and the walk stopped.
    let mut failed: Option<SnapshotError> = None;
    let flush = |chunk: &mut Vec<u8>, in_chunk: &mut u32, out: &mut Out<'_>| {
        let head = chunk_header(&chunk[header_room..], *in_chunk);
        chunk[..header_room].copy_from_slice(&head);
        out.write(chunk)?;
        chunk.truncate(header_room);
        *in_chunk = 0;
        Ok::<(), SnapshotError>(())
    };
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
        let rec_len = RECORD_HEADER_LEN + key.len() + value.len();
        if in_chunk > 0
            && chunk.len() - header_room + rec_len > chunk_bytes
            && let Err(e) = flush(&mut chunk, &mut in_chunk, &mut out)
        {
            failed = Some(e);
            return Ok(false);
        }
        encode_record(&mut chunk, key, version, value);
        in_chunk += 1;
        records += 1;
        Ok(true)
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if in_chunk > 0 {
        flush(&mut chunk, &mut in_chunk, &mut out)?;
    }
    drop(chunk);
    let file_len = out.pos + super::format::FOOTER_LEN;
    out.write(&footer_body(records, file_len))?;
    let crc = out.crc;
    out.write(&crc.to_le_bytes())?;
    debug_assert_eq!(out.pos, file_len);
    Ok((file_len, records))
}
