//! Membership changes, one server at a time (thesis §4.1–4.2), with learners.
//!
//! Why single-server changes rather than joint consensus (thesis §4.3): adding or
//! removing one voter at a time makes every majority of the old configuration
//! overlap every majority of the new one, so no intermediate joint state is needed,
//! and growing a cluster is "add a learner, let it catch up, promote it" — two
//! steps that each change the voter set by at most one.
//!
//! Rules, each from the thesis:
//! - A node uses the latest configuration *in its log*, committed or not (§4.1):
//!   it takes effect when appended, and a log truncation that removes the entry
//!   rolls it back.
//! - Only one change may be uncommitted at a time (§4.1), and a new leader
//!   proposes none before it has committed an entry of its own term (the fix to
//!   the single-server change bug described on raft-dev in 2015: a change from an
//!   earlier term could otherwise still be overwritten).
//! - A leader that is not in its own configuration keeps replicating but does not
//!   count itself in quorums, and steps down once the change that removed it
//!   commits (§4.2.2).
//! - A node not in its configuration, or a learner, never campaigns (§4.2.1,
//!   §4.2.3); pre-vote and the "live leader" vote refusal keep removed servers that
//!   do not know they were removed from disrupting the cluster (§4.2.3).

use std::collections::BTreeSet;

use crate::error::{ConfChangeDecodeError, ConfChangeError};
use crate::raft::Raft;
use crate::ready::{Event, Role};
use crate::types::{ConfState, Entry, EntryKind, Index, NO_NODE, NodeId};

/// Version byte of a [`ConfChange`] encoded without a context.
const ENCODING_VERSION: u8 = 1;
/// Version byte of a [`ConfChange`] encoded with a context.
const ENCODING_VERSION_WITH_CONTEXT: u8 = 2;
/// Bytes of an encoded change without context: version, operation, node id.
const ENCODED_LEN: usize = 1 + 1 + 8;
/// Largest context a change may carry (a server keeps e.g. an address in it).
pub const MAX_CONF_CONTEXT_BYTES: usize = 4096;

/// One membership change, carried by an [`EntryKind::ConfChange`] entry.
///
/// The entry may also carry an opaque *context* (see
/// [`ConfChange::encode_with_context`]): the core ignores it; a server uses it for
/// what every replica must learn together with the change, such as the new
/// member's network address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfChange {
    /// Adds a node that receives the log but does not vote.
    AddLearner(NodeId),
    /// Makes a learner a voter.
    PromoteLearner(NodeId),
    /// Removes a voter or a learner.
    Remove(NodeId),
}

impl ConfChange {
    /// The node the change is about.
    pub fn node(self) -> NodeId {
        match self {
            ConfChange::AddLearner(id)
            | ConfChange::PromoteLearner(id)
            | ConfChange::Remove(id) => id,
        }
    }

    fn op_code(self) -> u8 {
        match self {
            ConfChange::AddLearner(_) => 1,
            ConfChange::PromoteLearner(_) => 2,
            ConfChange::Remove(_) => 3,
        }
    }

    /// The entry payload without context: `[version = 1][op][node id, u64 LE]`.
    /// Exactly one encoding per change (and context), so replicas compare entries
    /// byte for byte.
    pub fn encode(self) -> bytes::Bytes {
        let mut out = Vec::with_capacity(ENCODED_LEN);
        out.push(ENCODING_VERSION);
        out.push(self.op_code());
        out.extend_from_slice(&self.node().to_le_bytes());
        out.into()
    }

