//! The on-disk byte layout: segment header and frame header. `docs/wal-format.md`
//! is the prose version of this file; keep them in step.
//!
//! All integers are little-endian. Checksums are CRC-32C (Castagnoli).

/// First bytes of every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"KEELWAL\0";
/// The only segment format this code reads and writes.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Bytes of the segment header; the first frame starts right after it.
pub(crate) const SEGMENT_HEADER_LEN: u64 = 32;

/// First bytes of every frame header.
pub(crate) const FRAME_MAGIC: [u8; 4] = *b"KFRM";
/// Bytes of a frame header.
pub(crate) const FRAME_HEADER_LEN: u64 = 32;
/// Frames start at offsets that are multiples of this, which is also where recovery
/// looks for valid frames beyond a bad one.
pub(crate) const FRAME_ALIGN: u64 = 8;

/// Largest entry payload (`Entry::data`) the WAL accepts, on write and on read.
pub const MAX_ENTRY_BYTES: u64 = 64 << 20;
/// Largest frame payload. Big enough for one maximal record; a batch beyond it is
/// split into several frames. A header claiming more is treated as damaged, so a
/// corrupt length can never make recovery allocate more than this.
pub(crate) const MAX_FRAME_PAYLOAD: u64 = 128 << 20;

/// Rounds `n` up to the frame alignment.
pub(crate) fn align_up(n: u64) -> u64 {
    n.div_ceil(FRAME_ALIGN) * FRAME_ALIGN
}

/// On-disk size of a frame with `payload_len` payload bytes (header, payload, padding).
pub(crate) fn frame_len(payload_len: u64) -> u64 {
    FRAME_HEADER_LEN + align_up(payload_len)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4-byte slice"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8-byte slice"))
}

/// Why a header did not validate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderDefect {
    /// Fewer bytes than a header (a segment file cut short).
    Short,
    /// All zeros: nothing was ever written here (or the write was lost).
    Zeroed,
    /// Wrong magic bytes.
    BadMagic,
    /// The header checksum does not match.
    BadChecksum,
    /// Checksummed correctly but written by an unknown format version.
    UnsupportedVersion(u32),
    /// A frame payload length beyond [`MAX_FRAME_PAYLOAD`] (checksummed correctly,
    /// so not a torn write).
    Oversized(u64),
}

impl HeaderDefect {
    /// Whether a crash during the write can explain this defect. A checksummed
    /// header with impossible contents cannot.
    pub(crate) fn could_be_torn(self) -> bool {
        matches!(
            self,
            HeaderDefect::Short
                | HeaderDefect::Zeroed
                | HeaderDefect::BadMagic
                | HeaderDefect::BadChecksum
        )
    }

    /// A few words for error messages.
    pub(crate) fn describe(self, what: &str) -> String {
        match self {
            HeaderDefect::Short => format!("{what} is cut short"),
            HeaderDefect::Zeroed => format!("{what} is all zeros"),
            HeaderDefect::BadMagic => format!("{what} has wrong magic bytes"),
            HeaderDefect::BadChecksum => format!("{what} checksum mismatch"),
            HeaderDefect::UnsupportedVersion(v) => {
                format!(
                    "{what} has unsupported format version {v} (this build reads {FORMAT_VERSION})"
                )
            }
            HeaderDefect::Oversized(n) => {
                format!(
                    "{what} claims a payload of {n} bytes, over the {MAX_FRAME_PAYLOAD}-byte limit"
                )
            }
        }
    }
}

/// Checks the basic shape shared by both header kinds.
fn precheck(bytes: &[u8], len: u64, magic: &[u8]) -> Result<(), HeaderDefect> {
    let len = len as usize;
    if bytes.len() < len {
        return Err(HeaderDefect::Short);
    }
    let bytes = &bytes[..len];
    if bytes.iter().all(|&b| b == 0) {
        return Err(HeaderDefect::Zeroed);
    }
    if &bytes[..magic.len()] != magic {
        return Err(HeaderDefect::BadMagic);
    }
    if crc32c::crc32c(&bytes[..len - 4]) != u32_at(bytes, len - 4) {
        return Err(HeaderDefect::BadChecksum);
    }
    Ok(())
}

