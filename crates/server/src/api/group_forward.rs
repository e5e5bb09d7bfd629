//! Key operations for a group this node does not host (docs/sharding.md,
//! *Routing*): instead of answering `WRONG_GROUP`, the node forwards the call
//! one hop to a member of the group that owns the key's slot in its cached
//! map, so HTTP, `curl`, the Redis protocol and gRPC clients without a map
//! work against any node.
//!
//! Whom to ask: the group's leader if a member named it in a NOT_LEADER
//! answer (or it answered a write), then the group's members in the map's
//! order, never this node. A member that does not lead answers a forwarded
//! write (or lease read) with NOT_LEADER and the leader's address, which is
//! asked next, a few times at most. Every forwarded call carries
//! [`GROUP_FORWARDED_HEADER`], and a node that receives one never forwards it
//! again: it serves the call from its own replica or answers `WRONG_GROUP`
//! itself if its map disagrees, so stale maps cannot pass a call around.
//!
//! Errors keep their meaning: only answers proving nothing was applied
//! (NOT_LEADER, NO_LEADER, SHUTTING_DOWN, WRONG_GROUP, a refused connection)
//! move on to the next member; anything else — a definite refusal, or a write
//! whose outcome is unknown — goes back to the client as it came.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use keel_client::AuthChannel;
use keel_placement::{ClusterMap, GroupId, Slot, slot_for_key};
use keel_proto::error::{ErrorDetail, Kind};
use keel_proto::v1::kv_client::KvClient;
use keel_raft::NodeId;

use super::forward::{Forwarder, call_leader};
use super::route::single_owner;
use super::{ApiContext, DetailExt};

/// gRPC metadata marking a key operation forwarded by another node because
/// that node does not host the key's group (or a group 1 cluster call
/// forwarded by a node outside group 1: `group1_calls.rs`). Such a call is
/// never forwarded again.
pub(crate) const GROUP_FORWARDED_HEADER: &str = "keel-group-forwarded";

/// Leader hints followed within one call.
const MAX_REDIRECTS: usize = 3;

/// How a key operation reached this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hop {
    /// From a client (or this node's own front ends): may be forwarded once.
    Client,
    /// Forwarded by another node: served here or refused, never sent on.
    Forwarded,
}

impl Hop {
    /// The hop a gRPC call made, from its metadata.
    pub(crate) fn of(metadata: &tonic::metadata::MetadataMap) -> Hop {
        if metadata.contains_key(GROUP_FORWARDED_HEADER) {
            Hop::Forwarded
        } else {
            Hop::Client
        }
    }
}

/// A group that owns a request's keys and that this node does not host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RemoteGroup {
    /// The group.
    pub(crate) group: GroupId,
    /// The slot of the request's first key (for the error if no member answers).
    pub(crate) slot: Slot,
    /// Its members' gRPC addresses by the map, in id order.
    pub(crate) members: Vec<(NodeId, String)>,
}

/// The last leader address learned per group this node forwards to.
#[derive(Debug, Default)]
pub(crate) struct GroupLeaders {
    hints: Mutex<HashMap<GroupId, String>>,
}

impl GroupLeaders {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<GroupId, String>> {
        // A hint is only a preference; a panic meanwhile leaves a usable map.
        self.hints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The address believed to lead `group`, if any.
    pub(crate) fn get(&self, group: GroupId) -> Option<String> {
        self.lock().get(&group).cloned()
    }

    /// Remembers `addr` as `group`'s leader.
    pub(crate) fn set(&self, group: GroupId, addr: &str) {
        let mut hints = self.lock();
        if hints.get(&group).map(String::as_str) != Some(addr) {
            hints.insert(group, addr.to_string());
        }
    }

