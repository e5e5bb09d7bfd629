//! Segment files: naming, listing and creation.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::WalError;
use super::format::{SEGMENT_HEADER_LEN, SegmentHeader};
use crate::vfs::{Vfs, VfsFile};

/// Suffix of segment file names: `<16 hex digits of the sequence>.wal`.
const SUFFIX: &str = ".wal";

/// A segment file found in the WAL directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SegmentFile {
    /// Segment sequence number, from the name.
    pub(crate) seq: u64,
    pub(crate) path: PathBuf,
}

/// The file name of segment `seq`. Fixed-width hex so that name order is sequence
/// order, which keeps `ls` output meaningful.
pub(crate) fn file_name(seq: u64) -> String {
    format!("{seq:016x}{SUFFIX}")
}

/// The sequence number encoded in a segment file name, or `None` for other files.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(SUFFIX)?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The segments in `dir`, in sequence order. Other files are ignored.
pub(crate) fn list(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<SegmentFile>, WalError> {
    let names = vfs
        .list_dir(dir)
        .map_err(WalError::io("list directory", dir))?;
    let mut segments: Vec<SegmentFile> = names
        .iter()
        .filter_map(|name| {
            parse_name(name).map(|seq| SegmentFile {
                seq,
                path: dir.join(name),
            })
        })
        .collect();
    segments.sort_by_key(|s| s.seq);
    Ok(segments)
}

/// Creates segment `seq` with room for `bytes` bytes, durably: create, preallocate,
/// write the header, fsync the file, fsync the directory. Only then may frames go in,
/// so that a crash at any step leaves at worst a last segment without a valid
/// header and without frames, which recovery removes.
///
/// A full disk while creating, preallocating or writing the header is
/// [`WalError::NoSpace`]: the half-made file is removed (it holds no frame, so
/// nothing is lost) and the same segment can be created again later. Preallocation
/// is what makes this the one place a full disk shows: frames are written into
/// space already reserved.
pub(crate) fn create(
    vfs: &dyn Vfs,
    dir: &Path,
    seq: u64,
    bytes: u64,
) -> Result<(Arc<dyn VfsFile>, PathBuf), WalError> {
    debug_assert!(bytes > SEGMENT_HEADER_LEN);
    let path = dir.join(file_name(seq));
    let file =
        vfs.open(&path, true)
            .map_err(WalError::io_or_no_space("create segment", &path, dir))?;
    let reserved = file
        .allocate(bytes)
        .map_err(WalError::io_or_no_space("preallocate segment", &path, dir))
        .and_then(|()| {
            file.write_all_at(0, &SegmentHeader { seq }.encode())
                .map_err(WalError::io_or_no_space("write segment header", &path, dir))
        });
    if let Err(e) = reserved {
        if e.is_no_space() {
            drop(file);
            give_back(vfs, dir, &path);
        }
        return Err(e);
    }
    file.sync_data()
        .map_err(WalError::io("sync segment", &path))?;
    vfs.sync_dir(dir)
        .map_err(WalError::io("sync directory", dir))?;
    Ok((file, path))
}

/// Removes a segment that could not be reserved, so the space it took is free
/// again. Best effort: a leftover is recreated in place by the next attempt (or,
/// after a crash, removed by recovery as a last segment without a header).
fn give_back(vfs: &dyn Vfs, dir: &Path, path: &Path) {
    let _ = vfs.remove_file(path).and_then(|()| vfs.sync_dir(dir));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_in_sequence_order() {
        assert_eq!(file_name(0x1f), "000000000000001f.wal");
        assert_eq!(parse_name(&file_name(u64::MAX)), Some(u64::MAX));
        for other in [
            "LOCK",
            "1.wal",
            "000000000000001g.wal",
            "000000000000001f.wal.tmp",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
        let mut names: Vec<String> = [300u64, 2, 17].iter().map(|&s| file_name(s)).collect();
        names.sort();
        let seqs: Vec<u64> = names.iter().filter_map(|n| parse_name(n)).collect();
        assert_eq!(seqs, [2, 17, 300]);
    }
}
