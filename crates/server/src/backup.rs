//! Backup and restore.
//!
//! A backup (`keel snapshot save`) is a snapshot file (docs/snapshot-format.md) of
//! the leader's state machine, taken after a ReadIndex round so that it holds every
//! write acknowledged before the request: a consistent point-in-time copy, named by
//! its revision (the log index it was taken at). It is written into
//! `<data-dir>/backup/` from a redb read view (applies continue meanwhile), streamed
//! to the client in chunks, and deleted afterwards.
//!
//! A restore (`keel snapshot restore`) seeds one member of a *new* cluster from such
//! a file: the file is verified whole first (a damaged one changes nothing), the
//! state machine is built from it, a snapshot with the new cluster's membership is
//! written, and the log is set to start after it, in the same term. Every member of
//! the new cluster is restored from the same file, so they all start from the same
//! state at the same index.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keel_raft::{ConfState, HardState, Index, NodeId, Term};
use keel_storage::kv::{KvStore, SlotState};
use keel_storage::snapshot::{
    SnapshotChunks, SnapshotFile, SnapshotInfo, SnapshotOptions, SnapshotStore, validate,
};
use keel_storage::vfs::{StdVfs, Vfs};
use keel_storage::wal::{LogStart, LogStartKind, Wal, WalOptions};

use crate::error::ServerError;
use crate::identity::{self, lock_data_dir};
use crate::members::{MemberBook, encode_conf};
use crate::node::{KV_GROUP, snapshot_dir, state_path};

/// Chunk size of a backup stream.
pub const BACKUP_CHUNK_BYTES: usize = 256 << 10;

/// Why no backup was taken.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// One backup at a time per node.
    #[error("a backup is already being taken on this node")]
    Busy,
    /// The state machine does not serve every slot: the key space is sharded
    /// across groups (or a slot is being moved), and this group's copy alone
    /// is not a backup of the cluster.
    #[error(
        "group 1 does not hold the whole key space: {elsewhere} of its slots are served by \
         other groups or are being moved (docs/sharding.md), so a backup of group 1 alone \
         would silently lack their keys; backups of a sharded cluster are not built yet"
    )]
    NotWholeKeySpace {
        /// Slots group 1 does not serve.
        elsewhere: usize,
    },
    /// Reading the state machine or writing the file failed.
    #[error(transparent)]
    Failed(#[from] ServerError),
}

/// A node's backup directory and its one-at-a-time guard.
#[derive(Debug)]
pub struct Backups {
    store: SnapshotStore,
    busy: AtomicBool,
}

/// A backup file being streamed; dropping it deletes the file and frees the slot.
#[derive(Debug)]
pub struct Backup {
    /// The file's description (index, term, keys, length).
    pub info: SnapshotInfo,
    /// Its contents, chunk by chunk.
    pub chunks: SnapshotChunks,
    owner: Arc<Backups>,
}

impl Drop for Backup {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.info.path) {
            tracing::warn!(
                "cannot remove backup file {}: {e}",
                self.info.path.display()
            );
        }
        self.owner.busy.store(false, Ordering::Release);
    }
}

impl Backups {
    /// Opens `<data_dir>/backup/`, removing what an interrupted backup left.
    pub fn open(data_dir: &Path) -> Result<Arc<Backups>, ServerError> {
        let vfs: Arc<dyn Vfs> = Arc::new(StdVfs::new());
        let dir = data_dir.join("backup");
        let (store, _) = SnapshotStore::open(vfs, &dir, KV_GROUP, SnapshotOptions::default())
            .map_err(|e| ServerError::Recovery(format!("backup directory: {e}")))?;
        for old in store
            .list()
            .map_err(|e| ServerError::Recovery(format!("backup directory: {e}")))?
        {
            let _ = std::fs::remove_file(&old.path);
        }
        Ok(Arc::new(Backups {
            store,
            busy: AtomicBool::new(false),
        }))
    }

    /// Writes a snapshot of `kv` as it is now (blocking: run it off the async
    /// threads) and opens it for streaming.
    ///
    /// Refused while another backup runs on this node, and when `kv` does not
    /// hold the whole key space: a slot its read view does not serve (moved to
    /// another group, or in a move) has its keys elsewhere, and a file
    /// restored as a whole cluster would silently lack them.
    pub fn take(self: &Arc<Self>, kv: &KvStore, book: &MemberBook) -> Result<Backup, BackupError> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(BackupError::Busy);
        }
        let taken = (|| -> Result<_, BackupError> {
            let view = kv
                .read_view()
                .map_err(|e| ServerError::Fatal(format!("cannot read the state machine: {e}")))?;
            let table = view
                .slot_table()
                .map_err(|e| ServerError::Fatal(format!("cannot read the slot table: {e}")))?;
            let elsewhere = table
                .iter()
                .filter(|(_, state)| *state != SlotState::Serving)
                .count();
            if elsewhere > 0 {
                return Err(BackupError::NotWholeKeySpace { elsewhere });
            }
            let conf = book.conf();
            let blob = encode_conf(&conf, &book.entries_for(&conf));
            let info = self
                .store
                .write(&view, blob)
                .map_err(|e| ServerError::Fatal(format!("cannot write the backup: {e}")))?;
            let chunks = self
                .store
                .chunks(&info.path, 0, BACKUP_CHUNK_BYTES)
                .map_err(|e| ServerError::Fatal(format!("cannot read the backup: {e}")))?;
            Ok((info, chunks))
        })();
        match taken {
            Ok((info, chunks)) => Ok(Backup {
                info,
                chunks,
                owner: self.clone(),
            }),
            Err(e) => {
                self.busy.store(false, Ordering::Release);
                Err(e)
            }
        }
    }
}

