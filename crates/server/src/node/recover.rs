//! Start-up: open the WAL (recovering it), open the state machine, and rebuild the
//! consensus core from both.

use std::path::Path;
use std::sync::Arc;

use keel_raft::{ConfState, Config, InitialState, Raft};
use keel_storage::kv::KvStore;
use keel_storage::vfs::{StdVfs, Vfs};
use keel_storage::wal::{Wal, WalOptions};

use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::events::EventLog;
use crate::identity::{Identity, os_random_u64};
use crate::members::MemberBook;

/// The Raft group that holds the key-value data (the only one until sharding).
pub const KV_GROUP: u64 = 1;

/// What start-up produces.
pub(crate) struct Recovered {
    pub(crate) raft: Raft,
    pub(crate) wal: Wal,
    pub(crate) kv: Arc<KvStore>,
    /// Snapshot files and what is known of them.
    pub(crate) snapshots: super::snapshots::SnapshotState,
    /// Members' addresses as of the recovered log.
    pub(crate) book: Arc<MemberBook>,
    /// Index of the newest membership change in the recovered log (0: none).
    pub(crate) conf_index: u64,
}

pub(crate) fn recover(
    cfg: &ServerConfig,
    identity: &Identity,
    events: &mut EventLog,
) -> Result<Recovered, ServerError> {
    let vfs: Arc<dyn Vfs> = Arc::new(StdVfs::new());
    let wal_dir = cfg.data_dir.join("wal");
    let opts = WalOptions {
        segment_bytes: cfg.wal_segment_bytes,
    };
    let (mut wal, mut recovery) = Wal::open(vfs.clone(), &wal_dir, opts)?;
    if let Some(torn) = &recovery.torn_tail {
        let line = format!(
            "Node {} found a torn write at the end of its log ({} at offset {}, {} bytes) \
             and truncated it; this is expected after a crash.",
            cfg.id,
            torn.file.display(),
            torn.offset,
            torn.discarded_bytes
        );
        tracing::warn!("{line}");
        events.note(&line);
    }
    // Only group 1 is hosted so far; the WAL keeps any other group's records
    // (none yet), and compaction keeps the segments holding them.
    let group = recovery.groups.remove(&KV_GROUP).unwrap_or_default();
    let kv = Arc::new(KvStore::open(vfs.clone(), &state_path(&cfg.data_dir))?);
    // Snapshots: the newest valid one, installed if the state machine is behind it,
    // and the log cut to what follows it (`snapshots.rs`).
    let boot = super::snapshots::boot(cfg, vfs, &kv, &mut wal, (KV_GROUP, group), events)?;
    let applied = boot.applied;
    let (election_ticks, heartbeat_ticks) = cfg.ticks();
    let (lease_duration, max_clock_drift) = cfg.lease_nanos();
    let raft_cfg = Config {
        id: cfg.id,
        group: KV_GROUP,
        election_ticks,
        heartbeat_ticks,
        lease_duration,
        max_clock_drift,
        ..Config::default()
    };
    // The member book: bootstrap, then the snapshot's, then the log's changes.
    let book = Arc::new(MemberBook::new(&identity.members));
    for (id, info) in boot.book {
        book.record(id, info);
    }
    let mut conf_index = 0;
    for e in &boot.entries {
        if e.kind == keel_raft::EntryKind::ConfChange {
            conf_index = e.index;
        }
        if let Some((id, info)) = super::membership::member_of_entry(e) {
            book.record(id, info);
        }
    }
    let entries = boot.entries.len();
    let init = InitialState {
        hard_state: boot.hard_state,
        conf: ConfState::with_voters(identity.members.keys().copied()),
        snapshot: boot.snapshot,
        entries: boot.entries,
        applied,
    };
    let mut raft = Raft::new(raft_cfg, init, os_random_u64())?;
    inject_test_bug(&mut raft);
    events.note(&format!(
        "Node {} started: term {}, {} log entries, applied through index {applied}.",
        cfg.id,
        raft.term(),
        entries
    ));
    Ok(Recovered {
        raft,
        wal,
        kv,
        snapshots: boot.state,
        book,
        conf_index,
    })
}

/// Where the state machine lives in a data directory.
pub fn state_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("state.redb")
}

/// Switches on the core's side of a test bug (`crate::test_bugs`); nothing without
/// the `test-bugs` feature.
fn inject_test_bug(raft: &mut Raft) {
    use crate::test_bugs::{TestBug, active};
    if active(TestBug::LeaseWithoutDriftMargin) {
        raft.inject_bug(Some(keel_raft::InjectedBug::LeaseWithoutDriftMargin));
    }
    #[cfg(feature = "test-bugs")]
    if active(TestBug::NoNoop) {
        raft.inject_bug(Some(keel_raft::InjectedBug::NoNoopAtTermStart));
    }
}
