//! What one failed attempt proves.
//!
//! The retry rules hinge on one question: *could the request have been applied?* A
//! keel server answers it in the `ErrorDetail` it attaches to every error (see
//! `keel_proto::error`). When there is no detail — the failure happened in the gRPC
//! stack, not in keel — the only proof that the request was not applied is that it
//! never left this process: the connection it needed could not be established.
//!
//! # Telling "never left" from "failed after sending"
//!
//! tonic wraps every error its connector returns (TCP connect refused or timed out,
//! DNS failure) in [`tonic::ConnectError`] and keeps the original error as the
//! `source` of the `Status` it reports. A request is only written once a connection
//! exists, so a `ConnectError` anywhere in the status's source chain proves the
//! request was never sent. Any other transport error (a reset, an HTTP/2 error, the
//! connection closing before the answer, a timeout) comes after the request may have
//! been written, so it proves nothing. The client also connects before sending
//! (see `pool`), which separates a timeout while connecting from one while waiting for
//! the answer.

use std::error::Error as StdError;

use keel_proto::error::{Kind, error_detail};
use tonic::{Code, Status};

use crate::address::Address;

/// The lesson of one failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The member is not the leader. Not applied. `leader` is the leader's address,
    /// when the member knew it and it was valid.
    NotLeader {
        /// Where the leader is.
        leader: Option<Address>,
        /// The group whose leader the member means: the one it routed the
        /// key to (0 when it did not say).
        group: u64,
        /// The server's explanation.
        message: String,
    },
    /// No leader is known right now. Not applied.
    NoLeader(String),
    /// The member is overloaded. Not applied.
    Overloaded(String),
    /// The member (the leader) cannot write its log: its disk is full. Not applied.
    DiskFull(String),
    /// The member is shutting down. Not applied.
    ShuttingDown(String),
    /// The key's slot is being handed between groups. Not applied; retry after a
    /// pause.
    SlotMoving {
        /// Whether the group's state machine answered (after its session
        /// lookup), not a node from its map.
        by_group: bool,
        /// The server's explanation.
        message: String,
    },
    /// The group asked does not serve the key's slot (as of cluster map version
    /// `map_version`, 0 if unknown). Not applied.
    WrongGroup {
        /// The map version the answer is based on.
        map_version: u64,
        /// Whether the group's state machine answered (after its session
        /// lookup), not a node from its map.
        by_group: bool,
        /// The server's explanation.
        message: String,
    },
    /// The request never left this process (connection not established). Not applied.
    NotSent(String),
    /// The precondition did not hold (0 = key absent). Not applied; final.
    Conflict {
        /// The key's current version.
        current_version: u64,
    },
    /// Malformed or over a limit. Not applied; final.
    InvalidArgument(String),
    /// The cluster's state forbids the request now (the message says why). Not
    /// applied; final.
    Refused(String),
    /// Refused for a reason outside keel's convention. Not applied; final.
    Rejected {
        /// The gRPC code.
        code: Code,
        /// The status message.
        message: String,
    },
    /// The write's client session, or its sequence number's result, is forgotten.
    /// Not applied by this attempt; an earlier attempt may have applied it.
    SessionExpired(String),
    /// An internal error on the member. A write may have been applied.
    Internal(String),
    /// The request may have reached a member and its fate is unknown.
    Ambiguous(String),
}

impl Failure {
    /// Classifies a status returned by a call to `target`.
    pub(crate) fn from_status(status: &Status, target: &Address) -> Failure {
        let message = || format!("{target}: {}", status.message());
        if let Some(detail) = error_detail(status) {
            match detail.kind() {
                Kind::NotLeader => {
                    return Failure::NotLeader {
                        // A hint we cannot parse is no hint: the caller then rotates.
                        leader: Address::parse(&detail.leader_addr).ok(),
                        group: detail.group,
                        message: message(),
                    };
                }
                Kind::NoLeader => return Failure::NoLeader(message()),
                Kind::Overloaded => return Failure::Overloaded(message()),
                Kind::DiskFull => return Failure::DiskFull(message()),
                Kind::ShuttingDown => return Failure::ShuttingDown(message()),
                Kind::Conflict => {
                    return Failure::Conflict {
                        current_version: detail.current_version,
                    };
                }
                Kind::InvalidArgument => return Failure::InvalidArgument(detail.message),
                // Keys of several groups in one request: retrying cannot help.
                Kind::CrossGroup => return Failure::InvalidArgument(detail.message),
                Kind::SlotMoving => {
                    return Failure::SlotMoving {
                        by_group: detail.by_group,
                        message: message(),
                    };
                }
                Kind::WrongGroup => {
                    return Failure::WrongGroup {
                        map_version: detail.map_version,
                        by_group: detail.by_group,
                        message: message(),
                    };
                }
                Kind::Refused => return Failure::Refused(detail.message),
                Kind::SessionExpired => return Failure::SessionExpired(message()),
                Kind::OutcomeUnknown => return Failure::Ambiguous(message()),
                Kind::Internal => return Failure::Internal(message()),
                // A kind newer than this client: fall back to the code, like a status
                // without a detail.
                Kind::Unspecified => {}
            }
        }
        if never_sent(status) {
            return Failure::NotSent(message());
        }
        match status.code() {
            // Refused before any handler ran (no or a wrong bearer token, a
            // certificate that is not allowed): final, and nothing was applied.
            Code::Unimplemented | Code::Unauthenticated | Code::PermissionDenied => {
                Failure::Rejected {
                    code: status.code(),
                    message: message(),
                }
            }
            Code::InvalidArgument => Failure::InvalidArgument(message()),
            _ => Failure::Ambiguous(message()),
        }
    }