    /// The entry payload with an opaque context of at most
    /// [`MAX_CONF_CONTEXT_BYTES`]: `[version = 2][op][node id, u64 LE]
    /// [context length, u16 LE][context]`.
    pub fn encode_with_context(self, context: &[u8]) -> Result<bytes::Bytes, ConfChangeError> {
        if context.len() > MAX_CONF_CONTEXT_BYTES {
            return Err(ConfChangeError::ContextTooLarge {
                len: context.len(),
                max: MAX_CONF_CONTEXT_BYTES,
            });
        }
        let mut out = Vec::with_capacity(ENCODED_LEN + 2 + context.len());
        out.push(ENCODING_VERSION_WITH_CONTEXT);
        out.push(self.op_code());
        out.extend_from_slice(&self.node().to_le_bytes());
        out.extend_from_slice(&(context.len() as u16).to_le_bytes());
        out.extend_from_slice(context);
        Ok(out.into())
    }

    /// Inverse of [`ConfChange::encode`] and [`ConfChange::encode_with_context`]
    /// (the context is dropped); any other input is an error, never a panic.
    pub fn decode(data: &[u8]) -> Result<ConfChange, ConfChangeDecodeError> {
        Self::decode_with_context(data).map(|(c, _)| c)
    }

    /// Like [`ConfChange::decode`], also returning the context (empty if none).
    pub fn decode_with_context(data: &[u8]) -> Result<(ConfChange, &[u8]), ConfChangeDecodeError> {
        if data.len() < ENCODED_LEN {
            return Err(ConfChangeDecodeError::Length { len: data.len() });
        }
        let context = match data[0] {
            ENCODING_VERSION if data.len() == ENCODED_LEN => &data[ENCODED_LEN..],
            ENCODING_VERSION => return Err(ConfChangeDecodeError::Length { len: data.len() }),
            ENCODING_VERSION_WITH_CONTEXT => {
                let rest = &data[ENCODED_LEN..];
                let declared = match rest {
                    [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])),
                    _ => return Err(ConfChangeDecodeError::Length { len: data.len() }),
                };
                if declared > MAX_CONF_CONTEXT_BYTES || rest.len() != 2 + declared {
                    return Err(ConfChangeDecodeError::Length { len: data.len() });
                }
                &rest[2..]
            }
            version => return Err(ConfChangeDecodeError::Version { version }),
        };
        let mut id = [0u8; 8];
        id.copy_from_slice(&data[2..ENCODED_LEN]);
        let id = u64::from_le_bytes(id);
        if id == NO_NODE {
            return Err(ConfChangeDecodeError::ZeroNode);
        }
        let change = match data[1] {
            1 => ConfChange::AddLearner(id),
            2 => ConfChange::PromoteLearner(id),
            3 => ConfChange::Remove(id),
            op => return Err(ConfChangeDecodeError::Operation { op }),
        };
        Ok((change, context))
    }

    /// The configuration after this change, or why it does not apply to `conf`.
    pub fn apply_to(self, conf: &ConfState) -> Result<ConfState, ConfChangeError> {
        let mut next = conf.clone();
        match self {
            ConfChange::AddLearner(id) => {
                if id == NO_NODE {
                    return Err(ConfChangeError::ZeroNode);
                }
                if conf.contains(id) {
                    return Err(ConfChangeError::AlreadyMember { id });
                }
                next.learners.push(id);
                next.learners.sort_unstable();
            }
            ConfChange::PromoteLearner(id) => {
                if !conf.learners.contains(&id) {
                    return Err(ConfChangeError::NotLearner { id });
                }
                next.learners.retain(|&l| l != id);
                next.voters.push(id);
                next.voters.sort_unstable();
            }
            ConfChange::Remove(id) => {
                if !conf.contains(id) {
                    return Err(ConfChangeError::UnknownNode { id });
                }
                if conf.voters == [id] {
                    return Err(ConfChangeError::LastVoter { id });
                }
                next.voters.retain(|&v| v != id);
                next.learners.retain(|&l| l != id);
            }
        }
        Ok(next)
    }
}

/// The configurations a node's log implies: the one its log starts from (a
/// snapshot's, or the bootstrap one) and one per ConfChange entry after it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConfHistory {
    /// Configuration as of the log's start (`base_index`).
    base: ConfState,
    base_index: Index,
    /// `(index of the ConfChange entry, configuration from it on)`, ascending.
    changes: Vec<(Index, ConfState)>,
}

