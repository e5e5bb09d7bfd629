use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::{
    ConfState, Config, Entry, EntryKind, Event, HardState, InitialState, Message, MessageBody,
    NodeId, Raft, ReadState, Role, SnapshotMeta,
};

/// Durable state of one node in the harness.
#[derive(Default, Clone)]
pub(crate) struct Disk {
    pub(crate) hard_state: HardState,
    /// The snapshot the stored log starts after, if any.
    pub(crate) snapshot: Option<SnapshotMeta>,
    pub(crate) entries: Vec<Entry>,
}

impl Disk {
    fn offset(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.index)
    }

    fn append(&mut self, entries: &[Entry]) {
        if let Some(first) = entries.first() {
            let keep = (first.index - 1 - self.offset()) as usize;
            assert!(keep <= self.entries.len(), "gap in the stored log");
            self.entries.truncate(keep);
            self.entries.extend(entries.iter().cloned());
        }
    }

    /// The Ready contract for a snapshot: the log starts after it, nothing before.
    fn install(&mut self, meta: &SnapshotMeta) {
        self.entries.clear();
        self.snapshot = Some(meta.clone());
    }
}

pub(crate) fn config(id: NodeId) -> Config {
    Config {
        id,
        group: 1,
        election_ticks: 10,
        heartbeat_ticks: 1,
        ..Config::default()
    }
}

pub(crate) struct Network {
    pub(crate) nodes: BTreeMap<NodeId, Raft>,
    pub(crate) disks: BTreeMap<NodeId, Disk>,
    /// Messages sent and not yet delivered.
    pub(crate) queue: VecDeque<Message>,
    /// Links (from, to) that drop everything.
    pub(crate) cut: BTreeSet<(NodeId, NodeId)>,
    /// Entries applied by each node, in order.
    pub(crate) applied: BTreeMap<NodeId, Vec<Entry>>,
    pub(crate) read_states: BTreeMap<NodeId, Vec<ReadState>>,
    pub(crate) events: BTreeMap<NodeId, Vec<Event>>,
    /// Nodes that persist asynchronously: their writes wait in `in_flight` until
    /// `persist` makes them durable.
    pub(crate) async_nodes: BTreeSet<NodeId>,
    pub(crate) in_flight: BTreeMap<NodeId, VecDeque<InFlightWrite>>,
    /// The group's bootstrap configuration (what a restarted or new node starts
    /// from, with its log's membership changes on top).
    pub(crate) bootstrap: ConfState,
    /// Snapshots each node installed from a leader, in order.
    pub(crate) installed: BTreeMap<NodeId, Vec<SnapshotMeta>>,
    /// Report every delivered InstallSnapshot to its sender as a success (as a
    /// runtime whose stream completed would).
    pub(crate) auto_report_snapshots: bool,
}

/// A Ready's storage work handed off by an asynchronous node.
pub(crate) struct InFlightWrite {
    number: u64,
    entries: Vec<Entry>,
    hard_state: Option<HardState>,
    snapshot: Option<SnapshotMeta>,
    persisted_messages: Vec<Message>,
}

impl Network {
    pub(crate) fn new(n: u64) -> Network {
        Self::with_config(n, config)
    }

    pub(crate) fn with_config(n: u64, cfg: impl Fn(NodeId) -> Config) -> Network {
        let ids: Vec<NodeId> = (1..=n).collect();
        let mut net = Network {
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            applied: BTreeMap::new(),
            read_states: BTreeMap::new(),
            events: BTreeMap::new(),
            async_nodes: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            bootstrap: ConfState::with_voters(ids.clone()),
            installed: BTreeMap::new(),
            auto_report_snapshots: true,
        };
        for &id in &ids {
            let init = InitialState {
                conf: ConfState::with_voters(ids.clone()),
                ..InitialState::default()
            };
            net.nodes.insert(
                id,
                Raft::new(cfg(id), init, id * 7919).expect("valid config"),
            );
            net.disks.insert(id, Disk::default());
        }
        net
    }

