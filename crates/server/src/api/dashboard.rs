//! The live dashboard: `GET /` serves one self-contained HTML page (inline CSS
//! and script, compiled into the binary, no build step and nothing loaded from
//! elsewhere), which polls `GET /v1/cluster/status` (`status.rs`) once a second.

use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::ApiContext;
use super::http::{Ctx, HttpError, bad_request, param, query_params};
use super::status::DEFAULT_EVENTS;
use crate::timeline::EVENT_CAPACITY;

/// The page, embedded at compile time.
const PAGE: &str = include_str!("../../assets/dashboard.html");

/// What the page may do: run its own inline script and styles, and fetch from
/// this node. Nothing else, so even a sentence that slipped past the page's
/// escaping could not load or send anything.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The page (open: it holds no data).
pub(super) fn page_route() -> Router<Arc<ApiContext>> {
    Router::new().route("/", get(page))
}

/// The page's data (behind the bearer token, when there is one).
pub(super) fn data_route() -> Router<Arc<ApiContext>> {
    Router::new().route("/v1/cluster/status", get(cluster_status))
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

/// `GET /v1/cluster/status?events=N`: N (default 50, at most the 256 kept) is how
/// many of this node's newest event sentences to include.
async fn cluster_status(State(ctx): Ctx, RawQuery(q): RawQuery) -> Result<Response, HttpError> {
    let params = query_params(q)?;
    let events = match param(&params, "events") {
        None | Some("") => DEFAULT_EVENTS,
        Some(n) => n.parse::<usize>().map_err(|_| {
            bad_request(format!("events must be a non-negative integer, got {n:?}"))
        })?,
    };
    let status = ctx.cluster_status(events.min(EVENT_CAPACITY)).await;
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(status)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained() {
        assert!(PAGE.starts_with("<!DOCTYPE html>"));
        // Nothing is loaded from elsewhere (the policy would block it anyway).
        for outside in ["src=\"http", "href=\"http", "@import", "url(http", "//cdn"] {
            assert!(!PAGE.contains(outside), "the page refers to {outside}");
        }
        // Text from the cluster is put in with textContent, never parsed as HTML.
        assert!(!PAGE.contains("innerHTML"), "innerHTML in the page");
        assert!(!PAGE.contains("insertAdjacentHTML"));
        assert!(!PAGE.contains("document.write"));
        assert!(PAGE.contains("/v1/cluster/status"));
        // With a bearer token configured, the page asks for it and sends it.
        assert!(PAGE.contains("\"Authorization\": \"Bearer \" + token"));
    }
}
