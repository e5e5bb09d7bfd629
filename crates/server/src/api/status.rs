//! The cluster status behind the dashboard (`GET /v1/cluster/status`): every
//! member as it describes itself, plus this node's recent history.
//!
//! Each member is asked directly (gRPC `Cluster.Status`, in parallel, each with a
//! short timeout), as `keel status` does, rather than trusting one node's view: a
//! member that is down or cut off shows as unreachable within the timeout instead
//! of holding up the answer, and the leader is the one a reachable member claims
//! to be in the highest term, not a follower's possibly stale belief. The
//! leader's own answer carries each follower's match index.
//!
//! With a cluster map, every node the map lists is asked too (a node outside
//! group 1 is not a member), and each group of the map comes with its slots,
//! its leader and each member's replica (`shard_report.rs`, as `keel shard
//! status` shows them).
//!
//! Answers are cached for a moment and only one round of questions runs at a
//! time, so any number of open dashboards costs the members a few status calls
//! a second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_proto::v1::{StatusRequest, StatusResponse};
use keel_raft::NodeId;
use serde::Serialize;

use super::ApiContext;
use super::grpc::status_response;
use crate::members::MemberView;
use crate::shard_report::{Answers, GroupReport, group_reports};
use crate::timeline::{self, LeaderChange, RecordedEvent, ThroughputSample};

/// How long a member may take to answer before it is shown as unreachable.
pub const MEMBER_STATUS_TIMEOUT: Duration = Duration::from_millis(500);
/// How long one round of answers is reused.
const CACHE_FOR: Duration = Duration::from_millis(250);
/// Event sentences returned when the request names no number.
pub const DEFAULT_EVENTS: usize = 50;

/// The answer of `GET /v1/cluster/status`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node_id: NodeId,
    /// Its cluster, in hex.
    pub cluster_id: String,
    /// When the answer was made, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The leader: the reachable member that says it leads, in the highest term
    /// (0 if none does).
    pub leader_id: NodeId,
    /// The highest term a reachable member reports.
    pub term: u64,
    /// Every member of the configuration in force, in id order.
    pub members: Vec<MemberStatus>,
    /// The cluster map's version (`null`: this node has no map).
    pub map_version: Option<u64>,
    /// Every group of the cluster map, in id order, with each member's replica
    /// (empty without a map).
    pub groups: Vec<GroupReport>,
    /// Leaders this node saw, oldest first (since it started).
    pub leader_changes: Vec<LeaderChange>,
    /// Entries this node applied per second, one sample a second, oldest first.
    pub throughput: Vec<ThroughputSample>,
    /// Milliseconds between throughput samples.
    pub sample_interval_ms: u64,
    /// This node's newest event-log sentences, oldest first.
    pub events: Vec<RecordedEvent>,
}

/// One member. The fields it reports itself are `null` when it did not answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    /// The member's id.
    pub id: NodeId,
    /// Its gRPC address.
    pub address: String,
    /// A voter (else a learner).
    pub voter: bool,
    /// Whether it answered within [`MEMBER_STATUS_TIMEOUT`].
    pub reachable: bool,
    /// Why it did not answer.
    pub error: Option<String>,
    /// `leader`, `follower`, `learner`, `candidate` or `pre-candidate`.
    pub role: Option<String>,
    /// Its term.
    pub term: Option<u64>,
    /// The leader it knows (0: none).
    pub leader_id: Option<NodeId>,
    /// Its commit index.
    pub commit_index: Option<u64>,
    /// Its applied index.
    pub applied_index: Option<u64>,
    /// Its last log index.
    pub last_index: Option<u64>,
    /// Its HTTP address, if it serves one.
    pub http_address: Option<String>,
    /// Highest index the leader knows to be replicated on it (the leader's own
    /// last index for the leader); `null` without a reachable leader.
    pub match_index: Option<u64>,
    /// Entries committed on the leader that it has not applied yet.
    pub lag: Option<u64>,
}

/// The members' answers, assembled; shared by the requests within [`CACHE_FOR`].
#[derive(Clone, Debug, PartialEq, Eq)]
struct MembersView {
    leader_id: NodeId,
    term: u64,
    members: Vec<MemberStatus>,
    map_version: Option<u64>,
    groups: Vec<GroupReport>,
}

/// What one member answered, or why it did not.
type Answer = Result<StatusResponse, String>;