    /// Forgets `addr` as `group`'s leader (it did not lead, or was down).
    pub(crate) fn forget(&self, group: GroupId, addr: &str) {
        let mut hints = self.lock();
        if hints.get(&group).map(String::as_str) == Some(addr) {
            hints.remove(&group);
        }
    }
}

impl ApiContext {
    /// The group to forward a request over `keys` to: `Some` only for a call
    /// from a client ([`Hop::Client`]) whose keys all belong, by the cached
    /// map, to one group this node does not host and whose members the map
    /// names. Everything else (hosted, no map, keys of several groups, a
    /// forwarded call) is served, or refused, here.
    pub(crate) fn remote_owner<'a>(
        &self,
        hop: Hop,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) -> Option<RemoteGroup> {
        if hop == Hop::Forwarded {
            return None;
        }
        let slots: Vec<Slot> = keys.into_iter().map(slot_for_key).collect();
        let hosts = |g: GroupId| self.serves_group(g);
        self.maps
            .with(|cached| remote_of(cached.map(|c| &*c.map), &slots, self.id, hosts))
    }

    /// Sends `req` to a member of `remote` (see the module docs) and returns
    /// its answer. `is_write` says whether a transport failure after sending
    /// leaves the outcome unknown.
    pub(crate) async fn forward_to_group<Req, T, Fut>(
        &self,
        remote: RemoteGroup,
        is_write: bool,
        req: Req,
        call: impl Fn(KvClient<AuthChannel>, tonic::Request<Req>) -> Fut,
    ) -> Result<T, ErrorDetail>
    where
        Req: Clone,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let to = Members {
            group: remote.group,
            members: &remote.members,
            is_write,
        };
        self.ask_members(to, req, Forwarder::client, call)
            .await
            .map_err(|last| exhausted(self.id, &remote, last))
    }

    /// Makes `call` on the members of `to.group` (see the module docs: the
    /// hinted leader first, then each member; leader hints followed; only an
    /// answer proving nothing was applied moves on), over a client `connect`
    /// makes, until one answers. Key operations ([`Self::forward_to_group`])
    /// and group 1's cluster calls on a node outside group 1
    /// (`group1_calls.rs`) both go this way. When no member answered: the
    /// last error, if any member was asked.
    pub(crate) async fn ask_members<C, Req, T, Fut>(
        &self,
        to: Members<'_>,
        req: Req,
        connect: impl Fn(&Forwarder, &str) -> Result<C, ErrorDetail>,
        call: impl Fn(C, tonic::Request<Req>) -> Fut,
    ) -> Result<T, Option<ErrorDetail>>
    where
        Req: Clone,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let Members {
            group,
            members,
            is_write,
        } = to;
        let mut queue = targets(self.group_leaders.get(group).as_deref(), members);
        // Used as a stack: the first target on top.
        queue.reverse();
        let deadline = Instant::now() + self.limits.request_timeout;
        let mut redirects = 0;
        let mut last: Option<ErrorDetail> = None;
        while let Some(addr) = queue.pop() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut request = tonic::Request::new(req.clone());
            request.set_timeout(left);
            request.metadata_mut().insert(
                GROUP_FORWARDED_HEADER,
                tonic::metadata::MetadataValue::from(group),
            );
            let result = call_leader(connect(&self.forwarder, &addr), is_write, |c| {
                call(c, request)
            })
            .await;
            let e = match result {
                Ok(answer) => {
                    if is_write {
                        self.group_leaders.set(group, &addr);
                    }
                    return Ok(answer);
                }
                Err(e) => e,
            };
            match next_step(&e, redirects) {
                Step::Redirect(to) => {
                    redirects += 1;
                    self.group_leaders.set(group, &to);
                    queue.retain(|a| *a != to);
                    queue.push(to);
                }
                Step::NextMember => self.group_leaders.forget(group, &addr),
                Step::Stop => return Err(Some(e)),
            }
            let message = format!("{addr} answered: {}", e.message);
            last = Some(e.with_message(message));
        }
        Err(last)
    }
}

