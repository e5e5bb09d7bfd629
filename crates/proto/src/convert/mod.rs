//! Conversion between the consensus core's messages and their wire form.
//!
//! Sending is infallible and cheap: entry payloads are [`bytes::Bytes`] on both sides,
//! so converting shares them instead of copying. Receiving validates: a
//! [`raft::RaftMessage`] that no correct peer could have sent is rejected with a
//! [`ConvertError`] before the core sees it.
//!
//! For every message the core can produce, `Message -> RaftMessage -> Message` gives
//! back an equal message.

mod error;
#[cfg(test)]
mod tests;

pub use error::ConvertError;

use keel_raft::{
    ConfState, Entry, EntryKind, Index, Message, MessageBody, NO_NODE, SnapshotMeta, Term,
};

use crate::raft::{self, raft_message::Body};

impl From<&Entry> for raft::Entry {
    fn from(e: &Entry) -> Self {
        raft::Entry {
            term: e.term,
            index: e.index,
            kind: u32::from(e.kind.to_code()),
            data: e.data.clone(),
        }
    }
}

impl TryFrom<raft::Entry> for Entry {
    type Error = ConvertError;

    fn try_from(e: raft::Entry) -> Result<Self, Self::Error> {
        let kind = u8::try_from(e.kind)
            .ok()
            .and_then(EntryKind::from_code)
            .ok_or(ConvertError::UnknownEntryKind {
                index: e.index,
                code: e.kind,
            })?;
        Ok(Entry {
            term: e.term,
            index: e.index,
            kind,
            data: e.data,
        })
    }
}

impl From<&Message> for raft::RaftMessage {
    fn from(m: &Message) -> Self {
        raft::RaftMessage {
            group: m.group,
            from: m.from,
            to: m.to,
            term: m.term,
            body: Some(body_to_wire(&m.body)),
        }
    }
}

impl TryFrom<raft::RaftMessage> for Message {
    type Error = ConvertError;

    fn try_from(m: raft::RaftMessage) -> Result<Self, Self::Error> {
        if m.from == NO_NODE {
            return Err(ConvertError::NoSender);
        }
        if m.to == NO_NODE {
            return Err(ConvertError::NoRecipient);
        }
        if m.from == m.to {
            return Err(ConvertError::SelfAddressed(m.from));
        }
        let body = m.body.ok_or(ConvertError::MissingBody)?;
        Ok(Message {
            group: m.group,
            from: m.from,
            to: m.to,
            term: m.term,
            body: body_from_wire(body, m.term)?,
        })
    }
}

fn body_to_wire(body: &MessageBody) -> Body {
    match *body {
        MessageBody::RequestVote {
            last_log_index,
            last_log_term,
            pre_vote,
            transfer,
        } => Body::RequestVote(raft::RequestVote {
            last_log_index,
            last_log_term,
            pre_vote,
            transfer,
        }),
        MessageBody::RequestVoteResponse {
            granted,
            pre_vote,
            lease_remaining,
            lease_term,
        } => Body::RequestVoteResponse(raft::RequestVoteResponse {
            granted,
            pre_vote,
            lease_remaining,
            lease_term,
        }),
        MessageBody::AppendEntries {
            prev_log_index,
            prev_log_term,
            ref entries,
            leader_commit,
        } => Body::AppendEntries(raft::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries: entries.iter().map(raft::Entry::from).collect(),
            leader_commit,
        }),
        MessageBody::AppendEntriesResponse {
            index,
            reject,
            hint_index,
            hint_term,
        } => Body::AppendEntriesResponse(raft::AppendEntriesResponse {
            index,
            reject,
            hint_index,
            hint_term,
        }),
        MessageBody::Heartbeat {
            commit,
            read_seq,
            lease,
            quiesce,
        } => Body::Heartbeat(raft::Heartbeat {
            commit,
            read_seq,
            lease,
            quiesce,
        }),
        MessageBody::HeartbeatResponse { read_seq } => {
            Body::HeartbeatResponse(raft::HeartbeatResponse { read_seq })
        }
        MessageBody::InstallSnapshot { ref meta } => Body::InstallSnapshot(raft::InstallSnapshot {
            index: meta.index,
            term: meta.term,
            voters: meta.conf.voters.clone(),
            learners: meta.conf.learners.clone(),
        }),
        MessageBody::TimeoutNow => Body::TimeoutNow(raft::TimeoutNow {}),
        MessageBody::WakeLeader => Body::WakeLeader(raft::WakeLeader {}),
        MessageBody::ReadIndex { ctx } => Body::ReadIndex(raft::ReadIndex { ctx }),
        MessageBody::ReadIndexResponse { ctx, index } => {
            Body::ReadIndexResponse(raft::ReadIndexResponse { ctx, index })
        }
    }
}

