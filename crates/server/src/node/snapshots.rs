//! Snapshots in the node runtime: taking them, compacting the log behind them,
//! sending them to followers that need compacted entries, installing a leader's,
//! and starting from them after a restart.
//!
//! # Taking a snapshot and compacting
//!
//! Once `snapshot_entries` entries were applied since the last snapshot, the
//! consensus thread takes a redb read view (cheap) and the core's metadata for the
//! view's applied index, and a background thread writes the file from the view
//! while applies continue. When it is durable, the consensus thread tells the core
//! (`Raft::compact`), which drops its in-memory log up to `snapshot_trailing_entries`
//! behind the snapshot.
//!
//! The WAL is cut further back: its log starts after the *previous* snapshot, so
//! that if the newest file is found damaged at start-up, the older one plus the
//! WAL still rebuild the state. And it is cut only once the state machine is
//! durable at or beyond that point (the apply thread flushes periodically), so
//! recovery never needs a WAL entry that is gone. Files: the newest two are kept.
//!
//! # Installing a leader's snapshot
//!
//! The transport receives and verifies the file, then hands the core an
//! `InstallSnapshot`; when the core answers with `Ready::snapshot`, the state
//! machine is replaced atomically (a new database file, fsync, rename; see
//! `keel_storage::kv::install`), then the WAL records that the log starts after the
//! snapshot and is fsynced — all before the Ready's acknowledgement goes out.
//!
//! A crash between those two steps leaves an installed state machine and an old
//! log: start-up sees a snapshot the log does not match (or reach) and starts the
//! log after it, exactly as the interrupted step would have.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use keel_raft::{Entry, HardState, Index, Message, MessageBody, NodeId, SnapshotMeta, Term};
use keel_storage::kv::KvStore;
use keel_storage::snapshot::{
    SnapshotError, SnapshotFile, SnapshotInfo, SnapshotOptions, SnapshotStore,
};
use keel_storage::vfs::Vfs;
use keel_storage::wal::{LogStart, LogStartKind, RecoveredGroup, Wal};

use super::apply::ApplyJob;
use super::ctx::NodeCtx;
use super::group::{Group, group_note};
use super::recover::KV_GROUP;
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::events::EventLog;
use crate::members::{MemberInfo, decode_conf, encode_conf};
use crate::transport::{SnapshotOutbox, TransferOutcome};

/// After a failed snapshot write, wait this long before trying again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);
/// Snapshots remembered as valid (the newest `SnapshotOptions::keep` exist).
const KNOWN_SNAPSHOTS: usize = 2;

/// The core's metadata for a verified snapshot file, and the member book it
/// carries.
fn meta_of(info: &SnapshotInfo) -> Result<(SnapshotMeta, SnapshotBook), String> {
    let (conf, book) = decode_conf(&info.header.conf)
        .map_err(|e| format!("snapshot {}: {e}", info.path.display()))?;
    let meta = SnapshotMeta {
        index: info.header.index,
        term: info.header.term,
        conf,
    };
    Ok((meta, book))
}

/// Member book entries recorded in a snapshot.
pub(crate) type SnapshotBook = Vec<(NodeId, MemberInfo)>;

/// What start-up hands the core, after reconciling snapshots, WAL and state machine.
pub(crate) struct SnapshotBoot {
    /// The snapshot the log starts after, if any.
    pub(crate) snapshot: Option<SnapshotMeta>,
    /// The member book it records.
    pub(crate) book: SnapshotBook,
    /// Log entries after it.
    pub(crate) entries: Vec<Entry>,
    /// The state machine's applied index (at least the snapshot's).
    pub(crate) applied: Index,
    /// The recovered hard state, its commit index within `[applied, last]`.
    pub(crate) hard_state: HardState,
    /// The runtime's snapshot state.
    pub(crate) state: SnapshotState,
}

