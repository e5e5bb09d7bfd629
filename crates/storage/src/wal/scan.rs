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
use super::format::{FRAME_HEADER_LEN, FrameHeader, SEGMENT_HEADER_LEN, SegmentHeader, frame_len};
use super::probe::{probe, read};
use super::record::{self, ScanRecord};
use super::recovery::TornTail;
use super::segment::{self, SegmentFile};
use crate::vfs::{Vfs, VfsFile};

/// A record and where it was found.
#[derive(Debug)]
pub(crate) struct RecordAt<'a> {
    pub(crate) file: &'a Path,
    pub(crate) offset: u64,
    pub(crate) frame_seq: u64,
    pub(crate) record: ScanRecord,
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

/// Walks the segments of `dir` from `first_seq` on without modifying anything
/// (segments below it are compaction leftovers awaiting deletion and are skipped).
pub(crate) fn scan(
    vfs: &dyn Vfs,
    dir: &Path,
    first_seq: u64,
    visit: &mut Visitor<'_>,
) -> Result<Scan, WalError> {
    let mut segments = segment::list(vfs, dir)?;
    segments.retain(|s| s.seq >= first_seq);
    let mut scan = Scan {
        segments,
        ..Scan::default()
    };
    let mut walker = Walker {
        vfs,
        scan: &mut scan,
        visit,
        first_seq,
        // An uncompacted log starts at frame 1 of segment 1; a missing first segment
        // would otherwise silently drop the start of every group's log. After
        // compaction the first surviving frame may have any number.
        expected_frame: (first_seq == 1).then_some(1),
        ended: false,
    };
    if let Err(c) = walker.walk()? {
        scan.corrupt = Some(c);
    }
    Ok(scan)
}

/// The outer `Result` is an I/O failure, the inner one corruption.
type Walked<T> = Result<Result<T, Corruption>, WalError>;

/// The state of one walk.
struct Walker<'a, 'v> {
    vfs: &'a dyn Vfs,
    scan: &'a mut Scan,
    visit: &'a mut Visitor<'v>,
    /// The first segment's sequence number.
    first_seq: u64,
    /// Sequence number the next valid frame must have (`None`: any, for the first
    /// frame of a compacted log).
    expected_frame: Option<u64>,
    /// Set once garbage was found: the log has ended, no later segment may hold a
    /// frame.
    ended: bool,
}

fn open(vfs: &dyn Vfs, seg: &SegmentFile) -> Result<(Arc<dyn VfsFile>, u64), WalError> {
    let file = vfs
        .open(&seg.path, false)
        .map_err(WalError::io("open segment", &seg.path))?;
    let len = file
        .len()
        .map_err(WalError::io("stat segment", &seg.path))?;
    Ok((file, len))
}

fn corrupt(seg: &SegmentFile, offset: u64, reason: impl Into<String>) -> Corruption {
    Corruption {
        file: seg.path.clone(),
        offset,
        reason: reason.into(),
    }
}

impl Walker<'_, '_> {
    fn walk(&mut self) -> Walked<()> {
        let segments = self.scan.segments.clone();
        for (i, seg) in segments.iter().enumerate() {
            let want = self.first_seq + i as u64;
            if seg.seq != want {
                let reason = format!("segment {want} is missing (found {} instead)", seg.seq);
                return Ok(Err(corrupt(seg, 0, reason)));
            }
            let later = &segments[i + 1..];
            match self.segment(i, seg, later)? {
                Ok(true) => {}
                Ok(false) => return Ok(Ok(())),
                Err(c) => return Ok(Err(c)),
            }
        }
        Ok(Ok(()))
    }

