//! HTTP routes for membership and replica comparison:
//!
//! - `GET /v1/members`: the configuration in force (the leader adds progress;
//!   a node outside group 1 asks a member of group 1);
//! - `POST /v1/members` with `{"id": 4, "address": "host:port", "learner": false}`;
//! - `DELETE /v1/members/{id}`;
//! - `POST /v1/members/{id}/promote`;
//! - `GET /v1/digest`: a fingerprint of this node's state machine (refused on a
//!   node outside group 1, which has none to compare); `?group=G` of its
//!   replica of data group G.
//!
//! A follower forwards changes to the leader, like writes; a node outside
//! group 1 asks group 1's members (`group1_calls.rs`).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keel_proto::v1::{
    AddMemberRequest, Member, MembersResponse, PromoteMemberRequest, RemoveMemberRequest,
};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::ApiContext;
use super::http::{Ctx, HttpError, bad_request};
use super::ops::Forwarding;

/// The membership routes (merged into the main router).
pub(super) fn routes() -> Router<Arc<ApiContext>> {
    Router::new()
        .route("/v1/members", get(list).post(add))
        .route("/v1/members/{id}", axum::routing::delete(remove))
        .route("/v1/members/{id}/promote", post(promote))
        .route("/v1/digest", get(digest))
}

fn member_json(m: &Member) -> Json {
    json!({
        "id": m.id,
        "address": m.address,
        "voter": m.voter,
        "promote_when_caught_up": m.promote_when_caught_up,
        "match_index": m.match_index,
        "active": m.active,
    })
}

fn members_json(members: &[Member]) -> Json {
    Json::Array(members.iter().map(member_json).collect())
}

fn list_json(l: &MembersResponse) -> Json {
    json!({
        "members": members_json(&l.members),
        "leader_id": l.leader_id,
        "config_index": l.config_index,
        "change_in_progress": l.change_in_progress,
        "cluster_id": format!("{:016x}", l.cluster_id),
    })
}

async fn list(State(ctx): Ctx) -> Result<Response, HttpError> {
    let list = ctx.members_answer().await?;
    Ok(axum::Json(list_json(&list)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    id: u64,
    address: String,
    #[serde(default)]
    learner: bool,
}

async fn add(State(ctx): Ctx, body: Bytes) -> Result<Response, HttpError> {
    let b: AddBody = serde_json::from_slice(&body).map_err(|e| {
        bad_request(format!(
            "body must be {{\"id\": N, \"address\": \"host:port\", \"learner\": false}}: {e}"
        ))
    })?;
    let req = AddMemberRequest {
        id: b.id,
        address: b.address,
        learner: b.learner,
    };
    let out = ctx.add_member(req, Forwarding::Allowed).await?;
    Ok(axum::Json(json!({
        "index": out.index,
        "members": members_json(&out.members),
    }))
    .into_response())
}

fn member_id(raw: &str) -> Result<u64, HttpError> {
    match raw.parse::<u64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(bad_request(format!("{raw:?} is not a member id"))),
    }
}

async fn remove(State(ctx): Ctx, Path(id): Path<String>) -> Result<Response, HttpError> {
    let req = RemoveMemberRequest {
        id: member_id(&id)?,
    };
    let out = ctx.remove_member(req, Forwarding::Allowed).await?;
    Ok(axum::Json(json!({
        "index": out.index,
        "members": members_json(&out.members),
    }))
    .into_response())
}

async fn promote(State(ctx): Ctx, Path(id): Path<String>) -> Result<Response, HttpError> {
    let req = PromoteMemberRequest {
        id: member_id(&id)?,
    };
    let out = ctx.promote_member(req, Forwarding::Allowed).await?;
    Ok(axum::Json(json!({
        "index": out.index,
        "members": members_json(&out.members),
    }))
    .into_response())
}

/// `GET /v1/digest[?group=G]`.
#[derive(Debug, Deserialize)]
struct DigestQuery {
    #[serde(default)]
    group: u64,
}

async fn digest(
    State(ctx): Ctx,
    query: Result<Query<DigestQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    let Query(q) = query.map_err(|e| bad_request(format!("bad query: {e}")))?;
    let d = ctx.digest(q.group).await?;
    Ok(axum::Json(json!({
        "applied_index": d.applied_index,
        "keys": d.keys,
        "hash": d.hash,
    }))
    .into_response())
}