/// Snapshot files known at start-up, for the runtime.
pub(crate) struct SnapshotState {
    pub(crate) store: Arc<SnapshotStore>,
    /// Valid snapshots, oldest first.
    known: Vec<(Index, Term)>,
    /// The state machine's durable applied index (updated by the apply thread).
    pub(crate) durable_applied: Arc<AtomicU64>,
}

/// Where the key-value group's snapshots live in a data directory.
pub fn snapshot_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    group_snapshot_dir(data_dir, KV_GROUP)
}

/// Where group `group`'s snapshots live in a data directory.
pub(crate) fn group_snapshot_dir(
    data_dir: &std::path::Path,
    group: keel_raft::GroupId,
) -> std::path::PathBuf {
    data_dir.join("snap").join(group.to_string())
}

/// Start-up of group `group_id`: finds the newest valid snapshot (refusing
/// damaged ones), installs it if the state machine is behind it, and cuts the
/// recovered log to what follows.
pub(crate) fn boot(
    cfg: &ServerConfig,
    vfs: Arc<dyn Vfs>,
    kv: &KvStore,
    wal: &mut Wal,
    (group_id, group): (keel_raft::GroupId, RecoveredGroup),
    events: &mut EventLog,
) -> Result<SnapshotBoot, ServerError> {
    let id = cfg.id;
    let dir = group_snapshot_dir(&cfg.data_dir, group_id);
    let snap_err = |e: SnapshotError| ServerError::Recovery(format!("snapshots: {e}"));
    let (store, removed) =
        SnapshotStore::open(vfs, &dir, group_id, SnapshotOptions::default()).map_err(snap_err)?;
    for path in removed {
        events.note(&format!(
            "Node {id} removed an unfinished snapshot file {} left by an interrupted write or transfer.",
            path.display()
        ));
    }
    let found = store.newest_valid().map_err(snap_err)?;
    let mut refused = Vec::new();
    for e in &found.refused {
        let aside = set_aside(e);
        let line = format!(
            "Node {id} refused a damaged snapshot: {e}. It will not be loaded{aside}; \
             falling back to an older snapshot or the log."
        );
        tracing::error!("{line}");
        events.note(&line);
        refused.push(e.to_string());
    }
    let refused_note = if refused.is_empty() {
        String::new()
    } else {
        format!(" (refused: {})", refused.join("; "))
    };
    let log_start = group.log_start;
    let mut hard_state = group.hard_state;
    let wal_last = group.last_index();
    let mut entries = group.entries;
    let mut applied = kv.applied_index();
    let mut known = Vec::new();
    let mut book = Vec::new();
    let snapshot = match found.snapshot {
        None => {
            if let Some(ls) = log_start {
                return Err(ServerError::Recovery(format!(
                    "the log was compacted (it starts after index {}) but no valid snapshot \
                     in {} covers the entries before it{refused_note}; restore a snapshot \
                     file, or remove this node and add it back with an empty data directory",
                    ls.index,
                    dir.display()
                )));
            }
            None
        }
        Some(info) => {
            let (meta, snapshot_book) = meta_of(&info).map_err(ServerError::Recovery)?;
            book = snapshot_book;
            if let Some(ls) = log_start
                && ls.index > meta.index
            {
                return Err(ServerError::Recovery(format!(
                    "the newest valid snapshot ({}) ends at index {}, but the log starts \
                     after index {}: entries {}..={} are nowhere{refused_note}",
                    info.path.display(),
                    meta.index,
                    ls.index,
                    meta.index + 1,
                    ls.index
                )));
            }
            if applied < meta.index {
                let started = Instant::now();
                let file = SnapshotFile {
                    path: info.path.clone(),
                    term: meta.term,
                    index: meta.index,
                };
                store.install(kv, &file).map_err(|e| {
                    ServerError::Recovery(format!(
                        "cannot install snapshot {}: {e}",
                        info.path.display()
                    ))
                })?;
                events.note(&format!(
                    "Node {id} installed its snapshot at index {} (term {}) at start-up: \
                     the state machine was at index {applied} ({} keys, {} ms).",
                    meta.index,
                    meta.term,
                    info.records,
                    started.elapsed().as_millis()
                ));
                applied = kv.applied_index();
            }
            // Does the log continue this snapshot? It does if it holds the
            // snapshot's last entry, or starts right after it.
            let continues = log_start
                .is_some_and(|ls| ls.index == meta.index && ls.term == meta.term)
                || entries
                    .iter()
                    .any(|e| e.index == meta.index && e.term == meta.term);
            if continues {
                entries.retain(|e| e.index > meta.index);
            } else {
                // An install whose log step did not happen (a crash in between),
                // or a log that ends before the snapshot: start the log after it.
                if !entries.is_empty() || wal_last != meta.index {
                    events.note(&format!(
                        "Node {id}'s log (up to index {wal_last}) does not continue its snapshot \
                         at index {}; the log now starts after the snapshot.",
                        meta.index
                    ));
                }
                entries.clear();
                wal.set_log_start(
                    group_id,
                    LogStart {
                        index: meta.index,
                        term: meta.term,
                        kind: LogStartKind::Installed,
                    },
                )?;
                wal.sync()?;
            }
            known.push((meta.index, meta.term));
            Some(meta)
        }
    };
    let first_snapshot = snapshot.as_ref().map_or(0, |s| s.index);
    let last = entries.last().map_or(first_snapshot, |e| e.index);
    if applied > last {
        return Err(ServerError::Recovery(format!(
            "the state machine has applied index {applied} but the log ends at {last}: \
             log entries the node had acknowledged are missing"
        )));
    }
    hard_state.commit = hard_state.commit.max(applied).min(last);
    Ok(SnapshotBoot {
        snapshot,
        book,
        entries,
        applied,
        hard_state,
        state: SnapshotState {
            store: Arc::new(store),
            known,
            durable_applied: Arc::new(AtomicU64::new(applied)),
        },
    })
}

