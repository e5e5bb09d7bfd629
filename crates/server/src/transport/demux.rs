//! Inbound messages by group: a node hosts a set of Raft groups, and the
//! receiver lets in only their messages (and snapshot offers). One stream per
//! peer carries every group's messages (docs/sharding.md, "Transport"); a
//! message for a group this node does not host is dropped and counted — it never
//! creates a replica: replicas are created only by the runtime, from the log of
//! the group that decides placement.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use crossbeam_channel::{Sender, TrySendError};
use keel_raft::{GroupId, Message};
use prometheus_client::metrics::counter::Counter;

use crate::log_limit::{LogLimit, left_out};

/// The groups this node hosts, as the transport's receiver sees them. Cheap to
/// clone; clones share the set and the counter.
#[derive(Clone, Debug)]
pub struct HostedGroups {
    groups: Arc<RwLock<BTreeSet<GroupId>>>,
    /// Messages and offers dropped for a group not hosted here.
    unknown: Counter,
    log: Arc<LogLimit>,
}

impl HostedGroups {
    /// Hosts `groups`; drops of other groups' messages are counted in `unknown`.
    pub fn new(groups: impl IntoIterator<Item = GroupId>, unknown: Counter) -> Self {
        HostedGroups {
            groups: Arc::new(RwLock::new(groups.into_iter().collect())),
            unknown,
            log: Arc::new(LogLimit::default()),
        }
    }

    /// Lets `group`'s messages in from now on.
    pub fn host(&self, group: GroupId) {
        self.groups
            .write()
            .expect("hosted groups lock poisoned")
            .insert(group);
    }

    /// Stops letting `group`'s messages in: this node no longer hosts it.
    pub fn unhost(&self, group: GroupId) {
        self.groups
            .write()
            .expect("hosted groups lock poisoned")
            .remove(&group);
    }

    /// Whether this node hosts `group`.
    pub fn contains(&self, group: GroupId) -> bool {
        self.groups
            .read()
            .expect("hosted groups lock poisoned")
            .contains(&group)
    }

    /// Counts (and now and then logs) a message or offer for `group`, which this
    /// node does not host, that was dropped.
    pub fn count_unknown(&self, group: GroupId) {
        self.unknown.inc();
        if let Some(n) = self.log.admit() {
            tracing::warn!(
                group,
                "dropped a peer message for group {group}, which this node does not host{}",
                left_out(n)
            );
        }
    }

    /// Messages and offers dropped so far because their group is not hosted.
    pub fn dropped_unknown(&self) -> u64 {
        self.unknown.get()
    }
}

/// What became of an inbound message.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the consensus thread.
    Queued,
    /// The consensus thread's queue is full: dropped (Raft retransmits).
    QueueFull,
    /// Its group is not hosted here: dropped and counted.
    UnknownGroup,
}

/// Hands inbound messages of hosted groups to the consensus thread, which steps
/// each into its group's core.
#[derive(Clone, Debug)]
pub struct GroupDemux {
    hosted: HostedGroups,
    inbox: Sender<Message>,
}

impl GroupDemux {
    /// Delivers hosted groups' messages into `inbox`.
    pub fn new(hosted: HostedGroups, inbox: Sender<Message>) -> Self {
        GroupDemux { hosted, inbox }
    }

    /// The hosted groups this demultiplexer admits.
    pub fn hosted(&self) -> &HostedGroups {
        &self.hosted
    }

    /// Delivers `m` if its group is hosted here.
    pub fn deliver(&self, m: Message) -> Delivery {
        if !self.hosted.contains(m.group) {
            self.hosted.count_unknown(m.group);
            return Delivery::UnknownGroup;
        }
        match self.inbox.try_send(m) {
            Ok(()) => Delivery::Queued,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Delivery::QueueFull,
        }
    }
}

#[cfg(test)]
mod tests {
    use keel_raft::MessageBody;

    use super::*;

    fn heartbeat(group: GroupId) -> Message {
        Message {
            group,
            from: 2,
            to: 1,
            term: 3,
            body: MessageBody::Heartbeat {
                commit: 0,
                read_seq: 0,
                lease: 0,
                quiesce: false,
            },
        }
    }

    #[test]
    fn a_message_for_a_group_not_hosted_is_dropped_and_counted() {
        let (tx, rx) = crossbeam_channel::bounded(8);
        let demux = GroupDemux::new(HostedGroups::new([1], Counter::default()), tx);
        assert_eq!(demux.deliver(heartbeat(1)), Delivery::Queued);
        assert_eq!(demux.deliver(heartbeat(2)), Delivery::UnknownGroup);
        assert_eq!(demux.deliver(heartbeat(u64::MAX)), Delivery::UnknownGroup);
        assert_eq!(demux.hosted().dropped_unknown(), 2);
        let delivered: Vec<GroupId> = rx.try_iter().map(|m| m.group).collect();
        assert_eq!(
            delivered,
            vec![1],
            "only the hosted group's message got through"
        );
    }

    #[test]
    fn a_group_hosted_later_is_let_in_and_the_count_is_shared() {
        let (tx, rx) = crossbeam_channel::bounded(8);
        let counter = Counter::default();
        let hosted = HostedGroups::new([1], counter.clone());
        let demux = GroupDemux::new(hosted.clone(), tx);
        assert_eq!(demux.deliver(heartbeat(5)), Delivery::UnknownGroup);
        hosted.host(5);
        assert_eq!(demux.deliver(heartbeat(5)), Delivery::Queued);
        assert_eq!(counter.get(), 1, "the metric is the same counter");
        assert_eq!(rx.len(), 1);
    }

    #[test]
    fn a_full_queue_drops_without_counting_an_unknown_group() {
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let demux = GroupDemux::new(HostedGroups::new([1], Counter::default()), tx);
        assert_eq!(demux.deliver(heartbeat(1)), Delivery::Queued);
        assert_eq!(demux.deliver(heartbeat(1)), Delivery::QueueFull);
        assert_eq!(demux.hosted().dropped_unknown(), 0);
    }
}
