//! Snapshot tests of the state section: client sessions travel with the keys, and
//! files of format 1 (no state section) still install.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use keel_raft::{Entry, EntryKind};

use super::format::{FOOTER_LEN, SnapshotHeader};
use super::*;
use crate::command::{Command, Envelope, Expect, SessionHeader};
use crate::kv::{ApplyOutcome, KvStore};
use crate::vfs::{MemVfs, Vfs};

const SNAP: &str = "/node/snap/1";

/// Puts `entry`'s command into client session `k % 8 + 1` as its write number
/// `(k - 1) / 8 + 1`, stamped `k` seconds into log time.
pub(super) fn in_session(mut entry: Entry, k: u64) -> Entry {
    let command = Envelope::decode(&entry.data).expect("a command").command;
    let seq = (k.max(1) - 1) / 8 + 1;
    let session = SessionHeader {
        client_id: u128::from(k % 8) + 1,
        seq,
        first_unacked: seq.saturating_sub(2).max(1),
        now_ms: k * 1_000,
        idle_timeout_ms: 3_600_000,
        max_sessions: 1_000,
    };
    entry.data = Envelope {
        session: Some(session),
        command,
    }
    .encode();
    entry
}

fn kv_at(vfs: &MemVfs, path: &str) -> KvStore {
    KvStore::open(Arc::new(vfs.clone()), Path::new(path)).expect("open kv")
}

pub(super) fn store(vfs: &MemVfs) -> SnapshotStore {
    let opts = SnapshotOptions {
        keep: 2,
        chunk_bytes: 4096,
    };
    SnapshotStore::open(Arc::new(vfs.clone()), Path::new(SNAP), 1, opts)
        .expect("open store")
        .0
}

fn session_put(index: u64, client: u128, seq: u64, key: &str) -> Entry {
    let session = SessionHeader {
        client_id: client,
        seq,
        first_unacked: 1,
        now_ms: 5_000 + index,
        idle_timeout_ms: 3_600_000,
        max_sessions: 1_000,
    };
    Entry {
        term: 1,
        index,
        kind: EntryKind::Normal,
        data: Envelope {
            session: Some(session),
            command: Command::Put {
                key: Bytes::copy_from_slice(key.as_bytes()),
                value: Bytes::from_static(b"v"),
                expect: Expect::Absent,
            },
        }
        .encode(),
    }
}

pub(super) fn file_of(info: &SnapshotInfo) -> SnapshotFile {
    SnapshotFile {
        path: info.path.clone(),
        term: info.header.term,
        index: info.header.index,
    }
}

#[test]
fn sessions_travel_in_snapshots_and_still_deduplicate_after_install() {
    let vfs = MemVfs::new();
    let kv = kv_at(&vfs, "/a/kv.redb");
    // 400 sessions with one write each: several state chunks of 4 KiB.
    let log: Vec<Entry> = (1..=400)
        .map(|i| session_put(i, u128::from(i) << 64, 1, &format!("k{i}")))
        .collect();
    kv.apply(&log).expect("apply");
    let info = store(&vfs)
        .write(&kv.read_view().expect("view"), Bytes::new())
        .expect("write");
    assert_eq!((info.records, info.sessions), (400, 400));
    assert_eq!(store(&vfs).validate(&file_of(&info)).expect("valid"), info);

    let target = kv_at(&vfs, "/b/kv.redb");
    let installed = store(&vfs)
        .install(&target, &file_of(&info))
        .expect("install");
    assert_eq!(installed.sessions, 400);
    let digest = kv.digest().expect("d");
    assert_eq!(digest.sessions, 400);
    assert_eq!(target.digest().expect("d"), digest);
    assert_eq!(target.session_stats().sessions, 400);
    // A retry arriving after the install gets the original outcome on the new
    // replica exactly as on the old one (its precondition would fail now).
    let retry = session_put(401, 7 << 64, 1, "k7");
    let want = [ApplyOutcome::Put { revision: 7 }];
    assert_eq!(kv.apply(std::slice::from_ref(&retry)).expect("old"), want);
    assert_eq!(target.apply(&[retry]).expect("new"), want);
    assert_eq!(target.digest().expect("d"), kv.digest().expect("d"));
}

#[test]
fn damage_in_the_state_section_is_refused() {
    let vfs = MemVfs::new();
    let kv = kv_at(&vfs, "/a/kv.redb");
    kv.apply(&[session_put(1, 3, 1, "a")]).expect("apply");
    let info = store(&vfs)
        .write(&kv.read_view().expect("view"), Bytes::new())
        .expect("write");
    // The last bytes before the footer are the session's row.
    let at = info.len - FOOTER_LEN - 1;
    vfs.flip_bit(&info.path, at, 0).expect("flip");
    let err = store(&vfs).validate(&file_of(&info)).expect_err("refused");
    assert!(err.to_string().contains("chunk checksum"), "{err}");
}

/// A format-1 file (keys only), as builds before sessions wrote it.
fn write_format_1(vfs: &MemVfs, index: u64, keys: &[(&str, u64, &str)]) -> SnapshotInfo {
    let records: Vec<(&[u8], u64, &str)> = keys
        .iter()
        .map(|&(key, version, value)| (key.as_bytes(), version, value))
        .collect();
    let file = super::slot_tests::write_file(vfs, 1, index, &records, &[]);
    SnapshotInfo {
        len: vfs.read_file(&file.path).expect("read").len() as u64,
        path: file.path,
        header: SnapshotHeader {
            group: 1,
            index,
            term: 1,
            conf: Bytes::new(),
        },
        records: keys.len() as u64,
        sessions: 0,
    }
}

#[test]
fn a_format_1_snapshot_still_installs() {
    let vfs = MemVfs::new();
    let s = store(&vfs);
    let info = write_format_1(&vfs, 9, &[("a", 3, "x"), ("b", 9, "y")]);
    assert_eq!(s.validate(&file_of(&info)).expect("valid"), info);
    let target = kv_at(&vfs, "/b/kv.redb");
    target
        .apply(&[session_put(1, 3, 1, "old")])
        .expect("a session to be replaced");
    s.install(&target, &file_of(&info)).expect("install");
    assert_eq!(
        target.get(b"b").expect("get"),
        Some((Bytes::from_static(b"y"), 9))
    );
    assert_eq!(target.get(b"old").expect("get"), None);
    let digest = target.digest().expect("d");
    assert_eq!((digest.keys, digest.sessions), (2, 0));
    assert_eq!(target.session_stats().sessions, 0);
    // A format-1 file cannot carry a state section.
    let mut bytes = vfs.read_file(&info.path).expect("read");
    let chunk_at = info.header.encoded_len() as usize;
    bytes[chunk_at..chunk_at + 4].copy_from_slice(b"KSST");
    let f = vfs.open(&info.path, false).expect("open");
    f.write_all_at(0, &bytes).expect("write");
    let err = s.validate(&file_of(&info)).expect_err("refused");
    assert!(err.to_string().contains("wrong magic"), "{err}");
}
