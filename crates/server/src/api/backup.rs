//! `Cluster.SnapshotSave`: a consistent backup streamed to the client (see
//! `crate::backup`).

use keel_proto::error::ErrorDetail;
use keel_proto::v1::SnapshotSaveChunk;
use tokio::sync::mpsc;
use tonic::Status;

use super::ApiContext;
use crate::backup::BackupError;

/// Chunks in flight to the client at most (each `BACKUP_CHUNK_BYTES`).
const CHUNKS_IN_FLIGHT: usize = 4;

/// The stream of a backup's chunks.
pub(crate) type BackupStream = mpsc::Receiver<Result<SnapshotSaveChunk, Status>>;

impl ApiContext {
    /// Confirms leadership (ReadIndex: every write acknowledged before this call is
    /// applied here), writes a snapshot of the state machine, and streams it.
    ///
    /// Refused on a node outside group 1 (its group 1 replica is inert: it
    /// would stream an empty "backup"), and when group 1 does not serve every
    /// slot (`BackupError::NotWholeKeySpace`).
    pub(crate) async fn snapshot_save(&self) -> Result<BackupStream, ErrorDetail> {
        if self.asks_group_1() {
            return Err(ErrorDetail::refused(format!(
                "node {} is outside group 1's configuration and holds no copy of its data to \
                 back up; ask a member of group 1",
                self.id
            )));
        }
        self.node
            .read_barrier(self.limits.request_timeout)
            .await
            .map_err(|e| self.error(e))?;
        let node = self.node.clone();
        let backups = self.backups.clone();
        let book = self.members.clone();
        let backup = tokio::task::spawn_blocking(move || backups.take(node.kv(), &book))
            .await
            .map_err(|e| ErrorDetail::internal(format!("backup task failed: {e}")))?
            .map_err(|e| match e {
                BackupError::Busy | BackupError::NotWholeKeySpace { .. } => {
                    ErrorDetail::refused(e.to_string())
                }
                BackupError::Failed(e) => ErrorDetail::internal(e.to_string()),
            })?;
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        tokio::task::spawn_blocking(move || {
            let mut backup = backup;
            let (index, term, keys) = (
                backup.info.header.index,
                backup.info.header.term,
                backup.info.records,
            );
            for chunk in backup.chunks.by_ref() {
                let msg = chunk
                    .map(|c| SnapshotSaveChunk {
                        offset: c.offset,
                        data: c.data,
                        total: c.total,
                        index,
                        term,
                        keys,
                    })
                    .map_err(|e| Status::internal(format!("reading the backup failed: {e}")));
                let failed = msg.is_err();
                // The client hung up: stop (dropping the backup deletes its file).
                if tx.blocking_send(msg).is_err() || failed {
                    break;
                }
            }
        });
        Ok(rx)
    }
}
