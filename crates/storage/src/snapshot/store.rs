//! [`SnapshotStore`]: the snapshot files of one Raft group in one directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use keel_raft::{GroupId, Index, Term};

use super::error::SnapshotError;
use super::format::{PARTIAL_SUFFIX, SnapshotHeader, TMP_SUFFIX, file_name, parse_name};
use super::reader::{SnapshotInfo, validate};
use super::writer::write_view;
use crate::kv::KvReadView;
use crate::vfs::{Vfs, create_dir_all_durable};

/// Largest chunk a writer may be configured with, and the largest transfer chunk.
pub const MAX_CHUNK_BYTES: usize = 4 << 20;

/// Snapshot settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// How many finished snapshots [`SnapshotStore::purge`] keeps (the newest ones).
    /// At least 1; default 2, so that a damaged newest file still leaves one to
    /// fall back to.
    pub keep: usize,
    /// Target size of a data chunk in a snapshot file, in bytes: the writer's memory
    /// bound (a single larger record gets a chunk of its own). 4 KiB..=4 MiB;
    /// default 1 MiB.
    pub chunk_bytes: usize,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            keep: 2,
            chunk_bytes: 1 << 20,
        }
    }
}

impl SnapshotOptions {
    /// Checks the options; [`SnapshotStore::open`] calls this.
    pub fn validate(&self) -> Result<(), SnapshotError> {
        if self.keep == 0 {
            return Err(SnapshotError::InvalidOptions(
                "keep must be at least 1".into(),
            ));
        }
        if !(4096..=MAX_CHUNK_BYTES).contains(&self.chunk_bytes) {
            return Err(SnapshotError::InvalidOptions(format!(
                "chunk_bytes {} is outside 4096..={MAX_CHUNK_BYTES}",
                self.chunk_bytes
            )));
        }
        Ok(())
    }
}

/// A finished snapshot file, as named (not yet verified).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFile {
    /// Where it is.
    pub path: PathBuf,
    /// Term from the name.
    pub term: Term,
    /// Index from the name.
    pub index: Index,
}

/// What [`SnapshotStore::newest_valid`] found.
#[derive(Debug, Default)]
pub struct NewestValid {
    /// The newest snapshot that verified completely, if any.
    pub snapshot: Option<SnapshotInfo>,
    /// Newer files that were refused, newest first, with the reason (file and
    /// offset). The caller should log them; they are left in place for an operator.
    pub refused: Vec<SnapshotError>,
}

/// The snapshots of one group in one directory (e.g. `<data-dir>/snap/<group>/`).
///
/// Files are `snap-<term>-<index>.keel` (16 hex digits each, so name order is log
/// order), created under a temporary name and renamed once durable, so a finished
/// name always refers to a complete file — unless the disk damaged it later, which
/// the checksums catch.
#[derive(Debug)]
pub struct SnapshotStore {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    group: GroupId,
    opts: SnapshotOptions,
}