/// Renames a damaged snapshot file to `<name>.corrupt`, so that it is never sent,
/// counted as one of the kept snapshots, or loaded again; an operator can inspect
/// it. Returns a note for the event log.
fn set_aside(e: &SnapshotError) -> String {
    let file = match e {
        SnapshotError::Corrupt { file, .. }
        | SnapshotError::Truncated { file, .. }
        | SnapshotError::Mismatch { file, .. } => file,
        _ => return String::new(),
    };
    let mut aside = file.clone().into_os_string();
    aside.push(".corrupt");
    match std::fs::rename(file, &aside) {
        Ok(()) => format!(" (renamed to {})", std::path::Path::new(&aside).display()),
        Err(err) => format!(" (could not rename it: {err})"),
    }
}

/// A finished background write.
struct WriteOutcome {
    meta: SnapshotMeta,
    result: Result<SnapshotInfo, SnapshotError>,
    elapsed: Duration,
}

/// The consensus thread's snapshot state.
pub(crate) struct Snapshots {
    store: Arc<SnapshotStore>,
    /// Entries applied between snapshots (0: never).
    every: u64,
    /// This node's extra entries before its next snapshot, drawn in
    /// `[0, every / 4]` per snapshot, so that the members of a group do not all
    /// write a snapshot at the same moment (and slow writes down together).
    jitter: u64,
    /// Entries kept behind a snapshot.
    trailing: u64,
    known: Vec<(Index, Term)>,
    durable_applied: Arc<AtomicU64>,
    /// The background write in progress.
    writing: Option<Receiver<WriteOutcome>>,
    /// No new write before this (after a failure).
    not_before: Instant,
    /// A WAL compaction waiting for the state machine to be durable far enough:
    /// the new log start and the highest index segments may be deleted up to.
    pending_wal: Option<(LogStart, Index)>,
    /// The pending compaction starts the log at the newest snapshot file itself
    /// (`compact_to_newest_snapshot`): recovery installs that file if the state
    /// machine is behind it, so it need not wait for a flush.
    pending_wal_at_newest: bool,
    outbox: SnapshotOutbox,
    outcomes: Receiver<TransferOutcome>,
    /// Peers a transfer is running to (one at a time each).
    sending: BTreeSet<NodeId>,
    /// The node's WAL holds too much because of this group (`pressure.rs`):
    /// snapshot now, whatever the schedule, and compact up to that snapshot.
    for_pressure: bool,
}

