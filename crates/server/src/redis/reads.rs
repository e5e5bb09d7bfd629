//! Reads: a run of consecutive pipelined read commands shares one barrier of the
//! connection's read mode (one ReadIndex round, or a lease check) and is then
//! answered in order from one consistent view of local state, so the run sees
//! every write acknowledged before it and each later command sees at least what
//! an earlier one saw, as in Redis.
//!
//! `lease` mode on a follower is served as `linearizable` (ReadIndex through the
//! leader): only the leader holds a lease, and a Redis client cannot be sent
//! there.
//!
//! A run is served by the group owning its keys (`groups.rs`): the longest
//! start of the run whose keys all belong to one group this node hosts shares
//! that group's barrier and view (every run, while one group owns every slot).
//! A read whose keys belong to a group this node does not host, or to several
//! groups (MGET, EXISTS), is answered alone, part by part (`split_reads.rs`).
//! SCAN reads group 1 while it owns every slot, and every group that owns
//! slots once they are split (`scan_groups.rs`).

use bytes::Bytes;
use keel_placement::{GroupId, slot_for_key};
use keel_proto::error::ErrorDetail;
use keel_proto::v1::ReadMode;
use keel_storage::kv::{KvReadView, KvStore, NotServed, SlotState, SlotTable};

use super::Shared;
use super::command::Read;
use super::conn::ConnState;
use super::groups::KeyGroups;
use super::limits::RedisLimits;
use super::resp::Reply;
use super::retry::until_leader;
use super::scan::Pattern;
use crate::api::{Forwarding, Served};
use crate::config::DefaultReadMode;
use crate::node::{KV_GROUP, NodeHandle};

/// A read ready to run: a SCAN's cursor already turned into its resume key.
pub(crate) enum Prepared<'a> {
    Read(&'a Read, Option<Bytes>),
    Failed(Reply),
}

/// A read's answer before SCAN's next cursor is issued.
enum Answer {
    Reply(Reply),
    Page {
        keys: Vec<Bytes>,
        next: Option<Bytes>,
    },
}

/// Answers a prefix of `reads` (at least one), in order: as many as fit in one
/// read budget (`RedisLimits::max_read_bytes`), so a pipeline of large values is
/// answered in parts. The caller calls again for the rest.
pub(crate) async fn run(shared: &Shared, conn: &ConnState, reads: &[&Read]) -> Vec<Reply> {
    let prepared: Vec<Prepared<'_>> = {
        let cursors = shared.lock_cursors();
        reads
            .iter()
            .map(|r| match r {
                Read::Scan(s) => match cursors.resume_after(s.cursor) {
                    Ok(start) => Prepared::Read(r, start),
                    Err(reply) => Prepared::Failed(reply),
                },
                _ => Prepared::Read(r, None),
            })
            .collect()
    };
    let ctx = &shared.ctx;
    let limits = &shared.limits;
    let owners = ctx.scan_owners();
    let spans = super::scan_groups::spans_groups(&owners);
    if spans && let Prepared::Read(Read::Scan(args), start) = &prepared[0] {
        return vec![super::scan_groups::scan(shared, &owners, args, start.clone()).await];
    }
    let groups = KeyGroups::now(ctx);
    let (count, group) = one_group_prefix(&groups, &prepared, spans);
    let hosted = match count {
        0 => None,
        _ => ctx.hosted(group.unwrap_or(KV_GROUP)),
    };
    let Some(node) = hosted else {
        return vec![super::split_reads::answer(shared, conn, &prepared[0], &groups).await];
    };
    let prepared = &prepared[..count];
    let served = until_leader(ctx, || async {
        let mode = effective_mode(shared, conn.read_mode, &node);
        let read = |kv: &KvStore| answer_all(kv, prepared, limits);
        match ctx.serve_read(&node, mode, Forwarding::Never, read).await? {
            Served::Here(answers) => Ok(answers),
            // Never asked to forward, so never told to.
            Served::Forward(_) => Err(ErrorDetail::internal("a Redis read was forwarded")),
        }
    })
    .await;
    match served {
        Ok(answers) => answers.into_iter().map(|a| finish(shared, a)).collect(),
        // The whole run failed alike: every read gets the error, none is retried.
        Err(e) => vec![super::answer::error_reply(&e); count],
    }
}

