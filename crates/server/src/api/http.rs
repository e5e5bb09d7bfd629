//! The HTTP/JSON API (design.md): `/v1/kv/{key}` with GET/PUT/POST/DELETE and
//! If-Match, `/v1/kv?prefix=&limit=`, `/v1/status`, `/healthz`; membership routes
//! are in `http_members.rs`, `POST /v1/txn` in `http_txn.rs`, the dashboard (`/`)
//! and `/v1/cluster/status` in `dashboard.rs`.
//!
//! Any node serves every route: a follower forwards writes and linearizable reads
//! to the leader. Values travel as the raw request body (or `{"value": "..."}` with
//! `Content-Type: application/json`) and come back as JSON text, or base64 when
//! they are not UTF-8, or raw with `?raw=true`. A `Keel-Session` header makes a
//! write exactly-once (`http_session.rs`).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use keel_proto::error::{ErrorDetail, Kind};
use keel_proto::v1::{
    DeleteRequest, GetRequest, Precondition, PutRequest, ReadMode, ScanRequest, precondition,
};
use serde_json::{Value as Json, json};

use super::ApiContext;
use super::group_forward::Hop;
use super::grpc::status_response;
use super::http_session::session_of;
use super::ops::Forwarding;
use crate::auth::{TokenCheck, require_token};
use crate::metrics::ClientOp;
use crate::node::KV_GROUP;
use keel_placement::PLACEMENT_GROUP;

pub(super) type Ctx = State<Arc<ApiContext>>;

/// The router for one node's HTTP API. With `token`, every route but the open
/// ones ([`open_routes`]) requires it.
pub fn router(ctx: Arc<ApiContext>, token: Option<Arc<TokenCheck>>) -> Router {
    // Room for the value plus JSON quoting, so an oversized value gets our clear
    // 413 rather than a generic one.
    let body_limit = ctx.limits.max_value_bytes * 2 + (64 << 10);
    let mut protected = protected_routes();
    if let Some(check) = token {
        protected =
            protected.route_layer(axum::middleware::from_fn_with_state(check, require_token));
    }
    protected
        .merge(open_routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(ctx)
}

/// Routes served without a bearer token: the health probe, the metrics (as
/// etcd does: a scraper or probe rarely carries a client secret, and neither
/// shows keys or values), and the dashboard page itself, a static page that
/// holds no data (it asks for the token and sends it with each status poll).
fn open_routes() -> Router<Arc<ApiContext>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(super::dashboard::page_route())
}

/// Everything else: keys, status, membership, transactions, backups, and the
/// dashboard's data.
fn protected_routes() -> Router<Arc<ApiContext>> {
    Router::new()
        .route("/v1/kv", get(scan))
        .route(
            "/v1/kv/{*key}",
            get(get_key)
                .put(put_key)
                .post(create_key)
                .delete(delete_key),
        )
        .route("/v1/status", get(status))
        .route("/v1/cluster/map", get(cluster_map).post(change_cluster_map))
        .merge(super::dashboard::data_route())
        .merge(super::http_members::routes())
        .merge(super::http_txn::routes())
}

/// `GET /metrics`: Prometheus text exposition (OpenMetrics).
async fn metrics(State(ctx): Ctx) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ctx.metrics.encode(),
    )
}

/// An error response: an HTTP status and keel's error detail as JSON.
#[derive(Debug)]
pub(super) struct HttpError(pub(super) StatusCode, pub(super) ErrorDetail);