/// The latest [`MembersView`] and when it was made.
#[derive(Debug, Default)]
pub(crate) struct StatusCache {
    latest: tokio::sync::Mutex<Option<(Instant, Arc<MembersView>)>>,
}

impl ApiContext {
    /// The cluster status with at most `max_events` event sentences.
    pub(crate) async fn cluster_status(&self, max_events: usize) -> ClusterStatus {
        let view = self.members_view().await;
        let history = self.timeline.view(max_events);
        ClusterStatus {
            node_id: self.id,
            cluster_id: format!("{:016x}", self.cluster_id),
            time_ms: timeline::unix_ms(),
            leader_id: view.leader_id,
            term: view.term,
            members: view.members.clone(),
            map_version: view.map_version,
            groups: view.groups.clone(),
            leader_changes: history.leader_changes,
            throughput: history.throughput,
            sample_interval_ms: timeline::SAMPLE_INTERVAL.as_millis() as u64,
            events: history.events,
        }
    }

    /// The members' answers, from the cache or asked now. The lock is held while
    /// asking, so concurrent requests wait for one round instead of each
    /// starting their own.
    async fn members_view(&self) -> Arc<MembersView> {
        let mut latest = self.status_cache.latest.lock().await;
        if let Some((at, view)) = latest.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return view.clone();
        }
        let book = self.member_book().await;
        let answers =
            futures::future::join_all(book.iter().map(|m| self.ask(m.id, &m.address))).await;
        let mut view = assemble(&book, &answers);
        if let Some(cached) = self.maps.current() {
            let map = &cached.map;
            // Group 1's members answered already; the map's other nodes now.
            let mut by_node: Answers = book
                .iter()
                .zip(&answers)
                .map(|(m, a)| (m.id, a.as_ref().ok().map(|s| s.groups.clone())))
                .collect();
            let others: Vec<_> = map
                .nodes()
                .iter()
                .filter(|(id, _)| !by_node.contains_key(id))
                .collect();
            let more =
                futures::future::join_all(others.iter().map(|(id, n)| self.ask(**id, &n.address)))
                    .await;
            for ((id, _), a) in others.iter().zip(more) {
                by_node.insert(**id, a.ok().map(|s| s.groups));
            }
            view.map_version = Some(map.version());
            view.groups = group_reports(map, &by_node);
        }
        let view = Arc::new(view);
        *latest = Some((Instant::now(), view.clone()));
        view
    }

    /// Group 1's members as this node should show them: its member book, or —
    /// on a node outside group 1, whose replica never hears of a change — the
    /// list group 1's members give (`members_answer`), falling back to the
    /// book when none answers within [`MEMBER_STATUS_TIMEOUT`] (the page must
    /// not wait out a forwarded call's whole deadline while they are down).
    async fn member_book(&self) -> Vec<MemberView> {
        if !self.asks_group_1() {
            return self.members.members();
        }
        match tokio::time::timeout(MEMBER_STATUS_TIMEOUT, self.members_answer()).await {
            Ok(Ok(list)) => list
                .members
                .into_iter()
                .map(|m| MemberView {
                    id: m.id,
                    address: m.address,
                    voter: m.voter,
                    promote: m.promote_when_caught_up,
                })
                .collect(),
            Ok(Err(_)) | Err(_) => self.members.members(),
        }
    }

    /// One node's own status (this node's without a network hop).
    async fn ask(&self, id: NodeId, address: &str) -> Answer {
        if id == self.id {
            return Ok(status_response(self));
        }
        if address.is_empty() {
            return Err("address not known to this node".into());
        }
        let mut client = self.forwarder.cluster(address).map_err(|d| d.message)?;
        match tokio::time::timeout(MEMBER_STATUS_TIMEOUT, client.status(StatusRequest {})).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) if s.message().is_empty() => Err(format!("{:?}", s.code())),
            Ok(Err(s)) => Err(s.message().to_string()),
            Err(_) => Err(format!(
                "no answer within {} ms",
                MEMBER_STATUS_TIMEOUT.as_millis()
            )),
        }
    }
}

