//! A node's recent history, kept in memory for the dashboard and
//! `GET /v1/cluster/status`: the last event-log sentences, the leader changes this
//! node saw, and its applied index sampled once a second (writes per second).
//!
//! Everything is a bounded ring: an old node holds as much as a new one. The
//! history starts when the process starts; nothing here is persisted (the event
//! log file and the metrics are the durable record).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keel_raft::{Index, NodeId, Term};
use serde::Serialize;
use tokio::sync::watch;

use crate::node::NodeHandle;

/// Event sentences kept (the newest).
pub const EVENT_CAPACITY: usize = 256;
/// Leader changes kept (the newest).
pub const LEADER_CHANGE_CAPACITY: usize = 64;
/// Throughput samples kept: two minutes at one a second.
pub const THROUGHPUT_CAPACITY: usize = 120;
/// How often the applied index is sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Longest event sentence kept, in characters (a note may quote an error).
const MAX_EVENT_CHARS: usize = 400;

/// One event-log sentence, as the dashboard lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordedEvent {
    /// Position in this node's event sequence (1, 2, ...; gaps mean the ring
    /// dropped older ones).
    pub seq: u64,
    /// Wall-clock time it was recorded, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The sentence, e.g. `Node 2 became the leader for term 5.`
    pub text: String,
}

/// A leader this node learned of (itself included).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeaderChange {
    /// When this node learned of it, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The leader's term.
    pub term: Term,
    /// The leader.
    pub leader_id: NodeId,
}

/// This node's applied index at one moment, and the rate since the sample before.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThroughputSample {
    /// When it was taken, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The applied index then.
    pub applied_index: Index,
    /// Entries applied per second since the previous sample: the cluster's
    /// committed writes (no-ops and membership changes included), as this node
    /// applies them.
    pub writes_per_sec: f64,
}

/// A copy of the history, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimelineView {
    /// The newest event sentences.
    pub events: Vec<RecordedEvent>,
    /// Leader changes this node saw.
    pub leader_changes: Vec<LeaderChange>,
    /// Throughput, one sample per [`SAMPLE_INTERVAL`].
    pub throughput: Vec<ThroughputSample>,
}

#[derive(Debug, Default)]
struct Rings {
    events: VecDeque<RecordedEvent>,
    next_seq: u64,
    leaders: VecDeque<LeaderChange>,
    samples: VecDeque<ThroughputSample>,
    /// The previous sample's moment (monotonic, so a wall-clock step does not
    /// distort the rate) and applied index.
    last_sample: Option<(Instant, Index)>,
}

/// The history of one node. Written by the consensus thread (events, leader
/// changes) and the sampler task; read by API handlers. Each access is a short
/// critical section.
#[derive(Debug, Default)]
pub struct Timeline {
    rings: Mutex<Rings>,
}

impl Timeline {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    fn rings(&self) -> std::sync::MutexGuard<'_, Rings> {
        self.rings.lock().expect("timeline lock poisoned")
    }

    /// Records an event sentence.
    pub fn event(&self, text: &str) {
        let text = crate::events::shorten(text, MAX_EVENT_CHARS).into_owned();
        let mut r = self.rings();
        r.next_seq += 1;
        let seq = r.next_seq;
        push_bounded(
            &mut r.events,
            EVENT_CAPACITY,
            RecordedEvent {
                seq,
                time_ms: unix_ms(),
                text,
            },
        );
    }

    /// Records that `leader` leads `term`, unless that is already the newest entry.
    pub fn leader(&self, term: Term, leader: NodeId) {
        let mut r = self.rings();
        if r.leaders
            .back()
            .is_some_and(|l| l.term == term && l.leader_id == leader)
        {
            return;
        }
        push_bounded(
            &mut r.leaders,
            LEADER_CHANGE_CAPACITY,
            LeaderChange {
                time_ms: unix_ms(),
                term,
                leader_id: leader,
            },
        );
    }

    /// Records the applied index at `now` (wall clock `time_ms`). The first call
    /// only sets the baseline the next one's rate is measured from.
    pub fn sample(&self, now: Instant, time_ms: u64, applied: Index) {
        let mut r = self.rings();
        if let Some((then, before)) = r.last_sample.replace((now, applied)) {
            let secs = now.saturating_duration_since(then).as_secs_f64();
            let writes_per_sec = if secs > 0.0 {
                applied.saturating_sub(before) as f64 / secs
            } else {
                0.0
            };
            push_bounded(
                &mut r.samples,
                THROUGHPUT_CAPACITY,
                ThroughputSample {
                    time_ms,
                    applied_index: applied,
                    writes_per_sec,
                },
            );
        }
    }

    /// The history, with at most the newest `max_events` event sentences.
    pub fn view(&self, max_events: usize) -> TimelineView {
        let r = self.rings();
        let skip = r.events.len().saturating_sub(max_events);
        TimelineView {
            events: r.events.iter().skip(skip).cloned().collect(),
            leader_changes: r.leaders.iter().cloned().collect(),
            throughput: r.samples.iter().cloned().collect(),
        }
    }
}

