//! The member book: every member's network address, and whether a learner is to be
//! promoted once it has caught up.
//!
//! The consensus core knows members only by id. What every replica must also learn
//! about a new member travels with the change itself, in the context of its
//! `ConfChange` entry ([`encode_context`]); snapshots carry the book of the members
//! they include ([`encode_conf`]). So a node rebuilds its book at start-up from the
//! bootstrap membership, its newest snapshot and its log, and keeps it current from
//! the entries it appends — the same way on every replica.
//!
//! The consensus thread writes the book; the transport, the peer service and the
//! API handlers read it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;

use bytes::{BufMut, Bytes, BytesMut};
use keel_raft::{ConfState, Index, NodeId};
use serde::{Deserialize, Serialize};

/// Longest member address accepted (`host:port`).
pub const MAX_ADDRESS_BYTES: usize = 256;
/// Most members a configuration blob may list (a sanity bound on decoding).
const MAX_CONF_MEMBERS: usize = 1024;
/// Configuration blob without addresses (snapshots written before the book existed).
const CONF_VERSION_IDS: u8 = 1;
/// Configuration blob with the member book.
const CONF_VERSION_BOOK: u8 = 2;

/// What the book knows of one member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Advertised gRPC address (`host:port`).
    pub address: String,
    /// For a learner: promote it to voter once it has caught up.
    #[serde(default)]
    pub promote: bool,
}

/// One member as listed to operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// The member's id.
    pub id: NodeId,
    /// Its address ("" if this node has not learned it).
    pub address: String,
    /// A voter, or else a learner.
    pub voter: bool,
    /// A learner the leader promotes once caught up.
    pub promote: bool,
}

#[derive(Debug, Default)]
struct BookState {
    info: BTreeMap<NodeId, MemberInfo>,
    conf: ConfState,
    /// Log index of the latest configuration change (0: bootstrap or snapshot).
    conf_index: Index,
    change_in_progress: bool,
    /// The configuration as of the last time no change was in progress.
    committed: ConfState,
    /// Members whose removal this node has seen committed (until re-added).
    removed: BTreeSet<NodeId>,
}

/// The member book of one node. Cheap to read from any thread.
#[derive(Debug)]
pub struct MemberBook {
    bootstrap: BTreeMap<NodeId, String>,
    state: RwLock<BookState>,
}

