//! Evening out slots across groups with as few moves as possible.

use std::collections::BTreeMap;

use crate::command::Command;
use crate::ids::GroupId;
use crate::map::ClusterMap;
use crate::slot::Slot;

/// One slot to move: the runtime begins it with [`PlannedMove::begin`] and
/// carries it out by the protocol in `docs/sharding.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedMove {
    /// The slot.
    pub slot: Slot,
    /// Its owner now.
    pub from: GroupId,
    /// Where it goes.
    pub to: GroupId,
}

impl PlannedMove {
    /// The command that starts this move.
    pub fn begin(&self) -> Command {
        Command::BeginSlotMove {
            slot: self.slot,
            to: self.to,
        }
    }
}

/// At most `max_moves` slot moves that bring the groups closer to an even
/// spread; empty once the spread is even.
///
/// Only *full* groups (at their target replica count) take part: a group short
/// of replicas neither receives slots nor gives any away — fix its replicas
/// first. Slots already moving count for their target and are not planned
/// again.
///
/// With `s` slots over `n` full groups, an even spread gives each group
/// `s / n` slots and `s % n` of them one more. Every group ending with `t`
/// slots after starting with `c` must give away at least `c - t`, so the number
/// of moves is at least the sum of those excesses — and this plan makes exactly
/// that many, because it gives the extra slot to the groups that have the most
/// now (swapping an extra slot from a larger group to a smaller one never
/// lowers the sum), and moves only excess slots, each straight to a group short
/// of its share. (When slots in flight cannot be given away, a plan may fall
/// short; planning again after they land finishes the job.)
///
/// Which slots leave a group: its highest-numbered ones, so a freshly split map
/// reads as ranges (`1: 0-2047`, `2: 2048-4095`) in `keel shard status`.
pub fn rebalance(map: &ClusterMap, max_moves: usize) -> Vec<PlannedMove> {
    let full: Vec<GroupId> = map
        .groups()
        .iter()
        .filter(|(_, g)| g.is_full())
        .map(|(&id, _)| id)
        .collect();
    if full.is_empty() {
        return Vec::new();
    }
    // Slots each full group will own once the moves in flight land, and those
    // it owns now and may give away.
    let mut counts: BTreeMap<GroupId, usize> = full.iter().map(|&g| (g, 0)).collect();
    let mut movable: BTreeMap<GroupId, Vec<Slot>> = BTreeMap::new();
    for slot in Slot::all() {
        let Some(owner) = map.owner(slot) else {
            return Vec::new();
        };
        let in_flight = map.moves().get(&slot);
        let eventual = in_flight.map_or(owner, |m| m.to);
        if let Some(count) = counts.get_mut(&eventual) {
            *count += 1;
        }
        if in_flight.is_none() && counts.contains_key(&owner) {
            movable.entry(owner).or_default().push(slot);
        }
    }
    let targets = even_targets(&counts);
    let mut given: Vec<(Slot, GroupId)> = Vec::new();
    for (&group, &count) in &counts {
        let excess = count.saturating_sub(targets[&group]);
        let slots = movable.get(&group).map(Vec::as_slice).unwrap_or_default();
        given.extend(slots.iter().rev().take(excess).map(|&s| (s, group)));
    }
    given.sort();
    let mut given = given.into_iter();
    let mut plan = Vec::new();
    for (&group, &count) in &counts {
        let deficit = targets[&group].saturating_sub(count);
        for (slot, from) in given.by_ref().take(deficit) {
            plan.push(PlannedMove {
                slot,
                from,
                to: group,
            });
        }
    }
    plan.truncate(max_moves);
    plan
}

/// Each group's share of an even spread of the counted slots: `total / n`, and
/// one more for the `total % n` groups that have the most now (lowest id on a
/// tie), which keeps the moves needed to a minimum.
fn even_targets(counts: &BTreeMap<GroupId, usize>) -> BTreeMap<GroupId, usize> {
    let total: usize = counts.values().sum();
    let (base, extra) = (total / counts.len(), total % counts.len());
    let mut by_size: Vec<(GroupId, usize)> = counts.iter().map(|(&g, &c)| (g, c)).collect();
    by_size.sort_by_key(|&(g, c)| (std::cmp::Reverse(c), g));
    by_size
        .into_iter()
        .enumerate()
        .map(|(rank, (g, _))| (g, base + usize::from(rank < extra)))
        .collect()
}
