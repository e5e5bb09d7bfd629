//! Running a write: exactly-once with the client's session, or the plain way.
//!
//! A session write is numbered in the session of the group the client's map
//! names for its key's slot (group 1 without a map). If that group proves it
//! did not apply it (`reroute.rs`), the map is refreshed and the write sent
//! again — after a backoff while the slot is in hand-off or the owner did not
//! change — until the call's deadline: as a new write in the owner's session
//! once the map names another owner, but with its own number while its group
//! still owns a slot in hand-off (the move may yet abort).

use std::future::Future;

use keel_placement::slot_for_key;
use keel_proto::v1::{self, ClientSession};
use tokio::time::Instant;
use tonic::{Response, Status};

use crate::call::{Op, Stop};
use crate::client::{Client, request};
use crate::error::Error;
use crate::kv_conn::KvConn;
use crate::reroute::{Reroute, keep_number, wait_before_resend};
use crate::session::MAX_IN_FLIGHT;

/// A write request that can carry a client session.
pub(crate) trait SessionWrite: Clone {
    /// Sets the request's session field.
    fn set_session(&mut self, session: ClientSession);

    /// The key whose slot decides the write's group.
    fn key(&self) -> &[u8];
}

impl SessionWrite for v1::PutRequest {
    fn set_session(&mut self, session: ClientSession) {
        self.session = Some(session);
    }

    fn key(&self) -> &[u8] {
        &self.key
    }
}

impl SessionWrite for v1::DeleteRequest {
    fn set_session(&mut self, session: ClientSession) {
        self.session = Some(session);
    }

    fn key(&self) -> &[u8] {
        &self.key
    }
}

impl Client {
    /// Sends `message` through `rpc` until it is answered (see `call.rs` for what
    /// is retried). With a session, every attempt carries the write's group and
    /// sequence number; if the cluster forgot the session and no attempt could
    /// have applied the write, a new session is opened and the write sent once
    /// more in it, within the same deadline. A write its group proves it did not
    /// apply for a slot reason is sent again in the owner's session.
    pub(crate) async fn write<M, T, F, Fut>(&self, message: M, rpc: F) -> Result<T, Error>
    where
        M: SessionWrite,
        F: Fn(KvConn, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let Some(session) = &self.session else {
            let route = self.route_for_key(message.key()).await;
            return self
                .caller
                .call(self.deadline, Op::Write, route, |conn, budget| {
                    // Cheap: keys and values are shared `Bytes`.
                    rpc(self.kv(conn), request(message.clone(), budget))
                })
                .await
                .map(Response::into_inner);
        };
        let deadline_at = Instant::now() + self.deadline;
        let slot = slot_for_key(message.key());
        let mut renewed = false;
        let mut backoff = self.caller.backoff();
        // A write refused as moving by its group while the map still names
        // that group keeps its number (see below).
        let mut kept = None;
        loop {
            self.refresh_if_stale().await;
            let group = self.maps.group_of(slot);
            // Waits while the session has its maximum of writes in flight, but
            // never past the deadline.
            let ticket = match kept.take() {
                Some(ticket) => ticket,
                None => match tokio::time::timeout_at(deadline_at, session.ticket(group)).await {
                    Ok(ticket) => ticket,
                    Err(_) => {
                        return Err(Error::Overloaded {
                            attempts: 0,
                            message: format!(
                                "this client already has {MAX_IN_FLIGHT} writes in flight, the \
                                 most one session may have"
                            ),
                        });
                    }
                },
            };
            let deadline = deadline_at.saturating_duration_since(Instant::now());
            let route = self.maps.route_to(ticket.group());
            let result = self
                .caller
                .session_call(deadline, route, |conn, budget| {
                    let mut message = message.clone();
                    message.set_session(ticket.to_proto());
                    rpc(self.kv(conn), request(message, budget))
                })
                .await;
            let reroute = match result {
                Ok(response) => return Ok(response.into_inner()),
                Err(Stop::Error(Error::SessionExpired(_))) if !renewed => {
                    session.renew(ticket.id());
                    renewed = true;
                    continue;
                }
                Err(Stop::Error(e)) => return Err(e),
                Err(Stop::Reroute(reroute)) => reroute,
            };
            let refused = ticket.group();
            self.refresh_map(reroute.map_version, deadline_at).await;
            let owner = self.maps.group_of(slot);
            if keep_number(&reroute, refused, owner) {
                kept = Some(ticket);
            } else {
                // Not applied in its group, and never will be: its number is
                // acknowledged.
                drop(ticket);
            }
            if wait_before_resend(&reroute, refused, owner) {
                let delay = backoff.next_delay();
                if Instant::now() + delay >= deadline_at {
                    return Err(gave_up(reroute));
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// The error of a session write whose deadline passed while its slot was
/// elsewhere or in hand-off: every attempt proved it was not applied.
fn gave_up(reroute: Reroute) -> Error {
    Error::Unavailable {
        attempts: reroute.attempts,
        last_error: reroute.reason,
    }
}