impl MemberBook {
    /// A book holding the bootstrap membership (all voters).
    pub fn new(bootstrap: &BTreeMap<NodeId, String>) -> Self {
        let info = bootstrap
            .iter()
            .map(|(&id, address)| {
                let info = MemberInfo {
                    address: address.clone(),
                    promote: false,
                };
                (id, info)
            })
            .collect();
        MemberBook {
            bootstrap: bootstrap.clone(),
            state: RwLock::new(BookState {
                info,
                conf: ConfState::with_voters(bootstrap.keys().copied()),
                conf_index: 0,
                change_in_progress: false,
                committed: ConfState::with_voters(bootstrap.keys().copied()),
                removed: BTreeSet::new(),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BookState> {
        self.state.read().expect("member book lock poisoned")
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BookState> {
        self.state.write().expect("member book lock poisoned")
    }

    /// The membership the cluster was bootstrapped with.
    pub fn bootstrap(&self) -> &BTreeMap<NodeId, String> {
        &self.bootstrap
    }

    /// Records (or updates) what a configuration change or snapshot said of `id`.
    pub fn record(&self, id: NodeId, info: MemberInfo) {
        self.write().info.insert(id, info);
    }

    /// The address of `id`, if known.
    pub fn address(&self, id: NodeId) -> Option<String> {
        self.read().info.get(&id).map(|i| i.address.clone())
    }

    /// What the book knows of `id`.
    pub fn info(&self, id: NodeId) -> Option<MemberInfo> {
        self.read().info.get(&id).cloned()
    }

    /// Whether `id` was ever a member this node heard of (messages from it are
    /// admitted; the core decides what they may do).
    pub fn knows(&self, id: NodeId) -> bool {
        self.read().info.contains_key(&id)
    }

    /// Whether messages from `id` are admitted: a node this node has heard of,
    /// unless it has seen its removal committed. Until then the node may still be
    /// needed to elect a leader (thesis §4.2.2); after, refusing it is how a
    /// removed node that missed the entry learns of its removal.
    pub fn admits(&self, id: NodeId) -> bool {
        let s = self.read();
        s.info.contains_key(&id) && !s.removed.contains(&id)
    }

    /// Whether this node has seen a configuration without `id` commit after
    /// one with it (and none re-adding it since).
    pub fn was_removed(&self, id: NodeId) -> bool {
        self.read().removed.contains(&id)
    }

    /// Whether `id` is a voter or learner of the configuration in force.
    pub fn is_member(&self, id: NodeId) -> bool {
        self.read().conf.contains(id)
    }

    /// The member using `address`, if any in the configuration in force.
    pub fn member_at(&self, address: &str) -> Option<NodeId> {
        let s = self.read();
        s.info
            .iter()
            .find(|(id, i)| i.address == address && s.conf.contains(**id))
            .map(|(&id, _)| id)
    }

    /// Sets the configuration in force; returns whether it changed.
    pub fn set_conf(&self, conf: &ConfState, conf_index: Index, in_progress: bool) -> bool {
        // Called once per consensus-thread turn: the common case (nothing changed)
        // takes only the read lock and allocates nothing.
        {
            let s = self.read();
            if s.conf == *conf
                && s.conf_index == conf_index
                && s.change_in_progress == in_progress
                && (in_progress || s.committed == *conf)
            {
                return false;
            }
        }
        let mut s = self.write();
        let changed = s.conf != *conf;
        s.conf = conf.clone();
        s.conf_index = conf_index;
        s.change_in_progress = in_progress;
        if !in_progress && s.committed != *conf {
            let gone: Vec<NodeId> = s
                .committed
                .voters
                .iter()
                .chain(&s.committed.learners)
                .copied()
                .filter(|&id| !conf.contains(id))
                .collect();
            s.removed.extend(gone);
            for id in conf.voters.iter().chain(&conf.learners) {
                s.removed.remove(id);
            }
            s.committed = conf.clone();
        }
        changed
    }

    /// The configuration in force.
    pub fn conf(&self) -> ConfState {
        self.read().conf.clone()
    }

    /// The configuration's log index and whether it is still being committed.
    pub fn conf_index(&self) -> (Index, bool) {
        let s = self.read();
        (s.conf_index, s.change_in_progress)
    }

    /// Members of the configuration in force, voters first, each by id.
    pub fn members(&self) -> Vec<MemberView> {
        let s = self.read();
        let view = |id: NodeId, voter: bool| {
            let info = s.info.get(&id);
            MemberView {
                id,
                address: info.map(|i| i.address.clone()).unwrap_or_default(),
                voter,
                promote: !voter && info.is_some_and(|i| i.promote),
            }
        };
        let voters = s.conf.voters.iter().map(|&id| view(id, true));
        let learners = s.conf.learners.iter().map(|&id| view(id, false));
        voters.chain(learners).collect()
    }

    /// The book entries of the members of `conf`, for a snapshot.
    pub fn entries_for(&self, conf: &ConfState) -> Vec<(NodeId, MemberInfo)> {
        let s = self.read();
        s.info
            .iter()
            .filter(|(id, _)| conf.contains(**id))
            .map(|(&id, i)| (id, i.clone()))
            .collect()
    }
}

/// The context of an `AddLearner` change: what every replica must learn about the
/// new member. JSON, so that `keel wal dump` shows it readably.
pub fn encode_context(info: &MemberInfo) -> Vec<u8> {
    serde_json::to_vec(info).expect("member info serializes")
}

/// Reads what [`encode_context`] wrote.
pub fn decode_context(data: &[u8]) -> Result<MemberInfo, String> {
    let info: MemberInfo =
        serde_json::from_slice(data).map_err(|e| format!("member context: {e}"))?;
    validate_address(&info.address)?;
    Ok(info)
}

/// Checks an advertised address is a plausible `host:port`.
pub fn validate_address(address: &str) -> Result<(), String> {
    if address.is_empty() || address.len() > MAX_ADDRESS_BYTES {
        return Err(format!(
            "member address must be 1..={MAX_ADDRESS_BYTES} bytes, got {}",
            address.len()
        ));
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("member address {address:?} is not host:port"));
    };
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("member address {address:?} is not host:port"));
    }
    if address.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(format!("member address {address:?} is not host:port"));
    }
    Ok(())
}

/// The configuration recorded in a snapshot: `[2]` then voters and learners
/// (`u32` count, `u64` ids), then the book entries of those members (`u32` count,
/// each `u64` id, `u8` promote, `u16` length, address), all little-endian.
pub fn encode_conf(conf: &ConfState, book: &[(NodeId, MemberInfo)]) -> Bytes {
    let mut b = BytesMut::with_capacity(16 + 16 * (conf.voters.len() + conf.learners.len()));
    b.put_u8(CONF_VERSION_BOOK);
    for list in [&conf.voters, &conf.learners] {
        b.put_u32_le(list.len() as u32);
        for &id in list {
            b.put_u64_le(id);
        }
    }
    b.put_u32_le(book.len() as u32);
    for (id, info) in book {
        b.put_u64_le(*id);
        b.put_u8(u8::from(info.promote));
        let addr = info.address.as_bytes();
        let len = addr.len().min(MAX_ADDRESS_BYTES);
        b.put_u16_le(len as u16);
        b.put_slice(&addr[..len]);
    }
    b.freeze()
}

/// Reads what [`encode_conf`] wrote (or the older blob without addresses).
pub fn decode_conf(mut b: &[u8]) -> Result<(ConfState, Vec<(NodeId, MemberInfo)>), String> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if b.len() < n {
            return Err("membership blob is truncated".into());
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    fn count(b: &mut &[u8]) -> Result<usize, String> {
        let n = u32::from_le_bytes(take(b, 4)?.try_into().map_err(|_| "length")?) as usize;
        if n > MAX_CONF_MEMBERS {
            return Err(format!("membership blob lists {n} members"));
        }
        Ok(n)
    }
    fn id(b: &mut &[u8]) -> Result<NodeId, String> {
        let id = u64::from_le_bytes(take(b, 8)?.try_into().map_err(|_| "id")?);
        if id == 0 {
            return Err("membership blob lists node 0".into());
        }
        Ok(id)
    }
    let version = take(&mut b, 1)?[0];
    if version != CONF_VERSION_IDS && version != CONF_VERSION_BOOK {
        return Err(format!("membership blob version {version} is unknown"));
    }
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        for _ in 0..count(&mut b)? {
            list.push(id(&mut b)?);
        }
    }
    let mut book = Vec::new();
    if version == CONF_VERSION_BOOK {
        for _ in 0..count(&mut b)? {
            let id = id(&mut b)?;
            let promote = match take(&mut b, 1)?[0] {
                0 => false,
                1 => true,
                x => return Err(format!("membership blob has promote flag {x}")),
            };
            let len = u16::from_le_bytes(take(&mut b, 2)?.try_into().map_err(|_| "len")?);
            let address = std::str::from_utf8(take(&mut b, usize::from(len))?)
                .map_err(|_| "membership blob has an address that is not UTF-8")?
                .to_string();
            validate_address(&address)?;
            book.push((id, MemberInfo { address, promote }));
        }
    }
    if !b.is_empty() {
        return Err("membership blob has trailing bytes".into());
    }
    let [voters, learners] = lists;
    Ok((ConfState { voters, learners }, book))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(address: &str, promote: bool) -> MemberInfo {
        MemberInfo {
            address: address.into(),
            promote,
        }
    }

