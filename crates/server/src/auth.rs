//! The optional bearer token on client requests (`--auth-token-file`).
//!
//! Every request on the client protocols must carry `authorization: Bearer
//! <token>` (gRPC metadata or HTTP header); the token is compared in constant
//! time. A missing or wrong token is refused before any handler runs
//! (UNAUTHENTICATED, HTTP 401), so nothing changes. Peer traffic (the Raft
//! service) is authenticated by mutual TLS instead and never carries the token;
//! a node that forwards a client request to the leader sends its own copy.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keel_client::BearerToken;
use subtle::ConstantTimeEq as _;

use crate::log_limit::{LogLimit, left_out};
use crate::metrics::Metrics;

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No `authorization` header, or not `Bearer <token>`.
    Missing,
    /// A bearer token that is not this cluster's.
    Wrong,
}

impl Refusal {
    /// The label of the `keel_auth_failures_total` metric.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "missing_token",
            Refusal::Wrong => "wrong_token",
        }
    }

    /// What the client is told.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Missing => {
                "this cluster requires a bearer token: send `authorization: Bearer <token>`"
            }
            Refusal::Wrong => "the bearer token is wrong",
        }
    }
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Checks requests against the cluster's token.
#[derive(Debug)]
pub struct TokenCheck {
    token: BearerToken,
    metrics: Arc<Metrics>,
    log: LogLimit,
}

impl TokenCheck {
    /// Checks against `token`, counting refusals in `metrics`.
    pub fn new(token: BearerToken, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(TokenCheck {
            token,
            metrics,
            log: LogLimit::default(),
        })
    }

    /// Checks an `authorization` header value.
    pub fn verify(&self, authorization: Option<&[u8]>) -> Result<(), Refusal> {
        let presented = authorization
            .and_then(|v| strip_bearer(v))
            .ok_or(Refusal::Missing)?;
        if constant_time_eq(presented, self.token.secret().as_bytes()) {
            Ok(())
        } else {
            Err(Refusal::Wrong)
        }
    }

    /// Checks a password (Redis AUTH) against the token; a refusal is counted
    /// and logged like a wrong bearer token.
    pub fn admit_password(
        &self,
        listener: &'static str,
        from: Option<std::net::SocketAddr>,
        password: &[u8],
    ) -> bool {
        let verdict = if constant_time_eq(password, self.token.secret().as_bytes()) {
            Ok(())
        } else {
            Err(Refusal::Wrong)
        };
        self.record(listener, from, verdict).is_ok()
    }

    /// Checks, and on refusal counts and logs it (`listener`, `from`).
    fn admit(
        &self,
        listener: &'static str,
        from: Option<std::net::SocketAddr>,
        authorization: Option<&[u8]>,
    ) -> Result<(), Refusal> {
        self.record(listener, from, self.verify(authorization))
    }

    /// Counts and logs a refusal.
    fn record(
        &self,
        listener: &'static str,
        from: Option<std::net::SocketAddr>,
        verdict: Result<(), Refusal>,
    ) -> Result<(), Refusal> {
        verdict.inspect_err(|r| {
            self.metrics.auth_failed(listener, r.reason());
            if let Some(n) = self.log.admit() {
                let from = from.map_or_else(|| "a client".to_string(), |a| a.to_string());
                tracing::warn!(
                    listener,
                    "refused a request from {from}: {}{}",
                    r.message(),
                    left_out(n)
                );
            }
        })
    }
}

/// The token of `Bearer <token>` (the scheme in any case).
fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

/// The gRPC interceptor of the client services: passes everything without a
/// token configured.
#[derive(Clone, Debug, Default)]
pub struct GrpcAuth(pub Option<Arc<TokenCheck>>);

impl tonic::service::Interceptor for GrpcAuth {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let Some(check) = &self.0 else {
            return Ok(request);
        };
        let value = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        match check.admit("grpc", request.remote_addr(), value) {
            Ok(()) => Ok(request),
            Err(r) => Err(tonic::Status::unauthenticated(r.message())),
        }
    }
}

/// The HTTP middleware of the protected routes.
pub async fn require_token(
    State(check): State<Arc<TokenCheck>>,
    request: Request,
    next: Next,
) -> Response {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match check.admit("http", None, value) {
        Ok(()) => next.run(request).await,
        Err(r) => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"keel\"")],
            axum::Json(serde_json::json!({
                "error": r.message(),
                "kind": "unauthenticated",
            })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> Arc<TokenCheck> {
        TokenCheck::new(
            BearerToken::new("right-token").expect("valid"),
            Arc::new(Metrics::new()),
        )
    }

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn bearer_tokens_are_checked() {
        let c = check();
        assert_eq!(c.verify(Some(b"Bearer right-token")), Ok(()));
        assert_eq!(c.verify(Some(b"bearer right-token ")), Ok(()));
        assert_eq!(c.verify(Some(b"Bearer wrong-token")), Err(Refusal::Wrong));
        assert_eq!(c.verify(Some(b"Bearer right-tokenX")), Err(Refusal::Wrong));
        assert_eq!(c.verify(Some(b"Bearer ")), Err(Refusal::Wrong));
        assert_eq!(c.verify(Some(b"Basic dXNlcjpwdw==")), Err(Refusal::Missing));
        assert_eq!(c.verify(Some(b"right-token")), Err(Refusal::Missing));
        assert_eq!(c.verify(None), Err(Refusal::Missing));
    }

    #[test]
    fn the_interceptor_refuses_without_the_token_and_passes_with_it() {
        use tonic::service::Interceptor as _;
        let mut auth = GrpcAuth(Some(check()));
        let status = auth
            .call(tonic::Request::new(()))
            .expect_err("no token is refused");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        let mut good = tonic::Request::new(());
        good.metadata_mut().insert(
            "authorization",
            "Bearer right-token".parse().expect("ascii"),
        );
        auth.call(good).expect("the right token passes");
        let mut open = GrpcAuth(None);
        open.call(tonic::Request::new(()))
            .expect("no token configured: open");
    }
}
