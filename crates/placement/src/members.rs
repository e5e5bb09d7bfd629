//! Which nodes of a new cluster host the placement group.

use crate::ids::NodeId;

/// Most voters the placement group starts with: five tolerate two failures,
/// and more would only slow down changes to a map that changes rarely.
pub const MAX_PLACEMENT_MEMBERS: usize = 5;

/// The placement group's members for a cluster whose initial members are
/// `initial`: the lowest node ids, as many as the largest odd count of at most
/// [`MAX_PLACEMENT_MEMBERS`] (an even count tolerates no more failures than the
/// odd count below it, and needs a larger quorum).
///
/// Every initial member computes this from the same `--initial-cluster` list, so
/// they agree on it without talking. Duplicates and zeros are ignored; the
/// result is sorted and empty only if `initial` holds no node.
pub fn placement_members(initial: &[NodeId]) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = initial.iter().copied().filter(|&id| id != 0).collect();
    ids.sort_unstable();
    ids.dedup();
    let count = ids.len().min(MAX_PLACEMENT_MEMBERS);
    // The largest odd count up to `count` (0 stays 0).
    let count = if count.is_multiple_of(2) {
        count.saturating_sub(1)
    } else {
        count
    };
    ids.truncate(count);
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_counts_up_to_five_of_the_lowest_ids() {
        assert_eq!(placement_members(&[]), Vec::<NodeId>::new());
        assert_eq!(placement_members(&[7]), vec![7]);
        assert_eq!(placement_members(&[2, 1]), vec![1]);
        assert_eq!(placement_members(&[3, 1, 2]), vec![1, 2, 3]);
        assert_eq!(placement_members(&[4, 3, 2, 1]), vec![1, 2, 3]);
        assert_eq!(placement_members(&[5, 4, 3, 2, 1]), vec![1, 2, 3, 4, 5]);
        assert_eq!(placement_members(&[6, 5, 4, 3, 2, 1]), vec![1, 2, 3, 4, 5]);
        let nine: Vec<NodeId> = (1..=9).rev().collect();
        assert_eq!(placement_members(&nine), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn ids_need_not_be_dense_and_duplicates_and_zero_do_not_count() {
        assert_eq!(placement_members(&[40, 10, 30, 20]), vec![10, 20, 30]);
        assert_eq!(placement_members(&[5, 5, 0, 9]), vec![5]);
    }

    #[test]
    fn the_answer_does_not_depend_on_the_order_given() {
        let a = placement_members(&[9, 2, 7, 4, 1, 8]);
        let b = placement_members(&[1, 2, 4, 7, 8, 9]);
        assert_eq!(a, b);
        assert_eq!(a, vec![1, 2, 4, 7, 8]);
    }
}