impl ConfHistory {
    pub(crate) fn new(base: ConfState, base_index: Index) -> Self {
        ConfHistory {
            base,
            base_index,
            changes: Vec::new(),
        }
    }

    /// The configuration in force: the latest in the log.
    pub(crate) fn current(&self) -> &ConfState {
        self.changes.last().map_or(&self.base, |(_, c)| c)
    }

    /// Index of the latest ConfChange entry (or the base index).
    pub(crate) fn last_change_index(&self) -> Index {
        self.changes.last().map_or(self.base_index, |&(i, _)| i)
    }

    /// The configuration as of `index`, if the history reaches back that far.
    pub(crate) fn at(&self, index: Index) -> Option<ConfState> {
        if index < self.base_index {
            return None;
        }
        let c = self
            .changes
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map_or(&self.base, |(_, c)| c);
        Some(c.clone())
    }

    /// Changes with an index in `(after, upto]`.
    pub(crate) fn changes_in(&self, after: Index, upto: Index) -> Vec<(Index, ConfState)> {
        self.changes
            .iter()
            .filter(|(i, _)| *i > after && *i <= upto)
            .cloned()
            .collect()
    }

    /// Entries from `from` on were replaced: forget the changes they carried.
    pub(crate) fn truncate_from(&mut self, from: Index) {
        self.changes.retain(|&(i, _)| i < from);
    }

    /// Records entries appended to the log (after any truncation). A change that
    /// does not decode, or does not apply, leaves the configuration as it is: every
    /// replica sees the same log, so every replica ignores it alike.
    pub(crate) fn append(&mut self, entries: &[Entry]) -> Vec<(Index, ConfChange)> {
        let mut applied = Vec::new();
        for e in entries.iter().filter(|e| e.kind == EntryKind::ConfChange) {
            let Ok(change) = ConfChange::decode(&e.data) else {
                continue;
            };
            if let Ok(next) = change.apply_to(self.current()) {
                self.changes.push((e.index, next));
                applied.push((e.index, change));
            }
        }
        applied
    }

    /// The log was compacted through `index`: fold older changes into the base.
    pub(crate) fn compact_to(&mut self, index: Index) {
        if index <= self.base_index {
            return;
        }
        if let Some(c) = self.at(index) {
            self.base = c;
        }
        self.base_index = index;
        self.changes.retain(|&(i, _)| i > index);
    }
}

impl Raft {
    /// Proposes a membership change (thesis §4.1). On the leader it is appended at
    /// once — and takes effect at once, as every configuration does when appended —
    /// and its `(index, term)` returned; it is committed iff the entry applied at
    /// `index` has `term`. Refused (with nothing appended) when another change is
    /// uncommitted, when the leader has not yet committed an entry of its term, while
    /// a leadership transfer runs, or when the change does not apply to the current
    /// configuration.
    pub fn propose_conf_change(
        &mut self,
        change: ConfChange,
    ) -> Result<(Index, crate::types::Term), ConfChangeError> {
        self.propose_conf_change_with_context(change, &[])
    }

    /// [`Raft::propose_conf_change`] with an opaque context carried in the entry
    /// (see [`ConfChange::encode_with_context`]); an empty context encodes exactly
    /// like a change without one.
    pub fn propose_conf_change_with_context(
        &mut self,
        change: ConfChange,
        context: &[u8],
    ) -> Result<(Index, crate::types::Term), ConfChangeError> {
        self.assert_not_in_ready();
        if self.role != Role::Leader {
            return Err(ConfChangeError::NotLeader {
                leader: self.leader,
            });
        }
        // A membership change needs the group: wake it even if refused below.
        self.wake_up();
        self.idle_ticks = 0;
        self.check_disk()?;
        if self.lead_transferee != NO_NODE {
            return Err(ConfChangeError::TransferInProgress {
                to: self.lead_transferee,
            });
        }
        let pending = self.conf.last_change_index();
        if pending > self.log.committed && !self.injected(crate::InjectedBug::ConcurrentConfChanges)
        {
            return Err(ConfChangeError::InProgress { index: pending });
        }
        if self.log.term(self.log.committed) != Some(self.term) {
            return Err(ConfChangeError::NotCommittedInTerm { term: self.term });
        }
        change.apply_to(self.conf.current())?;
        let data = if context.is_empty() {
            change.encode()
        } else {
            change.encode_with_context(context)?
        };
        Ok(self.append_as_leader(EntryKind::ConfChange, data)?)
    }

