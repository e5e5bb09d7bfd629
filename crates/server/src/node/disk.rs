//! A full data disk: noticing it, refusing writes while it lasts, and taking them
//! again once space returns — without a restart and without acknowledging
//! anything that is not durable (`docs/failure-handling.md`, "The disk fills up").
//!
//! Two signals, either of which makes the node "disk full":
//!
//! - **Low space:** free space on the data directory's filesystem is below
//!   `min_free_disk_bytes`, measured every [`CHECK_INTERVAL`]. This is the one
//!   that normally fires: it leaves room for what is already under way (the state
//!   machine's pages, a WAL segment), because the state machine cannot survive a
//!   failed write (redb refuses every later operation) and stops the node.
//! - **The WAL could not grow** ([`WalError::NoSpace`]): a new segment could not be
//!   reserved. The records stay buffered in the WAL; the Ready they came from, and
//!   every later one, wait (`advance_async`), their acknowledgements are dropped
//!   (never sent early), and the write is retried every check until it succeeds;
//!   then the core hears they are durable (`on_persisted`).
//!
//! While full, the core refuses new entries (`keel_raft::Raft::set_disk_full`),
//! clients get DISK_FULL, and a leader hands leadership to another voter.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_raft::{GroupId, Role};
use keel_storage::vfs::Vfs;
use keel_storage::wal::WalError;

use super::driver::Driver;
use super::group::Group;
use crate::error::ServerError;
use crate::metrics::gauge_value;

/// How often free space is measured and a stalled WAL write retried.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// What the node knows about its data disk.
#[derive(Debug)]
pub(crate) struct DiskWatch {
    vfs: Arc<dyn Vfs>,
    /// The data directory (its filesystem is measured).
    dir: PathBuf,
    /// Below this many free bytes the node refuses writes (0: never measured).
    min_free: u64,
    next_check: Instant,
    /// Free bytes at the last measurement, if known.
    available: Option<u64>,
    /// The WAL could not grow: why, and the newest Ready whose writes wait.
    stall: Option<Stall>,
    /// Whether the core was told the disk is full.
    full: bool,
}

#[derive(Debug)]
struct Stall {
    reason: String,
    /// Per group, the newest Ready whose writes wait.
    last_ready: BTreeMap<GroupId, u64>,
}

impl DiskWatch {
    /// Watches `dir`'s filesystem, with `min_free` bytes as the floor.
    pub(crate) fn new(vfs: Arc<dyn Vfs>, dir: PathBuf, min_free: u64) -> Self {
        DiskWatch {
            vfs,
            dir,
            min_free,
            next_check: Instant::now(),
            available: None,
            stall: None,
            full: false,
        }
    }

    /// Whether writes of the WAL wait for space (acknowledgements are held back).
    pub(crate) fn stalled(&self) -> bool {
        self.stall.is_some()
    }

    /// The WAL could not make the writes of `readys` (group, Ready number)
    /// durable.
    pub(crate) fn stall(&mut self, readys: impl Iterator<Item = (GroupId, u64)>, e: &WalError) {
        if self.stall.is_none() {
            self.stall = Some(Stall {
                reason: e.to_string(),
                last_ready: BTreeMap::new(),
            });
            // Retry soon rather than a whole interval after the last check.
            self.next_check = Instant::now() + CHECK_INTERVAL;
        }
        self.queue(readys);
    }

    /// The writes of `readys` (group, Ready number) wait behind a stall.
    pub(crate) fn queue(&mut self, readys: impl Iterator<Item = (GroupId, u64)>) {
        if let Some(s) = &mut self.stall {
            s.last_ready.extend(readys);
        }
    }

    /// Measures free space now; returns it if the filesystem tells. A failed
    /// measurement keeps the last one.
    fn measure(&mut self) -> Option<u64> {
        match self.vfs.available_bytes(&self.dir) {
            Ok(a) => self.available = a,
            Err(e) => tracing::warn!("cannot measure free space: {e}"),
        }
        self.available
    }

    fn low(&self) -> bool {
        self.min_free > 0 && self.available.is_some_and(|a| a < self.min_free)
    }

    fn should_be_full(&self) -> bool {
        self.stalled() || self.low()
    }

    /// Why the node refuses writes, in a few words (for the event log and
    /// clients).
    pub(crate) fn reason(&self) -> String {
        if let Some(s) = &self.stall {
            return s.reason.clone();
        }
        match self.available {
            Some(a) if self.low() => format!(
                "{a} bytes free on {}, below min-free-disk-bytes {}",
                self.dir.display(),
                self.min_free
            ),
            _ => "the disk was full".into(),
        }
    }

    /// The message a refused client sees.
    pub(crate) fn client_message(&self, id: u64) -> String {
        format!(
            "disk full: node {id} cannot write its log ({}); free space on {} \
             (the node takes writes again by itself)",
            self.reason(),
            self.dir.display()
        )
    }
}

impl Driver {
    /// Once per turn, outside any Ready: measures free space when due, retries a
    /// stalled WAL write, and tells the cores (and operators) when the state
    /// changes.
    pub(super) fn disk_turn(&mut self) -> Result<(), ServerError> {
        let now = Instant::now();
        if now < self.ctx.disk.next_check {
            return Ok(());
        }
        self.ctx.disk.next_check = now + CHECK_INTERVAL;
        if let Some(a) = self.ctx.disk.measure() {
            self.ctx.metrics.disk_available_bytes.set(gauge_value(a));
        }
        if self.ctx.disk.stalled() {
            self.retry_stalled_wal()?;
        }
        self.sync_disk_state();
        Ok(())
    }

