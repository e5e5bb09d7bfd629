//! The retry loop every operation runs through.
//!
//! One call is a sequence of attempts, each against one member, bounded by
//! `request_timeout`, all bounded by the call's deadline. After each failed attempt,
//! [`Failure`] says what it proves and [`Op`] says what may be retried:
//!
//! | failure | read | write |
//! |---|---|---|
//! | NOT_LEADER with the leader's address | go there at once | go there at once |
//! | NOT_LEADER without one, NO_LEADER, SHUTTING_DOWN, connection not established | back off, next member | back off, next member |
//! | OVERLOADED, DISK_FULL | back off, same member | back off, same member |
//! | timeout or transport failure after connecting, OUTCOME_UNKNOWN | back off, next member | **stop**: `OutcomeUnknown` |
//! | INTERNAL | stop: `Internal` | **stop**: `OutcomeUnknown` |
//! | CONFLICT, INVALID_ARGUMENT, UNIMPLEMENTED | stop | stop |
//!
//! A session write answered WRONG_GROUP or SLOT_MOVING ends the call with a
//! [`Reroute`] when that proves it was not applied (see `reroute.rs`): the
//! write loop (`write.rs`) then refreshes its map and sends it as a new write in
//! the owner's session. Otherwise — and for every other operation — the table
//! above applies: SLOT_MOVING backs off at the same member, WRONG_GROUP tries
//! another member.
//!
//! A write with a client session (the default) is exactly-once: the cluster
//! answers a repeated sequence number with the first execution's result. So it is
//! retried like a read — after timeouts, transport failures, OUTCOME_UNKNOWN and
//! INTERNAL too, on another member — for as long as the session is sure to be
//! remembered ([`RETRY_WINDOW`] after the first attempt); after that, a write that
//! may have been applied stops with `OutcomeUnknown`. SESSION_EXPIRED stops it:
//! with `OutcomeUnknown` if an earlier attempt may have applied it, else with
//! `SessionExpired` (not applied), after which `kv.rs` opens a new session and
//! sends the write again.
//!
//! When the deadline passes (or the next backoff would reach it), the call returns
//! `Unavailable` (or `Overloaded` or `DiskFull` if that was the last answer): for a
//! write this is only reached when every attempt proved it was not applied, or, for
//! a session's write, also when it may have been applied but the retries found no
//! leader.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use keel_placement::GroupId;

use tokio::time::Instant;
use tonic::Status;

use crate::address::Address;
use crate::backoff::Backoff;
use crate::config::ClientConfig;
use crate::error::Error;
use crate::failure::Failure;
use crate::pool::{Conn, Pool};
use crate::reroute::{Reroute, SlotVerdict, slot_verdict};
use crate::router::{CLUSTER_GROUP, Router};
use crate::session::RETRY_WINDOW;

/// Consecutive leader hints followed without backing off. Two members that each name
/// the other (stale hints during an election) then cost a few quick hops, not a spin.
const MAX_IMMEDIATE_REDIRECTS: u32 = 3;

/// What an operation does to the data, which decides what may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// No effect: safe to retry after any retryable failure.
    Read,
    /// Changes state: retried only after failures that prove it was not applied.
    Write,
    /// Changes state, exactly-once (a client session's write): the cluster
    /// deduplicates it, so it is retried like a read while its session is sure to
    /// be remembered.
    SessionWrite,
}

impl Op {
    /// Whether a failure that does not prove "not applied" may be retried, `elapsed`
    /// after the call started.
    fn may_retry_ambiguous(self, elapsed: Duration) -> bool {
        match self {
            Op::Read => true,
            Op::Write => false,
            Op::SessionWrite => elapsed < RETRY_WINDOW,
        }
    }

    fn writes(self) -> bool {
        self != Op::Read
    }
}

/// What the attempts of one call have shown so far.
struct Progress {
    started: Instant,
    /// Some attempt failed in a way that does not prove it was not applied.
    maybe_applied: bool,
    /// The group whose leader the current target is thought to be: the
    /// route's, or the one a followed hint named.
    group: GroupId,
}

/// Where a call's attempts go.
#[derive(Clone, Debug)]
pub(crate) enum Route {
    /// To group 1's leader (cluster calls, and every key without a map),
    /// found by following hints and rotating through endpoints.
    Leader,
    /// To the leader of a key's group: its known leader, else one of
    /// `members` (its members by the client's map; none without one).
    Group {
        /// The group.
        group: GroupId,
        /// Its members' addresses.
        members: Arc<[Address]>,
    },
    /// Always to this member (e.g. one node's status).
    Fixed(Address),
}

