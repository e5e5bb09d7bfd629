//! A connection that adds the bearer token to every request.

use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http::{HeaderValue, Request, header};
use tonic::transport::Channel;

use crate::token::BearerToken;

/// A gRPC channel that sends `authorization: Bearer <token>` with each request
/// (or nothing, without a token). Cheap to clone, like the channel it wraps.
#[derive(Clone, Debug)]
pub struct AuthChannel {
    inner: Channel,
    authorization: Option<HeaderValue>,
}

impl AuthChannel {
    /// Wraps `inner`; requests carry `token`, if any.
    pub fn new(inner: Channel, token: Option<&BearerToken>) -> Self {
        AuthChannel {
            inner,
            authorization: token.map(BearerToken::header_value),
        }
    }
}

impl Service<Request<Body>> for AuthChannel {
    type Response = <Channel as Service<Request<Body>>>::Response;
    type Error = <Channel as Service<Request<Body>>>::Error;
    type Future = <Channel as Service<Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        if let Some(v) = &self.authorization {
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, v.clone());
        }
        self.inner.call(request)
    }
}