    fn retry_stalled_wal(&mut self) -> Result<(), ServerError> {
        match self.ctx.wal.sync() {
            Ok(()) => {
                let stall = self.ctx.disk.stall.take().expect("stalled");
                // Everything buffered is durable, every group's latest hard state
                // included.
                for g in self.groups.all_mut() {
                    let hs = g.raft.hard_state();
                    g.durable_term_vote = (hs.term, hs.vote);
                }
                for (group, number) in stall.last_ready {
                    if let Some(g) = self.group_mut(group) {
                        g.raft.on_persisted(number);
                    }
                }
                Ok(())
            }
            Err(e) if e.is_no_space() => {
                self.ctx.metrics.wal_no_space.inc();
                Ok(())
            }
            Err(e) => Err(ServerError::Fatal(format!(
                "WAL write failed, stopping to protect the log: {e}"
            ))),
        }
    }

    /// Tells every core whether the disk is full, if that changed; a group whose
    /// leader's disk filled up hands leadership to the voter with the most of
    /// the log.
    pub(super) fn sync_disk_state(&mut self) {
        let disk = &mut self.ctx.disk;
        let full = disk.should_be_full();
        if full == disk.full {
            return;
        }
        disk.full = full;
        // Every core hears of it, and a leader may hand leadership over: wake
        // the parked groups too (they park again once idle).
        self.groups.wake_all();
        for g in self.groups.iter_mut() {
            g.raft.set_disk_full(full);
        }
        self.ctx.metrics.disk_full.set(i64::from(full));
        let id = self.ctx.transport.local().node_id;
        let line = if full {
            format!(
                "Node {id} cannot write its log: disk full ({}); refusing writes until space \
                 returns.",
                self.ctx.disk.reason()
            )
        } else {
            let free = self
                .ctx
                .disk
                .available
                .map_or_else(String::new, |a| format!(" ({a} bytes free)"));
            format!("Node {id} has disk space again{free}; accepting writes.")
        };
        tracing::warn!("{line}");
        self.ctx.note(&line);
        if full {
            for g in self.groups.iter_mut() {
                if g.role == Role::Leader {
                    g.hand_over_leadership();
                }
            }
        }
    }
}

impl Group {
    fn hand_over_leadership(&mut self) {
        let Some(target) = self.best_transfer_target() else {
            tracing::warn!("disk full, and no other voter is active to take over");
            return;
        };
        if let Err(e) = self.raft.transfer_leader(target) {
            tracing::warn!("disk full, and leadership cannot go to node {target}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use keel_storage::vfs::MemVfs;

    use super::*;

    fn watch(vfs: &MemVfs, min_free: u64) -> DiskWatch {
        DiskWatch::new(Arc::new(vfs.clone()), PathBuf::from("/data"), min_free)
    }

    fn use_bytes(vfs: &MemVfs, n: u64) {
        vfs.create_dir_all(Path::new("/data")).expect("dir");
        let f = vfs.open(Path::new("/data/filler"), true).expect("open");
        f.set_len(n).expect("grow");
    }

    #[test]
    fn below_the_floor_is_full_and_says_how_much_is_free() {
        let vfs = MemVfs::new();
        vfs.set_space_limit(Some(10 << 20));
        let mut w = watch(&vfs, 1 << 20);
        assert_eq!(w.measure(), Some(10 << 20));
        assert!(!w.should_be_full());
        use_bytes(&vfs, (10 << 20) - 1000);
        assert_eq!(w.measure(), Some(1000));
        assert!(w.should_be_full());
        let msg = w.client_message(2);
        assert!(
            msg.starts_with("disk full: node 2 cannot write its log (1000 bytes free on /data"),
            "{msg}"
        );
        assert!(msg.contains("free space on /data"), "{msg}");
        use_bytes(&vfs, 0);
        w.measure();
        assert!(!w.should_be_full(), "space returned");
    }

    #[test]
    fn no_floor_or_an_unknown_filesystem_is_never_low() {
        let vfs = MemVfs::new();
        let mut w = watch(&vfs, 1 << 20);
        assert_eq!(w.measure(), None, "no space limit: unknown");
        assert!(!w.should_be_full());
        vfs.set_space_limit(Some(10));
        let mut off = watch(&vfs, 0);
        off.measure();
        assert!(!off.should_be_full());
    }

    #[test]
    fn a_stalled_wal_is_full_until_it_is_written_and_names_the_error() {
        let vfs = MemVfs::new();
        let mut w = watch(&vfs, 0);
        let e = WalError::NoSpace {
            op: "preallocate segment",
            path: PathBuf::from("/data/wal/0000000000000002.wal"),
            dir: PathBuf::from("/data/wal"),
            source: std::io::Error::from_raw_os_error(28),
        };
        w.stall([(1, 7), (2, 4)].into_iter(), &e);
        w.queue([(1, 9)].into_iter());
        assert!(w.stalled() && w.should_be_full());
        let waiting = w.stall.as_ref().map(|s| s.last_ready.clone());
        assert_eq!(waiting, Some(BTreeMap::from([(1, 9), (2, 4)])));
        assert!(w.reason().contains("preallocate segment"), "{}", w.reason());
    }
}
