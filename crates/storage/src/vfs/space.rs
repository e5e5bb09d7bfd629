//! Telling a full disk apart from other I/O errors.

use std::io;

/// Whether `err` says the filesystem has no room left: `ENOSPC` (no space) or
/// `EDQUOT` (the user's quota is used up). Both go away when space is freed, unlike
/// a failed fsync or a damaged device.
pub fn is_no_space(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_and_edquot_are_no_space_other_errors_are_not() {
        assert!(is_no_space(&io::Error::from_raw_os_error(28))); // ENOSPC
        assert!(is_no_space(&io::Error::from_raw_os_error(122))); // EDQUOT
        assert!(is_no_space(&io::Error::new(
            io::ErrorKind::StorageFull,
            "wrapped with a path"
        )));
        assert!(!is_no_space(&io::Error::from_raw_os_error(5))); // EIO
        assert!(!is_no_space(&io::Error::other("x")));
    }
}
