use bytes::Bytes;
use keel_raft::{Entry, EntryKind, Message, MessageBody};
use proptest::prelude::*;

use super::ConvertError;
use crate::raft::{self, raft_message::Body};

fn entry_kind() -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        Just(EntryKind::Normal),
        Just(EntryKind::NoOp),
        Just(EntryKind::ConfChange)
    ]
}

/// Entries as a correct leader sends them: contiguous after `prev_log_index`, terms
/// non-decreasing from `prev_log_term`. Returns the entries and the last term.
fn entries_after(
    prev_log_index: u64,
    prev_log_term: u64,
) -> impl Strategy<Value = (Vec<Entry>, u64)> {
    prop::collection::vec(
        (
            0u64..3,
            entry_kind(),
            prop::collection::vec(any::<u8>(), 0..64),
        ),
        0..8,
    )
    .prop_map(move |specs| {
        let mut term = prev_log_term;
        let entries = specs
            .into_iter()
            .enumerate()
            .map(|(i, (bump, kind, data))| {
                term += bump;
                Entry {
                    term,
                    index: prev_log_index + 1 + i as u64,
                    kind,
                    data: Bytes::from(data),
                }
            })
            .collect();
        (entries, term)
    })
}

/// An AppendEntries and a term at least as new as all of its entries.
fn append_entries() -> impl Strategy<Value = (MessageBody, u64)> {
    (0u64..1 << 40, 0u64..1 << 40, any::<u64>(), 0u64..4).prop_flat_map(
        |(prev_log_index, prev_log_term, leader_commit, extra)| {
            entries_after(prev_log_index, prev_log_term).prop_map(move |(entries, last)| {
                let body = MessageBody::AppendEntries {
                    prev_log_index,
                    prev_log_term,
                    entries,
                    leader_commit,
                };
                (body, last + extra)
            })
        },
    )
}

fn other_body() -> impl Strategy<Value = MessageBody> {
    prop_oneof![
        (any::<u64>(), any::<u64>(), any::<bool>(), any::<bool>()).prop_map(
            |(last_log_index, last_log_term, pre_vote, transfer)| MessageBody::RequestVote {
                last_log_index,
                last_log_term,
                pre_vote,
                transfer,
            }
        ),
        (
            any::<bool>(),
            any::<bool>(),
            0..=super::MAX_LEASE_NANOS,
            any::<u64>()
        )
            .prop_map(|(granted, pre_vote, lease_remaining, lease_term)| {
                MessageBody::RequestVoteResponse {
                    granted,
                    pre_vote,
                    lease_remaining,
                    lease_term,
                }
            }),
        (any::<u64>(), any::<bool>(), any::<u64>(), any::<u64>()).prop_map(
            |(index, reject, hint_index, hint_term)| MessageBody::AppendEntriesResponse {
                index,
                reject,
                hint_index,
                hint_term,
            }
        ),
        (
            any::<u64>(),
            any::<u64>(),
            0..=super::MAX_LEASE_NANOS,
            any::<bool>()
        )
            .prop_map(
                |(commit, read_seq, lease, quiesce)| MessageBody::Heartbeat {
                    commit,
                    read_seq,
                    lease,
                    quiesce
                }
            ),
        any::<u64>().prop_map(|read_seq| MessageBody::HeartbeatResponse { read_seq }),
        any::<u64>().prop_map(|ctx| MessageBody::ReadIndex { ctx }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(ctx, index)| MessageBody::ReadIndexResponse { ctx, index }),
    ]
}

/// Any message a correct core could send: every variant, sender and recipient set and
/// distinct.
fn message() -> impl Strategy<Value = Message> {
    let body_and_term = prop_oneof![append_entries(), (other_body(), any::<u64>()),];
    (any::<u64>(), 1u64.., 1u64.., body_and_term)
        .prop_filter("a core never messages itself", |(_, from, to, _)| {
            from != to
        })
        .prop_map(|(group, from, to, (body, term))| Message {
            group,
            from,
            to,
            term,
            body,
        })
}

proptest! {
    #[test]
    fn round_trip_is_lossless(m in message()) {
        let wire = raft::RaftMessage::from(&m);
        let back = Message::try_from(wire).expect("a message the core made is valid");
        prop_assert_eq!(back, m);
    }

    #[test]
    fn round_trip_survives_encoding(m in message()) {
        use prost::Message as _;
        let bytes = raft::RaftMessage::from(&m).encode_to_vec();
        let decoded = raft::RaftMessage::decode(bytes.as_slice()).expect("decodes");
        prop_assert_eq!(Message::try_from(decoded).expect("valid"), m);
    }

    #[test]
    fn arbitrary_wire_input_never_panics(
        from in any::<u64>(),
        to in any::<u64>(),
        term in any::<u64>(),
        prev in any::<u64>(),
        entries in prop::collection::vec((any::<u64>(), any::<u64>(), any::<u32>()), 0..6),
    ) {
        let wire = raft::RaftMessage {
            group: 1,
            from,
            to,
            term,
            body: Some(Body::AppendEntries(raft::AppendEntries {
                prev_log_index: prev,
                prev_log_term: 0,
                entries: entries
                    .into_iter()
                    .map(|(term, index, kind)| raft::Entry { term, index, kind, data: Bytes::new() })
                    .collect(),
                leader_commit: 0,
            })),
        };
        // Either outcome is fine; a panic or an overflow is not.
        let _ = Message::try_from(wire);
    }
}

