//! The read-only walk over all segments that both recovery ([`super::Wal::open`]) and
//! inspection ([`super::inspect`]) use, so that `keel wal check` reaches exactly the
//! verdict a restart would.
//!
//! # How a torn tail is told from corruption
//!
//! Frames are read in order until the first position that does not hold a valid frame
//! (valid = header checksum, magic, segment number, fits in the file, payload
//! checksum). Bytes after the last valid frame must be zeros, because segments are
//! zero-filled when created and frames only ever go after the last one. Then:
//!
//! - if any valid frame exists further on — at any 8-byte-aligned offset later in the
//!   same segment, or anywhere in a later segment — the bad spot is **corruption**;
//! - otherwise non-zero bytes there are a **torn tail**: a write that the crash cut
//!   short. No fsync covered it, so nobody was told it was durable.
//!
//! A header that checksums correctly but says something impossible (wrong segment,
//! unknown version, oversized, past the end of the file, wrong frame sequence) cannot
//! come from a torn write and is corruption outright.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::error::WalError;
use super::format::{
    FRAME_ALIGN, FRAME_HEADER_LEN, FRAME_MAGIC, FrameHeader, SEGMENT_HEADER_LEN, SegmentHeader,
    frame_len,
};
use super::record::{self, WalRecord};
use super::recovery::TornTail;
use super::segment::{self, SegmentFile};
use crate::vfs::{Vfs, VfsFile};

/// A record and where it was found.
#[derive(Debug)]
pub(crate) struct RecordAt<'a> {
    pub(crate) file: &'a Path,
    pub(crate) offset: u64,
    pub(crate) frame_seq: u64,
    pub(crate) record: WalRecord,
}

/// Called for every record in log order; an `Err` is a reason to call the WAL corrupt
/// at that record (e.g. a gap in a group's log).
pub(crate) type Visitor<'v> = dyn FnMut(RecordAt<'_>) -> Result<(), String> + 'v;

/// Where the last valid frame ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameEnd {
    /// Index into [`Scan::segments`].
    pub(crate) segment: usize,
    /// Offset just past the frame (and its padding).
    pub(crate) offset: u64,
    /// The frame's sequence number.
    pub(crate) seq: u64,
}

/// Non-zero bytes `[from, to)` after the last valid frame: the remains of a torn write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Garbage {
    pub(crate) segment: usize,
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) reason: String,
}

/// A last segment whose header was never completely written (a crash while creating
/// it), holding no frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Incomplete {
    pub(crate) segment: usize,
    pub(crate) len: u64,
    pub(crate) reason: String,
}

/// Corruption found by the scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Corruption {
    pub(crate) file: PathBuf,
    pub(crate) offset: u64,
    pub(crate) reason: String,
}

impl From<Corruption> for WalError {
    fn from(c: Corruption) -> Self {
        WalError::Corrupt {
            file: c.file,
            offset: c.offset,
            reason: c.reason,
        }
    }
}

/// What the walk found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub(crate) segments: Vec<SegmentFile>,
    pub(crate) last_frame: Option<FrameEnd>,
    pub(crate) garbage: Vec<Garbage>,
    pub(crate) incomplete: Option<Incomplete>,
    /// Set when the WAL is corrupt; the other fields then describe the walk up to it.
    pub(crate) corrupt: Option<Corruption>,
}

impl Scan {
    /// Describes what recovery discards: where the first discarded byte is, and how
    /// many bytes go in total. `None` if the log ended cleanly.
    pub(crate) fn torn_tail(&self) -> Option<TornTail> {
        let mut report: Option<TornTail> = None;
        let mut note = |segment: usize, offset: u64, bytes: u64, reason: &str| match report.as_mut()
        {
            Some(r) => r.discarded_bytes += bytes,
            None => {
                report = Some(TornTail {
                    file: self.segments[segment].path.clone(),
                    offset,
                    discarded_bytes: bytes,
                    reason: reason.to_string(),
                });
            }
        };
        for g in &self.garbage {
            note(g.segment, g.from, g.to - g.from, &g.reason);
        }
        if let Some(inc) = &self.incomplete {
            note(inc.segment, 0, inc.len, &inc.reason);
        }
        report
    }
}

/// Bytes read at a time while looking past a bad spot.
const PROBE_CHUNK: u64 = 1 << 20;

/// Walks every segment of `dir` without modifying anything.
pub(crate) fn scan(vfs: &dyn Vfs, dir: &Path, visit: &mut Visitor<'_>) -> Result<Scan, WalError> {
    let mut scan = Scan {
        segments: segment::list(vfs, dir)?,
        ..Scan::default()
    };
    if let Err(c) = walk(vfs, &mut scan, visit)? {
        scan.corrupt = Some(c);
    }
    Ok(scan)
}

