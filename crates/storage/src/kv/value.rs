//! How a value is stored: its version (the log index that wrote it) in front of the
//! bytes, so one lookup answers both `get` and preconditions.

use bytes::Bytes;
use redb::ReadableTable;

use super::error::{KvError, engine};

const VERSION_LEN: usize = 8;

/// The stored form of `value` written at `version`.
pub(crate) fn encode(version: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(VERSION_LEN + value.len());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// Splits a stored value into version and bytes.
pub(crate) fn decode(stored: &[u8]) -> Result<(u64, &[u8]), KvError> {
    if stored.len() < VERSION_LEN {
        return Err(KvError::Corrupt(format!(
            "stored value of {} bytes is shorter than its version",
            stored.len()
        )));
    }
    let (version, value) = stored.split_at(VERSION_LEN);
    let version = u64::from_le_bytes(version.try_into().expect("split at 8"));
    Ok((version, value))
}

/// The value and version of `key` in `table`, copied out.
pub(crate) fn lookup<T>(table: &T, key: &[u8]) -> Result<Option<(Bytes, u64)>, KvError>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let Some(stored) = table.get(key).map_err(engine)? else {
        return Ok(None);
    };
    let (version, value) = decode(stored.value())?;
    Ok(Some((Bytes::copy_from_slice(value), version)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_short_input() {
        let stored = encode(42, b"v");
        assert_eq!(decode(&stored).expect("decode"), (42, &b"v"[..]));
        assert!(decode(&[1, 2, 3]).is_err());
    }
}
