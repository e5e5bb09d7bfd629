//! The operator's event log: node events as plain sentences, one a line
//! (`Node 2 became the leader for term 5.`), written to `--event-log FILE` and to
//! the tracing log, and kept in the node's [`Timeline`] for the dashboard.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use keel_raft::{Event, NodeId, Role};

use crate::error::ServerError;
use crate::timeline::Timeline;

/// Writes event sentences; a no-op sink when no file was configured.
#[derive(Debug)]
pub struct EventLog {
    node: NodeId,
    /// Shared by the logs [`EventLog::labelled`] makes, so that every group's
    /// lines go to the one file in the order they happened.
    out: Option<Arc<Mutex<BufWriter<File>>>>,
    timeline: Option<Arc<Timeline>>,
    /// Put before every line (`[placement group]`) when the events are of a
    /// group other than the key-value group.
    label: Option<Arc<str>>,
}

impl EventLog {
    /// Opens (appending to) `path`, or a log that only traces.
    pub fn open(node: NodeId, path: Option<&Path>) -> Result<Self, ServerError> {
        let out = match path {
            Some(p) => Some(BufWriter::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|source| ServerError::Io {
                        what: "cannot open event log",
                        path: p.to_path_buf(),
                        source,
                    })?,
            )),
            None => None,
        };
        Ok(EventLog {
            node,
            out: out.map(|o| Arc::new(Mutex::new(o))),
            timeline: None,
            label: None,
        })
    }

    /// A log writing to the same file and timeline whose lines start with
    /// `[label]`: for the events of a group other than the key-value group.
    /// Its leader changes are not recorded as the node's (the dashboard's
    /// leader history is the key-value group's).
    pub fn labelled(&self, label: impl Into<Arc<str>>) -> EventLog {
        EventLog {
            node: self.node,
            out: self.out.clone(),
            timeline: self.timeline.clone(),
            label: Some(label.into()),
        }
    }

    /// `line` with this log's label in front, if it has one.
    fn labelled_line<'a>(&self, line: &'a str) -> std::borrow::Cow<'a, str> {
        match &self.label {
            Some(label) => std::borrow::Cow::Owned(format!("[{label}] {line}")),
            None => std::borrow::Cow::Borrowed(line),
        }
    }

    /// Also keeps events and leader changes in `timeline` (bounded, in memory),
    /// whether or not a file was configured.
    pub fn with_timeline(mut self, timeline: Arc<Timeline>) -> Self {
        self.timeline = Some(timeline);
        self
    }

    /// Whether per-entry events are wanted (they cost a line per applied entry).
    pub fn wants_entries(&self) -> bool {
        self.out.is_some() || tracing::enabled!(tracing::Level::DEBUG)
    }

    /// Records a core event.
    pub fn core_event(&mut self, e: &Event) {
        let line = describe(self.node, e);
        let line = self.labelled_line(&line).into_owned();
        match e {
            // One a heartbeat: only for debugging, never in the event log file.
            Event::LeaseRenewing { .. } => {
                tracing::debug!(target: "keel::events", "{line}");
                return;
            }
            Event::VoteGranted { .. }
            | Event::VoteDenied { .. }
            | Event::BecamePreCandidate { .. } => {
                tracing::debug!(target: "keel::events", "{line}")
            }
            _ => tracing::info!(target: "keel::events", "{line}"),
        }
        if let Some(t) = &self.timeline {
            t.event(&line);
            // Every change of leader reaches a node as one of these two events
            // (the core emits `BecameFollower` again when a follower learns of a
            // new leader), so they are the complete history this node saw.
            match *e {
                _ if self.label.is_some() => {}
                Event::BecameLeader { term } => t.leader(term, self.node),
                Event::BecameFollower { term, leader } if leader != 0 => t.leader(term, leader),
                _ => {}
            }
        }
        self.write(&line);
    }

    /// Records that this node applied a committed entry (`what` is e.g. `SET k v`;
    /// long ones are cut, so a 1 MiB value does not become a 1 MiB line). Not kept
    /// in the timeline: one line per write would push every election out of its
    /// bounded ring within moments under load (the throughput samples show writes).
    pub fn committed(&mut self, role: Role, what: &str) {
        let what = shorten(what, MAX_ENTRY_CHARS);
        let line = format!(
            "Node {} ({}) committed the entry {what} to the state machine.",
            self.node,
            role.as_str()
        );
        let line = self.labelled_line(&line).into_owned();
        tracing::debug!(target: "keel::events", "{line}");
        self.write(&line);
    }

    /// Records a free-form sentence (start-up, recovery, shutdown).
    pub fn note(&mut self, line: &str) {
        let line = &*self.labelled_line(line);
        tracing::info!(target: "keel::events", "{line}");
        if let Some(t) = &self.timeline {
            t.event(line);
        }
        self.write(line);
    }

    fn write(&mut self, line: &str) {
        if let Some(out) = &self.out {
            // The event log is for people; failing to write it must not stop the node.
            let mut out = out
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = writeln!(out, "{line}");
        }
    }

    /// Pushes buffered lines to the file (once per loop iteration).
    pub fn flush(&mut self) {
        if let Some(out) = &self.out {
            let mut out = out
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = out.flush();
        }
    }
}

