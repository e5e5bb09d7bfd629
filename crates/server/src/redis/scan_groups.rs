//! SCAN once slots are split between groups: a prefix hashes to every slot, so
//! the page comes from the merged scan over every group that owns slots
//! (`api/scan_merge.rs`: each part from a replica here or from a member of its
//! group, merged in key order). The cursor still stands for "resume after
//! key K" on this node (`scan.rs`). While group 1 owns every slot, SCAN reads
//! group 1's view as before (`reads.rs`), sharing a pipeline's barrier.

use bytes::Bytes;
use keel_placement::GroupId;
use keel_proto::v1::{ReadMode, ScanRequest};

use super::Shared;
use super::answer::error_reply;
use super::resp::Reply;
use super::scan::{Pattern, ScanArgs};
use crate::node::KV_GROUP;

/// Whether SCAN must ask more groups than group 1: some group other than
/// group 1 owns slots.
pub(crate) fn spans_groups(owners: &[GroupId]) -> bool {
    owners.iter().any(|&g| g != KV_GROUP)
}

/// What the merged scan is asked for `args`: an exact key is the first key
/// with itself as prefix, so a one-key page finds it.
fn request(args: &ScanArgs, start: Option<Bytes>) -> ScanRequest {
    let (prefix, limit) = match &args.pattern {
        Pattern::Prefix(prefix) => (prefix.clone(), args.count),
        Pattern::Exact(key) => (key.clone(), 1),
    };
    let mut req = ScanRequest {
        prefix,
        limit: u32::try_from(limit).unwrap_or(u32::MAX),
        start_after: start.unwrap_or_default(),
        ..ScanRequest::default()
    };
    req.set_read_mode(ReadMode::Linearizable);
    req
}

/// The keys of a merged page for `args`, and the key to resume after (`None`:
/// the scan is complete).
fn page(args: &ScanArgs, keys: Vec<Bytes>, more: bool) -> (Vec<Bytes>, Option<Bytes>) {
    match &args.pattern {
        Pattern::Exact(key) => (keys.into_iter().filter(|k| k == key).collect(), None),
        Pattern::Prefix(_) => {
            let next = if more { keys.last().cloned() } else { None };
            (keys, next)
        }
    }
}

/// Answers one SCAN over every group in `owners`, resuming after `start`.
pub(crate) async fn scan(
    shared: &Shared,
    owners: &[GroupId],
    args: &ScanArgs,
    start: Option<Bytes>,
) -> Reply {
    if !args.strings_only {
        return super::reads::page_reply(shared, Vec::new(), None);
    }
    match shared.ctx.scan_groups(owners, request(args, start)).await {
        Ok(resp) => {
            let keys = resp.kvs.into_iter().map(|kv| kv.key).collect();
            let (keys, next) = page(args, keys, resp.more);
            super::reads::page_reply(shared, keys, next)
        }
        Err(e) => error_reply(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pattern: Pattern) -> ScanArgs {
        ScanArgs {
            cursor: 0,
            pattern,
            count: 10,
            strings_only: true,
        }
    }

    #[test]
    fn only_slots_outside_group_1_make_a_scan_span_groups() {
        assert!(!spans_groups(&[]));
        assert!(!spans_groups(&[KV_GROUP]));
        assert!(spans_groups(&[KV_GROUP, 2]));
        assert!(spans_groups(&[2]));
    }

    #[test]
    fn prefixes_page_and_exact_keys_are_one_key_pages() {
        let prefix = args(Pattern::Prefix(Bytes::from_static(b"user:")));
        let req = request(&prefix, Some(Bytes::from_static(b"user:5")));
        assert_eq!((req.prefix.as_ref(), req.limit), (&b"user:"[..], 10));
        assert_eq!(req.start_after, "user:5");
        assert_eq!(req.read_mode(), ReadMode::Linearizable);
        let keys = vec![Bytes::from_static(b"user:6"), Bytes::from_static(b"user:7")];
        assert_eq!(
            page(&prefix, keys.clone(), true),
            (keys.clone(), Some(Bytes::from_static(b"user:7")))
        );
        assert_eq!(page(&prefix, keys, false).1, None);

        let exact = args(Pattern::Exact(Bytes::from_static(b"user:6")));
        assert_eq!(request(&exact, None).limit, 1);
        let found = vec![Bytes::from_static(b"user:6")];
        assert_eq!(page(&exact, found.clone(), true), (found, None));
        let longer = vec![Bytes::from_static(b"user:60")];
        assert_eq!(page(&exact, longer, true), (vec![], None));
    }
}
