//! Installing a snapshot file into the state machine.

use super::error::SnapshotError;
use super::reader::{SnapshotInfo, SnapshotItem, SnapshotReader};
use super::store::{SnapshotFile, SnapshotStore};
use crate::kv::KvStore;

impl SnapshotStore {
    /// Replaces the whole contents of `kv` with the snapshot `file`, atomically and
    /// in bounded memory: afterwards `kv` holds exactly the snapshot's keys, values,
    /// versions, client sessions, slot table and revision offset (a file from
    /// before sharding: every slot served, offset 0), and its applied index and
    /// term are the snapshot's.
    ///
    /// The file is read once: records go into a staging database while every
    /// checksum is verified, and the staging database replaces the live one only if
    /// the whole file verified (a damaged file changes nothing and the error names
    /// file and offset). Applies are held off for the duration (they would land in
    /// the database being replaced); reads continue on the old state until the swap.
    ///
    /// A snapshot at or below the applied index is refused ([`SnapshotError::Stale`]):
    /// going back would lose applied entries the log may no longer hold.
    ///
    /// If the final swap fails (an I/O error after the new file was renamed into
    /// place), the node must stop: the disk may already hold the new state.
    pub fn install(
        &self,
        kv: &KvStore,
        file: &SnapshotFile,
    ) -> Result<SnapshotInfo, SnapshotError> {
        let mut reader = SnapshotReader::open(&**self.vfs(), &file.path)?;
        let header = reader.header().clone();
        if header.group != self.group() || header.index != file.index || header.term != file.term {
            return Err(SnapshotError::Mismatch {
                file: file.path.clone(),
                group: self.group(),
                index: file.index,
                term: file.term,
                found_group: header.group,
                found_index: header.index,
                found_term: header.term,
            });
        }
        let _writer = kv.lock_writer();
        let applied = kv.applied_index();
        if header.index <= applied && applied > 0 {
            return Err(SnapshotError::Stale {
                applied,
                index: header.index,
            });
        }
        let mut staging = kv.begin_install()?;
        let built = (|| {
            while let Some(item) = reader.next_item()? {
                match item {
                    SnapshotItem::Key(r) => staging.insert(r.key, r.version, r.value)?,
                    SnapshotItem::SessionClock(ms) => staging.set_session_clock(ms),
                    SnapshotItem::Session { client_id, row } => {
                        staging.insert_session(client_id, row)?;
                    }
                    SnapshotItem::RevisionOffset(offset) => staging.set_revision_offset(offset),
                    SnapshotItem::SlotTable(table) => staging.set_slot_table(table.clone()),
                }
            }
            Ok::<(), SnapshotError>(())
        })();
        if let Err(e) = built {
            staging.discard(&**kv.vfs());
            return Err(e);
        }
        let (db, staging_path) = staging.finish(header.index, header.term)?;
        kv.swap_in(db, &staging_path)?;
        Ok(SnapshotInfo {
            path: file.path.clone(),
            header,
            records: reader.records(),
            sessions: reader.sessions(),
            len: reader.len(),
        })
    }
}