/// Whom [`ApiContext::ask_members`] asks, and what kind of call it makes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Members<'a> {
    /// Their group (for its leader hint, and marked on each call).
    pub(crate) group: GroupId,
    /// Its members other than this node, with their gRPC addresses.
    pub(crate) members: &'a [(NodeId, String)],
    /// Whether a transport failure after sending leaves the outcome unknown.
    pub(crate) is_write: bool,
}

/// The group to forward a request over `slots` to by `map` (see
/// [`ApiContext::remote_owner`]); `hosts` says whether this node, `me`,
/// hosts a group.
pub(crate) fn remote_of(
    map: Option<&ClusterMap>,
    slots: &[Slot],
    me: NodeId,
    hosts: impl Fn(GroupId) -> bool,
) -> Option<RemoteGroup> {
    let map = map?;
    let first = *slots.first()?;
    let group = single_owner(Some(map), slots.iter().copied()).ok()?;
    if hosts(group) {
        return None;
    }
    let members = other_members(map, group, me);
    (!members.is_empty()).then_some(RemoteGroup {
        group,
        slot: first,
        members,
    })
}

/// The members of `group` in `map` other than `me`, with their addresses, in
/// the map's order (none if the map has no such group).
pub(crate) fn other_members(map: &ClusterMap, group: GroupId, me: NodeId) -> Vec<(NodeId, String)> {
    let Some(info) = map.groups().get(&group) else {
        return Vec::new();
    };
    info.members
        .iter()
        .filter(|&&n| n != me)
        .filter_map(|n| map.nodes().get(n).map(|i| (*n, i.address.clone())))
        .collect()
}

/// The answer once no member could serve the call; every answer before it
/// proved nothing was applied. The last member's WRONG_GROUP stays (the
/// client refreshes its map); anything else becomes NO_LEADER, retryable —
/// NOT_LEADER would send a client to a leader of another group, and
/// SHUTTING_DOWN to another node, though this one is fine.
pub(crate) fn exhausted(
    me: NodeId,
    remote: &RemoteGroup,
    last: Option<ErrorDetail>,
) -> ErrorDetail {
    match last {
        Some(e) if e.kind() == Kind::WrongGroup => e,
        last => ErrorDetail::no_leader().with_message(format!(
            "no member of group {} (slot {}) could serve the request from node {} within \
             the request timeout (nothing was applied){}",
            remote.group,
            remote.slot.get(),
            me,
            last.map(|e| format!("; last: {}", e.message))
                .unwrap_or_default()
        )),
    }
}

/// The order in which to ask: the hinted leader, then every member (this
/// node is already left out of `members`).
pub(crate) fn targets(hint: Option<&str>, members: &[(NodeId, String)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(members.len() + 1);
    if let Some(h) = hint.filter(|h| !h.is_empty()) {
        out.push(h.to_string());
    }
    for (_, addr) in members {
        if !addr.is_empty() && !out.contains(addr) {
            out.push(addr.clone());
        }
    }
    out
}

/// What to do after a forwarded call failed with `e`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Ask the leader at this address next.
    Redirect(String),
    /// Nothing was applied there: ask the next member.
    NextMember,
    /// A definite answer, or one that may have applied a write: the client
    /// gets it as it is.
    Stop,
}

/// What to do after a forwarded call failed with `e`, `redirects` hints
/// having been followed already.
pub(crate) fn next_step(e: &ErrorDetail, redirects: usize) -> Step {
    match e.kind() {
        Kind::NotLeader if !e.leader_addr.is_empty() && redirects < MAX_REDIRECTS => {
            Step::Redirect(e.leader_addr.clone())
        }
        Kind::NotLeader | Kind::NoLeader | Kind::ShuttingDown | Kind::WrongGroup => {
            Step::NextMember
        }
        _ => Step::Stop,
    }
}

#[cfg(test)]
#[path = "group_forward_tests.rs"]
mod tests;
