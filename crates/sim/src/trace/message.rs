//! Messages as the trace shows them: the RPC and its key fields, without payloads.

use std::fmt;

use keel_raft::{Index, Message, MessageBody, NodeId, Term};

/// A message, reduced to what a reader of the trace needs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MsgSummary {
    /// Sender.
    pub from: NodeId,
    /// Recipient.
    pub to: NodeId,
    /// Sender's term (see [`Message::term`]).
    pub term: Term,
    /// The RPC and its key fields.
    pub body: BodySummary,
}

/// The key fields of each RPC.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the fields mirror `MessageBody`'s, documented there
pub enum BodySummary {
    Vote {
        pre: bool,
        last_index: Index,
        last_term: Term,
    },
    VoteResp {
        pre: bool,
        granted: bool,
        lease_remaining: u64,
    },
    Append {
        prev_index: Index,
        prev_term: Term,
        entries: usize,
        commit: Index,
    },
    AppendResp {
        index: Index,
        reject: bool,
        hint_index: Index,
    },
    Heartbeat {
        commit: Index,
        read_seq: u64,
        lease: u64,
        quiesce: bool,
    },
    HeartbeatResp {
        read_seq: u64,
    },
    Snapshot {
        index: Index,
        term: Term,
    },
    TimeoutNow,
    /// A woken quiesced follower asks its leader to wake.
    WakeLeader,
    /// A follower asks the leader for a read index.
    ReadIndex {
        /// The follower's tag.
        ctx: u64,
    },
    /// The leader's answer.
    ReadIndexResp {
        /// The follower's tag.
        ctx: u64,
        /// The read index.
        index: u64,
    },
}

impl MsgSummary {
    /// Summarises `m`.
    pub fn of(m: &Message) -> Self {
        let body = match &m.body {
            MessageBody::RequestVote {
                last_log_index,
                last_log_term,
                pre_vote,
                ..
            } => BodySummary::Vote {
                pre: *pre_vote,
                last_index: *last_log_index,
                last_term: *last_log_term,
            },
            MessageBody::RequestVoteResponse {
                granted,
                pre_vote,
                lease_remaining,
                ..
            } => BodySummary::VoteResp {
                pre: *pre_vote,
                granted: *granted,
                lease_remaining: *lease_remaining,
            },
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            } => BodySummary::Append {
                prev_index: *prev_log_index,
                prev_term: *prev_log_term,
                entries: entries.len(),
                commit: *leader_commit,
            },
            MessageBody::AppendEntriesResponse {
                index,
                reject,
                hint_index,
                ..
            } => BodySummary::AppendResp {
                index: *index,
                reject: *reject,
                hint_index: *hint_index,
            },
            MessageBody::Heartbeat {
                commit,
                read_seq,
                lease,
                quiesce,
            } => BodySummary::Heartbeat {
                commit: *commit,
                read_seq: *read_seq,
                lease: *lease,
                quiesce: *quiesce,
            },
            MessageBody::HeartbeatResponse { read_seq } => BodySummary::HeartbeatResp {
                read_seq: *read_seq,
            },
            MessageBody::InstallSnapshot { meta } => BodySummary::Snapshot {
                index: meta.index,
                term: meta.term,
            },
            MessageBody::TimeoutNow => BodySummary::TimeoutNow,
            MessageBody::WakeLeader => BodySummary::WakeLeader,
            MessageBody::ReadIndex { ctx } => BodySummary::ReadIndex { ctx: *ctx },
            MessageBody::ReadIndexResponse { ctx, index } => BodySummary::ReadIndexResp {
                ctx: *ctx,
                index: *index,
            },
        };
        MsgSummary {
            from: m.from,
            to: m.to,
            term: m.term,
            body,
        }
    }
}

impl fmt::Display for MsgSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{} t{} ", self.from, self.to, self.term)?;
        match &self.body {
            BodySummary::Vote {
                pre,
                last_index,
                last_term,
            } => {
                let name = if *pre { "PreVote" } else { "Vote" };
                write!(f, "{name}(last {last_index}@{last_term})")
            }
            BodySummary::VoteResp {
                pre,
                granted,
                lease_remaining,
            } => {
                let name = if *pre { "PreVoteResp" } else { "VoteResp" };
                let answer = if *granted { "granted" } else { "denied" };
                write!(f, "{name}({answer}")?;
                if *lease_remaining > 0 {
                    write!(f, ", lease {lease_remaining} left")?;
                }
                write!(f, ")")
            }
            BodySummary::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => write!(
                f,
                "Append(prev {prev_index}@{prev_term}, {entries} entries, commit {commit})"
            ),
            BodySummary::AppendResp {
                index,
                reject,
                hint_index,
            } => {
                if *reject {
                    write!(f, "AppendResp(reject {index}, hint {hint_index})")
                } else {
                    write!(f, "AppendResp(ok {index})")
                }
            }
            BodySummary::Heartbeat {
                commit,
                read_seq,
                lease,
                quiesce,
            } => {
                write!(f, "Heartbeat(commit {commit}, round {read_seq}")?;
                if *lease > 0 {
                    write!(f, ", lease {lease}")?;
                }
                if *quiesce {
                    write!(f, ", quiesce")?;
                }
                write!(f, ")")
            }
            BodySummary::HeartbeatResp { read_seq } => write!(f, "HeartbeatResp(round {read_seq})"),
            BodySummary::Snapshot { index, term } => write!(f, "InstallSnapshot({index}@{term})"),
            BodySummary::TimeoutNow => write!(f, "TimeoutNow"),
            BodySummary::WakeLeader => write!(f, "WakeLeader"),
            BodySummary::ReadIndex { ctx } => write!(f, "ReadIndex ctx={ctx}"),
            BodySummary::ReadIndexResp { ctx, index } => {
                write!(f, "ReadIndexResp ctx={ctx} index={index}")
            }
        }
    }
}