    /// Whether this failure proves the request was not applied (so a write may be
    /// retried).
    pub(crate) fn proves_not_applied(&self) -> bool {
        !matches!(self, Failure::Internal(_) | Failure::Ambiguous(_))
    }

    /// Whether the connection to the member should be dropped: after a transport
    /// failure it may be broken, and a fresh connection also makes the next
    /// "never sent" verdict exact.
    pub(crate) fn taints_connection(&self) -> bool {
        matches!(self, Failure::NotSent(_) | Failure::Ambiguous(_))
    }

    /// A one-line description for logs and for [`crate::Error::Unavailable`].
    pub(crate) fn describe(&self) -> String {
        match self {
            Failure::NotLeader {
                leader: Some(l),
                message,
                ..
            } => format!("not the leader (leader is {l}): {message}"),
            Failure::NotLeader {
                leader: None,
                message,
                ..
            } => format!("not the leader (leader unknown): {message}"),
            Failure::NoLeader(m) => format!("no leader: {m}"),
            Failure::Overloaded(m) => format!("overloaded: {m}"),
            Failure::DiskFull(m) => m.clone(),
            Failure::ShuttingDown(m) => format!("shutting down: {m}"),
            Failure::SlotMoving { message, .. } => {
                format!("slot moving between groups: {message}")
            }
            Failure::WrongGroup {
                map_version,
                message,
                ..
            } => format!("wrong group (cluster map version {map_version}): {message}"),
            Failure::NotSent(m) => format!("could not connect: {m}"),
            Failure::Conflict { current_version } => {
                format!("conflict (current version {current_version})")
            }
            Failure::InvalidArgument(m) => format!("invalid argument: {m}"),
            Failure::Refused(m) => format!("refused: {m}"),
            Failure::SessionExpired(m) => format!("session expired: {m}"),
            Failure::Rejected { code, message } => format!("rejected ({code}): {message}"),
            Failure::Internal(m) => format!("internal error: {m}"),
            Failure::Ambiguous(m) => m.clone(),
        }
    }
}

