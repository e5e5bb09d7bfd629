//! A read the run's shared barrier cannot serve (`reads.rs`): its keys belong
//! to a group this node does not host, or to several groups (MGET, EXISTS).
//! Its keys are split by owning group and each part is read on its own:
//!
//! - a group this node hosts: one barrier of the connection's read mode and
//!   one view of this node's replica, as a run's reads;
//! - any other group: one GET per key, forwarded to a member of that group
//!   (`api/group_forward.rs`), each linearizable in the connection's mode.
//!
//! The answers are put back in the order of the command's keys. Each part is
//! consistent on its own; a command spanning groups is not one snapshot
//! across them (nor is a multi-key read from a group this node does not host).

use bytes::Bytes;
use keel_placement::GroupId;
use keel_proto::error::ErrorDetail;
use keel_proto::v1::GetRequest;
use keel_storage::kv::KvStore;

use super::Shared;
use super::answer::error_reply;
use super::command::Read;
use super::conn::ConnState;
use super::groups::KeyGroups;
use super::limits::RedisLimits;
use super::reads::{Prepared, check_keys_served, effective_mode, internal, keys_of};
use super::resp::Reply;
use super::retry::until_leader;
use crate::api::{Forwarding, Hop, Served};

/// Answers `read` alone, part by part.
pub(crate) async fn answer(
    shared: &Shared,
    conn: &ConnState,
    read: &Prepared<'_>,
    groups: &KeyGroups,
) -> Reply {
    let read = match read {
        Prepared::Failed(reply) => return reply.clone(),
        Prepared::Read(read, _) => *read,
    };
    let keys = keys_of(read);
    if keys.is_empty() {
        return Reply::err("internal error: a read without keys was split by group");
    }
    match values(shared, conn, keys, groups).await {
        Ok(values) => reply_of(read, values, &shared.limits),
        Err(e) => error_reply(&e),
    }
}

/// The positions of `keys` per owning group, groups in the order their
/// first key comes.
pub(crate) fn split(groups: &KeyGroups, keys: &[Bytes]) -> Vec<(GroupId, Vec<usize>)> {
    let mut parts: Vec<(GroupId, Vec<usize>)> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let g = groups.owner(key);
        match parts.iter_mut().find(|(pg, _)| *pg == g) {
            Some((_, at)) => at.push(i),
            None => parts.push((g, vec![i])),
        }
    }
    parts
}

/// Each key's value, in the order of `keys`.
async fn values(
    shared: &Shared,
    conn: &ConnState,
    keys: &[Bytes],
    groups: &KeyGroups,
) -> Result<Vec<Option<Bytes>>, ErrorDetail> {
    let parts = split(groups, keys);
    let asks = parts.iter().map(|(g, at)| {
        let part: Vec<Bytes> = at.iter().map(|&i| keys[i].clone()).collect();
        part_values(shared, conn, *g, part)
    });
    let answers = futures::future::join_all(asks).await;
    let mut out = vec![None; keys.len()];
    for ((_, at), answer) in parts.iter().zip(answers) {
        for (&i, value) in at.iter().zip(answer?) {
            out[i] = value;
        }
    }
    Ok(out)
}

/// The values of `keys`, all owned by `group`.
async fn part_values(
    shared: &Shared,
    conn: &ConnState,
    group: GroupId,
    keys: Vec<Bytes>,
) -> Result<Vec<Option<Bytes>>, ErrorDetail> {
    let ctx = &shared.ctx;
    let Some(node) = ctx.hosted(group) else {
        return until_leader(ctx, || remote_values(shared, conn, &keys)).await;
    };
    until_leader(ctx, || async {
        let mode = effective_mode(shared, conn.read_mode, &node);
        let read = |kv: &KvStore| read_keys(kv, &keys);
        match ctx.serve_read(&node, mode, Forwarding::Never, read).await? {
            Served::Here(values) => Ok(values),
            // Never asked to forward, so never told to.
            Served::Forward(_) => Err(ErrorDetail::internal("a Redis read was forwarded")),
        }
    })
    .await
}

/// The values of `keys` from a group this node does not host: one forwarded
/// GET each, all at once.
async fn remote_values(
    shared: &Shared,
    conn: &ConnState,
    keys: &[Bytes],
) -> Result<Vec<Option<Bytes>>, ErrorDetail> {
    let gets = keys.iter().map(|key| {
        let mut req = GetRequest {
            key: key.clone(),
            ..GetRequest::default()
        };
        req.set_read_mode(conn.read_mode);
        shared.ctx.routed_get(req, Forwarding::Never, Hop::Client)
    });
    futures::future::join_all(gets)
        .await
        .into_iter()
        .map(|answer| answer.map(|r| r.kv.map(|kv| kv.value)))
        .collect()
}

