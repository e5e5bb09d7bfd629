//! Making the end of the log clean again after a crash, before appending resumes.

use std::path::Path;

use super::error::WalError;
use super::recovery::TornTail;
use super::scan::Scan;
use crate::vfs::Vfs;

/// Zeros written at a time when discarding a torn tail.
const ZERO_CHUNK: u64 = 1 << 20;

/// Discards what the scan found after the last valid frame, durably, and describes
/// it: torn bytes are overwritten with zeros (restoring "everything after the last
/// frame is zero", which the next recovery relies on) and an incomplete last segment
/// is removed.
pub(crate) fn repair(vfs: &dyn Vfs, dir: &Path, scan: &Scan) -> Result<Option<TornTail>, WalError> {
    for garbage in &scan.garbage {
        let path = &scan.segments[garbage.segment].path;
        let file = vfs
            .open(path, false)
            .map_err(WalError::io("open segment", path))?;
        let zeros = vec![0u8; ZERO_CHUNK as usize];
        let mut at = garbage.from;
        while at < garbage.to {
            let n = (garbage.to - at).min(ZERO_CHUNK);
            file.write_all_at(at, &zeros[..n as usize])
                .map_err(WalError::io("zero torn tail", path))?;
            at += n;
        }
        file.sync_data().map_err(WalError::io("sync", path))?;
    }
    if let Some(incomplete) = &scan.incomplete {
        let path = &scan.segments[incomplete.segment].path;
        vfs.remove_file(path)
            .map_err(WalError::io("remove incomplete segment", path))?;
        vfs.sync_dir(dir)
            .map_err(WalError::io("sync directory", dir))?;
    }
    Ok(scan.torn_tail())
}