/// Puts the members' answers (in `book` order) together: the leader, the term,
/// and each member's row with its match index and lag as the leader sees them.
fn assemble(book: &[MemberView], answers: &[Answer]) -> MembersView {
    let reached = || answers.iter().filter_map(|a| a.as_ref().ok());
    let leader = reached()
        .filter(|s| s.role == "leader")
        .max_by_key(|s| s.term);
    let term = reached().map(|s| s.term).max().unwrap_or(0);
    let members = book
        .iter()
        .zip(answers)
        .map(|(m, answer)| {
            let match_index = leader.and_then(|l| {
                if l.id == m.id {
                    Some(l.last_index)
                } else {
                    l.progress
                        .iter()
                        .find(|p| p.id == m.id)
                        .map(|p| p.match_index)
                }
            });
            match answer {
                Ok(s) => MemberStatus {
                    id: m.id,
                    address: m.address.clone(),
                    voter: m.voter,
                    reachable: true,
                    error: None,
                    role: Some(s.role.clone()),
                    term: Some(s.term),
                    leader_id: Some(s.leader_id),
                    commit_index: Some(s.commit_index),
                    applied_index: Some(s.applied_index),
                    last_index: Some(s.last_index),
                    http_address: (!s.http_address.is_empty()).then(|| s.http_address.clone()),
                    match_index,
                    lag: leader.map(|l| l.commit_index.saturating_sub(s.applied_index)),
                },
                Err(e) => MemberStatus {
                    id: m.id,
                    address: m.address.clone(),
                    voter: m.voter,
                    reachable: false,
                    error: Some(e.clone()),
                    role: None,
                    term: None,
                    leader_id: None,
                    commit_index: None,
                    applied_index: None,
                    last_index: None,
                    http_address: None,
                    match_index,
                    lag: None,
                },
            }
        })
        .collect();
    MembersView {
        leader_id: leader.map_or(0, |l| l.id),
        term,
        members,
        map_version: None,
        groups: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use keel_proto::v1::PeerProgress;

    use super::*;

    fn member(id: NodeId) -> MemberView {
        MemberView {
            id,
            address: format!("127.0.0.1:700{id}"),
            voter: true,
            promote: false,
        }
    }

    fn answer(id: NodeId, role: &str, term: u64, commit: u64, applied: u64) -> Answer {
        Ok(StatusResponse {
            id,
            role: role.into(),
            term,
            leader_id: if role == "leader" { id } else { 0 },
            commit_index: commit,
            applied_index: applied,
            last_index: commit,
            ..StatusResponse::default()
        })
    }

    #[test]
    fn leader_lag_and_unreachable_members() {
        let book = [member(1), member(2), member(3)];
        let mut leader = answer(2, "leader", 5, 40, 40).expect("ok");
        leader.progress = vec![
            PeerProgress {
                id: 1,
                match_index: 38,
                ..PeerProgress::default()
            },
            PeerProgress {
                id: 3,
                match_index: 12,
                ..PeerProgress::default()
            },
        ];
        let answers = vec![
            answer(1, "follower", 5, 38, 35),
            Ok(leader),
            Err("connection refused".into()),
        ];
        let v = assemble(&book, &answers);
        assert_eq!((v.leader_id, v.term), (2, 5));
        let rows: Vec<(bool, Option<u64>, Option<u64>)> = v
            .members
            .iter()
            .map(|m| (m.reachable, m.match_index, m.lag))
            .collect();
        assert_eq!(
            rows,
            [
                (true, Some(38), Some(5)),
                (true, Some(40), Some(0)),
                // Down: the leader's last word on its log, but no lag.
                (false, Some(12), None),
            ]
        );
        assert_eq!(v.members[2].error.as_deref(), Some("connection refused"));
        assert_eq!(v.members[2].role, None);
    }

    #[test]
    fn the_leader_in_the_highest_term_wins() {
        // A deposed leader cut off from the others still believes it leads.
        let book = [member(1), member(2), member(3)];
        let answers = vec![
            answer(1, "leader", 3, 10, 10),
            answer(2, "leader", 4, 12, 12),
            answer(3, "follower", 4, 12, 11),
        ];
        let v = assemble(&book, &answers);
        assert_eq!((v.leader_id, v.term), (2, 4));
        assert_eq!(v.members[2].lag, Some(1));
    }

    #[test]
    fn without_a_leader_there_is_no_lag() {
        let book = [member(1), member(2)];
        let answers = vec![answer(1, "candidate", 7, 9, 9), Err("timeout".into())];
        let v = assemble(&book, &answers);
        assert_eq!((v.leader_id, v.term), (0, 7));
        assert!(
            v.members
                .iter()
                .all(|m| m.lag.is_none() && m.match_index.is_none())
        );
    }
}