    /// The configuration in force (the latest in the log).
    pub fn conf_state(&self) -> ConfState {
        self.conf.current().clone()
    }

    /// Index of the latest membership change in the log, if it is not committed yet
    /// (0 otherwise): while non-zero, [`Raft::propose_conf_change`] refuses.
    pub fn pending_conf_index(&self) -> Index {
        let i = self.conf.last_change_index();
        if i > self.log.committed { i } else { 0 }
    }

    /// Leader only: voters it heard from within the last one to two election
    /// timeouts (check-quorum bookkeeping), itself included. Empty on other nodes.
    pub fn recently_active_voters(&self) -> Vec<NodeId> {
        if self.role != Role::Leader {
            return Vec::new();
        }
        self.voters
            .iter()
            .copied()
            .filter(|&id| {
                id == self.cfg.id || self.progress.get(&id).is_some_and(|p| p.is_active())
            })
            .collect()
    }

    /// Leader only: whether the voters of the configuration `change` would lead to
    /// include a majority that the leader heard from recently — what a server checks
    /// before removing a member while others are unreachable. False on other nodes
    /// and for changes that do not apply.
    pub fn change_keeps_quorum(&self, change: ConfChange) -> bool {
        let Ok(next) = change.apply_to(self.conf.current()) else {
            return false;
        };
        let active: BTreeSet<NodeId> = self.recently_active_voters().into_iter().collect();
        if active.is_empty() {
            return false;
        }
        let voters: BTreeSet<NodeId> = next.voters.iter().copied().collect();
        crate::quorum::has_quorum(&voters, |id| active.contains(&id))
    }

    /// Whether this node may start an election: it is a voter of the configuration
    /// in force — or it was one in the committed configuration and the change that
    /// removed it is not committed yet. Thesis §4.2.2: such a node can still be
    /// needed to elect a leader (its log may be the most up to date, so the others
    /// cannot win without it), and it is safe for it to win with a majority of the
    /// new configuration, not counting itself, since majorities of configurations
    /// one change apart overlap. Once the removal is committed, it never campaigns.
    pub(crate) fn can_campaign(&self) -> bool {
        self.is_voter()
            || (self.conf.last_change_index() > self.log.committed
                && self
                    .conf
                    .at(self.log.committed)
                    .is_some_and(|c| c.voters.contains(&self.cfg.id)))
    }