    pub(crate) fn node(&self, id: NodeId) -> &Raft {
        &self.nodes[&id]
    }

    pub(crate) fn node_mut(&mut self, id: NodeId) -> &mut Raft {
        self.nodes.get_mut(&id).expect("node exists")
    }

    /// Processes one node's Ready per the contract, queueing its messages. An
    /// asynchronous node hands its writes to `in_flight` instead of persisting.
    pub(crate) fn process(&mut self, id: NodeId) {
        let asynchronous = self.async_nodes.contains(&id);
        let node = self.nodes.get_mut(&id).expect("node exists");
        while node.has_ready() {
            let mut rd = node.ready();
            self.queue.extend(rd.messages.drain(..));
            self.applied
                .entry(id)
                .or_default()
                .extend(rd.committed_entries.iter().cloned());
            self.read_states
                .entry(id)
                .or_default()
                .extend(rd.read_states.iter().copied());
            self.events
                .entry(id)
                .or_default()
                .extend(rd.events.iter().cloned());
            if asynchronous {
                self.in_flight
                    .entry(id)
                    .or_default()
                    .push_back(InFlightWrite {
                        number: rd.number,
                        entries: std::mem::take(&mut rd.entries),
                        hard_state: rd.hard_state,
                        snapshot: rd.snapshot.take(),
                        persisted_messages: std::mem::take(&mut rd.persisted_messages),
                    });
                node.advance_async(rd);
                continue;
            }
            let disk = self.disks.get_mut(&id).expect("disk exists");
            if let Some(meta) = &rd.snapshot {
                disk.install(meta);
                self.installed.entry(id).or_default().push(meta.clone());
            }
            disk.append(&rd.entries);
            if let Some(hs) = rd.hard_state {
                disk.hard_state = hs;
            }
            self.queue.extend(rd.persisted_messages.drain(..));
            node.advance(rd);
        }
    }

    /// Makes every in-flight write of an asynchronous node durable, in order,
    /// reporting each to the core and releasing its persisted messages.
    pub(crate) fn persist(&mut self, id: NodeId) {
        let writes: Vec<InFlightWrite> = self.in_flight.entry(id).or_default().drain(..).collect();
        for w in writes {
            let disk = self.disks.get_mut(&id).expect("disk exists");
            if let Some(meta) = &w.snapshot {
                disk.install(meta);
                self.installed.entry(id).or_default().push(meta.clone());
            }
            disk.append(&w.entries);
            if let Some(hs) = w.hard_state {
                disk.hard_state = hs;
            }
            self.queue.extend(w.persisted_messages);
            self.node_mut(id).on_persisted(w.number);
        }
        self.process(id);
    }

