//! Configuration of the write-ahead log.

use super::error::WalError;
use super::format::{FRAME_ALIGN, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};

/// Smallest allowed segment: room for the header and a few small frames. Tiny
/// segments are for tests that want many rollovers.
pub const MIN_SEGMENT_BYTES: u64 = 1024;
const _: () = assert!(MIN_SEGMENT_BYTES > SEGMENT_HEADER_LEN + FRAME_HEADER_LEN);

/// WAL settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// Size of each segment file, preallocated when the segment is created. A batch
    /// larger than a segment gets a segment of its own, as large as it needs. Must be
    /// a multiple of 8 and at least [`MIN_SEGMENT_BYTES`]. Default 64 MiB.
    pub segment_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 << 20,
        }
    }
}

impl WalOptions {
    /// Checks the options; `Wal::open` calls this.
    pub fn validate(&self) -> Result<(), WalError> {
        if self.segment_bytes < MIN_SEGMENT_BYTES {
            return Err(WalError::InvalidOptions(format!(
                "segment_bytes {} is below the minimum {MIN_SEGMENT_BYTES}",
                self.segment_bytes
            )));
        }
        if !self.segment_bytes.is_multiple_of(FRAME_ALIGN) {
            return Err(WalError::InvalidOptions(format!(
                "segment_bytes {} is not a multiple of {FRAME_ALIGN}",
                self.segment_bytes
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_sizes_are_rejected() {
        WalOptions::default().validate().expect("default");
        for bad in [0, 512, MIN_SEGMENT_BYTES + 1] {
            let opts = WalOptions { segment_bytes: bad };
            assert!(opts.validate().is_err(), "{bad}");
        }
    }
}
