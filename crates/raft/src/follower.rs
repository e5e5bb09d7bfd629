//! The receiving side of replication: AppendEntries and heartbeats (Raft §5.3).

use crate::message::MessageBody;
use crate::raft::Raft;
use crate::ready::Event;
use crate::types::{Entry, Index, NodeId, Term};

impl Raft {
    pub(crate) fn handle_append(
        &mut self,
        leader: NodeId,
        prev_log_index: Index,
        prev_log_term: Term,
        entries: &[Entry],
        leader_commit: Index,
    ) {
        if !entries_follow(prev_log_index, entries) {
            // Malformed: entries must continue from prev_log_index without gaps.
            // Dropping it is safe; the leader retransmits.
            self.events.push(Event::DroppedMalformed {
                from: leader,
                what: "AppendEntries with non-contiguous entries",
            });
            return;
        }
        let committed = self.log.committed;
        let (prev_index, prev_term, entries) = if prev_log_index >= committed {
            (prev_log_index, prev_log_term, entries)
        } else {
            // Everything up to our commit index is settled and, by leader
            // completeness (§5.4), identical in the leader's log: skip that part.
            let skip = (committed - prev_log_index) as usize;
            if skip >= entries.len() {
                self.ack_append(leader, committed);
                return;
            }
            let term = self
                .log
                .term(committed)
                .expect("the committed entry is in the log");
            (committed, term, &entries[skip..])
        };
        let taken = self.acceptable(entries);
        if taken.len() < entries.len() && taken.iter().all(|e| self.log.matches(e.index, e.term)) {
            // The disk is full (`disk.rs`) and nothing new is left to take: no
            // answer; the leader resends later.
            return;
        }
        let entries = taken;
        let appended = self.log.try_append(prev_index, prev_term, entries);
        if let Some(from) = self.log.take_written_from() {
            // New entries may carry (or truncation may undo) membership changes.
            self.on_log_appended(from);
        }
        match appended {
            Some(last_new) => {
                // Only entries verified to match the leader's may be marked committed.
                self.log.commit_to(leader_commit.min(last_new));
                self.ack_append(leader, last_new);
            }
            None => {
                let (hint_index, hint_term) = self
                    .log
                    .find_conflict_by_term(prev_index.min(self.log.last_index()), prev_term);
                self.send(
                    leader,
                    MessageBody::AppendEntriesResponse {
                        index: prev_index,
                        reject: true,
                        hint_index,
                        hint_term,
                    },
                    false,
                );
            }
        }
    }

    /// Acknowledges a match up to `index`; promises durability, so it waits for the
    /// fsync of this Ready.
    pub(crate) fn ack_append(&mut self, leader: NodeId, index: Index) {
        self.send(
            leader,
            MessageBody::AppendEntriesResponse {
                index,
                reject: false,
                hint_index: 0,
                hint_term: 0,
            },
            true,
        );
    }

    pub(crate) fn handle_heartbeat(&mut self, leader: NodeId, commit: Index, read_seq: u64) {
        // The leader caps `commit` at our acknowledged match index, so every entry up
        // to it is already the leader's.
        self.log.commit_to(commit.min(self.log.last_index()));
        self.send(leader, MessageBody::HeartbeatResponse { read_seq }, false);
    }
}

/// Whether `entries` are `prev + 1, prev + 2, ...` with non-decreasing terms.
fn entries_follow(prev: Index, entries: &[Entry]) -> bool {
    entries
        .iter()
        .enumerate()
        .all(|(i, e)| e.index == prev + 1 + i as u64)
        && entries.windows(2).all(|w| w[0].term <= w[1].term)
}