impl SnapshotStore {
    /// Opens (creating if needed) the snapshot directory of `group` and removes the
    /// leftovers of interrupted writes and transfers (`*.keel.tmp`,
    /// `*.keel.partial`), returning their paths. A partial transfer is not resumed
    /// across restarts: bytes written but never synced may be torn.
    pub fn open(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        group: GroupId,
        opts: SnapshotOptions,
    ) -> Result<(SnapshotStore, Vec<PathBuf>), SnapshotError> {
        opts.validate()?;
        create_dir_all_durable(&*vfs, dir)
            .map_err(SnapshotError::io("create snapshot directory", dir))?;
        let mut removed = Vec::new();
        for name in vfs
            .list_dir(dir)
            .map_err(SnapshotError::io("list snapshot directory", dir))?
        {
            if name.starts_with("snap-")
                && (name.ends_with(TMP_SUFFIX) || name.ends_with(PARTIAL_SUFFIX))
            {
                let path = dir.join(&name);
                vfs.remove_file(&path)
                    .map_err(SnapshotError::io("remove leftover", &path))?;
                removed.push(path);
            }
        }
        if !removed.is_empty() {
            vfs.sync_dir(dir)
                .map_err(SnapshotError::io("sync snapshot directory", dir))?;
        }
        let store = SnapshotStore {
            vfs,
            dir: dir.to_path_buf(),
            group,
            opts,
        };
        Ok((store, removed))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The group whose snapshots these are.
    pub fn group(&self) -> GroupId {
        self.group
    }

    pub(crate) fn vfs(&self) -> &Arc<dyn Vfs> {
        &self.vfs
    }

    /// The path a finished snapshot at (`term`, `index`) has.
    pub fn path_of(&self, term: Term, index: Index) -> PathBuf {
        self.dir.join(file_name(term, index))
    }

    /// Finished snapshot files by name, oldest first (not verified).
    pub fn list(&self) -> Result<Vec<SnapshotFile>, SnapshotError> {
        let names = self
            .vfs
            .list_dir(&self.dir)
            .map_err(SnapshotError::io("list snapshot directory", &self.dir))?;
        let mut files: Vec<SnapshotFile> = names
            .iter()
            .filter_map(|n| {
                parse_name(n).map(|(term, index)| SnapshotFile {
                    path: self.dir.join(n),
                    term,
                    index,
                })
            })
            .collect();
        files.sort_by_key(|f| (f.index, f.term));
        Ok(files)
    }

    /// Verifies one file completely (streaming) and checks that it belongs to this
    /// group and matches its name.
    pub fn validate(&self, file: &SnapshotFile) -> Result<SnapshotInfo, SnapshotError> {
        let info = validate(&*self.vfs, &file.path)?;
        let h = &info.header;
        if h.group != self.group || h.index != file.index || h.term != file.term {
            return Err(SnapshotError::Mismatch {
                file: file.path.clone(),
                group: self.group,
                index: file.index,
                term: file.term,
                found_group: h.group,
                found_index: h.index,
                found_term: h.term,
            });
        }
        Ok(info)
    }

    /// The newest snapshot that verifies, falling back to older ones past any that
    /// are damaged (reported in [`NewestValid::refused`]). I/O errors other than
    /// damage are returned as errors: they say nothing about the file.
    pub fn newest_valid(&self) -> Result<NewestValid, SnapshotError> {
        let mut found = NewestValid::default();
        for file in self.list()?.into_iter().rev() {
            match self.validate(&file) {
                Ok(info) => {
                    found.snapshot = Some(info);
                    break;
                }
                Err(e) if e.is_damage() || matches!(e, SnapshotError::Mismatch { .. }) => {
                    found.refused.push(e);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    /// Writes a snapshot of `view` (its applied index and term) with the membership
    /// blob `conf`, atomically: into a temporary file, fsynced, renamed to its final
    /// name, directory fsynced. Streams: memory stays bounded by one chunk. Meant to
    /// run on a background thread while applies continue.
    pub fn write(&self, view: &KvReadView, conf: Bytes) -> Result<SnapshotInfo, SnapshotError> {
        let header = SnapshotHeader {
            group: self.group,
            index: view.applied_index(),
            term: view.applied_term(),
            conf,
        };
        let path = self.path_of(header.term, header.index);
        let tmp = self.dir.join(format!(
            "{}{}",
            file_name(header.term, header.index),
            ".tmp"
        ));
        if self.vfs.exists(&tmp) {
            self.vfs
                .remove_file(&tmp)
                .map_err(SnapshotError::io("remove stale temporary", &tmp))?;
        }
        let result = (|| {
            let file = self
                .vfs
                .open(&tmp, true)
                .map_err(SnapshotError::io("create snapshot", &tmp))?;
            file.set_len(0)
                .map_err(SnapshotError::io("truncate snapshot", &tmp))?;
            let written = write_view(&file, &tmp, &header, view, self.opts.chunk_bytes)?;
            file.sync_data()
                .map_err(SnapshotError::io("sync snapshot", &tmp))?;
            Ok(written)
        })();
        let written = match result {
            Ok(r) => r,
            Err(e) => {
                // Best effort: the temporary is also removed at the next open.
                let _ = self.vfs.remove_file(&tmp);
                return Err(e);
            }
        };
        self.publish(&tmp, &path)?;
        Ok(SnapshotInfo {
            path,
            header,
            records: written.keys,
            sessions: written.sessions,
            len: written.len,
        })
    }

    /// Renames a complete, synced file to its final name and makes that durable.
    pub(crate) fn publish(&self, from: &Path, to: &Path) -> Result<(), SnapshotError> {
        self.vfs
            .rename(from, to)
            .map_err(SnapshotError::io("rename snapshot", from))?;
        self.vfs
            .sync_dir(&self.dir)
            .map_err(SnapshotError::io("sync snapshot directory", &self.dir))
    }

    /// Deletes all but the newest `keep` finished snapshots (by name; see
    /// [`SnapshotOptions::keep`]), oldest first, and returns what it deleted. A
    /// crash part-way leaves some old files, which the next purge removes.
    pub fn purge(&self) -> Result<Vec<PathBuf>, SnapshotError> {
        self.purge_through(Index::MAX)
    }

    /// Like [`SnapshotStore::purge`], but only among snapshots at or below
    /// `applied` (the state machine's applied index): a newer file was received
    /// from a leader and may be about to be installed, so it is never deleted.
    pub fn purge_through(&self, applied: Index) -> Result<Vec<PathBuf>, SnapshotError> {
        let files: Vec<SnapshotFile> = self
            .list()?
            .into_iter()
            .filter(|f| f.index <= applied)
            .collect();
        let excess = files.len().saturating_sub(self.opts.keep);
        let mut removed = Vec::new();
        for file in files.into_iter().take(excess) {
            self.vfs
                .remove_file(&file.path)
                .map_err(SnapshotError::io("remove old snapshot", &file.path))?;
            removed.push(file.path);
        }
        if !removed.is_empty() {
            self.vfs
                .sync_dir(&self.dir)
                .map_err(SnapshotError::io("sync snapshot directory", &self.dir))?;
        }
        Ok(removed)
    }
}