impl From<ErrorDetail> for HttpError {
    fn from(d: ErrorDetail) -> Self {
        let code = match d.kind() {
            Kind::NotLeader | Kind::NoLeader | Kind::ShuttingDown | Kind::SlotMoving => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            // Not this group's slot: the client must ask another group, as with
            // a redirect, but there is no single URL to send it to.
            Kind::WrongGroup => StatusCode::MISDIRECTED_REQUEST,
            Kind::CrossGroup => StatusCode::BAD_REQUEST,
            Kind::Conflict => StatusCode::PRECONDITION_FAILED,
            Kind::Refused | Kind::SessionExpired => StatusCode::CONFLICT,
            Kind::InvalidArgument => StatusCode::BAD_REQUEST,
            Kind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            Kind::DiskFull => StatusCode::INSUFFICIENT_STORAGE,
            Kind::OutcomeUnknown => StatusCode::GATEWAY_TIMEOUT,
            Kind::Internal | Kind::Unspecified => StatusCode::INTERNAL_SERVER_ERROR,
        };
        HttpError(code, d)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let HttpError(code, d) = self;
        let mut body = json!({
            "error": d.message,
            "kind": kind_name(d.kind()),
        });
        if d.leader_id != 0 {
            body["leader_id"] = json!(d.leader_id);
            body["leader_addr"] = json!(d.leader_addr);
        }
        if d.kind() == Kind::Conflict {
            body["current_version"] = json!(d.current_version);
        }
        if matches!(d.kind(), Kind::WrongGroup | Kind::SlotMoving) {
            body["slot"] = json!(d.slot);
        }
        if d.kind() == Kind::WrongGroup {
            body["map_version"] = json!(d.map_version);
        }
        (code, axum::Json(body)).into_response()
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::NotLeader => "not_leader",
        Kind::NoLeader => "no_leader",
        Kind::Conflict => "conflict",
        Kind::Refused => "refused",
        Kind::InvalidArgument => "invalid_argument",
        Kind::Overloaded => "overloaded",
        Kind::DiskFull => "disk_full",
        Kind::OutcomeUnknown => "outcome_unknown",
        Kind::ShuttingDown => "shutting_down",
        Kind::SessionExpired => "session_expired",
        Kind::Internal => "internal",
        Kind::WrongGroup => "wrong_group",
        Kind::SlotMoving => "slot_moving",
        Kind::CrossGroup => "cross_group",
        Kind::Unspecified => "unknown",
    }
}

pub(super) fn bad_request(msg: impl Into<String>) -> HttpError {
    HttpError(StatusCode::BAD_REQUEST, ErrorDetail::invalid_argument(msg))
}

/// Decoded query parameters (`application/x-www-form-urlencoded`).
pub(super) fn query_params(raw: Option<String>) -> Result<Vec<(String, String)>, HttpError> {
    let raw = raw.unwrap_or_default();
    serde_urlencoded_pairs(&raw).ok_or_else(|| bad_request("malformed query string"))
}

fn serde_urlencoded_pairs(raw: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for part in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((percent_decode(k)?, percent_decode(v)?));
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

pub(super) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn read_mode(params: &[(String, String)]) -> Result<ReadMode, HttpError> {
    match param(params, "mode") {
        None | Some("") => Ok(ReadMode::Default),
        Some("linearizable") => Ok(ReadMode::Linearizable),
        Some("lease") => Ok(ReadMode::Lease),
        Some("stale") => Ok(ReadMode::Stale),
        Some(other) => Err(bad_request(format!(
            "unknown read mode {other:?}: use linearizable, lease or stale"
        ))),
    }
}

/// `"value"` as text when the bytes are UTF-8, else `"value_base64"`.
pub(super) fn put_bytes(obj: &mut serde_json::Map<String, Json>, field: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            obj.insert(field.to_string(), json!(s));
        }
        Err(_) => {
            obj.insert(format!("{field}_base64"), json!(BASE64.encode(bytes)));
        }
    }
}

fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("digits are a valid header")
}

