//! Records: the units inside a frame's payload.
//!
//! ```text
//! record  = length:u32 crc:u32 body          (length = bytes of body; crc = CRC-32C of body)
//! body    = 0x01 group:u64 term:u64 index:u64 kind:u8 data...     an entry
//!         | 0x02 group:u64 term:u64 vote:u64 commit:u64           a hard state
//!         | 0x03 group:u64 index:u64 term:u64 kind:u8             a log start
//!         | 0x04 group:u64 term:u64 vote:u64                      a group tombstone
//!         | 0x05 group:u64                                        a group created again
//! ```
//!
//! The frame checksum already covers the records; the per-record length and checksum
//! let `keel wal check` point at the exact record and keep a record self-describing.

use bytes::Bytes;
use keel_raft::{Entry, EntryKind, GroupId, HardState};

use super::format::MAX_ENTRY_BYTES;
use super::log::{LogStart, LogStartKind, RemovedGroup};

const TYPE_ENTRY: u8 = 1;
const TYPE_HARD_STATE: u8 = 2;
const TYPE_LOG_START: u8 = 3;
const TYPE_GROUP_REMOVED: u8 = 4;
const TYPE_GROUP_CREATED: u8 = 5;
/// Group tombstone body: type, group, the replica's last term and vote.
const GROUP_REMOVED_LEN: usize = 1 + 8 + 8 + 8;
/// Encoded size of a group tombstone record.
pub(crate) const GROUP_REMOVED_RECORD_LEN: usize = RECORD_HEADER_LEN + GROUP_REMOVED_LEN;
/// Group-created body: type, group.
const GROUP_CREATED_LEN: usize = 1 + 8;
/// Encoded size of a group-created record.
pub(crate) const GROUP_CREATED_RECORD_LEN: usize = RECORD_HEADER_LEN + GROUP_CREATED_LEN;
/// Log start body: type, group, index, term, kind.
const LOG_START_LEN: usize = 1 + 8 + 8 + 8 + 1;
/// Encoded size of a log-start record.
pub(crate) const LOG_START_RECORD_LEN: usize = RECORD_HEADER_LEN + LOG_START_LEN;

/// Bytes before a record's body: length and checksum.
pub(crate) const RECORD_HEADER_LEN: usize = 8;
/// Entry body without its data: type, group, term, index, kind.
const ENTRY_FIXED_LEN: usize = 1 + 8 + 8 + 8 + 1;
/// Hard state body: type, group, term, vote, commit.
const HARD_STATE_LEN: usize = 1 + 8 + 8 + 8 + 8;

/// The largest record (header included) the WAL writes or accepts.
pub(crate) const MAX_RECORD_LEN: u64 =
    RECORD_HEADER_LEN as u64 + ENTRY_FIXED_LEN as u64 + MAX_ENTRY_BYTES;

/// One WAL record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalRecord {
    /// A log entry of a group.
    Entry {
        /// The group whose log it belongs to.
        group: GroupId,
        /// The entry.
        entry: Entry,
    },
    /// A group's hard state (term, vote, commit) as of this point in the log.
    HardState {
        /// The group it belongs to.
        group: GroupId,
        /// The state.
        hard_state: HardState,
    },
}

/// A record as the scan reads it: one of the public [`WalRecord`]s, a log start or
/// a group tombstone (kept out of `WalRecord` so that code matching on it
/// exhaustively keeps compiling).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ScanRecord {
    Wal(WalRecord),
    LogStart {
        group: GroupId,
        start: LogStart,
    },
    /// The group's replica on this node was deleted: every earlier record of the
    /// group is void, and only a `GroupCreated` may follow.
    GroupRemoved {
        group: GroupId,
        last: RemovedGroup,
    },
    /// A replica of the group was created again after its tombstone: a new life
    /// starting from the tombstone's term and vote, with an empty log.
    GroupCreated {
        group: GroupId,
    },
}

impl ScanRecord {
    /// The group the record belongs to.
    pub(crate) fn group(&self) -> GroupId {
        match self {
            ScanRecord::Wal(WalRecord::Entry { group, .. })
            | ScanRecord::Wal(WalRecord::HardState { group, .. })
            | ScanRecord::LogStart { group, .. }
            | ScanRecord::GroupRemoved { group, .. }
            | ScanRecord::GroupCreated { group } => *group,
        }
    }
}