impl Route {
    /// The group whose leader the route follows (none for a fixed member).
    fn group(&self) -> Option<GroupId> {
        match self {
            Route::Leader => Some(CLUSTER_GROUP),
            Route::Group { group, .. } => Some(*group),
            Route::Fixed(_) => None,
        }
    }

    /// The members to try when the group's leader is not known.
    fn members(&self) -> &[Address] {
        match self {
            Route::Group { members, .. } => members,
            Route::Leader | Route::Fixed(_) => &[],
        }
    }
}

/// The next move after a failed attempt.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Follow a leader hint without waiting.
    Redirect(Address),
    /// Back off, then try this member.
    Retry(Address),
    /// End a session write's call: it was not applied in its group, and is to
    /// be sent again as a new write where the map says.
    Reroute {
        /// The answer was SLOT_MOVING.
        moving: bool,
        /// The map version the answer named.
        map_version: u64,
    },
}

/// How a call ended without a result.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The call's error.
    Error(Error),
    /// A session write to be sent again, as a new write (only for
    /// [`Op::SessionWrite`]).
    Reroute(Reroute),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Error(e)
    }
}

/// Runs calls: owns the connections and the leader knowledge shared by all calls.
pub(crate) struct Caller {
    router: Router,
    /// A member named another group for a key than the client's map did: the
    /// map is stale (or absent), and the next key operation refreshes it.
    map_stale: AtomicBool,
    pool: Pool,
    request_timeout: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
}

impl Caller {
    /// A caller for a validated configuration.
    pub(crate) fn new(cfg: &ClientConfig, endpoints: Vec<Address>) -> Self {
        Caller {
            router: Router::new(endpoints),
            map_stale: AtomicBool::new(false),
            pool: Pool::new(cfg),
            request_timeout: cfg.request_timeout,
            backoff_initial: cfg.backoff_initial,
            backoff_max: cfg.backoff_max,
        }
    }

    /// Whether a member has shown the client's map stale since the last call
    /// (clears the mark).
    pub(crate) fn take_map_stale(&self) -> bool {
        self.map_stale.swap(false, Ordering::Relaxed)
    }

    /// A fresh backoff with the client's settings.
    pub(crate) fn backoff(&self) -> Backoff {
        Backoff::new(self.backoff_initial, self.backoff_max)
    }

