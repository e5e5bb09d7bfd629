//! Snapshots on the network.
//!
//! A leader's `InstallSnapshot` carries only metadata. As in the server, the
//! runtime does not send it as a message: it streams the snapshot it names (the
//! leader's own snapshot file, or model snapshot) to the follower, one transfer per
//! follower at a time, and the follower's runtime stores and verifies the data
//! before its core steps the `InstallSnapshot`. A transfer takes time by its size,
//! and is lost like a message — to loss, to a cut link, to a recipient that is down
//! — and like a stream: a recipient that restarts meanwhile breaks it, and a sender
//! that crashes takes its transfers with it. The sender learns the outcome
//! over the network too — a lost answer is a failure even though the data arrived —
//! or, when nothing comes back, after a timeout; either way it reports to its core
//! with `Raft::report_snapshot`.

use std::collections::BTreeMap;

use keel_raft::{Message, MessageBody, NodeId, SnapshotMeta};

use super::{Scheduled, Simulation, Stop};
use crate::config::TICK;
use crate::network::CUT;
use crate::node::Input;
use crate::storage::SnapshotData;
use crate::trace::{MsgSummary, SnapshotStep, TraceEvent};

/// How fast a snapshot streams, in bytes per nominal tick: snapshots of a few
/// hundred keys take about a tick.
const BYTES_PER_TICK: u64 = 16 << 10;

/// One transfer on its way.
#[derive(Debug)]
struct Transfer {
    /// The `InstallSnapshot` the follower's core steps once the data is stored.
    message: Message,
    /// The sender's incarnation: the transfer dies with it.
    incarnation: u32,
    /// The recipient's incarnation when the transfer started.
    to_incarnation: u32,
    data: SnapshotData,
}

/// The transfers on their way, by id.
#[derive(Debug, Default)]
pub(super) struct Transfers {
    next: u64,
    running: BTreeMap<u64, Transfer>,
}

fn meta_of(m: &Message) -> &SnapshotMeta {
    match &m.body {
        MessageBody::InstallSnapshot { meta } => meta,
        other => unreachable!("a snapshot transfer carries an InstallSnapshot, not {other:?}"),
    }
}

impl Simulation {
    /// Step 1 of a leader's `Ready`: an `InstallSnapshot` starts a transfer of the
    /// snapshot it names (unless one to that follower is running: its outcome will
    /// be reported).
    pub(super) fn start_transfer(&mut self, m: Message) -> Result<(), Stop> {
        let (from, to, meta) = (m.from, m.to, meta_of(&m).clone());
        let incarnation = self.node(from).incarnation;
        let p = self.process_mut(from).expect("a sender runs");
        if !p.snaps.sending.insert(to) {
            self.snapshot_event(from, to, &meta, SnapshotStep::AlreadySending);
            return Ok(());
        }
        let data = match p.storage.snapshot_data(&meta) {
            Ok(Some(data)) => data,
            // Replaced by newer ones meanwhile; the core will ask again.
            Ok(None) => {
                self.transfer_failed(from, to, &meta, "the snapshot is gone");
                return Ok(());
            }
            Err(error) => return Err(Stop::Storage { node: from, error }),
        };
        self.stats.snapshots_sent += 1;
        let bytes = data.len();
        self.snapshot_event(from, to, &meta, SnapshotStep::Sending { bytes });
        let (a, b) = (self.host_of(from), self.host_of(to));
        let delays = self.net.route(a, b, &mut self.rng);
        let Some(&delay) = delays.first() else {
            self.transfer_failed(from, to, &meta, "lost");
            return Ok(());
        };
        let time = delay + bytes * TICK / BYTES_PER_TICK + self.rng.range(0, TICK / 2);
        let to_incarnation = self.node(to).incarnation;
        let t = &mut self.transfers;
        t.next += 1;
        let id = t.next;
        t.running.insert(
            id,
            Transfer {
                message: m,
                incarnation,
                to_incarnation,
                data,
            },
        );
        self.schedule(time, Scheduled::TransferArrives(id));
        Ok(())
    }

    /// The recipient of transfer `id`, while it is on its way.
    pub(super) fn transfer_recipient(&self, id: u64) -> Option<NodeId> {
        self.transfers.running.get(&id).map(|t| t.message.to)
    }

    /// Records a failed transfer; the sender hears of it after a timeout.
    fn transfer_failed(
        &mut self,
        from: NodeId,
        to: NodeId,
        meta: &SnapshotMeta,
        why: &'static str,
    ) {
        self.snapshot_event(from, to, meta, SnapshotStep::Lost { why });
        let incarnation = self.node(from).incarnation;
        let timeout = self.rng.range(TICK, 5 * TICK);
        self.schedule(
            timeout,
            Scheduled::TransferDone {
                node: from,
                incarnation,
                peer: to,
                meta: meta.clone(),
                success: false,
            },
        );
    }

    /// Transfer `id` reaches its recipient: stored there, then stepped into its
    /// core, and the answer starts back.
    pub(super) fn on_transfer_arrives(&mut self, id: u64) -> Result<(), Stop> {
        let Some(t) = self.transfers.running.remove(&id) else {
            return Ok(());
        };
        let (from, to, meta) = (t.message.from, t.message.to, meta_of(&t.message).clone());
        let sender = self.node(from);
        if sender.incarnation != t.incarnation || !sender.is_up() {
            // The stream broke with the sender, and no one is left to tell.
            self.snapshot_event(
                from,
                to,
                &meta,
                SnapshotStep::Lost {
                    why: "sender crashed",
                },
            );
            return Ok(());
        }
        let recipient = self.node(to);
        let why = if self.net.is_cut(self.host_of(from), self.host_of(to)) {
            Some(CUT)
        } else if !recipient.is_up() {
            Some("recipient down")
        } else if recipient.incarnation != t.to_incarnation {
            Some("recipient restarted")
        } else {
            None
        };
        if let Some(why) = why {
            self.transfer_failed(from, to, &meta, why);
            return Ok(());
        }
        let p = self.process_mut(to).expect("checked up");
        if let Err(error) = p.storage.receive_snapshot(&meta, &t.data) {
            return Err(Stop::Storage { node: to, error });
        }
        self.snapshot_event(to, from, &meta, SnapshotStep::Received);
        let (a, b) = (self.host_of(to), self.host_of(from));
        match self.net.route(a, b, &mut self.rng).first() {
            Some(&delay) => {
                let incarnation = t.incarnation;
                self.schedule(
                    delay,
                    Scheduled::TransferDone {
                        node: from,
                        incarnation,
                        peer: to,
                        meta,
                        success: true,
                    },
                );
            }
            None => self.transfer_failed(from, to, &meta, "answer lost"),
        }
        self.record(TraceEvent::Deliver(MsgSummary::of(&t.message)));
        self.feed(to, Input::Message(t.message))
    }

    /// The sender learns how its transfer to `peer` ended and tells its core.
    pub(super) fn on_transfer_done(
        &mut self,
        node: NodeId,
        incarnation: u32,
        peer: NodeId,
        meta: &SnapshotMeta,
        success: bool,
    ) -> Result<(), Stop> {
        if self.node(node).incarnation != incarnation {
            return Ok(());
        }
        let Some(p) = self.process_mut(node) else {
            return Ok(());
        };
        p.snaps.sending.remove(&peer);
        if !success {
            self.stats.snapshots_failed += 1;
        }
        self.snapshot_event(node, peer, meta, SnapshotStep::Reported { success });
        self.feed(node, Input::SnapshotReport { peer, success })
    }
}