#[test]
fn payloads_are_shared_not_copied() {
    let data = Bytes::from(vec![7u8; 1024]);
    let m = Message {
        group: 1,
        from: 1,
        to: 2,
        term: 3,
        body: MessageBody::AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![Entry {
                term: 3,
                index: 1,
                kind: EntryKind::Normal,
                data: data.clone(),
            }],
            leader_commit: 0,
        },
    };
    let wire = raft::RaftMessage::from(&m);
    let Some(Body::AppendEntries(a)) = wire.body else {
        panic!("expected AppendEntries");
    };
    assert_eq!(a.entries[0].data.as_ptr(), data.as_ptr());
}

fn heartbeat(from: u64, to: u64) -> raft::RaftMessage {
    raft::RaftMessage {
        group: 1,
        from,
        to,
        term: 1,
        body: Some(Body::Heartbeat(raft::Heartbeat {
            commit: 0,
            read_seq: 0,
            lease: 0,
            quiesce: false,
        })),
    }
}

fn append(prev: u64, prev_term: u64, term: u64, entries: &[(u64, u64, u32)]) -> raft::RaftMessage {
    raft::RaftMessage {
        group: 1,
        from: 1,
        to: 2,
        term,
        body: Some(Body::AppendEntries(raft::AppendEntries {
            prev_log_index: prev,
            prev_log_term: prev_term,
            entries: entries
                .iter()
                .map(|&(index, term, kind)| raft::Entry {
                    term,
                    index,
                    kind,
                    data: Bytes::new(),
                })
                .collect(),
            leader_commit: 0,
        })),
    }
}

#[test]
fn rejects_missing_body() {
    let mut m = heartbeat(1, 2);
    m.body = None;
    assert_eq!(Message::try_from(m), Err(ConvertError::MissingBody));
}

#[test]
fn rejects_missing_or_self_addresses() {
    assert_eq!(
        Message::try_from(heartbeat(0, 2)),
        Err(ConvertError::NoSender)
    );
    assert_eq!(
        Message::try_from(heartbeat(1, 0)),
        Err(ConvertError::NoRecipient)
    );
    assert_eq!(
        Message::try_from(heartbeat(3, 3)),
        Err(ConvertError::SelfAddressed(3))
    );
    assert!(Message::try_from(heartbeat(1, 2)).is_ok());
}

#[test]
fn rejects_unknown_entry_kind() {
    assert_eq!(
        Message::try_from(append(0, 0, 1, &[(1, 1, 3)])),
        Err(ConvertError::UnknownEntryKind { index: 1, code: 3 })
    );
    // A code that does not even fit the core's one-byte encoding.
    assert_eq!(
        Message::try_from(append(0, 0, 1, &[(1, 1, 256)])),
        Err(ConvertError::UnknownEntryKind {
            index: 1,
            code: 256
        })
    );
}

#[test]
fn rejects_gaps_and_reordering() {
    assert_eq!(
        Message::try_from(append(4, 1, 1, &[(5, 1, 0), (7, 1, 0)])),
        Err(ConvertError::NonContiguousEntries {
            position: 1,
            expected: 6,
            found: 7
        })
    );
    assert_eq!(
        Message::try_from(append(4, 1, 1, &[(4, 1, 0)])),
        Err(ConvertError::NonContiguousEntries {
            position: 0,
            expected: 5,
            found: 4
        })
    );
    assert!(matches!(
        Message::try_from(append(u64::MAX, 1, 1, &[(0, 1, 0)])),
        Err(ConvertError::NonContiguousEntries { .. })
    ));
}

#[test]
fn rejects_impossible_terms() {
    assert_eq!(
        Message::try_from(append(0, 0, 2, &[(1, 3, 0)])),
        Err(ConvertError::EntryTermAboveMessage {
            index: 1,
            entry_term: 3,
            message_term: 2
        })
    );
    assert_eq!(
        Message::try_from(append(3, 2, 2, &[(4, 1, 0)])),
        Err(ConvertError::EntryTermDecreases {
            index: 4,
            entry_term: 1,
            preceding_term: 2
        })
    );
    assert_eq!(
        Message::try_from(append(0, 0, 5, &[(1, 4, 0), (2, 3, 0)])),
        Err(ConvertError::EntryTermDecreases {
            index: 2,
            entry_term: 3,
            preceding_term: 4
        })
    );
}

#[test]
fn a_lease_longer_than_any_real_one_is_rejected() {
    let mut m = heartbeat(1, 2);
    if let Some(Body::Heartbeat(h)) = &mut m.body {
        h.lease = super::MAX_LEASE_NANOS + 1;
    }
    assert!(matches!(
        Message::try_from(m),
        Err(ConvertError::LeaseTooLong { .. })
    ));
}