/// Longest entry description in the event log, in characters.
const MAX_ENTRY_CHARS: usize = 120;

/// `text`, cut to `max` characters with a note of the full length.
pub(crate) fn shorten(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => std::borrow::Cow::Borrowed(text),
        Some((cut, _)) => {
            std::borrow::Cow::Owned(format!("{}… ({} bytes)", &text[..cut], text.len()))
        }
    }
}

/// The sentence for a core event.
pub fn describe(node: NodeId, e: &Event) -> String {
    match *e {
        Event::BecameLeader { term } => format!("Node {node} became the leader for term {term}."),
        Event::BecameFollower { term, leader: 0 } => {
            format!("Node {node} became a follower in term {term}.")
        }
        Event::BecameFollower { term, leader } => {
            format!("Node {node} is following Node {leader} in term {term}.")
        }
        Event::BecamePreCandidate { term } => {
            format!("Node {node} started a pre-vote for term {term}.")
        }
        Event::BecameCandidate { term } => {
            format!("Node {node} started an election for term {term}.")
        }
        Event::VoteGranted {
            candidate,
            term,
            pre_vote: false,
        } => format!("Vote granted for Node {candidate} in term {term}."),
        Event::VoteGranted {
            candidate, term, ..
        } => {
            format!("Pre-vote granted for Node {candidate} for term {term}.")
        }
        Event::VoteDenied {
            candidate,
            term,
            pre_vote,
            reason,
        } => format!(
            "{} denied for Node {candidate} in term {term}: {reason}.",
            if pre_vote { "Pre-vote" } else { "Vote" }
        ),
        Event::LostQuorum { term } => format!(
            "Leader {node} lease renewal failed. Stepping Down. (No quorum answered in term {term}.)"
        ),
        Event::WaitingForOldLease { term, remaining } => format!(
            "New Leader waiting for Old Leader Lease to timeout. (Node {node}, term {term}, {} ms.)",
            remaining.div_ceil(1_000_000)
        ),
        Event::LeaseRenewing { .. } => {
            format!("Leader {node} sending heartbeat & Renewing Lease.")
        }
        Event::DroppedMalformed { from, what } => {
            format!("Node {node} dropped a malformed message from Node {from}: {what}.")
        }
        Event::SteppedDown { term, from } => {
            format!("Node {node} stepped down: Node {from} is in the newer term {term}.")
        }
        Event::ConfChangeAppended { index, change } => {
            format!("Node {node} appended the membership change {change:?} at index {index}.")
        }
        Event::MemberAdded {
            id,
            learner: true,
            index,
        } => format!("Node {id} was added as a learner (index {index})."),
        Event::MemberAdded { id, index, .. } => {
            format!("Node {id} was added as a voter (index {index}).")
        }
        Event::MemberPromoted { id, index } => {
            format!("Node {id} was promoted to voter (index {index}).")
        }
        Event::MemberRemoved { id, index } => {
            format!("Node {id} was removed from the cluster (index {index}).")
        }
        Event::SteppedDownRemoved { term } => {
            format!("Leader {node} was removed from the cluster in term {term}. Stepping down.")
        }
        Event::SnapshotSent { to, index } => {
            format!("Node {node} is sending its snapshot at index {index} to Node {to}.")
        }
        Event::SnapshotRestored { index, term } => {
            format!("Node {node} installed a snapshot at index {index} (term {term}).")
        }
        Event::TransferStarted { to } => {
            format!("Leader {node} is handing leadership to Node {to}.")
        }
        Event::TransferAborted { to, reason } => {
            format!("Leader {node} abandoned the transfer to Node {to}: {reason}.")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_match_the_documented_wording() {
        assert_eq!(
            describe(2, &Event::BecameLeader { term: 5 }),
            "Node 2 became the leader for term 5."
        );
        assert_eq!(
            describe(
                1,
                &Event::VoteGranted {
                    candidate: 3,
                    term: 4,
                    pre_vote: false
                }
            ),
            "Vote granted for Node 3 in term 4."
        );
    }

    #[test]
    fn a_labelled_log_writes_to_the_same_file_with_its_label() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.log");
        let mut main = EventLog::open(2, Some(&path)).expect("open");
        let mut placement = main.labelled("placement group");
        main.core_event(&Event::BecameLeader { term: 5 });
        placement.core_event(&Event::BecameLeader { term: 3 });
        placement.note("Node 2 started.");
        main.flush();
        placement.flush();
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "Node 2 became the leader for term 5.",
                "[placement group] Node 2 became the leader for term 3.",
                "[placement group] Node 2 started.",
            ]
        );
    }

    #[test]
    fn long_entries_are_cut() {
        assert_eq!(shorten("SET k v", 120), "SET k v");
        let long = format!("SET k {}", "x".repeat(500));
        let cut = shorten(&long, 120);
        assert!(cut.starts_with("SET k xxx"));
        assert!(cut.ends_with("… (506 bytes)"), "{cut}");
        assert!(cut.chars().count() < 140);
    }

    #[test]
    fn timeline_keeps_events_and_leaders_but_not_entries() {
        let timeline = Arc::new(Timeline::new());
        let mut log = EventLog::open(1, None)
            .expect("open")
            .with_timeline(timeline.clone());
        log.core_event(&Event::BecameFollower { term: 2, leader: 0 });
        log.core_event(&Event::BecameFollower { term: 2, leader: 3 });
        log.committed(Role::Follower, "SET k v");
        log.core_event(&Event::BecameLeader { term: 3 });
        log.note("Node 1 shut down cleanly.");
        let v = timeline.view(10);
        let texts: Vec<&str> = v.events.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Node 1 became a follower in term 2.",
                "Node 1 is following Node 3 in term 2.",
                "Node 1 became the leader for term 3.",
                "Node 1 shut down cleanly.",
            ]
        );
        let leaders: Vec<(u64, u64)> = v
            .leader_changes
            .iter()
            .map(|l| (l.term, l.leader_id))
            .collect();
        assert_eq!(leaders, [(2, 3), (3, 1)]);
    }

    #[test]
    fn file_gets_one_line_per_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.log");
        let mut log = EventLog::open(1, Some(&path)).expect("open");
        log.core_event(&Event::BecameLeader { term: 1 });
        log.committed(Role::Follower, "SET k v");
        log.flush();
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            "Node 1 became the leader for term 1.\nNode 1 (follower) committed the entry SET k v to the state machine.\n"
        );
    }
}
