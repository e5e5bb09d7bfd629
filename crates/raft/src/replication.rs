//! The leader's side of log replication and commitment (Raft §5.3, §5.4.2), with
//! pipelining bounded by the in-flight window and check-quorum (thesis §6.2).

use bytes::Bytes;

use crate::error::ProposeError;
use crate::message::MessageBody;
use crate::progress::ProgressState;
use crate::quorum;
use crate::raft::Raft;
use crate::ready::{Event, Role};
use crate::types::{Entry, EntryKind, Index, NO_NODE, NodeId, Term};

impl Raft {
    /// Appends an entry to the leader's log; replication goes out with the next
    /// `ready()`, so proposals arriving together share AppendEntries messages.
    pub(crate) fn append_as_leader(
        &mut self,
        kind: EntryKind,
        data: Bytes,
    ) -> Result<(Index, Term), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        let entry = Entry {
            term: self.term,
            index: self.log.last_index() + 1,
            kind,
            data,
        };
        let size = entry.size();
        let limit = self.cfg.max_uncommitted_bytes;
        if size > limit {
            return Err(ProposeError::TooLarge { size, limit });
        }
        // Bound the uncommitted tail so a leader cut off from its followers cannot
        // grow without limit. An empty tail always accepts one entry.
        if self.uncommitted_bytes > 0 && self.uncommitted_bytes + size > limit {
            return Err(ProposeError::Overloaded {
                uncommitted_bytes: self.uncommitted_bytes,
                limit,
            });
        }
        let at = (entry.index, entry.term);
        // A new entry is activity: the group stays awake for a while after it.
        self.idle_ticks = 0;
        self.uncommitted_bytes += size;
        self.log.append([entry]);
        self.append_pending = true;
        if let Some(from) = self.log.take_written_from() {
            self.on_log_appended(from);
        }
        Ok(at)
    }

    /// Leader tick: heartbeats and check-quorum.
    pub(crate) fn tick_leader(&mut self) {
        self.idle_ticks = self.idle_ticks.saturating_add(1);
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        self.tick_transfer();
        if self.election_elapsed >= self.cfg.election_ticks {
            self.election_elapsed = 0;
            let me = self.cfg.id;
            let progress = &self.progress;
            let ok = quorum::has_quorum(&self.voters, |id| {
                id == me || progress.get(&id).is_some_and(|p| p.recent_active)
            });
            // The activity bookkeeping runs whether or not check-quorum acts on
            // it: the runtime uses it to refuse changes that would lose quorum.
            for p in self.progress.values_mut() {
                p.was_active = p.recent_active;
                p.recent_active = false;
            }
            if self.cfg.check_quorum && !ok {
                self.events.push(Event::LostQuorum { term: self.term });
                self.become_follower(self.term, NO_NODE);
                return;
            }
        }
        if self.lease.inherited_until > 0 && !self.waiting_out_old_lease() {
            // The leases handed to us have run out: commits may proceed.
            self.lease.inherited_until = 0;
            self.maybe_commit();
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            if self.cfg.lease_duration > 0 {
                // Every heartbeat is a numbered round, so that each renews the lease.
                self.read_only.force_round();
                self.events.push(Event::LeaseRenewing { term: self.term });
            }
            self.broadcast_heartbeat();
        }
        self.send_commit_updates();
    }

    /// Tells every follower that has not heard it the current commit index, with an
    /// empty AppendEntries (bounded to one per follower per tick).
    fn send_commit_updates(&mut self) {
        let committed = self.log.committed;
        let stale: Vec<NodeId> = self
            .progress
            .iter()
            .filter(|(_, p)| p.sent_commit < committed && !p.is_paused())
            .map(|(&id, _)| id)
            .collect();
        for id in stale {
            self.send_append(id, true);
        }
    }

    /// Sends what proposals and read requests left pending.
    pub(crate) fn flush_leader_sends(&mut self) {
        if std::mem::take(&mut self.append_pending) {
            let peers: Vec<NodeId> = self.progress.keys().copied().collect();
            for id in peers {
                self.send_entries(id);
            }
        }
        if self.read_only.start_round() {
            self.broadcast_heartbeat();
        }
    }

    /// Streams new entries to `to` while the window allows.
    fn send_entries(&mut self, to: NodeId) {
        while self.send_append(to, false) {}
    }

    /// Sends one AppendEntries to `to` unless its progress is paused. With
    /// `allow_empty` false, sends only if there are entries. Returns whether sent.
    pub(crate) fn send_append(&mut self, to: NodeId, allow_empty: bool) -> bool {
        let Some(pr) = self.progress.get(&to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        let next = pr.next_index;
        let prev_log_index = next - 1;
        let Some(prev_log_term) = self.log.term(prev_log_index) else {
            // Compacted away: the follower needs a snapshot (Raft §7).
            return self.send_snapshot(to);
        };
        let entries = self.log.entries_from(next, self.cfg.max_msg_bytes);
        if entries.is_empty() && !allow_empty {
            return false;
        }
        let bytes: u64 = entries.iter().map(Entry::size).sum();
        let last = entries.last().map(|e| e.index);
        let leader_commit = self.log.committed;
        let pr = self.progress.get_mut(&to).expect("checked above");
        pr.sent_entries(last, bytes);
        pr.sent_commit = leader_commit;
        self.send(
            to,
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            },
            false,
        );
        true
    }

    pub(crate) fn broadcast_heartbeat(&mut self) {
        let read_seq = self.read_only.seq();
        let lease = self.lease_claim();
        self.lease_round_sent(read_seq);
        self.send_heartbeats(read_seq, lease, false);
    }

    /// One heartbeat to every peer of round `read_seq`, claiming `lease`, marked
    /// `quiesce` or not; each carries the commit index capped at what the peer
    /// is known to hold.
    pub(crate) fn send_heartbeats(&mut self, read_seq: u64, lease: u64, quiesce: bool) {
        let targets: Vec<(NodeId, Index)> = self
            .progress
            .iter()
            .map(|(&id, p)| (id, p.match_index.min(self.log.committed)))
            .collect();
        for (to, commit) in targets {
            self.send(
                to,
                MessageBody::Heartbeat {
                    commit,
                    read_seq,
                    lease,
                    quiesce,
                },
                false,
            );
        }
    }

    pub(crate) fn handle_append_response(
        &mut self,
        from: NodeId,
        index: Index,
        reject: bool,
        hint_index: Index,
        hint_term: Term,
    ) {
        let next_probe = if reject && hint_term > 0 {
            // Skip every entry of the follower's conflicting term in one step.
            self.log.find_conflict_by_term(hint_index, hint_term).0
        } else {
            hint_index
        };
        if !reject && index > self.log.last_index() {
            // A peer cannot hold entries we never had in this term: malformed.
            self.events.push(Event::DroppedMalformed {
                from,
                what: "AppendEntriesResponse beyond the leader's log",
            });
            return;
        }
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        if reject {
            if pr.maybe_decrease_to(index, next_probe) {
                self.send_append(from, true);
            }
            return;
        }
        let state = pr.state;
        if !pr.maybe_update(index) {
            return;
        }
        match state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Replicate => pr.inflights.free_to(index),
            // The follower holds the snapshot (or caught up past it another way).
            ProgressState::Snapshot if index >= pr.pending_snapshot => pr.become_replicate(),
            ProgressState::Snapshot => {}
        }
        self.maybe_commit();
        self.maybe_finish_transfer(from);
        self.send_entries(from);
    }

    pub(crate) fn handle_heartbeat_response(&mut self, from: NodeId, read_seq: u64) {
        let last = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        pr.probe_sent = false;
        if pr.match_index < last {
            // If a whole window of AppendEntries was lost, nothing would ever answer;
            // when the follower made no progress over a heartbeat interval, resend
            // from what it is known to have.
            if pr.state == ProgressState::Replicate && pr.match_index == pr.match_at_heartbeat {
                pr.become_probe();
            }
            pr.match_at_heartbeat = pr.match_index;
            self.send_append(from, false);
        }
        if self.voters.contains(&from) {
            self.read_only.ack(from, read_seq);
            // One quorum count serves both the waiting reads and the lease.
            let confirmed = self.confirmed_read_round();
            self.release_confirmed_reads(confirmed);
            self.confirm_lease(confirmed);
        }
    }

    /// Advances the commit index to the highest index durable on a majority, but
    /// only by counting replicas of an entry from the current term (Raft §5.4.2).
    pub(crate) fn maybe_commit(&mut self) -> bool {
        if self.waiting_out_old_lease() {
            // Nobody may observe our writes while an earlier leader may still serve
            // lease reads (see lease.rs); `tick_leader` retries once the wait ends.
            return false;
        }
        let me = self.cfg.id;
        let own = self.log.persisted;
        let progress = &self.progress;
        let index = quorum::committed_index(&self.voters, |id| {
            if id == me {
                own
            } else {
                progress.get(&id).map_or(0, |p| p.match_index)
            }
        });
        if index <= self.log.committed || self.log.term(index) != Some(self.term) {
            return false;
        }
        let committed_before = self.log.committed;
        let newly = self.log.bytes_between(self.log.committed, index);
        self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(newly);
        self.log.commit_to(index);
        // Followers learn the new commit index from the next AppendEntries, or at
        // the next tick (`send_commit_updates`): sending it at once would double
        // the messages (and acknowledgements) of every write at low load.
        self.on_commit_in_term();
        if self.conf.last_change_index() > committed_before {
            // A membership change may have committed: a removed leader steps down.
            self.on_conf_committed();
        }
        true
    }
}
