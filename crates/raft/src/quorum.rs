//! Majority arithmetic over a voter set (Raft §5.2 elections, §5.3 commitment).
//!
//! Kept apart from the rest so that joint consensus (a majority of the old *and* of
//! the new configuration, thesis §4.3) can be added by combining two of these.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{Index, NodeId};

/// Outcome of counting votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VoteResult {
    /// A majority granted.
    Won,
    /// A majority can no longer be reached.
    Lost,
    /// Not decided yet.
    Pending,
}

/// Number of voters that form a majority.
pub(crate) fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// The highest index replicated on a majority of `voters`, given each voter's
/// acknowledged index (missing voters count as 0).
pub(crate) fn committed_index(voters: &BTreeSet<NodeId>, acked: impl Fn(NodeId) -> Index) -> Index {
    if voters.is_empty() {
        return 0;
    }
    let mut indexes: Vec<Index> = voters.iter().map(|&id| acked(id)).collect();
    indexes.sort_unstable_by(|a, b| b.cmp(a));
    indexes[majority(voters.len()) - 1]
}

/// Counts `votes` (granted or refused, by voter) against `voters`.
pub(crate) fn vote_result(voters: &BTreeSet<NodeId>, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    let need = majority(voters.len());
    let granted = voters
        .iter()
        .filter(|id| votes.get(id) == Some(&true))
        .count();
    let refused = voters
        .iter()
        .filter(|id| votes.get(id) == Some(&false))
        .count();
    if granted >= need {
        VoteResult::Won
    } else if voters.len() - refused < need {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

/// Whether the nodes for which `active` holds form a majority of `voters`.
pub(crate) fn has_quorum(voters: &BTreeSet<NodeId>, active: impl Fn(NodeId) -> bool) -> bool {
    voters.iter().filter(|&&id| active(id)).count() >= majority(voters.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn committed_index_is_the_majority_median() {
        let voters = set(&[1, 2, 3, 4, 5]);
        let acked = |id| [0, 9, 7, 5, 3, 1][id as usize];
        // Sorted descending: 9 7 5 3 1 -> three of five have at least 5.
        assert_eq!(committed_index(&voters, acked), 5);
        let three = set(&[1, 2, 3]);
        assert_eq!(committed_index(&three, acked), 7);
        assert_eq!(committed_index(&set(&[4]), acked), 3);
    }

    #[test]
    fn votes_win_lose_or_wait() {
        let voters = set(&[1, 2, 3, 4, 5]);
        let mut votes = BTreeMap::new();
        votes.insert(1, true);
        votes.insert(2, true);
        assert_eq!(vote_result(&voters, &votes), VoteResult::Pending);
        votes.insert(3, true);
        assert_eq!(vote_result(&voters, &votes), VoteResult::Won);
        let mut votes = BTreeMap::new();
        for id in [1, 2, 3] {
            votes.insert(id, false);
        }
        assert_eq!(vote_result(&voters, &votes), VoteResult::Lost);
        votes.insert(9, true);
        assert_eq!(
            vote_result(&voters, &votes),
            VoteResult::Lost,
            "non-voters don't count"
        );
    }

    #[test]
    fn quorum_of_active_nodes() {
        let voters = set(&[1, 2, 3]);
        assert!(has_quorum(&voters, |id| id != 3));
        assert!(!has_quorum(&voters, |id| id == 1));
    }
}