fn push_bounded<T>(ring: &mut VecDeque<T>, capacity: usize, item: T) {
    if ring.len() == capacity {
        ring.pop_front();
    }
    ring.push_back(item);
}

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Samples `node`'s applied index into `timeline` every [`SAMPLE_INTERVAL`]
/// until `stop` turns true.
pub(crate) async fn sample_throughput(
    timeline: std::sync::Arc<Timeline>,
    node: NodeHandle,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    // After a stall (a paused process), carry on from now rather than bursting
    // catch-up samples whose rates would mean nothing.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                timeline.sample(Instant::now(), unix_ms(), node.status().applied);
            }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_bounded_and_numbered() {
        let t = Timeline::new();
        for i in 0..EVENT_CAPACITY + 10 {
            t.event(&format!("event {i}"));
        }
        let all = t.view(usize::MAX).events;
        assert_eq!(all.len(), EVENT_CAPACITY);
        assert_eq!(all[0].seq, 11, "the oldest ten were dropped");
        assert_eq!(
            all.last().map(|e| e.text.as_str()),
            Some(format!("event {}", EVENT_CAPACITY + 9).as_str())
        );
        let newest = t.view(3).events;
        assert_eq!(newest.len(), 3);
        assert_eq!(newest[2].seq, (EVENT_CAPACITY + 10) as u64);
    }

    #[test]
    fn long_events_are_cut() {
        let t = Timeline::new();
        t.event(&"x".repeat(10_000));
        let text = &t.view(1).events[0].text;
        assert!(
            text.chars().count() < MAX_EVENT_CHARS + 30,
            "{}",
            text.len()
        );
    }

    #[test]
    fn leader_changes_skip_repeats_and_are_bounded() {
        let t = Timeline::new();
        t.leader(1, 2);
        t.leader(1, 2);
        t.leader(2, 3);
        t.leader(3, 3);
        let l = t.view(0).leader_changes;
        let seen: Vec<(Term, NodeId)> = l.iter().map(|c| (c.term, c.leader_id)).collect();
        assert_eq!(seen, [(1, 2), (2, 3), (3, 3)]);
        for term in 10..10 + LEADER_CHANGE_CAPACITY as u64 {
            t.leader(term, 1);
        }
        assert_eq!(t.view(0).leader_changes.len(), LEADER_CHANGE_CAPACITY);
    }

    #[test]
    fn throughput_is_the_applied_rate_between_samples() {
        let t = Timeline::new();
        let start = Instant::now();
        t.sample(start, 1_000, 10);
        assert!(t.view(0).throughput.is_empty(), "the first is a baseline");
        t.sample(start + Duration::from_millis(500), 1_500, 60);
        t.sample(start + Duration::from_millis(1_500), 2_500, 60);
        let s = t.view(0).throughput;
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].time_ms, s[0].applied_index), (1_500, 60));
        assert!((s[0].writes_per_sec - 100.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s[1].writes_per_sec, 0.0);
        // Same instant: no division by zero.
        t.sample(start + Duration::from_millis(1_500), 2_500, 70);
        assert_eq!(t.view(0).throughput[2].writes_per_sec, 0.0);
        for i in 0..THROUGHPUT_CAPACITY as u64 {
            t.sample(start + Duration::from_secs(2 + i), 0, 100 + i);
        }
        assert_eq!(t.view(0).throughput.len(), THROUGHPUT_CAPACITY);
    }
}