/// What to restore, and as which member of which new cluster.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// The backup file.
    pub file: PathBuf,
    /// The new member's (empty) data directory.
    pub data_dir: PathBuf,
    /// Its id.
    pub id: NodeId,
    /// The new cluster's bootstrap membership (id → advertised gRPC address).
    pub initial_cluster: BTreeMap<NodeId, String>,
    /// The new cluster's token.
    pub cluster_token: String,
}

/// What a restore did.
#[derive(Clone, Debug)]
pub struct Restored {
    /// The revision (log index) restored.
    pub index: Index,
    /// Its term (the new cluster's log continues in a later one).
    pub term: Term,
    /// Keys restored.
    pub keys: u64,
    /// The new cluster's id.
    pub cluster_id: u64,
}

/// Seeds `opts.data_dir` from a backup file as member `opts.id` of a new cluster.
/// Refuses a damaged file and a data directory that is already initialised,
/// changing nothing.
pub fn restore(opts: &RestoreOptions) -> Result<Restored, ServerError> {
    let vfs: Arc<dyn Vfs> = Arc::new(StdVfs::new());
    let fail = |what: String| ServerError::Config(format!("cannot restore: {what}"));
    if !opts.initial_cluster.contains_key(&opts.id) {
        return Err(fail(format!(
            "--initial-cluster does not list this node (--id {})",
            opts.id
        )));
    }
    // Verify every checksum before touching the data directory.
    let info = validate(&*vfs, &opts.file).map_err(|e| fail(format!("{e}")))?;
    if info.header.group != KV_GROUP {
        return Err(fail(format!(
            "{} holds group {}, not the key-value group {KV_GROUP}",
            opts.file.display(),
            info.header.group
        )));
    }
    if std::fs::read_dir(&opts.data_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(fail(format!(
            "{} is not empty; restore into a new (or empty) data directory",
            opts.data_dir.display()
        )));
    }
    // Everything is built in a staging directory renamed into place at the end,
    // so a crash part-way leaves no half-restored node (only the staging
    // directory, which the next restore replaces).
    let staging = staging_dir(&opts.data_dir)?;
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|source| ServerError::Io {
            what: "cannot remove the leftover staging directory",
            path: staging.clone(),
            source,
        })?;
    }
    let cluster_id = build(opts, &info, &staging, vfs)?;
    if opts.data_dir.exists() {
        // Empty (checked above): rename(2) replaces an empty directory.
        std::fs::remove_dir(&opts.data_dir).map_err(|source| ServerError::Io {
            what: "cannot replace the empty data directory",
            path: opts.data_dir.clone(),
            source,
        })?;
    }
    std::fs::rename(&staging, &opts.data_dir).map_err(|source| ServerError::Io {
        what: "cannot rename the restored directory into place",
        path: opts.data_dir.clone(),
        source,
    })?;
    let parent = opts.data_dir.parent().unwrap_or(Path::new("."));
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|source| ServerError::Io {
            what: "cannot fsync",
            path: parent.to_path_buf(),
            source,
        })?;
    Ok(Restored {
        index: info.header.index,
        term: info.header.term,
        keys: info.records,
        cluster_id,
    })
}

/// `<data-dir>.restoring`, beside the data directory.
fn staging_dir(data_dir: &Path) -> Result<PathBuf, ServerError> {
    let name = data_dir.file_name().ok_or_else(|| {
        ServerError::Config(format!(
            "cannot restore into {}: not a directory name",
            data_dir.display()
        ))
    })?;
    let mut staged = name.to_os_string();
    staged.push(".restoring");
    Ok(data_dir.with_file_name(staged))
}

/// Builds a restored node in `dir`; returns the new cluster's id.
fn build(
    opts: &RestoreOptions,
    info: &SnapshotInfo,
    dir: &Path,
    vfs: Arc<dyn Vfs>,
) -> Result<u64, ServerError> {
    let fail = |what: String| ServerError::Config(format!("cannot restore: {what}"));
    let _lock = lock_data_dir(dir)?;
    let (index, term) = (info.header.index, info.header.term);
    // 1. The state machine, built from the file (verified again as it is read).
    let kv = KvStore::open(vfs.clone(), &state_path(dir))?;
    let (store, _) = SnapshotStore::open(
        vfs.clone(),
        &snapshot_dir(dir),
        KV_GROUP,
        SnapshotOptions::default(),
    )
    .map_err(|e| fail(format!("{e}")))?;
    let source = SnapshotFile {
        path: opts.file.clone(),
        term,
        index,
    };
    store
        .install(&kv, &source)
        .map_err(|e| fail(format!("{e}")))?;
    kv.flush()?;
    // 2. A snapshot of it that records the new cluster's membership.
    let book = MemberBook::new(&opts.initial_cluster);
    let conf = ConfState::with_voters(opts.initial_cluster.keys().copied());
    let view = kv.read_view()?;
    store
        .write(&view, encode_conf(&conf, &book.entries_for(&conf)))
        .map_err(|e| fail(format!("{e}")))?;
    drop(view);
    // 3. The log starts after it, in its term: the new cluster's elections start
    //    from there, so its terms never go backwards in the log.
    let (mut wal, _) = Wal::open(vfs, &dir.join("wal"), WalOptions::default())?;
    wal.set_log_start(
        KV_GROUP,
        LogStart {
            index,
            term,
            kind: LogStartKind::Installed,
        },
    )?;
    wal.set_hard_state(
        KV_GROUP,
        HardState {
            term,
            vote: 0,
            commit: index,
        },
    )?;
    wal.sync()?;
    // 4. The identity of a new cluster.
    let (identity, _) =
        identity::load_or_create(dir, opts.id, &opts.initial_cluster, &opts.cluster_token)?;
    Ok(identity.cluster_id)
}