    /// Runs `attempt` until it succeeds, a failure ends the call, or `deadline` passes.
    ///
    /// `attempt` gets a connection and the attempt's time budget (to forward
    /// to the server as the gRPC timeout) and makes one RPC.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        deadline: Duration,
        op: Op,
        route: Route,
        attempt: F,
    ) -> Result<T, Error>
    where
        F: FnMut(Conn, Duration) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.run(deadline, op, route, attempt)
            .await
            .map_err(|stop| match stop {
                Stop::Error(e) => e,
                // Only session writes reroute; were another op to, its
                // answers all proved "not applied".
                Stop::Reroute(r) => Error::Unavailable {
                    attempts: r.attempts,
                    last_error: r.reason,
                },
            })
    }

    /// A session write's call: like [`Caller::call`], but a slot answer that
    /// proves the write was not applied in its group ends it with
    /// [`Stop::Reroute`].
    pub(crate) async fn session_call<T, F, Fut>(
        &self,
        deadline: Duration,
        route: Route,
        attempt: F,
    ) -> Result<T, Stop>
    where
        F: FnMut(Conn, Duration) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.run(deadline, Op::SessionWrite, route, attempt).await
    }

    async fn run<T, F, Fut>(
        &self,
        deadline: Duration,
        op: Op,
        route: Route,
        mut attempt: F,
    ) -> Result<T, Stop>
    where
        F: FnMut(Conn, Duration) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let deadline_at = Instant::now() + deadline;
        let mut target = match (&route, route.group()) {
            (Route::Fixed(address), _) => address.clone(),
            (_, group) => self
                .router
                .first(group.unwrap_or(CLUSTER_GROUP), route.members()),
        };
        let mut backoff = Backoff::new(self.backoff_initial, self.backoff_max);
        let mut attempts = 0u32;
        let mut redirects = 0u32;
        let mut last: Option<Failure> = None;
        let mut progress = Progress {
            started: Instant::now(),
            maybe_applied: false,
            group: route.group().unwrap_or(CLUSTER_GROUP),
        };
        loop {
            let remaining = deadline_at.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(gave_up(attempts, last, progress.maybe_applied).into());
            }
            // Checked before every attempt, since backoff may have slept past it.
            if progress.maybe_applied && !op.may_retry_ambiguous(progress.started.elapsed()) {
                return Err(Stop::Error(Error::OutcomeUnknown {
                    reason: format!(
                        "retried for {RETRY_WINDOW:?}, as long as the session is sure to be \
                         remembered; last: {}",
                        last.as_ref().map_or_else(String::new, Failure::describe)
                    ),
                }));
            }
            attempts += 1;
            let budget = remaining.min(self.request_timeout);
            let failure = match self.attempt(&target, budget, &mut attempt).await {
                Ok(value) => {
                    if op.writes() && route.group().is_some() {
                        // A member that accepted a write is (or forwards to) the
                        // leader of the group it was sent for: start there next
                        // time.
                        self.router.set_leader(progress.group, &target);
                    }
                    return Ok(value);
                }
                Err(failure) => failure,
            };
            tracing::debug!(
                attempt = attempts,
                member = %target,
                failure = %failure.describe(),
                "keel client attempt failed"
            );
            if failure.taints_connection() {
                self.pool.evict(&target);
            }
            let next = self.next_move(op, &route, &target, &failure, redirects, &mut progress)?;
            last = Some(failure);
            match next {
                Next::Redirect(leader) => {
                    redirects += 1;
                    target = leader;
                }
                Next::Retry(member) => {
                    redirects = 0;
                    let delay = backoff.next_delay();
                    // Waiting into the deadline would only end in the same error later.
                    if Instant::now() + delay >= deadline_at {
                        return Err(gave_up(attempts, last, progress.maybe_applied).into());
                    }
                    tokio::time::sleep(delay).await;
                    target = member;
                }
                Next::Reroute {
                    moving,
                    map_version,
                } => {
                    return Err(Stop::Reroute(Reroute {
                        moving,
                        map_version,
                        attempts,
                        reason: last.as_ref().map_or_else(String::new, Failure::describe),
                    }));
                }
            }
        }
    }

    /// One attempt: connect (or reuse a connection), then make the RPC, all within
    /// `budget`.
    async fn attempt<T, F, Fut>(
        &self,
        target: &Address,
        budget: Duration,
        rpc: &mut F,
    ) -> Result<T, Failure>
    where
        F: FnMut(Conn, Duration) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut connected = false;
        let outcome = tokio::time::timeout(budget, async {
            // Any failure here happened before the request existed on the wire.
            let conn = self
                .pool
                .conn(target)
                .await
                .map_err(|s| Failure::NotSent(format!("{target}: {}", s.message())))?;
            connected = true;
            rpc(conn, budget)
                .await
                .map_err(|s| Failure::from_status(&s, target))
        })
        .await;
        match outcome {
            Ok(result) => result,
            Err(_) if connected => Err(Failure::Ambiguous(format!(
                "{target}: no answer within {budget:?}"
            ))),
            Err(_) => Err(Failure::NotSent(format!(
                "{target}: could not connect within {budget:?}"
            ))),
        }
    }

    /// Decides what follows a failed attempt, or ends the call with an error.
    fn next_move(
        &self,
        op: Op,
        route: &Route,
        target: &Address,
        failure: &Failure,
        redirects: u32,
        progress: &mut Progress,
    ) -> Result<Next, Error> {
        let elsewhere = |group: GroupId| match route {
            Route::Fixed(address) => address.clone(),
            Route::Leader | Route::Group { .. } => self.router.after_failure(group, target),
        };
        // Only a write can have been applied; a read that timed out is just late.
        progress.maybe_applied |= op.writes() && !failure.proves_not_applied();
        // A write may only be retried if no attempt may have applied it, or if
        // the cluster will recognise the retry (a session's write, in its window).
        // A session's write stops retrying once past its window even after a
        // failure that proves nothing new: the retry itself could be the one that
        // finds the session forgotten and reopened.
        if progress.maybe_applied && !op.may_retry_ambiguous(progress.started.elapsed()) {
            if matches!(failure, Failure::Ambiguous(_)) && route.group().is_some() {
                // The member did not answer (paused, partitioned, dead): the next
                // call must not start there again.
                self.router.forget(target);
            }
            return Err(Error::OutcomeUnknown {
                reason: failure.describe(),
            });
        }
        match failure {
            Failure::Conflict { current_version } => Err(Error::Conflict {
                current_version: (*current_version != 0).then_some(*current_version),
            }),
            Failure::InvalidArgument(message) => Err(Error::InvalidArgument(message.clone())),
            Failure::Refused(message) => Err(Error::Refused(message.clone())),
            Failure::Rejected { code, message } => Err(Error::Rejected {
                code: *code,
                message: message.clone(),
            }),
            Failure::SessionExpired(message) if progress.maybe_applied => {
                Err(Error::OutcomeUnknown {
                    reason: format!("an earlier attempt may have applied it, then {message}"),
                })
            }
            Failure::SessionExpired(message) => Err(Error::SessionExpired(message.clone())),
            // The cluster will recognise a session's write wherever it is retried.
            Failure::Internal(_) if op == Op::SessionWrite => {
                Ok(Next::Retry(elsewhere(progress.group)))
            }
            // A member failing internally is not worth hammering, even for a read.
            Failure::Internal(message) => Err(Error::Internal(message.clone())),
            Failure::Ambiguous(_) => Ok(Next::Retry(elsewhere(progress.group))),
            // A session write leaves its group only on proof it was not
            // applied there (`reroute.rs`).
            Failure::SlotMoving { by_group, .. } | Failure::WrongGroup { by_group, .. }
                if op == Op::SessionWrite
                    && slot_verdict(*by_group, progress.maybe_applied) == SlotVerdict::Reroute =>
            {
                let map_version = match failure {
                    Failure::WrongGroup { map_version, .. } => *map_version,
                    _ => 0,
                };
                Ok(Next::Reroute {
                    moving: matches!(failure, Failure::SlotMoving { .. }),
                    map_version,
                })
            }
            Failure::NotLeader {
                leader: Some(leader),
                group,
                ..
            } if route.group().is_some() => {
                if leader == target {
                    // "Not the leader; the leader is me": a confused member. Try
                    // another one rather than trusting it.
                    return Ok(Next::Retry(elsewhere(progress.group)));
                }
                // The hint is the leader of the group the member routed the
                // key to; one other than the call's means the client's map
                // is stale (or it has none), and the key goes there anyway.
                if *group != 0 && *group != progress.group {
                    self.map_stale.store(true, Ordering::Relaxed);
                    progress.group = *group;
                }
                self.router.set_leader(progress.group, leader);
                if redirects < MAX_IMMEDIATE_REDIRECTS {
                    Ok(Next::Redirect(leader.clone()))
                } else {
                    Ok(Next::Retry(leader.clone()))
                }
            }
            // A leader whose disk filled up hands leadership over: the next attempt
            // is usually redirected to the new leader.
            Failure::Overloaded(_) | Failure::DiskFull(_) => Ok(Next::Retry(target.clone())),
            // The hand-off of a slot takes moments; the same group serves it or
            // says where it went once it is over.
            Failure::SlotMoving { .. } => Ok(Next::Retry(target.clone())),
            // The client's map sent the key to a group that does not hold it:
            // the next operation refreshes the map, and within this call
            // another member (which routes by its own map, forwarding if need
            // be) is the best next try. A session write that may have been
            // applied comes here too: same group, same number, until its group
            // answers.
            Failure::WrongGroup { .. } => {
                self.map_stale.store(true, Ordering::Relaxed);
                Ok(Next::Retry(elsewhere(progress.group)))
            }
            Failure::NotLeader { .. }
            | Failure::NoLeader(_)
            | Failure::ShuttingDown(_)
            | Failure::NotSent(_) => Ok(Next::Retry(elsewhere(progress.group))),
        }
    }
}