    /// Brings the voter/learner sets and, on a leader, the progress map in line with
    /// the configuration in force. Called after every change to the log.
    pub(crate) fn sync_conf(&mut self) {
        let conf = self.conf.current();
        let voters: BTreeSet<NodeId> = conf.voters.iter().copied().collect();
        let learners: BTreeSet<NodeId> = conf.learners.iter().copied().collect();
        if voters == self.voters && learners == self.learners {
            return;
        }
        self.voters = voters;
        self.learners = learners;
        if self.role == Role::Leader {
            let me = self.cfg.id;
            let members: BTreeSet<NodeId> = self
                .voters
                .iter()
                .chain(&self.learners)
                .copied()
                .filter(|&id| id != me)
                .collect();
            self.progress.retain(|id, _| members.contains(id));
            let next = self.log.last_index() + 1;
            for id in members {
                self.progress.entry(id).or_insert_with(|| {
                    let mut p = crate::progress::Progress::new(
                        next,
                        self.cfg.max_inflight_msgs,
                        self.cfg.max_inflight_bytes,
                    );
                    // A new member gets an election timeout before check-quorum
                    // counts it as lost, as every member does at election.
                    p.recent_active = true;
                    p
                });
            }
            if self.lead_transferee != NO_NODE && !self.voters.contains(&self.lead_transferee) {
                self.abort_transfer("the target left the voters");
            }
            // Fewer voters may mean a smaller majority already holds more.
            self.maybe_commit();
        } else if matches!(self.role, Role::Candidate | Role::PreCandidate) && !self.can_campaign()
        {
            // A candidate that learns it is no longer a voter stops campaigning.
            self.become_follower(self.term, NO_NODE);
        }
    }

    /// Entries were appended to the log from `from` on (replacing whatever was
    /// there): roll back changes that were replaced and take up the new ones.
    pub(crate) fn on_log_appended(&mut self, from: Index) {
        self.conf.truncate_from(from);
        let new = self.log.entries_from(from, u64::MAX);
        for (index, change) in self.conf.append(&new) {
            self.events
                .push(Event::ConfChangeAppended { index, change });
        }
        self.sync_conf();
    }

    /// Reports membership changes that became committed since the last report, and
    /// makes a leader that the committed configuration removed step down.
    pub(crate) fn on_conf_committed(&mut self) {
        let committed = self.log.committed;
        if committed <= self.conf_reported {
            return;
        }
        let newly = self.conf.changes_in(self.conf_reported, committed);
        self.conf_reported = committed;
        let mut prev: Option<ConfState> = None;
        for (index, conf) in newly {
            let before = match prev.take() {
                Some(c) => c,
                None => self.conf.at(index - 1).unwrap_or_default(),
            };
            self.events.extend(membership_events(index, &before, &conf));
            prev = Some(conf);
        }
        if self.role == Role::Leader
            && !self.is_voter()
            && self.conf.last_change_index() <= committed
        {
            // Thesis §4.2.2: the leader of a configuration it is not part of steps
            // down once that configuration is committed.
            self.events
                .push(Event::SteppedDownRemoved { term: self.term });
            self.become_follower(self.term, NO_NODE);
        }
    }
}

