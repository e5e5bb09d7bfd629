//! Input limits, checked before anything reaches the consensus thread so that bad
//! input changes nothing.

use keel_proto::error::ErrorDetail;

use crate::config::MAX_KEY_BYTES;

pub(crate) fn key(key: &[u8]) -> Result<(), ErrorDetail> {
    if key.is_empty() {
        return Err(ErrorDetail::invalid_argument("the key is empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ErrorDetail::invalid_argument(format!(
            "the key is {} bytes; the limit is {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(())
}

pub(crate) fn value(value: &[u8], max: usize) -> Result<(), ErrorDetail> {
    if value.len() > max {
        return Err(ErrorDetail::invalid_argument(format!(
            "the value is {} bytes; the limit is {max}",
            value.len()
        )));
    }
    Ok(())
}

/// A prefix or paging key: may be empty, bounded like keys.
pub(crate) fn prefix(prefix: &[u8], what: &str) -> Result<(), ErrorDetail> {
    if prefix.len() > MAX_KEY_BYTES {
        return Err(ErrorDetail::invalid_argument(format!(
            "the {what} is {} bytes; the limit is {MAX_KEY_BYTES}",
            prefix.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert!(key(b"").is_err());
        assert!(key(&[b'k'; MAX_KEY_BYTES]).is_ok());
        assert!(key(&[b'k'; MAX_KEY_BYTES + 1]).is_err());
        assert!(value(&[0; 10], 10).is_ok());
        assert!(value(&[0; 11], 10).is_err());
        assert!(prefix(b"", "prefix").is_ok());
    }
}