    #[test]
    fn conf_round_trips_with_the_book() {
        let conf = ConfState {
            voters: vec![1, 2, 3],
            learners: vec![7],
        };
        let book = vec![(1, info("a:1", false)), (7, info("[::1]:7000", true))];
        let b = encode_conf(&conf, &book);
        assert_eq!(decode_conf(&b).expect("decodes"), (conf, book));
        let empty = ConfState::default();
        assert_eq!(
            decode_conf(&encode_conf(&empty, &[])).expect("decodes"),
            (empty, Vec::new())
        );
    }

    #[test]
    fn old_blob_without_addresses_still_reads() {
        let mut b = vec![CONF_VERSION_IDS];
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&5u64.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        let (conf, book) = decode_conf(&b).expect("decodes");
        assert_eq!(conf, ConfState::with_voters([5]));
        assert!(book.is_empty());
    }

    #[test]
    fn garbage_conf_is_refused() {
        let b = encode_conf(&ConfState::with_voters([1, 2]), &[(1, info("h:1", false))]);
        assert!(decode_conf(&b[..b.len() - 1]).is_err(), "truncated");
        let mut extra = b.to_vec();
        extra.push(0);
        assert!(decode_conf(&extra).is_err(), "trailing");
        let mut version = b.to_vec();
        version[0] = 9;
        assert!(decode_conf(&version).is_err(), "version");
        let zero = encode_conf(&ConfState::with_voters([0]), &[]);
        assert!(decode_conf(&zero).is_err(), "node 0");
        assert!(
            decode_conf(&[2, 0xff, 0xff, 0xff, 0xff]).is_err(),
            "absurd count"
        );
        let bad_addr = encode_conf(&ConfState::with_voters([1]), &[(1, info("nope", false))]);
        assert!(decode_conf(&bad_addr).is_err(), "address without port");
    }