impl Snapshots {
    pub(crate) fn new(
        state: SnapshotState,
        every: u64,
        trailing: u64,
        outbox: SnapshotOutbox,
        outcomes: Receiver<TransferOutcome>,
    ) -> Self {
        Snapshots {
            store: state.store,
            every,
            jitter: draw_jitter(every),
            trailing,
            known: state.known,
            durable_applied: state.durable_applied,
            writing: None,
            not_before: Instant::now(),
            pending_wal: None,
            pending_wal_at_newest: false,
            outbox,
            outcomes,
            sending: BTreeSet::new(),
            for_pressure: false,
        }
    }

    /// Applied index from which the next snapshot is due.
    /// Whether nothing is under way or due with the state machine at
    /// `applied`: no snapshot being written or sent, no transfer outcome or
    /// WAL compaction waiting, none asked for by WAL pressure, and not enough
    /// applied for the next one. (A group with all that may be parked:
    /// `quiet::may_park`.)
    pub(crate) fn is_idle(&self, applied: Index) -> bool {
        self.writing.is_none()
            && self.sending.is_empty()
            && self.outcomes.is_empty()
            && self.pending_wal.is_none()
            && !self.for_pressure
            && (self.every == 0 || applied < self.due_at())
    }

    fn due_at(&self) -> Index {
        self.last_index()
            .saturating_add(self.every)
            .saturating_add(self.jitter)
    }

    fn last_index(&self) -> Index {
        self.known.last().map_or(0, |k| k.0)
    }

    fn remember(&mut self, index: Index, term: Term) {
        self.known.push((index, term));
        self.known.sort_unstable();
        self.known.dedup();
        let excess = self.known.len().saturating_sub(KNOWN_SNAPSHOTS);
        self.known.drain(..excess);
    }
}

fn is_snapshot(m: &Message) -> bool {
    matches!(m.body, MessageBody::InstallSnapshot { .. })
}

impl Group {
    /// Once per turn, outside any Ready: finishes a background write (compacting
    /// the core), reports finished transfers to the core, compacts the WAL once
    /// the state machine is durable far enough, and starts a write when due.
    pub(crate) fn snapshot_turn(&mut self, ctx: &mut NodeCtx) -> Result<(), ServerError> {
        self.finish_snapshot_write();
        while let Ok(o) = self.snapshots.outcomes.try_recv() {
            self.snapshots.sending.remove(&o.peer);
            let id = self.raft.id();
            let line = match &o.result {
                Ok(()) => format!(
                    "Node {id} sent its snapshot at index {} to Node {} ({} bytes in {} ms).",
                    o.index,
                    o.peer,
                    o.bytes,
                    o.elapsed.as_millis()
                ),
                Err(e) => format!(
                    "Node {id} could not send its snapshot at index {} to Node {}: {e}.",
                    o.index, o.peer
                ),
            };
            group_note(&self.events, &line);
            self.raft.report_snapshot(o.peer, o.result.is_ok());
        }
        self.compact_wal_when_durable(ctx)?;
        self.maybe_start_snapshot();
        Ok(())
    }

