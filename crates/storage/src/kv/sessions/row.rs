//! One session's stored form: when it was last used, which sequence numbers it
//! has forgotten, and the results it remembers.
//!
//! ```text
//! row     = last_seen_ms:varint floor:varint count:varint result*
//! result  = seq_delta:varint outcome       seq_delta from the previous result's
//!                                          seq (the first: from floor); results
//!                                          in increasing seq order
//! outcome = 0x01 revision:varint           Put
//!         | 0x02 revision:varint           Deleted, the key existed
//!         | 0x03 revision:varint           Deleted, the key did not exist
//!         | 0x04 version:varint            Conflict (0: the key was absent)
//! ```
//!
//! The same bytes are the session's record in a snapshot and its input to the
//! digest, so this is a stable format (`docs/sessions.md`).

use bytes::BytesMut;

use super::MAX_RESULTS_PER_SESSION;
use crate::command::{CommandError, Reader, put_varint};
use crate::kv::error::KvError;
use crate::kv::outcome::ApplyOutcome;

const PUT: u8 = 0x01;
const DELETED: u8 = 0x02;
const DELETED_ABSENT: u8 = 0x03;
const CONFLICT: u8 = 0x04;

/// What the state machine remembers of one client session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SessionRow {
    /// The session clock when a write of this session was last applied.
    pub(crate) last_seen_ms: u64,
    /// Sequence numbers below this are forgotten: a retry of one is refused.
    pub(crate) floor: u64,
    /// Outcomes of sequence numbers at or above `floor`, in increasing sequence
    /// order, at most [`MAX_RESULTS_PER_SESSION`]. A sorted vector: new numbers
    /// mostly arrive last, and it costs one allocation per decode.
    pub(crate) results: Vec<(u64, ApplyOutcome)>,
}

impl SessionRow {
    /// A session opened at `now_ms` by its first write (sequence number 1).
    pub(crate) fn new(now_ms: u64) -> Self {
        SessionRow {
            last_seen_ms: now_ms,
            floor: 1,
            results: Vec::new(),
        }
    }

    /// The remembered outcome of `seq`, if any.
    pub(crate) fn result(&self, seq: u64) -> Option<ApplyOutcome> {
        self.position(seq).ok().map(|i| self.results[i].1.clone())
    }

    fn position(&self, seq: u64) -> Result<usize, usize> {
        self.results.binary_search_by_key(&seq, |&(s, _)| s)
    }

    /// Forgets results below `first_unacked`: the client will not retry them.
    pub(crate) fn acknowledge(&mut self, first_unacked: u64) {
        if first_unacked > self.floor {
            self.floor = first_unacked;
            let below = self.results.partition_point(|&(s, _)| s < first_unacked);
            self.results.drain(..below);
        }
    }

    /// Remembers the outcome of `seq` (at or above `floor`), forgetting the oldest
    /// result if that makes too many.
    pub(crate) fn record(&mut self, seq: u64, outcome: ApplyOutcome) {
        debug_assert!(seq >= self.floor, "seq {seq} below floor {}", self.floor);
        if stored_tag(&outcome).is_none() {
            return;
        }
        match self.position(seq) {
            Ok(i) => self.results[i].1 = outcome,
            Err(i) => self.results.insert(i, (seq, outcome)),
        }
        if self.results.len() > MAX_RESULTS_PER_SESSION {
            let excess = self.results.len() - MAX_RESULTS_PER_SESSION;
            self.floor = self.results[excess - 1].0 + 1;
            self.results.drain(..excess);
        }
    }

    /// The stored bytes (format in the module docs).
    pub(crate) fn encode(&self) -> BytesMut {
        let mut buf = BytesMut::with_capacity(6 + self.results.len() * 8);
        put_varint(&mut buf, self.last_seen_ms);
        put_varint(&mut buf, self.floor);
        put_varint(&mut buf, self.results.len() as u64);
        let mut prev = self.floor;
        for &(seq, ref outcome) in &self.results {
            put_varint(&mut buf, seq - prev);
            prev = seq;
            let Some((tag, n)) = stored_tag(outcome) else {
                unreachable!("record() keeps only storable outcomes")
            };
            buf.extend_from_slice(&[tag]);
            put_varint(&mut buf, n);
        }
        buf
    }

    /// Parses stored bytes, checking every rule the encoder follows.
    pub(crate) fn decode(bytes: &[u8]) -> Result<SessionRow, KvError> {
        decode(bytes).map_err(|e| KvError::Corrupt(format!("client session record: {e}")))
    }
}

/// The tag and number an outcome is stored as; `None` for outcomes that are not
/// the result of running a command (they are never remembered).
fn stored_tag(outcome: &ApplyOutcome) -> Option<(u8, u64)> {
    // Exhaustive on purpose: a new outcome must decide how it is remembered.
    match *outcome {
        ApplyOutcome::Put { revision } => Some((PUT, revision)),
        ApplyOutcome::Deleted {
            revision,
            existed: true,
        } => Some((DELETED, revision)),
        ApplyOutcome::Deleted {
            revision,
            existed: false,
        } => Some((DELETED_ABSENT, revision)),
        ApplyOutcome::Conflict { current_version } => {
            Some((CONFLICT, current_version.unwrap_or(0)))
        }
        // Transactions and adds do not travel in sessions yet (the server
        // proposes them without a header), so there is no such result to remember.
        ApplyOutcome::NoOp
        | ApplyOutcome::AlreadyApplied
        | ApplyOutcome::SessionRejected(_)
        | ApplyOutcome::Txn(_)
        | ApplyOutcome::TxnReadLimit { .. }
        | ApplyOutcome::Added { .. }
        | ApplyOutcome::AddRefused(_) => None,
        // A write refused for its slot did not run: not remembering it lets a
        // retry run once the slot is served again (after an aborted move).
        // Slot-move commands are the runtime's, never a session's.
        ApplyOutcome::SlotUnavailable(_)
        | ApplyOutcome::SlotStep { .. }
        | ApplyOutcome::SlotStepRefused(_) => None,
    }
}