/// Opens a segment for reading.
fn open(vfs: &dyn Vfs, seg: &SegmentFile) -> Result<(Arc<dyn VfsFile>, u64), WalError> {
    let file = vfs
        .open(&seg.path, false)
        .map_err(WalError::io("open segment", &seg.path))?;
    let len = file
        .len()
        .map_err(WalError::io("stat segment", &seg.path))?;
    Ok((file, len))
}

fn read(file: &dyn VfsFile, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>, WalError> {
    let mut buf = vec![0u8; usize::try_from(len).expect("reads are bounded by frame limits")];
    file.read_exact_at(offset, &mut buf)
        .map_err(WalError::io("read segment", path))?;
    Ok(buf)
}

fn corrupt(seg: &SegmentFile, offset: u64, reason: impl Into<String>) -> Corruption {
    Corruption {
        file: seg.path.clone(),
        offset,
        reason: reason.into(),
    }
}

/// The walk proper. The outer `Result` is I/O failure, the inner one corruption.
fn walk(
    vfs: &dyn Vfs,
    scan: &mut Scan,
    visit: &mut Visitor<'_>,
) -> Result<Result<(), Corruption>, WalError> {
    let segments = scan.segments.clone();
    // No compaction exists yet, so the log starts at segment 1 and frame 1; a missing
    // first segment would otherwise silently drop the start of every group's log.
    let mut expected_frame = 1u64;
    // Once garbage was found, the log has ended: no later segment may hold a frame.
    let mut ended = false;
    for (i, seg) in segments.iter().enumerate() {
        let want_seq = i as u64 + 1;
        if seg.seq != want_seq {
            return Ok(Err(corrupt(
                seg,
                0,
                format!("segment {want_seq} is missing (found {} instead)", seg.seq),
            )));
        }
        let (file, len) = open(vfs, seg)?;
        let is_last = i + 1 == segments.len();

        let head = read(&*file, &seg.path, 0, len.min(SEGMENT_HEADER_LEN))?;
        match SegmentHeader::decode(&head) {
            Ok(h) if h.seq == seg.seq => {}
            Ok(h) => {
                return Ok(Err(corrupt(
                    seg,
                    0,
                    format!(
                        "segment header says sequence {}, file name says {}",
                        h.seq, seg.seq
                    ),
                )));
            }
            Err(defect) if is_last && defect.could_be_torn() => {
                let reason = defect.describe("segment header");
                let probe = probe(&*file, seg, SEGMENT_HEADER_LEN, len)?;
                if let Some(at) = probe.valid_frame {
                    return Ok(Err(corrupt(
                        seg,
                        0,
                        format!("{reason}, but a valid frame follows at offset {at}"),
                    )));
                }
                scan.incomplete = Some(Incomplete {
                    segment: i,
                    len,
                    reason,
                });
                return Ok(Ok(()));
            }
            Err(defect) => return Ok(Err(corrupt(seg, 0, defect.describe("segment header")))),
        }

        let mut pos = SEGMENT_HEADER_LEN;
        let stop_reason = if ended {
            None
        } else {
            match walk_frames(
                &*file,
                seg,
                i,
                len,
                &mut pos,
                &mut expected_frame,
                scan,
                visit,
            )? {
                Ok(reason) => reason,
                Err(c) => return Ok(Err(c)),
            }
        };

        // Everything from `pos` on must be free of valid frames (and is normally zero).
        let probe = probe(&*file, seg, pos, len)?;
        let reason = stop_reason.unwrap_or_else(|| "non-zero bytes after the last frame".into());
        if let Some(at) = probe.valid_frame {
            return Ok(Err(corrupt(
                seg,
                pos,
                format!("{reason}, but a valid frame follows at offset {at}"),
            )));
        }
        if probe.nonzero_end > pos {
            if !ended {
                if let Some(c) = valid_frame_in_later(vfs, &segments[i + 1..], seg, pos, &reason)? {
                    return Ok(Err(c));
                }
                ended = true;
            }
            scan.garbage.push(Garbage {
                segment: i,
                from: pos,
                to: probe.nonzero_end,
                reason,
            });
        }
    }
    Ok(Ok(()))
}

/// Reads the valid frames of one segment from `*pos`, advancing it past each. Returns
/// why it stopped (`None`: no room left for a frame header).
#[allow(clippy::too_many_arguments)] // the walk's state, threaded through one helper
fn walk_frames(
    file: &dyn VfsFile,
    seg: &SegmentFile,
    index: usize,
    len: u64,
    pos: &mut u64,
    expected_frame: &mut u64,
    scan: &mut Scan,
    visit: &mut Visitor<'_>,
) -> Result<Result<Option<String>, Corruption>, WalError> {
    loop {
        let at = *pos;
        if at + FRAME_HEADER_LEN > len {
            return Ok(Ok(None));
        }
        let head = read(file, &seg.path, at, FRAME_HEADER_LEN)?;
        let header = match FrameHeader::decode(&head) {
            Ok(h) => h,
            Err(d) if d.could_be_torn() => return Ok(Ok(Some(d.describe("frame header")))),
            Err(d) => return Ok(Err(corrupt(seg, at, d.describe("frame header")))),
        };
        if header.segment_seq != seg.seq {
            return Ok(Err(corrupt(
                seg,
                at,
                format!("frame claims to belong to segment {}", header.segment_seq),
            )));
        }
        let flen = frame_len(header.payload_len.into());
        if at + flen > len {
            return Ok(Err(corrupt(
                seg,
                at,
                format!("frame of {flen} bytes runs past the end of the segment ({len} bytes)"),
            )));
        }
        let payload = Bytes::from(read(
            file,
            &seg.path,
            at + FRAME_HEADER_LEN,
            header.payload_len.into(),
        )?);
        if crc32c::crc32c(&payload) != header.payload_crc {
            return Ok(Ok(Some("frame payload checksum mismatch".into())));
        }
        if header.frame_seq != *expected_frame {
            return Ok(Err(corrupt(
                seg,
                at,
                format!(
                    "frame sequence {}, expected {}",
                    header.frame_seq, *expected_frame
                ),
            )));
        }
        let mut rp = 0usize;
        while rp < payload.len() {
            let offset = at + FRAME_HEADER_LEN + rp as u64;
            let (record, next) = match record::decode(&payload, rp) {
                Ok(r) => r,
                Err(reason) => return Ok(Err(corrupt(seg, offset, reason))),
            };
            let found = RecordAt {
                file: &seg.path,
                offset,
                frame_seq: header.frame_seq,
                record,
            };
            if let Err(reason) = visit(found) {
                return Ok(Err(corrupt(seg, offset, reason)));
            }
            rp = next;
        }
        *expected_frame = header.frame_seq + 1;
        *pos = at + flen;
        scan.last_frame = Some(FrameEnd {
            segment: index,
            offset: *pos,
            seq: header.frame_seq,
        });
    }
}

/// Looks for a valid frame in `later` segments; if one exists, the garbage at
/// `seg:pos` is corruption.
fn valid_frame_in_later(
    vfs: &dyn Vfs,
    later: &[SegmentFile],
    seg: &SegmentFile,
    pos: u64,
    reason: &str,
) -> Result<Option<Corruption>, WalError> {
    for other in later {
        let (file, len) = open(vfs, other)?;
        if let Some(at) = probe(&*file, other, SEGMENT_HEADER_LEN, len)?.valid_frame {
            return Ok(Some(corrupt(
                seg,
                pos,
                format!(
                    "{reason}, but a valid frame follows in {}:{at}",
                    other.path.display()
                ),
            )));
        }
    }
    Ok(None)
}

/// What [`probe`] saw in a range.
#[derive(Debug)]
struct Probe {
    /// The first 8-byte-aligned offset holding a complete, checksummed frame of this
    /// segment.
    valid_frame: Option<u64>,
    /// One past the last non-zero byte (`from` if all zero). Only meaningful when no
    /// valid frame was found (the probe stops at the first one).
    nonzero_end: u64,
}

/// Scans `[from, len)` of a segment in bounded chunks for valid frames and non-zero
/// bytes. `from` is 8-byte aligned.
fn probe(file: &dyn VfsFile, seg: &SegmentFile, from: u64, len: u64) -> Result<Probe, WalError> {
    debug_assert!(from.is_multiple_of(FRAME_ALIGN));
    let mut nonzero_end = from;
    let mut chunk_start = from;
    while chunk_start < len {
        let chunk_end = (chunk_start + PROBE_CHUNK).min(len);
        // Read a header's worth past the chunk so candidates near its end are whole.
        let read_end = (chunk_end + FRAME_HEADER_LEN).min(len);
        let buf = read(file, &seg.path, chunk_start, read_end - chunk_start)?;
        let own = (chunk_end - chunk_start) as usize;
        if let Some(last) = buf[..own].iter().rposition(|&b| b != 0) {
            nonzero_end = chunk_start + last as u64 + 1;
        }
        let mut rel = 0usize;
        while rel < own && rel + FRAME_HEADER_LEN as usize <= buf.len() {
            if buf[rel..rel + 4] == FRAME_MAGIC {
                let at = chunk_start + rel as u64;
                if is_valid_frame(
                    file,
                    seg,
                    at,
                    len,
                    &buf[rel..rel + FRAME_HEADER_LEN as usize],
                )? {
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