/// How many reads at the start of `reads` have keys of one group only, all
/// the same, and that group (`None` if none of them names a key). SCAN counts
/// as group 1's while group 1 owns every slot, and otherwise ends the run
/// (`spans`: it is answered alone, over every group); a read that failed
/// already fits anywhere.
fn one_group_prefix(
    groups: &KeyGroups,
    reads: &[Prepared<'_>],
    spans: bool,
) -> (usize, Option<GroupId>) {
    let mut group = None;
    for (i, r) in reads.iter().enumerate() {
        let own = match r {
            Prepared::Failed(_) => continue,
            Prepared::Read(Read::Scan(_), _) if spans => return (i, group),
            Prepared::Read(Read::Scan(_), _) => KV_GROUP,
            Prepared::Read(read, _) => match groups.single(keys_of(read).iter().map(|k| &k[..])) {
                Ok(g) => g,
                Err(_) => return (i, group),
            },
        };
        match group {
            None => group = Some(own),
            Some(g) if g != own => return (i, group),
            Some(_) => {}
        }
    }
    (reads.len(), group)
}

/// The keys a read names (none for SCAN, which spans slots).
pub(crate) fn keys_of(read: &Read) -> &[Bytes] {
    match read {
        Read::Get(key) | Read::StrLen(key) | Read::Type(key) => std::slice::from_ref(key),
        Read::Exists(keys) | Read::MGet(keys) => keys,
        Read::Scan(_) => &[],
    }
}

/// The mode a read is served in by this node's replica `node` (see the module
/// docs).
pub(crate) fn effective_mode(shared: &Shared, asked: ReadMode, node: &NodeHandle) -> ReadMode {
    let mode = match asked {
        ReadMode::Default => match shared.ctx.limits.default_read_mode {
            DefaultReadMode::Linearizable => ReadMode::Linearizable,
            DefaultReadMode::Lease => ReadMode::Lease,
            DefaultReadMode::Stale => ReadMode::Stale,
        },
        m => m,
    };
    if mode == ReadMode::Lease && node.leader() != shared.ctx.id {
        return ReadMode::Linearizable;
    }
    mode
}

/// Issues SCAN's next cursor and builds the reply.
fn finish(shared: &Shared, answer: Answer) -> Reply {
    match answer {
        Answer::Reply(r) => r,
        Answer::Page { keys, next } => page_reply(shared, keys, next),
    }
}

/// A SCAN page: the cursor that resumes after `next` (0: done) and the keys.
pub(crate) fn page_reply(shared: &Shared, keys: Vec<Bytes>, next: Option<Bytes>) -> Reply {
    let cursor = match next {
        Some(key) => shared.lock_cursors().issue(key),
        None => 0,
    };
    Reply::Array(vec![
        Reply::text_bulk(&cursor.to_string()),
        Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
    ])
}

pub(crate) fn internal(e: keel_storage::kv::KvError) -> ErrorDetail {
    ErrorDetail::internal(format!("state machine read failed: {e}"))
}

/// Answers reads from one view until the budget is spent.
fn answer_all(
    kv: &KvStore,
    reads: &[Prepared<'_>],
    limits: &RedisLimits,
) -> Result<Vec<Answer>, ErrorDetail> {
    let view = kv.read_view().map_err(internal)?;
    let served = kv.served_slots(&view).map_err(internal)?;
    let mut out = Vec::with_capacity(reads.len());
    let mut spent = 0usize;
    for r in reads {
        if spent >= limits.max_read_bytes {
            break;
        }
        let (answer, bytes) = match r {
            Prepared::Failed(reply) => (Answer::Reply(reply.clone()), 0),
            Prepared::Read(read, start) => {
                check_served(served.as_ref(), read)?;
                answer_one(kv, &view, read, start.as_ref(), limits)?
            }
        };
        spent += bytes;
        out.push(answer);
    }
    Ok(out)
}

/// Refuses a read of a key whose slot this group does not serve in the view
/// (`served`: the view's slot table, `None` when every slot is served), with
/// the answer a write gets. A SCAN by prefix spans slots; it is not checked
/// here (it reads group 1 here only while group 1 owns every slot).
fn check_served(served: Option<&SlotTable>, read: &Read) -> Result<(), ErrorDetail> {
    check_keys_served(served, keys_of(read))
}

/// [`check_served`] for a list of keys.
pub(crate) fn check_keys_served(
    served: Option<&SlotTable>,
    keys: &[Bytes],
) -> Result<(), ErrorDetail> {
    let Some(table) = served else {
        return Ok(());
    };
    for key in keys {
        let slot = slot_for_key(key);
        let state = table.get(slot);
        if state != SlotState::Serving {
            return Err(crate::api::not_served(NotServed { slot, state }));
        }
    }
    Ok(())
}

/// One read's answer and the bytes it carries.
fn answer_one(
    kv: &KvStore,
    view: &KvReadView,
    read: &Read,
    start: Option<&Bytes>,
    limits: &RedisLimits,
) -> Result<(Answer, usize), ErrorDetail> {
    let get = |key: &Bytes| view.get(key).map_err(internal);
    let (reply, bytes) = match read {
        Read::Get(key) => match get(key)? {
            Some((value, _)) => {
                let bytes = value.len();
                (Reply::Bulk(value), bytes)
            }
            None => (Reply::Nil, 0),
        },
        Read::StrLen(key) => {
            let len = get(key)?.map_or(0, |(v, _)| v.len());
            (Reply::Int(len as i64), 0)
        }
        Read::Type(key) => {
            let kind = if get(key)?.is_some() {
                "string"
            } else {
                "none"
            };
            (Reply::Simple(kind), 0)
        }
        Read::Exists(keys) => {
            let mut n = 0i64;
            for key in keys {
                n += i64::from(get(key)?.is_some());
            }
            (Reply::Int(n), 0)
        }
        Read::MGet(keys) => {
            let mut values = Vec::with_capacity(keys.len());
            let mut bytes = 0usize;
            for key in keys {
                let value = get(key)?.map(|(v, _)| v);
                bytes += value.as_ref().map_or(0, |v| key.len() + v.len());
                if bytes > limits.max_read_bytes {
                    let reply = Reply::err(format!(
                        "MGET would return more than {} bytes of keys and values; ask for fewer keys",
                        limits.max_read_bytes
                    ));
                    return Ok((Answer::Reply(reply), 0));
                }
                values.push(value.map_or(Reply::Nil, Reply::Bulk));
            }
            (Reply::Array(values), bytes)
        }
        Read::Scan(args) => {
            if !args.strings_only {
                let page = Answer::Page {
                    keys: vec![],
                    next: None,
                };
                return Ok((page, 0));
            }
            let (keys, next) = match &args.pattern {
                Pattern::Exact(key) => {
                    let found = get(key)?.is_some();
                    (if found { vec![key.clone()] } else { vec![] }, None)
                }
                Pattern::Prefix(prefix) => {
                    let after = start.map(|s| &s[..]);
                    let (keys, more) = kv
                        .scan_keys(prefix, after, args.count, limits.max_read_bytes)
                        .map_err(internal)?;
                    let next = if more { keys.last().cloned() } else { None };
                    (keys, next)
                }
            };
            let bytes = keys.iter().map(Bytes::len).sum();
            return Ok((Answer::Page { keys, next }, bytes));
        }
    };
    Ok((Answer::Reply(reply), bytes))
}

#[cfg(test)]
mod tests {
    use keel_placement::Slot;

    use super::*;
    use crate::redis::groups::tests::{groups_with, key_in};
    use crate::redis::scan::ScanArgs;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn a_run_shares_a_barrier_only_while_its_keys_stay_in_one_group() {
        let groups = groups_with("moved");
        let beside = Slot::new(slot_for_key(b"moved").get() ^ 1).expect("slot");
        let here = b(&key_in(beside, "h"));
        let get_here = Read::Get(here.clone());
        let get_there = Read::Get(b("moved"));
        let mget_both = Read::MGet(vec![here.clone(), b("moved")]);
        let scan = Read::Scan(ScanArgs {
            cursor: 0,
            pattern: Pattern::Prefix(Bytes::new()),
            count: 10,
            strings_only: true,
        });
        let failed = Prepared::Failed(Reply::err("bad cursor"));
        let run = |reads: Vec<Prepared<'_>>| one_group_prefix(&groups, &reads, true);

        // Without a map, one group owns everything: the whole run.
        let all = [&get_here, &get_there, &mget_both, &scan];
        let prepared: Vec<Prepared<'_>> = all.iter().map(|r| Prepared::Read(r, None)).collect();
        assert_eq!(
            one_group_prefix(&KeyGroups::default(), &prepared, false),
            (4, Some(1))
        );
        // With the map: a SCAN spans both groups, so it ends group 1's run
        // (it is answered alone, over every group); group 2's GET would too.
        assert_eq!(
            run(vec![
                Prepared::Read(&get_here, None),
                Prepared::Read(&scan, None),
                Prepared::Read(&get_there, None),
            ]),
            (1, Some(1))
        );
        assert_eq!(
            run(vec![
                Prepared::Read(&get_there, None),
                Prepared::Read(&get_there, None),
                Prepared::Read(&scan, None),
            ]),
            (2, Some(2))
        );
        // A read of two groups goes alone; a failed read fits anywhere.
        assert_eq!(run(vec![Prepared::Read(&mget_both, None)]), (0, None));
        assert_eq!(
            run(vec![
                failed,
                Prepared::Read(&get_here, None),
                Prepared::Read(&mget_both, None),
            ]),
            (2, Some(1))
        );
    }
}