/// Whether `status` comes from a connection that could not be established, so the
/// request was never written to any socket.
pub(crate) fn never_sent(status: &Status) -> bool {
    let mut cause: Option<&(dyn StdError + 'static)> = status.source();
    while let Some(e) = cause {
        if e.is::<tonic::ConnectError>() || e.is::<crate::mux::NeverSent>() {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keel_proto::error::ErrorDetail;
    use keel_proto::v1::GetRequest;
    use keel_proto::v1::kv_client::KvClient;

    use super::*;

    fn target() -> Address {
        Address::parse("127.0.0.1:1").expect("valid")
    }

    #[test]
    fn server_details_decide() {
        let t = target();
        let hinted = Failure::from_status(&ErrorDetail::not_leader(2, "10.1.1.1:7000").into(), &t);
        assert!(matches!(
            hinted,
            Failure::NotLeader { leader: Some(ref a), .. } if a.to_string() == "10.1.1.1:7000"
        ));
        let garbage_hint = Failure::from_status(&ErrorDetail::not_leader(2, "::::").into(), &t);
        assert!(matches!(
            garbage_hint,
            Failure::NotLeader { leader: None, .. }
        ));
        assert_eq!(
            Failure::from_status(&ErrorDetail::conflict(9).into(), &t),
            Failure::Conflict { current_version: 9 }
        );
        let unknown = Failure::from_status(&ErrorDetail::outcome_unknown("lost lead").into(), &t);
        assert!(!unknown.proves_not_applied());
        let internal = Failure::from_status(&ErrorDetail::internal("fsync").into(), &t);
        assert!(!internal.proves_not_applied());
        for d in [
            ErrorDetail::no_leader(),
            ErrorDetail::overloaded("busy"),
            ErrorDetail::shutting_down(),
            ErrorDetail::slot_moving(3, "moving"),
            ErrorDetail::wrong_group(3, 8, "not here"),
        ] {
            assert!(Failure::from_status(&d.into(), &t).proves_not_applied());
        }
        assert!(matches!(
            Failure::from_status(&ErrorDetail::wrong_group(3, 8, "not here").into(), &t),
            Failure::WrongGroup {
                map_version: 8,
                by_group: false,
                ..
            }
        ));
        let by_group = ErrorDetail::wrong_group(3, 0, "state machine").by_group();
        assert!(matches!(
            Failure::from_status(&by_group.into(), &t),
            Failure::WrongGroup { by_group: true, .. }
        ));
        let moving = ErrorDetail::slot_moving(3, "fenced").by_group();
        assert!(matches!(
            Failure::from_status(&moving.into(), &t),
            Failure::SlotMoving { by_group: true, .. }
        ));
        assert!(matches!(
            Failure::from_status(&ErrorDetail::cross_group("two groups").into(), &t),
            Failure::InvalidArgument(m) if m == "two groups"
        ));
    }

    #[test]
    fn the_detail_wins_over_the_code() {
        // A NOT_LEADER sent with an unusual code is still NOT_LEADER.
        let status = ErrorDetail::no_leader().into_status_with_code(Code::Unknown);
        assert!(matches!(
            Failure::from_status(&status, &target()),
            Failure::NoLeader(_)
        ));
    }

    #[test]
    fn bare_statuses_are_ambiguous_unless_provably_unsent() {
        let t = target();
        // UNAVAILABLE from a connection that broke after sending proves nothing.
        assert!(matches!(
            Failure::from_status(&Status::unavailable("connection reset"), &t),
            Failure::Ambiguous(_)
        ));
        // The same code caused by a failed connect proves the request never left.
        let mut refused = Status::unavailable("connection refused");
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        refused.set_source(Arc::new(tonic::ConnectError(Box::new(io))));
        assert!(matches!(
            Failure::from_status(&refused, &t),
            Failure::NotSent(_)
        ));
        assert!(matches!(
            Failure::from_status(&Status::unimplemented("nope"), &t),
            Failure::Rejected { .. }
        ));
    }

    /// A real tonic call on a lazily connecting channel (the path a pooled connection
    /// takes when it reconnects) to a port with nothing listening.
    #[tokio::test]
    async fn real_refused_connection_is_recognised_as_never_sent() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect_lazy();
        let status = KvClient::new(channel)
            .get(GetRequest::default())
            .await
            .expect_err("nothing listens");
        assert!(never_sent(&status), "{status:?}");
        assert!(matches!(
            Failure::from_status(&status, &target()),
            Failure::NotSent(_)
        ));
    }

    /// The same call to a peer that accepts the connection, reads the request and
    /// hangs up: the request left, so the failure proves nothing.
    #[tokio::test]
    async fn real_hangup_after_sending_is_not_never_sent() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let peer = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            // Server half of the HTTP/2 preface: an empty SETTINGS frame.
            socket
                .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
                .await
                .expect("write");
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.windows(6).any(|w| w == b"marker") {
                let n = socket.read(&mut buf).await.expect("read");
                assert!(n > 0, "client closed before sending the request");
                seen.extend_from_slice(&buf[..n]);
            }
            // Dropping the socket hangs up mid-call.
        });
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect_lazy();
        let request = GetRequest {
            key: bytes::Bytes::from_static(b"marker"),
            ..GetRequest::default()
        };
        let status = KvClient::new(channel)
            .get(request)
            .await
            .expect_err("hung up");
        peer.await.expect("peer saw the request");
        assert!(!never_sent(&status), "{status:?}");
        assert!(matches!(
            Failure::from_status(&status, &target()),
            Failure::Ambiguous(_)
        ));
    }

    #[test]
    fn connect_error_is_found_deep_in_the_chain() {
        #[derive(Debug)]
        struct Wrapper(Box<dyn StdError + Send + Sync>);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "wrapped")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(self.0.as_ref())
            }
        }
        let io = std::io::Error::from(std::io::ErrorKind::TimedOut);
        let chain = Wrapper(Box::new(Wrapper(Box::new(tonic::ConnectError(Box::new(
            io,
        ))))));
        let mut status = Status::unavailable("x");
        status.set_source(Arc::new(chain));
        assert!(never_sent(&status));

        let mut other = Status::unavailable("x");
        other.set_source(Arc::new(Wrapper(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )))));
        assert!(!never_sent(&other));
    }
}