async fn get_key(
    State(ctx): Ctx,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, HttpError> {
    let params = query_params(q)?;
    let raw = matches!(param(&params, "raw"), Some("true" | "1"));
    let req = GetRequest {
        key: Bytes::from(key.clone()),
        read_mode: read_mode(&params)? as i32,
    };
    let resp = ctx
        .timed(
            ClientOp::Get,
            ctx.routed_get(req, Forwarding::Allowed, Hop::Client),
        )
        .await?;
    let Some(kv) = resp.kv else {
        let body = json!({"error": format!("key {key:?} not found"), "kind": "not_found", "revision": resp.revision});
        return Ok((StatusCode::NOT_FOUND, axum::Json(body)).into_response());
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, etag(kv.version));
    headers.insert("x-keel-revision", HeaderValue::from(resp.revision));
    if raw {
        headers.insert("x-keel-version", HeaderValue::from(kv.version));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        return Ok((headers, kv.value).into_response());
    }
    let mut obj = serde_json::Map::new();
    obj.insert("key".into(), json!(key));
    put_bytes(&mut obj, "value", &kv.value);
    obj.insert("version".into(), json!(kv.version));
    obj.insert("revision".into(), json!(resp.revision));
    Ok((headers, axum::Json(Json::Object(obj))).into_response())
}

/// The value of a PUT/POST: raw body, or `{"value": "..."}` when sent as JSON.
fn body_value(headers: &HeaderMap, body: Bytes, max: usize) -> Result<Bytes, HttpError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let value = if is_json {
        let parsed: Json = serde_json::from_slice(&body)
            .map_err(|e| bad_request(format!("malformed JSON body: {e}")))?;
        match parsed.get("value") {
            Some(Json::String(s)) => Bytes::from(s.clone()),
            _ => return Err(bad_request(r#"a JSON body must be {"value": "<string>"}"#)),
        }
    } else {
        body
    };
    if value.len() > max {
        return Err(HttpError(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorDetail::invalid_argument(format!(
                "the value is {} bytes; the limit is {max}",
                value.len()
            )),
        ));
    }
    Ok(value)
}

/// `If-Match: "N"` (or `N`) → version N; `If-None-Match: *` → must not exist.
fn precondition_of(headers: &HeaderMap) -> Result<Option<Precondition>, HttpError> {
    if let Some(v) = headers.get(header::IF_NONE_MATCH) {
        if v.as_bytes() == b"*" {
            return Ok(Some(Precondition {
                condition: Some(precondition::Condition::Absent(true)),
            }));
        }
        return Err(bad_request("If-None-Match supports only *"));
    }
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = v
        .to_str()
        .map_err(|_| bad_request("If-Match is not text"))?;
    let version: u64 = text
        .trim()
        .trim_matches('"')
        .parse()
        .map_err(|_| bad_request(format!("If-Match must be a version number, got {text:?}")))?;
    Ok(Some(Precondition {
        condition: Some(precondition::Condition::Version(version)),
    }))
}

async fn put_key(
    State(ctx): Ctx,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let value = body_value(&headers, body, ctx.limits.max_value_bytes)?;
    let req = PutRequest {
        key: Bytes::from(key),
        value,
        precondition: precondition_of(&headers)?,
        session: session_of(&headers)?,
    };
    let resp = ctx
        .timed(
            ClientOp::Put,
            ctx.routed_put(req, Forwarding::Allowed, Hop::Client),
        )
        .await?;
    Ok(axum::Json(json!({"revision": resp.revision, "version": resp.revision})).into_response())
}

async fn create_key(
    State(ctx): Ctx,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let value = body_value(&headers, body, ctx.limits.max_value_bytes)?;
    let req = PutRequest {
        key: Bytes::from(key.clone()),
        value,
        precondition: Some(Precondition {
            condition: Some(precondition::Condition::Absent(true)),
        }),
        session: session_of(&headers)?,
    };
    match ctx
        .timed(
            ClientOp::Put,
            ctx.routed_put(req, Forwarding::Allowed, Hop::Client),
        )
        .await
    {
        Ok(resp) => Ok((
            StatusCode::CREATED,
            axum::Json(json!({"revision": resp.revision, "version": resp.revision})),
        )
            .into_response()),
        Err(d) if d.kind() == Kind::Conflict => {
            let body = json!({
                "error": format!("key {key:?} already exists"),
                "kind": "exists",
                "current_version": d.current_version,
            });
            Ok((StatusCode::CONFLICT, axum::Json(body)).into_response())
        }
        Err(d) => Err(d.into()),
    }
}

async fn delete_key(
    State(ctx): Ctx,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let req = DeleteRequest {
        key: Bytes::from(key),
        precondition: precondition_of(&headers)?,
        session: session_of(&headers)?,
    };
    let resp = ctx
        .timed(
            ClientOp::Delete,
            ctx.routed_delete(req, Forwarding::Allowed, Hop::Client),
        )
        .await?;
    Ok(axum::Json(json!({"revision": resp.revision, "deleted": resp.deleted})).into_response())
}

async fn scan(State(ctx): Ctx, RawQuery(q): RawQuery) -> Result<Response, HttpError> {
    let params = query_params(q)?;
    let limit = match param(&params, "limit") {
        None | Some("") => 0,
        Some(l) => l
            .parse::<u32>()
            .map_err(|_| bad_request(format!("limit must be a non-negative integer, got {l:?}")))?,
    };
    let req = ScanRequest {
        prefix: Bytes::from(param(&params, "prefix").unwrap_or("").to_string()),
        limit,
        read_mode: read_mode(&params)? as i32,
        start_after: Bytes::from(param(&params, "start_after").unwrap_or("").to_string()),
        group: 0,
    };
    let resp = ctx
        .timed(ClientOp::Scan, ctx.scan(req, Forwarding::Allowed))
        .await?;
    let items: Vec<Json> = resp
        .kvs
        .iter()
        .map(|kv| {
            let mut obj = serde_json::Map::new();
            put_bytes(&mut obj, "key", &kv.key);
            put_bytes(&mut obj, "value", &kv.value);
            obj.insert("version".into(), json!(kv.version));
            Json::Object(obj)
        })
        .collect();
    Ok(
        axum::Json(json!({"items": items, "more": resp.more, "revision": resp.revision}))
            .into_response(),
    )
}

async fn status(State(ctx): Ctx) -> Response {
    let s = status_response(&ctx);
    let peers: Vec<Json> = s
        .progress
        .iter()
        .map(|p| json!({"id": p.id, "match_index": p.match_index, "next_index": p.next_index, "state": p.state, "active": p.active}))
        .collect();
    axum::Json(json!({
        "id": s.id,
        "cluster_id": format!("{:016x}", s.cluster_id),
        "role": s.role,
        "term": s.term,
        "leader_id": s.leader_id,
        "commit_index": s.commit_index,
        "applied_index": s.applied_index,
        "last_index": s.last_index,
        "address": s.address,
        "http_address": s.http_address,
        "peers": peers,
        "version": s.version,
        "uptime_ms": s.uptime_ms,
        "groups": s.groups.iter().map(|g| json!({
            "group": g.group,
            "role": g.role,
            "term": g.term,
            "leader_id": g.leader_id,
            "commit_index": g.commit_index,
            "applied_index": g.applied_index,
            "last_index": g.last_index,
            "voters": g.voters,
            "learners": g.learners,
            "conf_index": g.conf_index,
            "quiesced": g.quiesced,
        })).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// `GET /v1/cluster/map`: the node's cached cluster map, `{"version": N,
/// "map": {...}}` with the map as keel stores it; 503 while the node has none.
async fn cluster_map(State(ctx): Ctx) -> Result<Response, HttpError> {
    let m = ctx.cluster_map()?;
    let map: Json = serde_json::from_str(&m.map_json)
        .map_err(|e| ErrorDetail::internal(format!("the cached map is not JSON: {e}")))?;
    Ok(axum::Json(json!({"version": m.version, "map": map})).into_response())
}

/// `POST /v1/cluster/map`: applies the command in the body (its stored JSON
/// form, as `Cluster.ChangeMap` takes it) to the cluster map, at the placement
/// leader wherever it is; answers `{"changed": bool, "version": N,
/// "created_group": G (only for a created group), "map": {...}}`.
async fn change_cluster_map(State(ctx): Ctx, body: String) -> Result<Response, HttpError> {
    let request = keel_proto::v1::ChangeMapRequest { command_json: body };
    let r = ctx
        .change_map(request, super::map_change::MapCall::Client)
        .await?;
    let map: Json = serde_json::from_str(&r.map_json)
        .map_err(|e| ErrorDetail::internal(format!("the new map is not JSON: {e}")))?;
    let mut body = json!({"changed": r.changed, "version": r.version, "map": map});
    if r.created_group != 0 {
        body["created_group"] = json!(r.created_group);
    }
    Ok(axum::Json(body).into_response())
}

/// Healthy when group 1 has a leader — or, on a node that joined through
/// placement (outside group 1), when it has a cluster map and every data group
/// it hosts has a leader (a spare hosts none yet).
async fn healthz(State(ctx): Ctx) -> Response {
    let s = ctx.node.status();
    let healthy = if ctx.serves_group(KV_GROUP) {
        s.leader != 0
    } else {
        ctx.maps.current().is_some()
            && ctx
                .groups
                .all()
                .iter()
                .filter(|g| g.group() != KV_GROUP && g.group() != PLACEMENT_GROUP)
                .all(|g| g.status().leader != 0)
    };
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        axum::Json(json!({
            "healthy": healthy,
            "leader_id": s.leader,
            "role": s.role.as_str(),
            "applied_index": s.applied,
        })),
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": "no such route; see /v1/kv, /v1/txn, /v1/members, /v1/status, /v1/cluster/status, /v1/cluster/map (GET; POST a map command), /healthz, /metrics, and the dashboard at /", "kind": "not_found"})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_errors_have_their_own_statuses_and_fields() {
        let HttpError(code, _) = ErrorDetail::slot_moving(9, "moving").into();
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        let HttpError(code, _) = ErrorDetail::cross_group("two groups").into();
        assert_eq!(code, StatusCode::BAD_REQUEST);
        let response = HttpError::from(ErrorDetail::wrong_group(9, 12, "not here")).into_response();
        assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
        let HttpError(_, detail) = ErrorDetail::wrong_group(9, 12, "not here").into();
        assert_eq!(kind_name(detail.kind()), "wrong_group");
    }

    #[test]
    fn query_decoding() {
        let p = serde_urlencoded_pairs("prefix=a%2Fb&limit=5&x").expect("valid");
        assert_eq!(param(&p, "prefix"), Some("a/b"));
        assert_eq!(param(&p, "limit"), Some("5"));
        assert_eq!(param(&p, "x"), Some(""));
        assert!(serde_urlencoded_pairs("a=%zz").is_none());
        assert!(serde_urlencoded_pairs("a=%f").is_none());
    }

    #[test]
    fn preconditions_from_headers() {
        let mut h = HeaderMap::new();
        assert!(precondition_of(&h).expect("ok").is_none());
        h.insert(header::IF_MATCH, HeaderValue::from_static("\"7\""));
        let p = precondition_of(&h).expect("ok").expect("some");
        assert_eq!(p.condition, Some(precondition::Condition::Version(7)));
        h.insert(header::IF_MATCH, HeaderValue::from_static("seven"));
        assert!(precondition_of(&h).is_err());
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        let p = precondition_of(&h).expect("ok").expect("some");
        assert_eq!(p.condition, Some(precondition::Condition::Absent(true)));
    }

    #[test]
    fn json_body_rules() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert_eq!(
            body_value(&h, Bytes::from_static(br#"{"value":"v"}"#), 10).ok(),
            Some(Bytes::from_static(b"v"))
        );
        assert!(body_value(&h, Bytes::from_static(b"{not json"), 10).is_err());
        assert!(body_value(&h, Bytes::from_static(br#"{"value":1}"#), 10).is_err());
        let raw = HeaderMap::new();
        assert!(body_value(&raw, Bytes::from_static(b"0123456789x"), 10).is_err());
    }
}