/// Appends the tombstone of `group`, whose replica ended at `last`, to `buf`.
pub(crate) fn encode_group_removed(buf: &mut Vec<u8>, group: GroupId, last: RemovedGroup) {
    let start = begin(buf, GROUP_REMOVED_LEN);
    buf.push(TYPE_GROUP_REMOVED);
    buf.extend_from_slice(&group.to_le_bytes());
    buf.extend_from_slice(&last.term.to_le_bytes());
    buf.extend_from_slice(&last.vote.to_le_bytes());
    finish(buf, start);
}

/// Appends the record starting a new life of `group` to `buf`.
pub(crate) fn encode_group_created(buf: &mut Vec<u8>, group: GroupId) {
    let start = begin(buf, GROUP_CREATED_LEN);
    buf.push(TYPE_GROUP_CREATED);
    buf.extend_from_slice(&group.to_le_bytes());
    finish(buf, start);
}

/// Appends the log-start record of `group` to `buf`.
pub(crate) fn encode_log_start(buf: &mut Vec<u8>, group: GroupId, ls: &LogStart) {
    let start = begin(buf, LOG_START_LEN);
    buf.push(TYPE_LOG_START);
    buf.extend_from_slice(&group.to_le_bytes());
    buf.extend_from_slice(&ls.index.to_le_bytes());
    buf.extend_from_slice(&ls.term.to_le_bytes());
    buf.push(match ls.kind {
        LogStartKind::Compacted => 0,
        LogStartKind::Installed => 1,
    });
    finish(buf, start);
}

/// Encoded size of an entry record.
pub(crate) fn entry_record_len(entry: &Entry) -> usize {
    RECORD_HEADER_LEN + ENTRY_FIXED_LEN + entry.data.len()
}

/// Encoded size of a hard-state record.
pub(crate) const HARD_STATE_RECORD_LEN: usize = RECORD_HEADER_LEN + HARD_STATE_LEN;

/// Appends the record for `entry` of `group` to `buf`.
pub(crate) fn encode_entry(buf: &mut Vec<u8>, group: GroupId, entry: &Entry) {
    let body_len = ENTRY_FIXED_LEN + entry.data.len();
    let start = begin(buf, body_len);
    buf.push(TYPE_ENTRY);
    buf.extend_from_slice(&group.to_le_bytes());
    buf.extend_from_slice(&entry.term.to_le_bytes());
    buf.extend_from_slice(&entry.index.to_le_bytes());
    buf.push(entry.kind.to_code());
    buf.extend_from_slice(&entry.data);
    finish(buf, start);
}

/// Appends the record for the hard state of `group` to `buf`.
pub(crate) fn encode_hard_state(buf: &mut Vec<u8>, group: GroupId, hs: &HardState) {
    let start = begin(buf, HARD_STATE_LEN);
    buf.push(TYPE_HARD_STATE);
    buf.extend_from_slice(&group.to_le_bytes());
    buf.extend_from_slice(&hs.term.to_le_bytes());
    buf.extend_from_slice(&hs.vote.to_le_bytes());
    buf.extend_from_slice(&hs.commit.to_le_bytes());
    finish(buf, start);
}

/// Writes the length and a checksum placeholder; returns where the record starts.
fn begin(buf: &mut Vec<u8>, body_len: usize) -> usize {
    let start = buf.len();
    let len = u32::try_from(body_len).expect("record bodies are capped far below 4 GiB");
    buf.reserve(RECORD_HEADER_LEN + body_len);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    start
}

