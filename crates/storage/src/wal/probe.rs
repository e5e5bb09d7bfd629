//! Looking past a bad spot: is there a valid frame further on, and where do the
//! non-zero bytes end?

use std::path::Path;

use super::error::WalError;
use super::format::{FRAME_ALIGN, FRAME_HEADER_LEN, FRAME_MAGIC, FrameHeader, frame_len};
use super::segment::SegmentFile;
use crate::vfs::VfsFile;

/// Bytes read at a time, so that probing a 64 MiB segment needs 1 MiB of memory.
const CHUNK: u64 = 1 << 20;

/// What [`probe`] saw in a range.
#[derive(Debug)]
pub(crate) struct Probe {
    /// The first 8-byte-aligned offset holding a complete, checksummed frame of this
    /// segment.
    pub(crate) valid_frame: Option<u64>,
    /// One past the last non-zero byte (`from` if all zero). Only meaningful when no
    /// valid frame was found: the probe stops at the first one.
    pub(crate) nonzero_end: u64,
}

/// Reads `len` bytes at `offset` of a segment.
pub(crate) fn read(
    file: &dyn VfsFile,
    path: &Path,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, WalError> {
    // Callers bound `len` by the frame size limit or the probe chunk.
    let mut buf = vec![0u8; usize::try_from(len).expect("reads are bounded by frame limits")];
    file.read_exact_at(offset, &mut buf)
        .map_err(WalError::io("read segment", path))?;
    Ok(buf)
}

/// Scans `[from, len)` of segment `seg` in bounded chunks for valid frames and
/// non-zero bytes. `from` is 8-byte aligned (frames are).
pub(crate) fn probe(
    file: &dyn VfsFile,
    seg: &SegmentFile,
    from: u64,
    len: u64,
) -> Result<Probe, WalError> {
    debug_assert!(from.is_multiple_of(FRAME_ALIGN));
    let mut nonzero_end = from;
    let mut chunk_start = from;
    while chunk_start < len {
        let chunk_end = (chunk_start + CHUNK).min(len);
        // Read a header's worth past the chunk so candidates near its end are whole.
        let read_end = (chunk_end + FRAME_HEADER_LEN).min(len);
        let buf = read(file, &seg.path, chunk_start, read_end - chunk_start)?;
        let own = (chunk_end - chunk_start) as usize;
        if let Some(last) = buf[..own].iter().rposition(|&b| b != 0) {
            nonzero_end = chunk_start + last as u64 + 1;
        }
        let header = FRAME_HEADER_LEN as usize;
        let mut rel = 0usize;
        while rel < own && rel + header <= buf.len() {
            // The magic check is cheap and rules out nearly every offset.
            if buf[rel..rel + 4] == FRAME_MAGIC {
                let at = chunk_start + rel as u64;
                if is_valid_frame(file, seg, at, len, &buf[rel..rel + header])? {
                    return Ok(Probe {
                        valid_frame: Some(at),
                        nonzero_end,
                    });
                }
            }
            rel += FRAME_ALIGN as usize;
        }
        chunk_start = chunk_end;
    }
    Ok(Probe {
        valid_frame: None,
        nonzero_end,
    })
}

/// Whether a complete, checksummed frame of segment `seg` starts at `at`.
fn is_valid_frame(
    file: &dyn VfsFile,
    seg: &SegmentFile,
    at: u64,
    len: u64,
    head: &[u8],
) -> Result<bool, WalError> {
    let Ok(header) = FrameHeader::decode(head) else {
        return Ok(false);
    };
    if header.segment_seq != seg.seq || at + frame_len(header.payload_len.into()) > len {
        return Ok(false);
    }
    let payload = read(
        file,
        &seg.path,
        at + FRAME_HEADER_LEN,
        header.payload_len.into(),
    )?;
    Ok(crc32c::crc32c(&payload) == header.payload_crc)
}