    #[test]
    fn context_round_trips_and_checks_the_address() {
        let i = info("10.0.0.4:7000", true);
        assert_eq!(decode_context(&encode_context(&i)), Ok(i));
        assert!(decode_context(b"{\"address\":\"x\"}").is_err());
        assert!(decode_context(b"not json").is_err());
    }

    #[test]
    fn addresses_are_checked() {
        for ok in ["127.0.0.1:7001", "node-4.example:80", "[::1]:7000"] {
            assert_eq!(validate_address(ok), Ok(()), "{ok}");
        }
        for bad in ["", "host", ":80", "h:0", "h:99999", "h :1", "http://h:1"] {
            assert!(validate_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn book_lists_the_configuration_with_addresses() {
        let boot: BTreeMap<NodeId, String> = [(1, "a:1".into()), (2, "b:2".into())].into();
        let book = MemberBook::new(&boot);
        assert!(book.knows(1) && !book.knows(3));
        book.record(3, info("c:3", true));
        let conf = ConfState {
            voters: vec![1, 2],
            learners: vec![3],
        };
        assert!(book.set_conf(&conf, 9, true));
        assert!(!book.set_conf(&conf, 9, false));
        assert!(book.admits(3) && !book.admits(4));
        // Known but not (yet) in this node's configuration: admitted (a node that
        // just joined hears from members its log does not mention yet).
        book.record(5, info("e:5", false));
        assert!(book.admits(5));
        // Node 2 removed: admitted while the removal commits, refused after.
        let without_2 = ConfState {
            voters: vec![1],
            learners: vec![3],
        };
        book.set_conf(&without_2, 10, true);
        assert!(book.admits(2));
        book.set_conf(&without_2, 10, false);
        assert!(!book.admits(2));
        book.set_conf(&conf, 9, false);
        assert_eq!(book.conf_index(), (9, false));
        let m = book.members();
        assert_eq!(m.len(), 3);
        assert!(m[2].promote && !m[2].voter && m[2].address == "c:3");
        assert_eq!(book.member_at("c:3"), Some(3));
        assert_eq!(book.entries_for(&ConfState::with_voters([2])).len(), 1);
    }
}
