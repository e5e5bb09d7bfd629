//! Running a write: exactly-once with the client's session, or the plain way.

use std::future::Future;

use keel_proto::v1::{self, ClientSession};
use tokio::time::Instant;
use tonic::{Response, Status};

use crate::call::{Op, Route};
use crate::client::{Client, request};
use crate::error::Error;
use crate::kv_conn::KvConn;
use crate::session::MAX_IN_FLIGHT;

/// A write request that can carry a client session.
pub(crate) trait SessionWrite: Clone {
    /// Sets the request's session field.
    fn set_session(&mut self, session: ClientSession);
}

impl SessionWrite for v1::PutRequest {
    fn set_session(&mut self, session: ClientSession) {
        self.session = Some(session);
    }
}

impl SessionWrite for v1::DeleteRequest {
    fn set_session(&mut self, session: ClientSession) {
        self.session = Some(session);
    }
}

impl Client {
    /// Sends `message` through `rpc` until it is answered (see `call.rs` for what
    /// is retried). With a session, every attempt carries the write's sequence
    /// number; if the cluster forgot the session and no attempt could have applied
    /// the write, a new session is opened and the write sent once more in it,
    /// within the same deadline.
    pub(crate) async fn write<M, T, F, Fut>(&self, message: M, rpc: F) -> Result<T, Error>
    where
        M: SessionWrite,
        F: Fn(KvConn, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let Some(session) = &self.session else {
            return self
                .caller
                .call(self.deadline, Op::Write, Route::Leader, |conn, budget| {
                    // Cheap: keys and values are shared `Bytes`.
                    rpc(self.kv(conn), request(message.clone(), budget))
                })
                .await
                .map(Response::into_inner);
        };
        let deadline_at = Instant::now() + self.deadline;
        let mut renewed = false;
        loop {
            // Waits while the session has its maximum of writes in flight, but
            // never past the deadline.
            let Ok(ticket) = tokio::time::timeout_at(deadline_at, session.ticket()).await else {
                return Err(Error::Overloaded {
                    attempts: 0,
                    message: format!(
                        "this client already has {MAX_IN_FLIGHT} writes in flight, the most \
                         one session may have"
                    ),
                });
            };
            let deadline = deadline_at.saturating_duration_since(Instant::now());
            let result = self
                .caller
                .call(deadline, Op::SessionWrite, Route::Leader, |conn, budget| {
                    let mut message = message.clone();
                    message.set_session(ticket.to_proto());
                    rpc(self.kv(conn), request(message, budget))
                })
                .await;
            match result {
                Err(Error::SessionExpired(_)) if !renewed => {
                    session.renew(ticket.id());
                    renewed = true;
                }
                other => return other.map(Response::into_inner),
            }
        }
    }
}