/// Why stored bytes are not a session row.
#[derive(Debug, thiserror::Error)]
enum RowError {
    #[error(transparent)]
    Field(#[from] CommandError),
    #[error("{0}")]
    Rule(String),
}

fn decode(bytes: &[u8]) -> Result<SessionRow, RowError> {
    let mut r = Reader::new(bytes);
    let last_seen_ms = r.varint("last seen")?;
    let floor = r.varint("floor")?;
    let count = r.varint("result count")?;
    if count > MAX_RESULTS_PER_SESSION as u64 {
        return Err(RowError::Rule(format!(
            "{count} results, the limit is {MAX_RESULTS_PER_SESSION}"
        )));
    }
    // `count` is bounded above, so this allocation is too.
    let mut results = Vec::with_capacity(count as usize);
    let mut prev = floor;
    for i in 0..count {
        let delta = r.varint("sequence number")?;
        // Strictly increasing after the first, which may equal the floor.
        if i > 0 && delta == 0 {
            return Err(RowError::Rule("sequence numbers repeat".into()));
        }
        let seq = prev
            .checked_add(delta)
            .ok_or_else(|| RowError::Rule("sequence number overflows".into()))?;
        prev = seq;
        let tag = r.u8("outcome")?;
        let n = r.varint("outcome")?;
        let outcome = match tag {
            PUT => ApplyOutcome::Put { revision: n },
            DELETED | DELETED_ABSENT => ApplyOutcome::Deleted {
                revision: n,
                existed: tag == DELETED,
            },
            CONFLICT => ApplyOutcome::Conflict {
                current_version: (n != 0).then_some(n),
            },
            other => return Err(RowError::Rule(format!("unknown outcome tag {other:#04x}"))),
        };
        results.push((seq, outcome));
    }
    r.finish()?;
    Ok(SessionRow {
        last_seen_ms,
        floor,
        results,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn known_encoding_is_stable() {
        let mut row = SessionRow::new(5);
        row.record(1, ApplyOutcome::Put { revision: 300 });
        row.record(
            3,
            ApplyOutcome::Conflict {
                current_version: None,
            },
        );
        row.record(
            4,
            ApplyOutcome::Deleted {
                revision: 9,
                existed: false,
            },
        );
        assert_eq!(
            &row.encode()[..],
            &[
                5,
                1,
                3,
                0,
                PUT,
                0xAC,
                0x02,
                2,
                CONFLICT,
                0,
                1,
                DELETED_ABSENT,
                9
            ]
        );
        assert_eq!(SessionRow::decode(&row.encode()).expect("decode"), row);
    }

    #[test]
    fn acknowledging_forgets_lower_results_and_never_lowers_the_floor() {
        let mut row = SessionRow::new(0);
        for seq in 1..=5 {
            row.record(seq, ApplyOutcome::Put { revision: seq });
        }
        row.acknowledge(4);
        assert_eq!(row.floor, 4);
        let kept: Vec<u64> = row.results.iter().map(|r| r.0).collect();
        assert_eq!(kept, [4, 5]);
        row.acknowledge(2);
        assert_eq!(row.floor, 4);
    }

    #[test]
    fn the_oldest_result_goes_when_there_are_too_many() {
        let mut row = SessionRow::new(0);
        let n = MAX_RESULTS_PER_SESSION as u64;
        for seq in 1..=n + 2 {
            row.record(seq, ApplyOutcome::Put { revision: seq });
        }
        assert_eq!(row.results.len(), MAX_RESULTS_PER_SESSION);
        assert_eq!(row.floor, 3);
        assert_eq!(row.results.first().map(|r| r.0), Some(3));
    }

    #[test]
    fn damaged_rows_are_refused() {
        let cases: &[&[u8]] = &[
            &[],
            &[0, 1, 1, 0, 9, 1],
            &[0, 1, 2, 0, PUT, 1, 0, PUT, 2],
            &[0, 1, 0, 7],
            &[0, 1, 0xFF, 0xFF, 0x03],
        ];
        for bytes in cases {
            assert!(SessionRow::decode(bytes).is_err(), "{bytes:?}");
        }
    }

    fn arb_outcome() -> impl Strategy<Value = ApplyOutcome> {
        prop_oneof![
            any::<u64>().prop_map(|revision| ApplyOutcome::Put { revision }),
            (any::<u64>(), any::<bool>())
                .prop_map(|(revision, existed)| ApplyOutcome::Deleted { revision, existed }),
            (1..u64::MAX).prop_map(|v| ApplyOutcome::Conflict {
                current_version: Some(v)
            }),
            Just(ApplyOutcome::Conflict {
                current_version: None
            }),
        ]
    }

    proptest! {
        #[test]
        fn rows_round_trip(
            last_seen in any::<u64>(),
            first in 1..u64::MAX / 2,
            results in proptest::collection::vec((0..1000u64, arb_outcome()), 0..40),
        ) {
            let mut row = SessionRow::new(last_seen);
            row.acknowledge(first);
            for (offset, outcome) in results {
                row.record(first + offset, outcome);
            }
            prop_assert_eq!(SessionRow::decode(&row.encode()).expect("decode"), row);
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(row) = SessionRow::decode(&data) {
                prop_assert_eq!(&row.encode()[..], &data[..]);
            }
        }
    }
}