    pub(crate) fn process_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.process(id);
        }
    }

    /// Delivers one message (unless its link is cut or its target is down).
    pub(crate) fn deliver(&mut self, m: Message) {
        if self.cut.contains(&(m.from, m.to)) {
            return;
        }
        let to = m.to;
        let snapshot_from = matches!(m.body, MessageBody::InstallSnapshot { .. }).then_some(m.from);
        if let Some(node) = self.nodes.get_mut(&to) {
            node.step(m).expect("well-formed message");
            self.process(to);
            if let Some(leader) = snapshot_from
                && self.auto_report_snapshots
                && let Some(l) = self.nodes.get_mut(&leader)
            {
                l.report_snapshot(to, true);
                self.process(leader);
            }
        }
    }

    /// Processes and delivers until nothing is left in flight.
    pub(crate) fn stabilize(&mut self) {
        self.process_all();
        let mut rounds = 0;
        while let Some(m) = self.queue.pop_front() {
            self.deliver(m);
            rounds += 1;
            assert!(rounds < 1_000_000, "network does not settle");
        }
    }

    /// Takes every queued message without delivering it.
    pub(crate) fn take_queue(&mut self) -> Vec<Message> {
        self.process_all();
        self.queue.drain(..).collect()
    }

    pub(crate) fn tick(&mut self, id: NodeId, n: u32) {
        for _ in 0..n {
            self.node_mut(id).tick();
        }
        self.process(id);
    }

    /// Ticks node `id` once and settles the network, `n` times: the leader's
    /// heartbeat rounds, or a follower's election timer, with every message
    /// delivered in between.
    pub(crate) fn run(&mut self, id: NodeId, n: u32) {
        for _ in 0..n {
            self.tick(id, 1);
            self.stabilize();
        }
    }

    /// Three heartbeat rounds of `leader`: enough for commit indexes and
    /// acknowledgements to reach every connected node.
    pub(crate) fn settle(&mut self, leader: NodeId) {
        self.run(leader, 3);
    }

    /// Makes `id` campaign (skipping pre-vote timing) and settles the network.
    pub(crate) fn elect(&mut self, id: NodeId) {
        self.node_mut(id).campaign();
        self.stabilize();
        assert_eq!(
            self.node(id).role(),
            Role::Leader,
            "node {id} failed to win"
        );
    }

    /// Lets the given nodes forget they heard from a leader recently, as if an
    /// election timeout passed (so they consider vote requests again).
    pub(crate) fn expire_lease(&mut self, ids: &[NodeId]) {
        for &id in ids {
            let node = self.node_mut(id);
            node.election_elapsed = node.cfg.election_ticks;
        }
    }

    pub(crate) fn isolate(&mut self, id: NodeId) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for other in ids {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    pub(crate) fn heal(&mut self) {
        self.cut.clear();
    }

    pub(crate) fn propose(&mut self, id: NodeId, data: &str) -> (u64, u64) {
        let at = self
            .node_mut(id)
            .propose(Bytes::from(data.to_string()))
            .expect("leader accepts the proposal");
        self.process(id);
        at
    }

    /// Restarts a node from its disk, forgetting everything volatile.
    pub(crate) fn restart(&mut self, id: NodeId) {
        let disk = self.disks[&id].clone();
        let applied = disk.snapshot.as_ref().map_or(0, |s| s.index);
        let init = InitialState {
            hard_state: disk.hard_state,
            conf: self.bootstrap.clone(),
            snapshot: disk.snapshot,
            entries: disk.entries,
            applied,
        };
        let cfg = self.nodes[&id].cfg.clone();
        self.applied.remove(&id);
        self.nodes.insert(
            id,
            Raft::new(cfg, init, id * 104_729).expect("valid config"),
        );
    }

    /// Adds node `id` with an empty disk, starting from the bootstrap
    /// configuration (as a node joining an existing group must).
    pub(crate) fn add_node(&mut self, id: NodeId) {
        let init = InitialState {
            conf: self.bootstrap.clone(),
            ..InitialState::default()
        };
        let cfg = self.nodes[&1].cfg.clone();
        self.nodes.insert(
            id,
            Raft::new(Config { id, ..cfg }, init, id * 7919).expect("valid config"),
        );
        self.disks.insert(id, Disk::default());
    }

    /// Events of one node so far.
    pub(crate) fn events_of(&self, id: NodeId) -> &[Event] {
        self.events.get(&id).map_or(&[], Vec::as_slice)
    }

    /// Lets a node take a snapshot of everything it applied and compact its log,
    /// keeping entries from `keep_from` on.
    pub(crate) fn compact(&mut self, id: NodeId, keep_from: u64) -> SnapshotMeta {
        let node = self.node_mut(id);
        let meta = node
            .snapshot_meta(node.applied_index())
            .expect("applied index is in the log");
        node.compact(meta.clone(), keep_from)
            .expect("valid snapshot");
        meta
    }

    /// Data of the normal entries a node applied.
    pub(crate) fn applied_data(&self, id: NodeId) -> Vec<String> {
        self.applied
            .get(&id)
            .map(|es| {
                es.iter()
                    .filter(|e| e.kind == EntryKind::Normal)
                    .map(|e| String::from_utf8_lossy(&e.data).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub(crate) fn entry(index: u64, term: u64) -> Entry {
    Entry {
        term,
        index,
        kind: EntryKind::Normal,
        data: Bytes::from(format!("e{index}t{term}")),
    }
}