    fn maybe_start_snapshot(&mut self) {
        let s = &self.snapshots;
        if s.every == 0 || s.writing.is_some() || Instant::now() < s.not_before {
            return;
        }
        // A snapshot file needs space; the log grows no more while the disk is full.
        if self.raft.disk_full() {
            return;
        }
        let last = s.last_index();
        if self.kv.applied_index() < s.due_at() && !s.for_pressure {
            return;
        }
        let view = match self.kv.read_view() {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("cannot take a read view for a snapshot: {e}");
                self.snapshots.not_before = Instant::now() + RETRY_AFTER_FAILURE;
                return;
            }
        };
        let index = view.applied_index();
        if index <= last {
            if self.snapshots.for_pressure {
                // Nothing applied since the newest snapshot: it covers the log.
                self.compact_to_newest_snapshot();
            }
            return;
        }
        let meta = match self.raft.snapshot_meta(index) {
            Ok(m) if m.term == view.applied_term() => m,
            Ok(m) => {
                tracing::warn!(
                    "not taking a snapshot at index {index}: the state machine records term {} \
                     for it, the log {}",
                    view.applied_term(),
                    m.term
                );
                self.snapshots.not_before = Instant::now() + RETRY_AFTER_FAILURE;
                return;
            }
            Err(e) => {
                tracing::debug!("not taking a snapshot at index {index} yet: {e}");
                return;
            }
        };
        let conf = encode_conf(&meta.conf, &self.membership.book.entries_for(&meta.conf));
        let store = self.snapshots.store.clone();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let spawned = std::thread::Builder::new()
            .name(format!("keel-snapshot-{}", self.raft.id()))
            .spawn(move || {
                let started = Instant::now();
                let result = store.write(&view, conf);
                let applied = view.applied_index();
                // Release the view at once: while it lives, redb cannot reuse pages.
                drop(view);
                // A newer file may have come from the leader and wait to be
                // installed: only files up to this snapshot are purged.
                if result.is_ok()
                    && let Err(e) = store.purge_through(applied)
                {
                    tracing::warn!("cannot remove old snapshots: {e}");
                }
                let _ = tx.send(WriteOutcome {
                    meta,
                    result,
                    elapsed: started.elapsed(),
                });
            });
        match spawned {
            Ok(_) => self.snapshots.writing = Some(rx),
            Err(e) => {
                tracing::warn!("cannot start the snapshot thread: {e}");
                self.snapshots.not_before = Instant::now() + RETRY_AFTER_FAILURE;
            }
        }
    }

    fn finish_snapshot_write(&mut self) {
        let Some(rx) = &self.snapshots.writing else {
            return;
        };
        let outcome = match rx.try_recv() {
            Ok(o) => o,
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => {
                self.snapshots.writing = None;
                self.snapshots.not_before = Instant::now() + RETRY_AFTER_FAILURE;
                tracing::error!("the snapshot thread stopped without a result");
                return;
            }
        };
        self.snapshots.writing = None;
        let id = self.raft.id();
        let info = match outcome.result {
            Ok(info) => info,
            Err(e) => {
                self.snapshots.not_before = Instant::now() + RETRY_AFTER_FAILURE;
                group_note(
                    &self.events,
                    &format!("Node {id} failed to write a snapshot: {e}."),
                );
                return;
            }
        };
        let meta = outcome.meta;
        let s = &self.snapshots;
        let keep_from = (meta.index + 1).saturating_sub(s.trailing).max(1);
        let prev = s.known.last().copied();
        if let Err(e) = self.raft.compact(meta.clone(), keep_from) {
            tracing::warn!("the core refused the snapshot at index {}: {e}", meta.index);
            return;
        }
        group_note(
            &self.events,
            &format!(
                "Node {id} took a snapshot at index {} (term {}): {} keys, {} bytes, in {} ms; \
             its log in memory now starts at index {}.",
                meta.index,
                meta.term,
                info.records,
                info.len,
                outcome.elapsed.as_millis(),
                self.raft.first_index()
            ),
        );
        self.snapshots.remember(meta.index, meta.term);
        self.snapshots.jitter = draw_jitter(self.snapshots.every);
        if self.snapshots.for_pressure {
            self.compact_to_newest_snapshot();
            return;
        }
        // The WAL keeps what the previous snapshot needs (see the module docs).
        if let Some((index, term)) = prev
            && index < meta.index
        {
            let start = LogStart {
                index,
                term,
                kind: LogStartKind::Compacted,
            };
            let up_to = meta
                .index
                .saturating_sub(self.snapshots.trailing)
                .min(index);
            self.snapshots.pending_wal = Some((start, up_to));
            self.snapshots.pending_wal_at_newest = false;
        }
    }

    /// Asks for a snapshot to relieve the WAL (`pressure.rs`), unless one is
    /// already asked for.
    pub(super) fn snapshot_for_pressure(&mut self) {
        // A compaction already pending frees the segment once it runs.
        if self.snapshots.every != 0 && self.snapshots.pending_wal.is_none() {
            self.snapshots.for_pressure = true;
        }
    }

    /// Under WAL pressure: lets the WAL go up to the newest snapshot itself,
    /// without the trailing window and without keeping the previous snapshot's
    /// entries (a quiet group may never take a second snapshot, and its few
    /// entries would otherwise keep every later segment of every group). A
    /// follower that needs an entry before it gets the snapshot.
    fn compact_to_newest_snapshot(&mut self) {
        self.snapshots.for_pressure = false;
        if let Some(&(index, term)) = self.snapshots.known.last() {
            let start = LogStart {
                index,
                term,
                kind: LogStartKind::Compacted,
            };
            self.snapshots.pending_wal = Some((start, index));
            self.snapshots.pending_wal_at_newest = true;
        }
    }

    fn compact_wal_when_durable(&mut self, ctx: &mut NodeCtx) -> Result<(), ServerError> {
        let Some((start, up_to)) = self.snapshots.pending_wal else {
            return Ok(());
        };
        // Its writes would only queue behind the ones waiting for space.
        if ctx.disk.stalled() {
            return Ok(());
        }
        // Recovery replays the WAL after the state machine's durable index: never
        // let it drop an entry the durable state machine does not hold (unless
        // the log starts at the newest snapshot file, which recovery installs).
        if !self.snapshots.pending_wal_at_newest
            && self.snapshots.durable_applied.load(Ordering::Acquire) < start.index
        {
            return Ok(());
        }
        self.snapshots.pending_wal = None;
        let group = self.id();
        let current = ctx.wal.log_start(group);
        if current.is_some_and(|cur| cur.index > start.index) {
            return Ok(());
        }
        if current.is_none_or(|cur| cur.index < start.index) {
            ctx.wal.set_log_start(group, start)?;
        }
        let done = match ctx.compact_wal(group, up_to) {
            Ok(done) => done,
            // Nothing was deleted and the WAL is intact; the next snapshot's
            // compaction covers these segments too.
            Err(e) if e.is_no_space() => {
                tracing::warn!("WAL compaction skipped: {e}");
                ctx.metrics.wal_no_space.inc();
                return Ok(());
            }
            Err(e) => return Err(ServerError::Fatal(format!("WAL compaction failed: {e}"))),
        };
        let id = self.raft.id();
        group_note(
            &self.events,
            &format!(
                "Node {id} compacted its log: it now starts after index {}, and {} WAL segment(s) \
             were deleted.",
                start.index,
                done.removed.len()
            ),
        );
        Ok(())
    }

    /// Step 1 of a Ready: `InstallSnapshot` messages are not sent as messages; a
    /// transfer of the snapshot file starts instead (one per peer at a time).
    pub(super) fn divert_snapshot_messages(&mut self, ctx: &NodeCtx, messages: &mut Vec<Message>) {
        if !messages.iter().any(is_snapshot) {
            return;
        }
        let (snaps, rest): (Vec<Message>, Vec<Message>) =
            std::mem::take(messages).into_iter().partition(is_snapshot);
        *messages = rest;
        for m in snaps {
            let MessageBody::InstallSnapshot { meta } = &m.body else {
                continue;
            };
            if !self.snapshots.sending.insert(m.to) {
                continue;
            }
            match ctx.transport.peer_addr(m.to) {
                Some(addr) => {
                    self.snapshots
                        .outbox
                        .start(m.to, addr.to_string(), m.term, meta.index);
                }
                None => {
                    // Reported next turn (the core cannot be told inside a Ready).
                    let _ = self.snapshots.outbox.done.try_send(TransferOutcome {
                        peer: m.to,
                        index: meta.index,
                        bytes: 0,
                        result: Err("no address for the peer".into()),
                        elapsed: Duration::ZERO,
                    });
                }
            }
        }
    }

    /// Step 2 of a Ready with `snapshot` (see `keel_raft::Ready`): install the
    /// received file into the state machine, then make the log start after it, both
    /// durable before the Ready's acknowledgements go out.
    pub(super) fn install_snapshot(
        &mut self,
        ctx: &mut NodeCtx,
        meta: SnapshotMeta,
    ) -> Result<(), ServerError> {
        let id = self.raft.id();
        let file = SnapshotFile {
            path: self.snapshots.store.path_of(meta.term, meta.index),
            term: meta.term,
            index: meta.index,
        };
        let started = Instant::now();
        let installed = match self.snapshots.store.install(&self.kv, &file) {
            Ok(info) => Some(info),
            // The state machine is there already (nothing to replace).
            Err(SnapshotError::Stale { .. }) => None,
            // The core already took the snapshot: going on without it would
            // diverge. Stopping leaves the old state, which a restart recovers.
            Err(e) => {
                return Err(ServerError::Fatal(format!(
                    "cannot install the snapshot at index {}: {e}",
                    meta.index
                )));
            }
        };
        let group = self.id();
        ctx.wal.set_log_start(
            group,
            LogStart {
                index: meta.index,
                term: meta.term,
                kind: LogStartKind::Installed,
            },
        )?;
        // A full disk here too stops the node: the state machine was already
        // replaced, and a restart finishes the install from the snapshot file.
        // (A node that knows its disk is full refuses snapshots, so this is rare.)
        ctx.wal.sync().map_err(|e| {
            ServerError::Fatal(format!(
                "cannot record the installed snapshot in the WAL, stopping to protect the \
                 log: {e}"
            ))
        })?;
        // Older compactions would move the log start back.
        self.snapshots.pending_wal = None;
        // The installed state machine is durable (fsynced and renamed in place), so
        // the segments the snapshot covers can go now: otherwise every restart
        // would read them, until this node's own second snapshot.
        let removed = ctx
            .compact_wal(group, meta.index)
            .map_err(|e| ServerError::Fatal(format!("WAL compaction failed: {e}")))?
            .removed
            .len();
        self.snapshots.remember(meta.index, meta.term);
        self.snapshots
            .durable_applied
            .fetch_max(self.kv.applied_index(), Ordering::AcqRel);
        if removed > 0 {
            group_note(
                &self.events,
                &format!(
                    "Node {id} compacted its log after installing the snapshot: {removed} WAL \
                 segment(s) were deleted."
                ),
            );
        }
        if let Some(info) = installed {
            match decode_conf(&info.header.conf) {
                Ok((_, entries)) => self.learn_members(ctx, entries),
                Err(e) => tracing::warn!("the installed snapshot's member book is unreadable: {e}"),
            }
            group_note(
                &self.events,
                &format!(
                    "Node {id} installed the leader's snapshot at index {} (term {}): {} keys, \
                 {} bytes, in {} ms.",
                    meta.index,
                    meta.term,
                    info.records,
                    info.len,
                    started.elapsed().as_millis()
                ),
            );
        }
        // Reads waiting for an index the snapshot covers are answered now.
        self.hand_to_apply(ctx, ApplyJob::SnapshotInstalled { index: meta.index })
    }
}

/// A random number of extra entries in `[0, every / 4]` (see `Snapshots::jitter`).
fn draw_jitter(every: u64) -> u64 {
    crate::identity::os_random_u64() % (every / 4 + 1)
}
