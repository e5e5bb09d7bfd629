//! Per-group consensus metrics: each hosted group's term, commit and applied
//! indexes, whether this node leads it, and the leader changes it saw, labelled
//! `group="<id>"` (`group="placement"` for the placement group).
//!
//! The node-level gauges (`keel_term`, `keel_commit_index`, ...) stay group 1's,
//! as they were before sharding; on a node hosting several groups these are
//! what tells an operator which groups it leads and whether a replica lags.
//!
//! A group gets its handles once, when it is hosted ([`GroupFamilies::handles`]),
//! so the consensus thread's per-turn publication is a few atomic stores, not a
//! label lookup; the labels go when the replica is deleted
//! ([`GroupFamilies::forget`]), so a moved-away group does not linger in scrapes.

use keel_placement::PLACEMENT_GROUP;
use keel_raft::GroupId;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

impl GroupLabels {
    fn of(group: GroupId) -> Self {
        let group = if group == PLACEMENT_GROUP {
            "placement".to_string()
        } else {
            group.to_string()
        };
        GroupLabels { group }
    }
}

/// The per-group metric families, registered once per node.
#[derive(Debug, Default)]
pub struct GroupFamilies {
    term: Family<GroupLabels, Gauge>,
    commit_index: Family<GroupLabels, Gauge>,
    applied_index: Family<GroupLabels, Gauge>,
    is_leader: Family<GroupLabels, Gauge>,
    leader_changes: Family<GroupLabels, Counter>,
}

/// One hosted group's metrics: shared handles into [`GroupFamilies`].
#[derive(Clone, Debug, Default)]
pub struct GroupGauges {
    /// The group's current term as this replica knows it.
    pub term: Gauge,
    /// Its highest index known committed.
    pub commit_index: Gauge,
    /// Its highest index applied to this replica's state machine.
    pub applied_index: Gauge,
    /// 1 while this replica leads the group, else 0.
    pub is_leader: Gauge,
    /// Times this replica saw a new leader of the group (itself included).
    pub leader_changes: Counter,
}

impl GroupFamilies {
    /// Registers the families in `r` (under its prefix); the registry and
    /// `self` share them.
    pub(crate) fn register(&self, r: &mut Registry) {
        r.register("group_term", "Current term, by group", self.term.clone());
        r.register(
            "group_commit_index",
            "Highest committed index, by group",
            self.commit_index.clone(),
        );
        r.register(
            "group_applied_index",
            "Highest index applied to this replica, by group",
            self.applied_index.clone(),
        );
        r.register(
            "group_is_leader",
            "1 while this node leads the group, by group",
            self.is_leader.clone(),
        );
        r.register(
            "group_leader_changes",
            "Times this node saw a new leader of the group, by group",
            self.leader_changes.clone(),
        );
    }

    /// `group`'s handles, created (at zero) if it had none.
    pub fn handles(&self, group: GroupId) -> GroupGauges {
        let l = GroupLabels::of(group);
        GroupGauges {
            term: self.term.get_or_create(&l).clone(),
            commit_index: self.commit_index.get_or_create(&l).clone(),
            applied_index: self.applied_index.get_or_create(&l).clone(),
            is_leader: self.is_leader.get_or_create(&l).clone(),
            leader_changes: self.leader_changes.get_or_create(&l).clone(),
        }
    }

    /// Drops `group`'s series: this node no longer hosts it.
    pub fn forget(&self, group: GroupId) {
        let l = GroupLabels::of(group);
        self.term.remove(&l);
        self.commit_index.remove(&l);
        self.applied_index.remove(&l);
        self.is_leader.remove(&l);
        self.leader_changes.remove(&l);
    }
}

#[cfg(test)]
mod tests {
    use crate::metrics::Metrics;

    use super::*;

    #[test]
    fn each_group_has_its_own_series_until_forgotten() {
        let m = Metrics::new();
        let g2 = m.groups.handles(2);
        let placement = m.groups.handles(PLACEMENT_GROUP);
        g2.term.set(4);
        g2.is_leader.set(1);
        g2.applied_index.set(17);
        g2.leader_changes.inc();
        placement.commit_index.set(9);
        // A second lookup shares the first one's values.
        m.groups.handles(2).commit_index.set(18);
        let text = m.encode();
        for needle in [
            "keel_group_term{group=\"2\"} 4",
            "keel_group_is_leader{group=\"2\"} 1",
            "keel_group_applied_index{group=\"2\"} 17",
            "keel_group_commit_index{group=\"2\"} 18",
            "keel_group_leader_changes_total{group=\"2\"} 1",
            "keel_group_commit_index{group=\"placement\"} 9",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        m.groups.forget(2);
        let text = m.encode();
        assert!(!text.contains("group=\"2\""), "group 2 forgotten:\n{text}");
        assert!(text.contains("keel_group_commit_index{group=\"placement\"} 9"));
    }
}
