//! Scans across groups (docs/sharding.md, *Routing*): a prefix hashes to every
//! slot, so once slots are split the scan asks every group that owns one for
//! its part — a replica on this node, or a member node of the group (one hop,
//! the part pinned to that group) — and merges the parts in key order.
//!
//! Each part is linearizable on its own (a lease read becomes a ReadIndex
//! read, which any replica serves); the page is not one snapshot across
//! groups, and its revision is 0. Memory: at most `groups × limit` entries.

use keel_placement::GroupId;
use keel_proto::error::ErrorDetail;
use keel_proto::v1::{KeyValue, ReadMode, ScanRequest, ScanResponse};

use super::ApiContext;
use super::ops::Forwarding;
use crate::node::NodeHandle;

impl ApiContext {
    /// The groups that own slots by the node's cached map, in id order (none
    /// without a map).
    pub(crate) fn scan_owners(&self) -> Vec<GroupId> {
        let Some(map) = self.maps.current() else {
            return Vec::new();
        };
        let counts = map.map.slot_counts();
        counts
            .into_iter()
            .filter(|&(_, n)| n > 0)
            .map(|(g, _)| g)
            .collect()
    }

    /// This node's replica of `group`, for a part another node asked for.
    pub(crate) fn hosted_part(&self, group: GroupId) -> Result<NodeHandle, ErrorDetail> {
        self.hosted(group).map(|r| (*r).clone()).ok_or_else(|| {
            ErrorDetail::wrong_group(
                0,
                self.maps.version(),
                format!("node {} hosts no replica of group {group}", self.id),
            )
        })
    }

    /// Every group's part of `req`, merged.
    pub(crate) async fn scan_groups(
        &self,
        groups: &[GroupId],
        req: ScanRequest,
    ) -> Result<ScanResponse, ErrorDetail> {
        let limit = self.scan_limit(req.limit);
        let mut part = req;
        part.limit = u32::try_from(limit).unwrap_or(u32::MAX);
        if part.read_mode() == ReadMode::Lease {
            part.set_read_mode(ReadMode::Linearizable);
        }
        let asks = groups.iter().map(|&g| self.scan_part(g, part.clone()));
        let mut parts = Vec::with_capacity(groups.len());
        for answer in futures::future::join_all(asks).await {
            parts.push(answer?);
        }
        Ok(merge(parts, limit))
    }

    /// `group`'s part: from this node's replica, or from its members in turn.
    async fn scan_part(
        &self,
        group: GroupId,
        mut req: ScanRequest,
    ) -> Result<ScanResponse, ErrorDetail> {
        if let Ok(node) = self.hosted_part(group) {
            return self.scan_group(&node, req, Forwarding::Allowed).await;
        }
        req.group = group;
        let members: Vec<String> = self
            .maps
            .current()
            .and_then(|m| {
                let info = m.map.groups().get(&group)?;
                Some(
                    info.members
                        .iter()
                        .filter_map(|n| m.map.nodes().get(n).map(|n| n.address.clone()))
                        .collect(),
                )
            })
            .unwrap_or_default();
        let mut last = ErrorDetail::no_leader();
        last.message = format!("no member of group {group} is known to this node");
        for addr in members {
            let req = req.clone();
            match self
                .forward_kv(&addr, false, |mut c| async move { c.scan(req).await })
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// Merges parts (each in key order, each at most `limit` keys) into one page
/// of at most `limit` keys. A part that has more keys cuts the page at its last
/// key: a key of that part beyond it could sort before keys of other parts.
pub(crate) fn merge(parts: Vec<ScanResponse>, limit: usize) -> ScanResponse {
    let cut = parts
        .iter()
        .filter(|p| p.more)
        .filter_map(|p| p.kvs.last().map(|kv| kv.key.clone()))
        .min();
    let mut more = parts.iter().any(|p| p.more);
    let mut kvs: Vec<KeyValue> = parts.into_iter().flat_map(|p| p.kvs).collect();
    kvs.sort_by(|a, b| a.key.cmp(&b.key));
    if let Some(cut) = cut {
        kvs.retain(|kv| kv.key <= cut);
    }
    if kvs.len() > limit {
        kvs.truncate(limit);
        more = true;
    }
    ScanResponse {
        kvs,
        more,
        revision: 0,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn part(keys: &[&str], more: bool) -> ScanResponse {
        ScanResponse {
            kvs: keys
                .iter()
                .map(|k| KeyValue {
                    key: Bytes::copy_from_slice(k.as_bytes()),
                    value: Bytes::new(),
                    version: 1,
                })
                .collect(),
            more,
            revision: 7,
        }
    }

    fn keys(r: &ScanResponse) -> Vec<&str> {
        r.kvs
            .iter()
            .map(|kv| std::str::from_utf8(&kv.key).expect("utf-8"))
            .collect()
    }

    #[test]
    fn parts_merge_in_key_order_up_to_the_limit() {
        let merged = merge(
            vec![part(&["a", "d"], false), part(&["b", "c", "e"], false)],
            10,
        );
        assert_eq!(keys(&merged), ["a", "b", "c", "d", "e"]);
        assert!(!merged.more);
        assert_eq!(merged.revision, 0, "no single revision across groups");

        let merged = merge(
            vec![part(&["a", "d"], false), part(&["b", "c", "e"], false)],
            3,
        );
        assert_eq!(keys(&merged), ["a", "b", "c"]);
        assert!(merged.more);
    }

    #[test]
    fn a_part_with_more_cuts_the_page_at_its_last_key() {
        // Group A stopped at "c" (more follow, maybe "d"); B's "e" and "f"
        // must wait for the next page, or "d" would be skipped.
        let merged = merge(
            vec![part(&["a", "c"], true), part(&["b", "e", "f"], false)],
            2,
        );
        assert_eq!(keys(&merged), ["a", "b"]);
        assert!(merged.more);
        let merged = merge(
            vec![part(&["a", "c"], true), part(&["b", "e", "f"], false)],
            4,
        );
        assert_eq!(keys(&merged), ["a", "b", "c"]);
        assert!(merged.more);
    }

    #[test]
    fn nothing_anywhere_is_an_empty_last_page() {
        let merged = merge(vec![part(&[], false), part(&[], false)], 5);
        assert!(merged.kvs.is_empty());
        assert!(!merged.more);
    }
}