    /// Walks segment `index`; `Ok(false)` when it was an incomplete last segment.
    fn segment(&mut self, index: usize, seg: &SegmentFile, later: &[SegmentFile]) -> Walked<bool> {
        let (file, len) = open(self.vfs, seg)?;
        let head = read(&*file, &seg.path, 0, len.min(SEGMENT_HEADER_LEN))?;
        match SegmentHeader::decode(&head) {
            Ok(h) if h.seq == seg.seq => {}
            Ok(h) => {
                let reason = format!(
                    "segment header says sequence {}, file name says {}",
                    h.seq, seg.seq
                );
                return Ok(Err(corrupt(seg, 0, reason)));
            }
            // A crash while creating the last segment; acceptable if it holds nothing.
            Err(defect) if later.is_empty() && defect.could_be_torn() => {
                let reason = defect.describe("segment header");
                if let Some(at) = probe(&*file, seg, SEGMENT_HEADER_LEN, len)?.valid_frame {
                    let reason = format!("{reason}, but a valid frame follows at offset {at}");
                    return Ok(Err(corrupt(seg, 0, reason)));
                }
                self.scan.incomplete = Some(Incomplete {
                    segment: index,
                    len,
                    reason,
                });
                return Ok(Ok(false));
            }
            Err(defect) => return Ok(Err(corrupt(seg, 0, defect.describe("segment header")))),
        }

        let mut pos = SEGMENT_HEADER_LEN;
        let stop_reason = if self.ended {
            None
        } else {
            match self.frames(&*file, seg, index, len, &mut pos)? {
                Ok(reason) => reason,
                Err(c) => return Ok(Err(c)),
            }
        };

        // Everything from `pos` on must be free of valid frames, and is normally zero.
        let rest = probe(&*file, seg, pos, len)?;
        let reason = stop_reason.unwrap_or_else(|| "non-zero bytes after the last frame".into());
        if let Some(at) = rest.valid_frame {
            let reason = format!("{reason}, but a valid frame follows at offset {at}");
            return Ok(Err(corrupt(seg, pos, reason)));
        }
        if rest.nonzero_end > pos {
            if !self.ended {
                if let Some(c) = self.valid_frame_in(later, seg, pos, &reason)? {
                    return Ok(Err(c));
                }
                self.ended = true;
            }
            self.scan.garbage.push(Garbage {
                segment: index,
                from: pos,
                to: rest.nonzero_end,
                reason,
            });
        }
        Ok(Ok(true))
    }

    /// Reads the valid frames of one segment from `*pos`, advancing it past each.
    /// Returns why it stopped (`None`: no room left for a frame header).
    fn frames(
        &mut self,
        file: &dyn VfsFile,
        seg: &SegmentFile,
        index: usize,
        len: u64,
        pos: &mut u64,
    ) -> Walked<Option<String>> {
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
                let reason = format!("frame claims to belong to segment {}", header.segment_seq);
                return Ok(Err(corrupt(seg, at, reason)));
            }
            let flen = frame_len(header.payload_len.into());
            if at + flen > len {
                let reason =
                    format!("frame of {flen} bytes runs past the end of the segment ({len} bytes)");
                return Ok(Err(corrupt(seg, at, reason)));
            }
            let payload_at = at + FRAME_HEADER_LEN;
            let payload = Bytes::from(read(
                file,
                &seg.path,
                payload_at,
                header.payload_len.into(),
            )?);
            if crc32c::crc32c(&payload) != header.payload_crc {
                return Ok(Ok(Some("frame payload checksum mismatch".into())));
            }
            if let Some(expected) = self.expected_frame
                && header.frame_seq != expected
            {
                let reason = format!("frame sequence {}, expected {expected}", header.frame_seq);
                return Ok(Err(corrupt(seg, at, reason)));
            }
            if let Err(c) = self.records(seg, payload_at, header.frame_seq, &payload) {
                return Ok(Err(c));
            }
            self.expected_frame = Some(header.frame_seq + 1);
            *pos = at + flen;
            self.scan.last_frame = Some(FrameEnd {
                segment: index,
                offset: *pos,
                seq: header.frame_seq,
            });
        }
    }

    /// Decodes the records of a valid frame and hands them to the visitor.
    fn records(
        &mut self,
        seg: &SegmentFile,
        payload_at: u64,
        frame_seq: u64,
        payload: &Bytes,
    ) -> Result<(), Corruption> {
        let mut rp = 0usize;
        while rp < payload.len() {
            let offset = payload_at + rp as u64;
            let (record, next) =
                record::decode(payload, rp).map_err(|r| corrupt(seg, offset, r))?;
            let found = RecordAt {
                file: &seg.path,
                offset,
                frame_seq,
                record,
            };
            (self.visit)(found).map_err(|r| corrupt(seg, offset, r))?;
            rp = next;
        }
        Ok(())
    }

    /// Looks for a valid frame in `later` segments; if one exists, the garbage at
    /// `seg:pos` is corruption.
    fn valid_frame_in(
        &self,
        later: &[SegmentFile],
        seg: &SegmentFile,
        pos: u64,
        reason: &str,
    ) -> Result<Option<Corruption>, WalError> {
        for other in later {
            let (file, len) = open(self.vfs, other)?;
            if let Some(at) = probe(&*file, other, SEGMENT_HEADER_LEN, len)?.valid_frame {
                let reason = format!(
                    "{reason}, but a valid frame follows in {}:{at}",
                    other.path.display()
                );
                return Ok(Some(corrupt(seg, pos, reason)));
            }
        }
        Ok(None)
    }
}