fn body_from_wire(body: Body, term: Term) -> Result<MessageBody, ConvertError> {
    Ok(match body {
        Body::RequestVote(r) => MessageBody::RequestVote {
            last_log_index: r.last_log_index,
            last_log_term: r.last_log_term,
            pre_vote: r.pre_vote,
            transfer: r.transfer,
        },
        Body::RequestVoteResponse(r) => MessageBody::RequestVoteResponse {
            granted: r.granted,
            pre_vote: r.pre_vote,
            lease_remaining: check_lease(r.lease_remaining)?,
            lease_term: r.lease_term,
        },
        Body::AppendEntries(a) => {
            let entries = a
                .entries
                .into_iter()
                .map(Entry::try_from)
                .collect::<Result<Vec<_>, _>>()?;
            check_entries(a.prev_log_index, a.prev_log_term, term, &entries)?;
            MessageBody::AppendEntries {
                prev_log_index: a.prev_log_index,
                prev_log_term: a.prev_log_term,
                entries,
                leader_commit: a.leader_commit,
            }
        }
        Body::AppendEntriesResponse(r) => MessageBody::AppendEntriesResponse {
            index: r.index,
            reject: r.reject,
            hint_index: r.hint_index,
            hint_term: r.hint_term,
        },
        Body::Heartbeat(h) => MessageBody::Heartbeat {
            commit: h.commit,
            read_seq: h.read_seq,
            lease: check_lease(h.lease)?,
            quiesce: h.quiesce,
        },
        Body::HeartbeatResponse(h) => MessageBody::HeartbeatResponse {
            read_seq: h.read_seq,
        },
        // TODO(issue 3): server integration — validate the configuration (no id 0,
        // no duplicates) once the runtime handles snapshots.
        Body::InstallSnapshot(s) => MessageBody::InstallSnapshot {
            meta: SnapshotMeta {
                index: s.index,
                term: s.term,
                conf: ConfState {
                    voters: s.voters,
                    learners: s.learners,
                },
            },
        },
        Body::TimeoutNow(_) => MessageBody::TimeoutNow,
        Body::WakeLeader(_) => MessageBody::WakeLeader,
        Body::ReadIndex(r) => MessageBody::ReadIndex { ctx: r.ctx },
        Body::ReadIndexResponse(r) => MessageBody::ReadIndexResponse {
            ctx: r.ctx,
            index: r.index,
        },
    })
}

/// Longest lease a peer may claim or report (one minute, in nanoseconds): real
/// leases are about an election timeout; anything longer is garbage that would
/// stall a new leader.
pub const MAX_LEASE_NANOS: u64 = 60_000_000_000;

fn check_lease(lease: u64) -> Result<u64, ConvertError> {
    if lease > MAX_LEASE_NANOS {
        return Err(ConvertError::LeaseTooLong {
            lease,
            limit: MAX_LEASE_NANOS,
        });
    }
    Ok(lease)
}

/// Checks the shape every AppendEntries from a correct leader has (Raft §5.3): the
/// entries directly follow `prev_log_index`, their terms never decrease, start no
/// lower than `prev_log_term`, and none is newer than the leader's own term. The core
/// appends what it is given after its consistency check, so a message breaking these
/// rules would corrupt its log rather than merely fail.
fn check_entries(
    prev_log_index: Index,
    prev_log_term: Term,
    message_term: Term,
    entries: &[Entry],
) -> Result<(), ConvertError> {
    let mut preceding_term = prev_log_term;
    for (position, e) in entries.iter().enumerate() {
        // Computed without overflow: a huge prev_log_index simply cannot match.
        let expected = (position as u64)
            .checked_add(1)
            .and_then(|off| prev_log_index.checked_add(off));
        if expected != Some(e.index) {
            return Err(ConvertError::NonContiguousEntries {
                position,
                expected: expected.unwrap_or(Index::MAX),
                found: e.index,
            });
        }
        if e.term < preceding_term {
            return Err(ConvertError::EntryTermDecreases {
                index: e.index,
                entry_term: e.term,
                preceding_term,
            });
        }
        if e.term > message_term {
            return Err(ConvertError::EntryTermAboveMessage {
                index: e.index,
                entry_term: e.term,
                message_term,
            });
        }
        preceding_term = e.term;
    }
    Ok(())
}