/// The values of `keys` from one view of a replica, refused like a write if
/// the group does not serve a key's slot there.
fn read_keys(kv: &KvStore, keys: &[Bytes]) -> Result<Vec<Option<Bytes>>, ErrorDetail> {
    let view = kv.read_view().map_err(internal)?;
    let served = kv.served_slots(&view).map_err(internal)?;
    check_keys_served(served.as_ref(), keys)?;
    keys.iter()
        .map(|k| view.get(k).map(|v| v.map(|(v, _)| v)).map_err(internal))
        .collect()
}

/// The reply of `read` given its keys' values, in its keys' order.
pub(crate) fn reply_of(read: &Read, values: Vec<Option<Bytes>>, limits: &RedisLimits) -> Reply {
    match read {
        Read::Get(_) => values
            .into_iter()
            .next()
            .flatten()
            .map_or(Reply::Nil, Reply::Bulk),
        Read::StrLen(_) => {
            Reply::Int(values.first().cloned().flatten().map_or(0, |v| v.len()) as i64)
        }
        Read::Type(_) => Reply::Simple(if values.first().is_some_and(Option::is_some) {
            "string"
        } else {
            "none"
        }),
        Read::Exists(_) => Reply::Int(values.iter().filter(|v| v.is_some()).count() as i64),
        Read::MGet(keys) => {
            let bytes: usize = keys
                .iter()
                .zip(&values)
                .map(|(k, v)| v.as_ref().map_or(0, |v| k.len() + v.len()))
                .sum();
            if bytes > limits.max_read_bytes {
                return Reply::err(format!(
                    "MGET would return more than {} bytes of keys and values; ask for fewer keys",
                    limits.max_read_bytes
                ));
            }
            Reply::Array(
                values
                    .into_iter()
                    .map(|v| v.map_or(Reply::Nil, Reply::Bulk))
                    .collect(),
            )
        }
        Read::Scan(_) => Reply::err("internal error: SCAN was split by group"),
    }
}

#[cfg(test)]
mod tests {
    use keel_placement::{Slot, slot_for_key};

    use super::*;
    use crate::redis::groups::tests::{groups_with, key_in};
    use crate::redis::tests::limits;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn keys_split_per_group_and_answers_come_back_in_key_order() {
        let groups = groups_with("moved");
        let beside = Slot::new(slot_for_key(b"moved").get() ^ 1).expect("slot");
        let (h1, h2) = (key_in(beside, "a"), key_in(beside, "b"));
        let keys = vec![b(&h1), b("moved"), b(&h2), b("{moved}2")];
        assert_eq!(
            split(&groups, &keys),
            vec![(1, vec![0, 2]), (2, vec![1, 3])]
        );
        // Values as the parts answered them, put back in the keys' order.
        let values = vec![Some(b("1")), None, Some(b("3")), Some(b("4"))];
        assert_eq!(
            reply_of(&Read::MGet(keys.clone()), values.clone(), &limits()),
            Reply::Array(vec![
                Reply::Bulk(b("1")),
                Reply::Nil,
                Reply::Bulk(b("3")),
                Reply::Bulk(b("4")),
            ])
        );
        assert_eq!(
            reply_of(&Read::Exists(keys), values, &limits()),
            Reply::Int(3)
        );
        assert_eq!(
            reply_of(&Read::Get(b("moved")), vec![Some(b("v"))], &limits()),
            Reply::Bulk(b("v"))
        );
        assert_eq!(
            reply_of(&Read::StrLen(b("moved")), vec![None], &limits()),
            Reply::Int(0)
        );
        assert_eq!(
            reply_of(&Read::Type(b("moved")), vec![Some(b(""))], &limits()),
            Reply::Simple("string")
        );
    }

    #[test]
    fn a_split_mget_keeps_the_reply_limit() {
        let big = Bytes::from(vec![b'x'; limits().max_read_bytes]);
        let reply = reply_of(
            &Read::MGet(vec![b("a"), b("b")]),
            vec![Some(big.clone()), Some(big)],
            &limits(),
        );
        assert!(matches!(reply, Reply::Error(e) if e.contains("MGET would return more")));
    }
}
