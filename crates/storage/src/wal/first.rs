//! The `FIRST` file: the sequence number of the oldest segment that compaction kept.
//!
//! Written (temporary file, fsync, rename, directory fsync) before any segment is
//! deleted, so recovery can tell a compacted log (segments below `FIRST` were
//! deleted on purpose; leftovers of an interrupted deletion are removed) from a lost
//! segment (everything from `FIRST` on must be present).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `KEELWFST` |
//! | 8 | 8 | first segment sequence number |
//! | 16 | 4 | reserved, zero |
//! | 20 | 4 | CRC-32C of bytes 0..20 |

use std::path::Path;

use super::error::WalError;
use crate::vfs::Vfs;

pub(crate) const FIRST_FILE: &str = "FIRST";
const FIRST_TMP: &str = "FIRST.tmp";
const MAGIC: [u8; 8] = *b"KEELWFST";
const LEN: usize = 24;

/// The first segment to read: from `FIRST`, or 1 if the log was never compacted.
pub(crate) fn read(vfs: &dyn Vfs, dir: &Path) -> Result<u64, WalError> {
    let path = dir.join(FIRST_FILE);
    if !vfs.exists(&path) {
        return Ok(1);
    }
    let file = vfs
        .open(&path, false)
        .map_err(WalError::io("open", &path))?;
    let len = file.len().map_err(WalError::io("stat", &path))?;
    let corrupt = |reason: &str| WalError::Corrupt {
        file: path.clone(),
        offset: 0,
        reason: reason.to_string(),
    };
    if len != LEN as u64 {
        return Err(corrupt("FIRST file has the wrong length"));
    }
    let mut b = [0u8; LEN];
    file.read_exact_at(0, &mut b)
        .map_err(WalError::io("read", &path))?;
    let crc = u32::from_le_bytes(b[20..24].try_into().expect("4 bytes"));
    if b[0..8] != MAGIC || crc32c::crc32c(&b[..20]) != crc {
        return Err(corrupt("FIRST file is damaged (magic or checksum)"));
    }
    let seq = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
    if seq == 0 {
        return Err(corrupt("FIRST file names segment 0"));
    }
    Ok(seq)
}

/// Durably records `seq` as the first segment. A full disk before the rename is
/// [`WalError::NoSpace`] with nothing changed.
pub(crate) fn write(vfs: &dyn Vfs, dir: &Path, seq: u64) -> Result<(), WalError> {
    let tmp = dir.join(FIRST_TMP);
    let path = dir.join(FIRST_FILE);
    let mut b = [0u8; LEN];
    b[0..8].copy_from_slice(&MAGIC);
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&b[..20]);
    b[20..24].copy_from_slice(&crc.to_le_bytes());
    // A full disk before the rename leaves `FIRST` as it was: nothing to undo but
    // the temporary file.
    let written = vfs
        .open(&tmp, true)
        .map_err(WalError::io_or_no_space("create", &tmp, dir))
        .and_then(|file| {
            file.set_len(0)
                .map_err(WalError::io_or_no_space("truncate", &tmp, dir))?;
            file.write_all_at(0, &b)
                .map_err(WalError::io_or_no_space("write", &tmp, dir))?;
            Ok(file)
        });
    let file = match written {
        Ok(file) => file,
        Err(e) => {
            if e.is_no_space() {
                let _ = vfs.remove_file(&tmp);
            }
            return Err(e);
        }
    };
    file.sync_data().map_err(WalError::io("sync", &tmp))?;
    vfs.rename(&tmp, &path)
        .map_err(WalError::io("rename", &tmp))?;
    vfs.sync_dir(dir)
        .map_err(WalError::io("sync directory", dir))
}
