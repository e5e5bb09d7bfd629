//! The values operations take and return.

use bytes::Bytes;
use keel_proto::v1;

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ReadMode {
    /// The cluster's configured default (linearizable unless configured otherwise).
    #[default]
    Default,
    /// Reflects every write acknowledged before the read began.
    Linearizable,
    /// Served by the leader under its lease, without a network round trip; correct
    /// as long as clocks drift less than the configured bound.
    Lease,
    /// Served from whatever the answering member has applied; may be stale.
    Stale,
}

impl ReadMode {
    pub(crate) fn to_proto(self) -> v1::ReadMode {
        match self {
            ReadMode::Default => v1::ReadMode::Default,
            ReadMode::Linearizable => v1::ReadMode::Linearizable,
            ReadMode::Lease => v1::ReadMode::Lease,
            ReadMode::Stale => v1::ReadMode::Stale,
        }
    }
}

/// A condition on a key's current version, checked atomically with a write.
///
/// When it does not hold, nothing changes and the write fails with
/// [`crate::Error::Conflict`], which carries the key's current version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precondition {
    /// The key's version must equal this: a compare-and-set on a value previously
    /// read with that version.
    Version(u64),
    /// The key must not exist: create only.
    Absent,
}

impl Precondition {
    pub(crate) fn to_proto(self) -> v1::Precondition {
        use v1::precondition::Condition;
        v1::Precondition {
            condition: Some(match self {
                Precondition::Version(v) => Condition::Version(v),
                Precondition::Absent => Condition::Absent(true),
            }),
        }
    }
}

/// A key with its value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyValue {
    /// The key.
    pub key: Bytes,
    /// The value.
    pub value: Bytes,
    /// Log index of the write that last set the value; pass it to
    /// [`Precondition::Version`] to update the key only if nobody else did meanwhile.
    pub version: u64,
}

impl From<v1::KeyValue> for KeyValue {
    fn from(kv: v1::KeyValue) -> Self {
        KeyValue {
            key: kv.key,
            value: kv.value,
            version: kv.version,
        }
    }
}

/// The answer to [`crate::Client::get`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetResponse {
    /// The key and its value; `None` if the key does not exist.
    pub kv: Option<KeyValue>,
    /// Applied index of the state the read was served from.
    pub revision: u64,
}

/// The answer to [`crate::Client::delete`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeleteResponse {
    /// Log index the delete committed at.
    pub revision: u64,
    /// Whether the key existed.
    pub existed: bool,
}

/// One page of [`crate::Client::scan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanResponse {
    /// Keys with the prefix, in key order.
    pub kvs: Vec<KeyValue>,
    /// More keys with the prefix follow the last one returned.
    pub more: bool,
    /// Applied index of the state the scan was served from.
    pub revision: u64,
}

impl ScanResponse {
    /// Where the next page starts (pass it to [`ScanOptions::start_after`]), or
    /// `None` if this was the last page.
    pub fn resume_after(&self) -> Option<Bytes> {
        if self.more {
            self.kvs.last().map(|kv| kv.key.clone())
        } else {
            None
        }
    }
}

/// Options of [`crate::Client::scan`]: `ScanOptions::default()` returns the first page
/// of the server's default size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// Most keys to return; 0 means the server's default. The server caps it.
    pub limit: u32,
    /// Return only keys after this one (exclusive); empty means from the start.
    pub start_after: Bytes,
    /// How fresh the result must be.
    pub read_mode: ReadMode,
}

impl ScanOptions {
    /// Sets [`ScanOptions::limit`].
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Sets [`ScanOptions::start_after`].
    pub fn start_after(mut self, key: impl Into<Bytes>) -> Self {
        self.start_after = key.into();
        self
    }

    /// Sets [`ScanOptions::read_mode`].
    pub fn read_mode(mut self, mode: ReadMode) -> Self {
        self.read_mode = mode;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_after_points_past_the_last_key_only_when_more() {
        let kv = |k: &'static str| KeyValue {
            key: Bytes::from_static(k.as_bytes()),
            value: Bytes::new(),
            version: 1,
        };
        let page = ScanResponse {
            kvs: vec![kv("a"), kv("b")],
            more: true,
            revision: 5,
        };
        assert_eq!(page.resume_after(), Some(Bytes::from_static(b"b")));
        let last = ScanResponse {
            more: false,
            ..page
        };
        assert_eq!(last.resume_after(), None);
    }

    #[test]
    fn preconditions_map_to_the_wire() {
        use v1::precondition::Condition;
        assert_eq!(
            Precondition::Version(7).to_proto().condition,
            Some(Condition::Version(7))
        );
        assert_eq!(
            Precondition::Absent.to_proto().condition,
            Some(Condition::Absent(true))
        );
    }
}