/// Events describing what changed between two configurations.
fn membership_events(index: Index, before: &ConfState, after: &ConfState) -> Vec<Event> {
    let mut out = Vec::new();
    for &id in &after.learners {
        if !before.contains(id) {
            out.push(Event::MemberAdded {
                id,
                learner: true,
                index,
            });
        }
    }
    for &id in &after.voters {
        if before.learners.contains(&id) {
            out.push(Event::MemberPromoted { id, index });
        } else if !before.contains(id) {
            out.push(Event::MemberAdded {
                id,
                learner: false,
                index,
            });
        }
    }
    for id in before.voters.iter().chain(&before.learners) {
        if !after.contains(*id) {
            out.push(Event::MemberRemoved { id: *id, index });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_rejects_everything_else() {
        for c in [
            ConfChange::AddLearner(4),
            ConfChange::PromoteLearner(u64::MAX),
            ConfChange::Remove(1),
        ] {
            assert_eq!(ConfChange::decode(&c.encode()), Ok(c));
        }
        let good = ConfChange::Remove(7).encode().to_vec();
        assert!(ConfChange::decode(&good[..9]).is_err(), "short");
        let mut long = good.clone();
        long.push(0);
        assert!(ConfChange::decode(&long).is_err(), "trailing byte");
        let mut v = good.clone();
        v[0] = 3;
        assert_eq!(
            ConfChange::decode(&v),
            Err(ConfChangeDecodeError::Version { version: 3 })
        );
        let mut op = good.clone();
        op[1] = 9;
        assert_eq!(
            ConfChange::decode(&op),
            Err(ConfChangeDecodeError::Operation { op: 9 })
        );
        let zero = [1u8, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            ConfChange::decode(&zero),
            Err(ConfChangeDecodeError::ZeroNode)
        );
        assert!(ConfChange::decode(&[]).is_err());
    }

    #[test]
    fn context_round_trips_and_is_bounded() {
        let c = ConfChange::AddLearner(4);
        let data = c
            .encode_with_context(b"10.0.0.4:7000")
            .expect("small context");
        assert_eq!(
            ConfChange::decode_with_context(&data),
            Ok((c, &b"10.0.0.4:7000"[..]))
        );
        assert_eq!(ConfChange::decode(&data), Ok(c));
        assert_eq!(
            ConfChange::decode_with_context(&c.encode()),
            Ok((c, &b""[..]))
        );
        let mut short = data.to_vec();
        short.pop();
        assert!(ConfChange::decode(&short).is_err(), "context cut short");
        let mut long = data.to_vec();
        long.push(b'x');
        assert!(
            ConfChange::decode(&long).is_err(),
            "bytes after the context"
        );
        let big = vec![0u8; MAX_CONF_CONTEXT_BYTES + 1];
        assert!(matches!(
            c.encode_with_context(&big),
            Err(ConfChangeError::ContextTooLarge { .. })
        ));
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes() {
        let mut rng = crate::SplitMix64::new(7);
        for len in 0..24 {
            for _ in 0..200 {
                let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                if let Ok((c, ctx)) = ConfChange::decode_with_context(&data) {
                    let again = if data[0] == ENCODING_VERSION {
                        c.encode()
                    } else {
                        c.encode_with_context(ctx).expect("context within bounds")
                    };
                    assert_eq!(again.as_ref(), &data[..], "one encoding per change");
                }
            }
        }
    }

    #[test]
    fn changes_apply_only_where_they_make_sense() {
        let conf = ConfState {
            voters: vec![1, 2, 3],
            learners: vec![4],
        };
        assert_eq!(
            ConfChange::AddLearner(2).apply_to(&conf),
            Err(ConfChangeError::AlreadyMember { id: 2 })
        );
        assert_eq!(
            ConfChange::PromoteLearner(3).apply_to(&conf),
            Err(ConfChangeError::NotLearner { id: 3 })
        );
        assert_eq!(
            ConfChange::Remove(9).apply_to(&conf),
            Err(ConfChangeError::UnknownNode { id: 9 })
        );
        let promoted = ConfChange::PromoteLearner(4)
            .apply_to(&conf)
            .expect("4 is a learner");
        assert_eq!(promoted.voters, vec![1, 2, 3, 4]);
        assert!(promoted.learners.is_empty());
        let single = ConfState::with_voters([1]);
        assert_eq!(
            ConfChange::Remove(1).apply_to(&single),
            Err(ConfChangeError::LastVoter { id: 1 })
        );
    }

    #[test]
    fn history_rolls_back_on_truncation_and_folds_on_compaction() {
        let entry = |index, c: ConfChange| Entry {
            term: 1,
            index,
            kind: EntryKind::ConfChange,
            data: c.encode(),
        };
        let mut h = ConfHistory::new(ConfState::with_voters([1, 2, 3]), 0);
        h.append(&[entry(3, ConfChange::AddLearner(4))]);
        h.append(&[entry(5, ConfChange::PromoteLearner(4))]);
        assert_eq!(h.current().voters, vec![1, 2, 3, 4]);
        assert_eq!(h.at(4).map(|c| c.learners), Some(vec![4]));
        h.truncate_from(5);
        assert_eq!(h.current().voters, vec![1, 2, 3], "rolled back");
        h.compact_to(4);
        assert_eq!(h.at(3), None, "compacted away");
        assert_eq!(h.current().learners, vec![4]);
        assert_eq!(h.last_change_index(), 4);
    }
}