/// The error for a call whose deadline passed; every failure before it was
/// retryable, but a session's write may have been applied by one of them.
fn gave_up(attempts: u32, last: Option<Failure>, maybe_applied: bool) -> Error {
    if maybe_applied {
        let last = last.map_or_else(String::new, |f| f.describe());
        return Error::OutcomeUnknown {
            reason: format!(
                "the deadline passed after {attempts} attempts, some of which may have \
                 applied the write; last: {last}"
            ),
        };
    }
    match last {
        Some(Failure::Overloaded(message)) => Error::Overloaded { attempts, message },
        Some(Failure::DiskFull(message)) => Error::DiskFull { attempts, message },
        Some(failure) => Error::Unavailable {
            attempts,
            last_error: failure.describe(),
        },
        None => Error::Unavailable {
            attempts,
            last_error: "the deadline passed before the first attempt".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> (Caller, Address) {
        let cfg = ClientConfig::with_endpoints(["127.0.0.1:1", "127.0.0.1:2"]);
        let endpoints: Vec<Address> = cfg
            .endpoints
            .iter()
            .map(|e| Address::parse(e).expect("valid"))
            .collect();
        let first = endpoints[0].clone();
        (Caller::new(&cfg, endpoints), first)
    }

    fn wrong_group(by_group: bool) -> Failure {
        Failure::WrongGroup {
            map_version: 5,
            by_group,
            message: String::new(),
        }
    }

    fn moving(by_group: bool) -> Failure {
        Failure::SlotMoving {
            by_group,
            message: String::new(),
        }
    }

    /// The next move of `op` after `failures`, one attempt each, in order.
    fn after(op: Op, failures: &[Failure]) -> Next {
        let (caller, target) = caller();
        let mut progress = Progress {
            started: Instant::now(),
            maybe_applied: false,
            group: CLUSTER_GROUP,
        };
        let mut next = None;
        for failure in failures {
            next = Some(
                caller
                    .next_move(op, &Route::Leader, &target, failure, 0, &mut progress)
                    .expect("retryable"),
            );
        }
        next.expect("at least one failure")
    }

    #[tokio::test]
    async fn a_hint_for_another_group_is_followed_recorded_under_it_and_marks_the_map_stale() {
        let (caller, target) = caller();
        let other = Address::parse("127.0.0.1:9").expect("valid");
        let route = Route::Group {
            group: 2,
            members: Arc::from(vec![target.clone()]),
        };
        let mut progress = Progress {
            started: Instant::now(),
            maybe_applied: false,
            group: 2,
        };
        let hint = |group| Failure::NotLeader {
            leader: Some(other.clone()),
            group,
            message: String::new(),
        };
        // A hint about the call's own group (or one that names none).
        for group in [2, 0] {
            let next = caller
                .next_move(Op::Write, &route, &target, &hint(group), 0, &mut progress)
                .expect("retryable");
            assert_eq!(next, Next::Redirect(other.clone()));
            assert!(!caller.take_map_stale());
            assert_eq!(caller.router.first(2, &[]), other);
        }
        // A member routed the key to group 3: the client's map is stale, the
        // hint is group 3's leader, and group 2's is left as it was.
        caller.router.set_leader(2, &target);
        let next = caller
            .next_move(Op::Write, &route, &target, &hint(3), 0, &mut progress)
            .expect("retryable");
        assert_eq!(next, Next::Redirect(other.clone()));
        assert_eq!(progress.group, 3);
        assert!(caller.take_map_stale());
        assert!(!caller.take_map_stale(), "the mark clears once taken");
        assert_eq!(caller.router.first(3, &[]), other);
        assert_eq!(caller.router.first(2, &[]), target);
        // A slot answer marks it stale too.
        let _ = caller.next_move(
            Op::Read,
            &route,
            &target,
            &wrong_group(true),
            0,
            &mut progress,
        );
        assert!(caller.take_map_stale());
    }

    #[tokio::test]
    async fn a_session_write_leaves_its_group_only_on_proof_it_was_not_applied() {
        let ambiguous = Failure::Ambiguous("no answer".into());
        // Nothing may have applied it: any slot answer sends it to the owner.
        assert_eq!(
            after(Op::SessionWrite, &[wrong_group(false)]),
            Next::Reroute {
                moving: false,
                map_version: 5
            }
        );
        assert_eq!(
            after(Op::SessionWrite, &[moving(true)]),
            Next::Reroute {
                moving: true,
                map_version: 0
            }
        );
        // An earlier attempt may have applied it: a node's map-based answer
        // keeps it in its group (same number, another member); the group's
        // own answer, given after its session lookup, settles it.
        assert!(matches!(
            after(Op::SessionWrite, &[ambiguous.clone(), wrong_group(false)]),
            Next::Retry(_)
        ));
        assert!(matches!(
            after(Op::SessionWrite, &[ambiguous.clone(), moving(false)]),
            Next::Retry(_)
        ));
        assert_eq!(
            after(Op::SessionWrite, &[ambiguous.clone(), wrong_group(true)]),
            Next::Reroute {
                moving: false,
                map_version: 5
            }
        );
        // Other operations never reroute: they retry as before.
        for op in [Op::Read, Op::Write] {
            assert!(matches!(after(op, &[wrong_group(true)]), Next::Retry(_)));
            assert!(matches!(after(op, &[moving(true)]), Next::Retry(_)));
        }
    }
}
