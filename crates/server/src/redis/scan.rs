//! SCAN: which patterns keel serves, and its cursors.
//!
//! keel lists keys in key order from its ordered store, so a page resumes
//! strictly after the last key it returned. Redis clients, though, treat a cursor
//! as a number (redis-cli and most libraries parse it into a 64-bit integer), and
//! a key does not fit in one. So the node hands out numbers that stand for "resume
//! after key K": a bounded table per node maps each number to its key. The number
//! is opaque to the client and only meaningful on the node that issued it (a
//! connection stays on its node). The table forgets the oldest cursors first; a
//! forgotten or unknown cursor is answered with an error telling the client to
//! start again from 0. Keys present for the whole iteration are returned exactly
//! once, keys written meanwhile may or may not be, as in Redis.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};

use bytes::Bytes;

use super::resp::Reply;

/// Most cursors a node remembers.
const MAX_CURSORS: usize = 4096;
/// Most key bytes the remembered cursors may hold together.
const MAX_CURSOR_BYTES: usize = 4 << 20;

/// What a `MATCH` pattern selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// Keys starting with these bytes (`prefix*`, or `*` for all).
    Prefix(Bytes),
    /// Exactly this key (a pattern without wildcards).
    Exact(Bytes),
}

impl Pattern {
    /// `prefix*` or a literal key; any other glob (`?`, `[..]`, `\`, a `*`
    /// before the end) is refused with an error saying what is supported.
    pub(crate) fn parse(pattern: &Bytes) -> Result<Pattern, Reply> {
        let special = |b: &u8| matches!(b, b'*' | b'?' | b'[' | b']' | b'\\');
        let (body, star) = match pattern.split_last() {
            Some((b'*', body)) => (body, true),
            _ => (&pattern[..], false),
        };
        if body.iter().any(special) {
            return Err(Reply::err(format!(
                "keel's SCAN supports MATCH patterns of the form 'prefix*' or an exact key, not '{}'",
                String::from_utf8_lossy(pattern)
            )));
        }
        let body = pattern.slice(..body.len());
        Ok(if star {
            Pattern::Prefix(body)
        } else {
            Pattern::Exact(body)
        })
    }
}

/// A parsed SCAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ScanArgs {
    /// 0 to start, or a number a previous SCAN on this node returned.
    pub(crate) cursor: u64,
    /// Which keys.
    pub(crate) pattern: Pattern,
    /// Most keys in the page (already capped to the node's scan limit).
    pub(crate) count: usize,
    /// `false` when `TYPE` names a type other than string: nothing matches.
    pub(crate) strings_only: bool,
}

/// The node's cursors: number → key to resume after.
#[derive(Debug)]
pub(crate) struct Cursors {
    keys: HashMap<u64, Bytes>,
    /// Issue order, oldest first, for forgetting.
    order: VecDeque<u64>,
    bytes: usize,
    next: u64,
}

impl Default for Cursors {
    fn default() -> Self {
        // Numbers start at a random point so that a cursor from before a restart
        // is very unlikely to name a key it never meant.
        let start = RandomState::new().hash_one(0u8) >> 1;
        Cursors {
            keys: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            next: start.max(1),
        }
    }
}

impl Cursors {
    /// The key to resume after, for a cursor from a client: `Ok(None)` for 0
    /// (the start), an error for a number this node does not know.
    pub(crate) fn resume_after(&self, cursor: u64) -> Result<Option<Bytes>, Reply> {
        if cursor == 0 {
            return Ok(None);
        }
        match self.keys.get(&cursor) {
            Some(key) => Ok(Some(key.clone())),
            None => Err(Reply::err(format!(
                "unknown or expired SCAN cursor {cursor} (a cursor is kept by the node that issued it, for its latest {MAX_CURSORS} scans); start again from 0"
            ))),
        }
    }

    /// A new cursor that resumes after `key`.
    pub(crate) fn issue(&mut self, key: Bytes) -> u64 {
        while self.order.len() >= MAX_CURSORS || self.bytes + key.len() > MAX_CURSOR_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(k) = self.keys.remove(&old) {
                self.bytes -= k.len();
            }
        }
        let id = self.next;
        // Never 0 (it means "done"), and distinct from every live cursor.
        self.next = self.next.checked_add(1).unwrap_or(1);
        self.bytes += key.len();
        self.keys.insert(id, key);
        self.order.push_back(id);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn patterns() {
        assert_eq!(
            Pattern::parse(&b("user:*")),
            Ok(Pattern::Prefix(b("user:")))
        );
        assert_eq!(Pattern::parse(&b("*")), Ok(Pattern::Prefix(b(""))));
        assert_eq!(Pattern::parse(&b("exact")), Ok(Pattern::Exact(b("exact"))));
        for bad in ["a*b*", "*a", "a?", "[ab]*", "a\\*", "**"] {
            assert!(Pattern::parse(&b(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_resolve_until_forgotten() {
        let mut c = Cursors::default();
        assert_eq!(c.resume_after(0), Ok(None));
        let first = c.issue(b("k1"));
        assert_ne!(first, 0);
        assert_eq!(c.resume_after(first), Ok(Some(b("k1"))));
        for i in 0..MAX_CURSORS {
            c.issue(b(&format!("key{i}")));
        }
        assert!(c.resume_after(first).is_err(), "the oldest is forgotten");
        assert_eq!(c.keys.len(), MAX_CURSORS);
        let big = Bytes::from(vec![b'k'; 4096]);
        for _ in 0..2 * MAX_CURSORS {
            c.issue(big.clone());
        }
        assert!(c.bytes <= MAX_CURSOR_BYTES);
    }
}