/// Fills in the checksum of the record that starts at `start`.
fn finish(buf: &mut [u8], start: usize) {
    let crc = crc32c::crc32c(&buf[start + RECORD_HEADER_LEN..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8-byte slice"))
}

/// Decodes the record at `pos` of a frame payload; returns it and where the next
/// record starts. Entry data is a zero-copy slice of `payload`. The error is a reason
/// for a corruption report.
pub(crate) fn decode(payload: &Bytes, pos: usize) -> Result<(ScanRecord, usize), String> {
    let rest = &payload[pos..];
    if rest.len() < RECORD_HEADER_LEN {
        return Err(format!(
            "record header needs {RECORD_HEADER_LEN} bytes, only {} left in frame",
            rest.len()
        ));
    }
    let body_len = u32::from_le_bytes(rest[0..4].try_into().expect("4-byte slice")) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4-byte slice"));
    if body_len as u64 > MAX_RECORD_LEN {
        return Err(format!("record length {body_len} over the limit"));
    }
    if rest.len() - RECORD_HEADER_LEN < body_len {
        return Err(format!(
            "record length {body_len} runs past the end of its frame"
        ));
    }
    let body_start = pos + RECORD_HEADER_LEN;
    let body = &payload[body_start..body_start + body_len];
    if crc32c::crc32c(body) != crc {
        return Err("record checksum mismatch".to_string());
    }
    let record = match body.first() {
        Some(&TYPE_ENTRY) => {
            if body.len() < ENTRY_FIXED_LEN {
                return Err(format!("entry record of {} bytes is too short", body.len()));
            }
            let code = body[25];
            let kind =
                EntryKind::from_code(code).ok_or_else(|| format!("unknown entry kind {code}"))?;
            ScanRecord::Wal(WalRecord::Entry {
                group: u64_at(body, 1),
                entry: Entry {
                    term: u64_at(body, 9),
                    index: u64_at(body, 17),
                    kind,
                    data: payload.slice(body_start + ENTRY_FIXED_LEN..body_start + body_len),
                },
            })
        }
        Some(&TYPE_HARD_STATE) => {
            if body.len() != HARD_STATE_LEN {
                return Err(format!(
                    "hard state record of {} bytes, expected {HARD_STATE_LEN}",
                    body.len()
                ));
            }
            ScanRecord::Wal(WalRecord::HardState {
                group: u64_at(body, 1),
                hard_state: HardState {
                    term: u64_at(body, 9),
                    vote: u64_at(body, 17),
                    commit: u64_at(body, 25),
                },
            })
        }
        Some(&TYPE_LOG_START) => {
            if body.len() != LOG_START_LEN {
                return Err(format!(
                    "log start record of {} bytes, expected {LOG_START_LEN}",
                    body.len()
                ));
            }
            let kind = match body[25] {
                0 => LogStartKind::Compacted,
                1 => LogStartKind::Installed,
                other => return Err(format!("unknown log start kind {other}")),
            };
            ScanRecord::LogStart {
                group: u64_at(body, 1),
                start: LogStart {
                    index: u64_at(body, 9),
                    term: u64_at(body, 17),
                    kind,
                },
            }
        }
        Some(&TYPE_GROUP_REMOVED) => {
            if body.len() != GROUP_REMOVED_LEN {
                return Err(format!(
                    "group tombstone record of {} bytes, expected {GROUP_REMOVED_LEN}",
                    body.len()
                ));
            }
            ScanRecord::GroupRemoved {
                group: u64_at(body, 1),
                last: RemovedGroup {
                    term: u64_at(body, 9),
                    vote: u64_at(body, 17),
                },
            }
        }
        Some(&TYPE_GROUP_CREATED) => {
            if body.len() != GROUP_CREATED_LEN {
                return Err(format!(
                    "group-created record of {} bytes, expected {GROUP_CREATED_LEN}",
                    body.len()
                ));
            }
            ScanRecord::GroupCreated {
                group: u64_at(body, 1),
            }
        }
        // Never skipped: a record this build does not know may change what the
        // records around it mean (as a tombstone does), so reading on could
        // recover the wrong logs. A valid frame holding one is corruption, which
        // refuses to start rather than being truncated as a torn tail.
        Some(other) => {
            return Err(format!(
                "unknown record type {other} (written by a newer keel?)"
            ));
        }
        None => return Err("empty record".to_string()),
    };
    Ok((record, body_start + body_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(index: u64, data: &'static [u8]) -> Entry {
        Entry {
            term: 3,
            index,
            kind: EntryKind::Normal,
            data: Bytes::from_static(data),
        }
    }

    #[test]
    fn records_round_trip_back_to_back() {
        let mut buf = Vec::new();
        encode_entry(&mut buf, 7, &entry(5, b"hello"));
        let hs = HardState {
            term: 4,
            vote: 2,
            commit: 5,
        };
        encode_hard_state(&mut buf, 9, &hs);
        assert_eq!(
            buf.len(),
            entry_record_len(&entry(5, b"hello")) + HARD_STATE_RECORD_LEN
        );
        let payload = Bytes::from(buf);
        let (r1, next) = decode(&payload, 0).expect("entry");
        assert_eq!(
            r1,
            ScanRecord::Wal(WalRecord::Entry {
                group: 7,
                entry: entry(5, b"hello")
            })
        );
        let (r2, end) = decode(&payload, next).expect("hard state");
        assert_eq!(
            r2,
            ScanRecord::Wal(WalRecord::HardState {
                group: 9,
                hard_state: hs
            })
        );
        assert_eq!(end, payload.len());
        let mut buf = Vec::new();
        let ls = LogStart {
            index: 40,
            term: 3,
            kind: LogStartKind::Installed,
        };
        encode_log_start(&mut buf, 2, &ls);
        assert_eq!(buf.len(), LOG_START_RECORD_LEN);
        let (r3, _) = decode(&Bytes::from(buf), 0).expect("log start");
        assert_eq!(
            r3,
            ScanRecord::LogStart {
                group: 2,
                start: ls
            }
        );
        let mut buf = Vec::new();
        let last = RemovedGroup { term: 7, vote: 3 };
        encode_group_removed(&mut buf, 0x0102_0304_0506_0708, last);
        assert_eq!(buf.len(), GROUP_REMOVED_RECORD_LEN);
        // The layout docs/wal-format.md gives: length, checksum, type 4, group,
        // term, vote.
        assert_eq!(&buf[..4], &25u32.to_le_bytes());
        assert_eq!(buf[8], 4);
        assert_eq!(&buf[9..17], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&buf[17..25], &7u64.to_le_bytes());
        assert_eq!(&buf[25..], &3u64.to_le_bytes());
        let (r4, end) = decode(&Bytes::from(buf), 0).expect("tombstone");
        assert_eq!(
            r4,
            ScanRecord::GroupRemoved {
                group: 0x0102_0304_0506_0708,
                last
            }
        );
        assert_eq!(end, GROUP_REMOVED_RECORD_LEN);
        let mut buf = Vec::new();
        encode_group_created(&mut buf, 0x0a0b);
        assert_eq!(buf.len(), GROUP_CREATED_RECORD_LEN);
        // Length, checksum, type 5, group.
        assert_eq!(&buf[..4], &9u32.to_le_bytes());
        assert_eq!(buf[8], 5);
        assert_eq!(&buf[9..], &0x0a0bu64.to_le_bytes());
        let (r5, end) = decode(&Bytes::from(buf), 0).expect("created");
        assert_eq!(r5, ScanRecord::GroupCreated { group: 0x0a0b });
        assert_eq!(end, GROUP_CREATED_RECORD_LEN);
    }

    #[test]
    fn a_tombstone_of_the_wrong_length_and_an_unknown_type_are_refused() {
        let mut buf = Vec::new();
        let start = begin(&mut buf, GROUP_REMOVED_LEN + 1);
        buf.push(TYPE_GROUP_REMOVED);
        buf.extend_from_slice(&[0; 25]);
        finish(&mut buf, start);
        let err = decode(&Bytes::from(buf), 0).expect_err("long tombstone");
        assert!(err.contains("group tombstone record of 26 bytes"), "{err}");
        let mut buf = Vec::new();
        let start = begin(&mut buf, GROUP_CREATED_LEN - 1);
        buf.push(TYPE_GROUP_CREATED);
        buf.extend_from_slice(&[0; 7]);
        finish(&mut buf, start);
        let err = decode(&Bytes::from(buf), 0).expect_err("short created");
        assert!(err.contains("group-created record of 8 bytes"), "{err}");
        let mut buf = Vec::new();
        let start = begin(&mut buf, 1);
        buf.push(6);
        finish(&mut buf, start);
        let err = decode(&Bytes::from(buf), 0).expect_err("type 6");
        assert!(err.contains("unknown record type 6"), "{err}");
    }

    #[test]
    fn damaged_records_are_rejected_with_a_reason() {
        let mut buf = Vec::new();
        encode_entry(&mut buf, 1, &entry(1, b"abc"));
        let good = Bytes::from(buf.clone());
        assert!(decode(&good.slice(..good.len() - 1), 0).is_err());
        buf[RECORD_HEADER_LEN + 3] ^= 1;
        let err = decode(&Bytes::from(buf), 0).expect_err("flipped");
        assert!(err.contains("checksum"), "{err}");
    }

    proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), pos in 0usize..10) {
            let payload = Bytes::from(data);
            if pos <= payload.len() {
                let _ = decode(&payload, pos);
            }
        }
    }
}