/// The segment header:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | magic `KEELWAL\0` |
/// | 8 | 4 | format version (1) |
/// | 12 | 4 | reserved, zero |
/// | 16 | 8 | segment sequence number (also in the file name) |
/// | 24 | 4 | reserved, zero |
/// | 28 | 4 | CRC-32C of bytes 0..28 |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub(crate) seq: u64,
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_LEN as usize] {
        let mut b = [0u8; SEGMENT_HEADER_LEN as usize];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        let crc = crc32c::crc32c(&b[..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses the first bytes of a segment file (fewer than a header is `Short`).
    pub(crate) fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderDefect> {
        precheck(bytes, SEGMENT_HEADER_LEN, &SEGMENT_MAGIC)?;
        let version = u32_at(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(HeaderDefect::UnsupportedVersion(version));
        }
        Ok(SegmentHeader {
            seq: u64_at(bytes, 16),
        })
    }
}

/// The frame header; the payload (records) follows, then zero padding up to
/// [`FRAME_ALIGN`].
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | magic `KFRM` |
/// | 4 | 4 | payload length in bytes (padding excluded) |
/// | 8 | 8 | frame sequence number: +1 per frame across the whole WAL |
/// | 16 | 8 | sequence number of the segment the frame was written to |
/// | 24 | 4 | CRC-32C of the payload |
/// | 28 | 4 | CRC-32C of bytes 0..28 |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub(crate) payload_len: u32,
    pub(crate) frame_seq: u64,
    pub(crate) segment_seq: u64,
    pub(crate) payload_crc: u32,
}

impl FrameHeader {
    pub(crate) fn encode(&self) -> [u8; FRAME_HEADER_LEN as usize] {
        let mut b = [0u8; FRAME_HEADER_LEN as usize];
        b[0..4].copy_from_slice(&FRAME_MAGIC);
        b[4..8].copy_from_slice(&self.payload_len.to_le_bytes());
        b[8..16].copy_from_slice(&self.frame_seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.segment_seq.to_le_bytes());
        b[24..28].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32c::crc32c(&b[..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<FrameHeader, HeaderDefect> {
        precheck(bytes, FRAME_HEADER_LEN, &FRAME_MAGIC)?;
        let payload_len = u32_at(bytes, 4);
        if u64::from(payload_len) > MAX_FRAME_PAYLOAD {
            return Err(HeaderDefect::Oversized(payload_len.into()));
        }
        Ok(FrameHeader {
            payload_len,
            frame_seq: u64_at(bytes, 8),
            segment_seq: u64_at(bytes, 16),
            payload_crc: u32_at(bytes, 24),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let s = SegmentHeader { seq: 42 };
        assert_eq!(SegmentHeader::decode(&s.encode()), Ok(s));
        let f = FrameHeader {
            payload_len: 77,
            frame_seq: 9,
            segment_seq: 3,
            payload_crc: 0xDEAD_BEEF,
        };
        assert_eq!(FrameHeader::decode(&f.encode()), Ok(f));
    }

    #[test]
    fn every_single_bit_flip_of_a_frame_header_is_detected() {
        let f = FrameHeader {
            payload_len: 77,
            frame_seq: 9,
            segment_seq: 3,
            payload_crc: 1,
        };
        let good = f.encode();
        for bit in 0..good.len() * 8 {
            let mut b = good;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(FrameHeader::decode(&b).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn defects_are_classified() {
        assert_eq!(SegmentHeader::decode(&[0u8; 10]), Err(HeaderDefect::Short));
        assert_eq!(SegmentHeader::decode(&[0u8; 32]), Err(HeaderDefect::Zeroed));
        let mut b = SegmentHeader { seq: 1 }.encode();
        b[0] = b'X';
        assert_eq!(SegmentHeader::decode(&b), Err(HeaderDefect::BadMagic));
        // A future version with a valid checksum is not "torn".
        let mut b = SegmentHeader { seq: 1 }.encode();
        b[8] = 2;
        let crc = crc32c::crc32c(&b[..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        let defect = SegmentHeader::decode(&b).expect_err("version 2");
        assert_eq!(defect, HeaderDefect::UnsupportedVersion(2));
        assert!(!defect.could_be_torn());
    }

    #[test]
    fn frame_len_includes_padding() {
        assert_eq!(frame_len(0), 32);
        assert_eq!(frame_len(1), 40);
        assert_eq!(frame_len(8), 40);
        assert_eq!(frame_len(9), 48);
    }
}
