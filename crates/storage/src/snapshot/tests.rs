//! Snapshot tests: round trips, damage, transfer, install and crashes on MemVfs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use keel_raft::{Entry, EntryKind, SplitMix64};
use proptest::prelude::*;

use super::*;
use crate::command::{Command, Expect};
use crate::kv::{KvDigest, KvStore};
use crate::vfs::{MemVfs, Vfs};

const KV: &str = "/node/state/kv.redb";
const SNAP: &str = "/node/snap/1";

fn kv_at(vfs: &MemVfs, path: &str) -> KvStore {
    KvStore::open(Arc::new(vfs.clone()), Path::new(path)).expect("open kv")
}

fn store(vfs: &MemVfs) -> SnapshotStore {
    store_with(
        vfs,
        SnapshotOptions {
            keep: 2,
            chunk_bytes: 4096,
        },
    )
}

fn store_with(vfs: &MemVfs, opts: SnapshotOptions) -> SnapshotStore {
    SnapshotStore::open(Arc::new(vfs.clone()), Path::new(SNAP), 1, opts)
        .expect("open store")
        .0
}

fn put(index: u64, term: u64, key: &[u8], value: &[u8]) -> Entry {
    Entry {
        term,
        index,
        kind: EntryKind::Normal,
        data: Command::Put {
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
            expect: Expect::Any,
        }
        .encode(),
    }
}

fn del(index: u64, term: u64, key: &[u8]) -> Entry {
    Entry {
        term,
        index,
        kind: EntryKind::Normal,
        data: Command::Delete {
            key: Bytes::copy_from_slice(key),
            expect: Expect::Any,
        }
        .encode(),
    }
}

/// Applies `n` random entries after the current applied index; every other one
/// belongs to one of 8 client sessions, so snapshots carry sessions too.
fn fill(kv: &KvStore, rng: &mut SplitMix64, n: u64, keys: u64, max_value: u64) {
    let start = kv.applied_index();
    let entries: Vec<Entry> = (start + 1..=start + n)
        .map(|i| {
            let key = format!("key{:05}", rng.below(keys)).into_bytes();
            let entry = if rng.below(6) == 0 {
                del(i, 2, &key)
            } else {
                let value = vec![rng.below(256) as u8; rng.below(max_value + 1) as usize];
                put(i, 2, &key, &value)
            };
            if i % 2 == 0 {
                session_tests::in_session(entry, i / 2)
            } else {
                entry
            }
        })
        .collect();
    for batch in entries.chunks(50) {
        kv.apply(batch).expect("apply");
    }
}

fn snapshot_of(vfs: &MemVfs, kv: &KvStore) -> SnapshotInfo {
    let view = kv.read_view().expect("view");
    store(vfs)
        .write(&view, Bytes::from_static(b"conf:1,2,3"))
        .expect("write snapshot")
}

fn file_of(info: &SnapshotInfo) -> SnapshotFile {
    SnapshotFile {
        path: info.path.clone(),
        term: info.header.term,
        index: info.header.index,
    }
}

fn sample_snapshot(vfs: &MemVfs, seed: u64) -> (KvDigest, SnapshotInfo) {
    let kv = kv_at(vfs, KV);
    fill(&kv, &mut SplitMix64::new(seed), 300, 120, 300);
    let digest = kv.digest().expect("digest");
    (digest, snapshot_of(vfs, &kv))
}

#[test]
fn write_validate_install_round_trip() {
    let vfs = MemVfs::new();
    let (digest, info) = sample_snapshot(&vfs, 1);
    assert_eq!(info.header.index, 300);
    assert_eq!(info.header.term, 2);
    assert_eq!(info.header.group, 1);
    assert_eq!(info.header.conf, Bytes::from_static(b"conf:1,2,3"));
    assert_eq!(info.records, digest.keys);
    assert!(
        info.path
            .ends_with("snap-0000000000000002-000000000000012c.keel")
    );
    let s = store(&vfs);
    let checked = s.validate(&file_of(&info)).expect("validate");
    assert_eq!(checked, info);

    let target = kv_at(&vfs, "/other/kv.redb");
    fill(&target, &mut SplitMix64::new(99), 20, 500, 10);
    let installed = s.install(&target, &file_of(&info)).expect("install");
    assert_eq!(installed.records, info.records);
    assert_eq!(target.applied_index(), 300);
    assert_eq!(target.applied_term().expect("term"), 2);
    assert_eq!(target.digest().expect("digest"), digest);
    // The installed store keeps working and survives a reopen.
    target
        .apply(&[put(301, 3, b"after", b"x")])
        .expect("apply after");
    target.flush().expect("flush");
    drop(target);
    let again = kv_at(&vfs, "/other/kv.redb");
    assert_eq!(again.applied_index(), 301);
    assert_eq!(
        again.get(b"after").expect("get"),
        Some((Bytes::from_static(b"x"), 301))
    );
}

#[test]
fn an_empty_state_machine_round_trips() {
    let vfs = MemVfs::new();
    let kv = kv_at(&vfs, KV);
    kv.apply(&[Entry {
        term: 1,
        index: 1,
        kind: EntryKind::NoOp,
        data: Bytes::new(),
    }])
    .expect("noop");
    let info = snapshot_of(&vfs, &kv);
    assert_eq!(info.records, 0);
    let target = kv_at(&vfs, "/other/kv.redb");
    store(&vfs)
        .install(&target, &file_of(&info))
        .expect("install");
    assert_eq!(target.digest().expect("d"), kv.digest().expect("d"));
}

#[test]
fn every_damaged_byte_is_refused_with_file_and_offset() {
    let vfs = MemVfs::new();
    let (_, info) = sample_snapshot(&vfs, 2);
    let s = store(&vfs);
    let file = file_of(&info);
    let original = vfs.read_file(&info.path).expect("read");
    assert!(original.len() > 3 * 4096, "several chunks");
    for offset in 0..original.len() as u64 {
        vfs.flip_bit(&info.path, offset, (offset % 8) as u8)
            .expect("flip");
        let err = s.validate(&file).expect_err("damage must be refused");
        match &err {
            SnapshotError::Corrupt {
                file: f,
                offset: at,
                ..
            }
            | SnapshotError::Truncated {
                file: f,
                offset: at,
                ..
            } => {
                assert_eq!(f, &info.path);
                assert!(*at < original.len() as u64, "{err}");
            }
            // A flip in the index or term of a header whose checksum was fixed up
            // cannot happen by accident; a plain flip is caught by the checksum.
            other => panic!("offset {offset}: unexpected {other}"),
        }
        assert!(err.to_string().contains("snap-"), "{err}");
        vfs.flip_bit(&info.path, offset, (offset % 8) as u8)
            .expect("unflip");
    }
    s.validate(&file).expect("restored file verifies");
}

#[test]
fn damage_is_reported_at_the_structure_it_hit() {
    let vfs = MemVfs::new();
    let (_, info) = sample_snapshot(&vfs, 3);
    let s = store(&vfs);
    let len = info.len;
    let header_len = info.header.encoded_len();
    let at = |offset: u64| {
        vfs.flip_bit(&info.path, offset, 0).expect("flip");
        let err = s.validate(&file_of(&info)).expect_err("refused");
        vfs.flip_bit(&info.path, offset, 0).expect("unflip");
        match err {
            SnapshotError::Corrupt { offset, reason, .. } => (offset, reason),
            other => panic!("{other}"),
        }
    };
    assert_eq!(at(20).0, 0, "header");
    let (o, r) = at(header_len + 100);
    assert_eq!(o, header_len, "first chunk: {r}");
    assert!(r.contains("chunk checksum"), "{r}");
    let (o, r) = at(len - 20);
    assert_eq!(o, len - 32 + 8, "footer record count: {r}");
    let (o, r) = at(len - 2);
    assert_eq!(o, len - 4, "{r}");
    assert!(r.contains("whole-file checksum"), "{r}");
}

#[test]
fn every_truncation_is_refused() {
    let vfs = MemVfs::new();
    let (_, info) = sample_snapshot(&vfs, 4);
    let s = store(&vfs);
    let original = vfs.read_file(&info.path).expect("read");
    let f = vfs.open(&info.path, false).expect("open");
    for cut in (0..original.len() as u64)
        .step_by(7)
        .chain([original.len() as u64 - 1])
    {
        f.set_len(cut).expect("cut");
        let err = s.validate(&file_of(&info)).expect_err("truncated");
        assert!(err.is_damage(), "cut at {cut}: {err}");
        f.write_all_at(0, &original).expect("restore");
    }
    // Bytes appended after the footer are refused too.
    f.write_all_at(original.len() as u64, b"extra")
        .expect("append");
    assert!(s.validate(&file_of(&info)).expect_err("extra").is_damage());
}

#[test]
fn newest_valid_falls_back_past_damaged_files_and_purge_keeps_the_newest() {
    let vfs = MemVfs::new();
    let kv = kv_at(&vfs, KV);
    let mut rng = SplitMix64::new(5);
    let mut infos = Vec::new();
    for _ in 0..3 {
        fill(&kv, &mut rng, 40, 30, 50);
        infos.push((kv.digest().expect("d"), snapshot_of(&vfs, &kv)));
    }
    let s = store(&vfs);
    let newest = s.newest_valid().expect("newest");
    assert_eq!(newest.snapshot.as_ref().map(|i| i.header.index), Some(120));
    assert!(newest.refused.is_empty());
    // Damage the newest: the one before is used, the damaged one is reported.
    vfs.flip_bit(&infos[2].1.path, 70, 1).expect("flip");
    let found = s.newest_valid().expect("newest");
    assert_eq!(found.snapshot.map(|i| i.header.index), Some(80));
    assert_eq!(found.refused.len(), 1);
    assert!(
        found.refused[0]
            .to_string()
            .contains(&infos[2].1.path.display().to_string())
    );
    // Files beyond the applied index (received, not installed yet) are never
    // deleted, and do not count toward the ones kept.
    assert!(s.purge_through(40).expect("purge").is_empty());
    assert_eq!(s.list().expect("list").len(), 3);
    let removed = s.purge().expect("purge");
    assert_eq!(removed, vec![infos[0].1.path.clone()]);
    assert_eq!(s.list().expect("list").len(), 2);
}

#[test]
fn leftovers_are_removed_at_open_and_options_are_checked() {
    let vfs = MemVfs::new();
    let s = store(&vfs);
    for name in [
        "snap-0000000000000001-0000000000000001.keel.tmp",
        "snap-0000000000000001-0000000000000002.keel.partial",
        "notes.txt",
    ] {
        vfs.open(&s.dir().join(name), true).expect("create");
    }
    let (_, removed) = SnapshotStore::open(
        Arc::new(vfs.clone()),
        Path::new(SNAP),
        1,
        SnapshotOptions::default(),
    )
    .expect("reopen");
    assert_eq!(removed.len(), 2);
    assert_eq!(
        vfs.list_dir(Path::new(SNAP)).expect("list"),
        vec!["notes.txt"]
    );
    for bad in [
        SnapshotOptions {
            keep: 0,
            ..SnapshotOptions::default()
        },
        SnapshotOptions {
            chunk_bytes: 10,
            ..SnapshotOptions::default()
        },
    ] {
        assert!(SnapshotStore::open(Arc::new(vfs.clone()), Path::new(SNAP), 1, bad).is_err());
    }
}

/// Sends the file to a receiver on another disk, breaking the connection (dropping
/// the receiver) at the given offsets and resuming from what it reports.
fn transfer(
    src: &SnapshotStore,
    info: &SnapshotInfo,
    dst: &SnapshotStore,
    breaks: &[u64],
) -> SnapshotInfo {
    let mut offset = 0;
    let mut breaks = breaks.to_vec();
    breaks.sort_unstable();
    loop {
        let mut rx = dst
            .receive(info.header.term, info.header.index, info.len)
            .expect("receive");
        assert_eq!(rx.offset(), offset, "resumes where the staging file ends");
        let chunk_bytes = 1000 + (offset % 3000) as usize;
        let mut broke = false;
        for chunk in src
            .chunks(&info.path, rx.offset(), chunk_bytes)
            .expect("chunks")
        {
            let chunk = chunk.expect("chunk");
            rx.write_chunk(chunk.offset, &chunk.data)
                .expect("write chunk");
            offset = rx.offset();
            if breaks.first().is_some_and(|&b| offset >= b) {
                breaks.remove(0);
                broke = true;
                break;
            }
        }
        if !broke {
            return rx.finish().expect("finish");
        }
    }
}

#[test]
fn transfer_resumes_after_broken_connections_and_result_installs() {
    let a = MemVfs::new();
    let (digest, info) = sample_snapshot(&a, 6);
    let b = MemVfs::new();
    let dst = store(&b);
    let got = transfer(&store(&a), &info, &dst, &[1, 5000, 5001, info.len / 2]);
    assert_eq!(got.header, info.header);
    assert_eq!(
        b.read_file(&got.path).expect("read"),
        a.read_file(&info.path).expect("read")
    );
    let kv = kv_at(&b, KV);
    dst.install(&kv, &file_of(&got)).expect("install");
    assert_eq!(kv.digest().expect("d"), digest);
}

#[test]
fn receiver_refuses_bad_chunks_without_changing_anything() {
    let a = MemVfs::new();
    let (_, info) = sample_snapshot(&a, 7);
    let data = a.read_file(&info.path).expect("read");
    let b = MemVfs::new();
    let dst = store(&b);
    let (t, i, len) = (info.header.term, info.header.index, info.len);
    let mut rx = dst.receive(t, i, len).expect("receive");
    rx.write_chunk(0, &data[..100]).expect("first");
    let overlap = rx.write_chunk(50, &data[50..150]).expect_err("overlap");
    assert!(
        matches!(
            overlap,
            SnapshotError::OutOfOrder {
                expected: 100,
                offset: 50
            }
        ),
        "{overlap}"
    );
    let gap = rx.write_chunk(200, &data[200..300]).expect_err("gap");
    assert!(
        matches!(gap, SnapshotError::OutOfOrder { expected: 100, .. }),
        "{gap}"
    );
    let big = vec![0u8; MAX_CHUNK_BYTES + 1];
    assert!(matches!(
        rx.write_chunk(100, &big),
        Err(SnapshotError::ChunkTooLarge { .. })
    ));
    let past = rx
        .write_chunk(100, &vec![0u8; len as usize])
        .expect_err("past end");
    assert!(matches!(past, SnapshotError::PastEnd { .. }), "{past}");
    assert_eq!(rx.offset(), 100);
    assert!(matches!(
        rx.finish(),
        Err(SnapshotError::Incomplete { received: 100, .. })
    ));
    assert!(
        dst.receive(t, i, 10).is_err(),
        "announced length below a minimal file"
    );

    // A file damaged in flight is refused at the end, and the staging file removed.
    let mut rx = dst.receive(t, i, len).expect("receive again");
    assert_eq!(rx.offset(), 100);
    let mut bad = data.clone();
    bad[len as usize / 2] ^= 4;
    rx.write_chunk(100, &bad[100..]).expect("rest");
    let staging = rx.staging_path().to_path_buf();
    let err = rx.finish().expect_err("damaged");
    assert!(err.is_damage(), "{err}");
    assert!(!b.exists(&staging));
    assert!(dst.list().expect("list").is_empty());

    // Another snapshot's bytes under this name are a mismatch.
    let mut rx = dst.receive(t + 1, i, len).expect("receive");
    rx.write_chunk(0, &data).expect("all");
    assert!(matches!(rx.finish(), Err(SnapshotError::Mismatch { .. })));
    assert!(dst.chunks(&info.path, 0, 0).is_err());
}

#[test]
fn a_snapshot_taken_while_writes_continue_holds_exactly_its_view() {
    let vfs = MemVfs::new();
    let kv = Arc::new(kv_at(&vfs, KV));
    let mut rng = SplitMix64::new(8);
    fill(&kv, &mut rng, 200, 60, 200);
    let at_view = kv.digest().expect("digest");
    let view = kv.read_view().expect("view");
    let s = Arc::new(store(&vfs));
    let writer = {
        let s = Arc::clone(&s);
        std::thread::spawn(move || s.write(&view, Bytes::new()).expect("write"))
    };
    // Applies keep going while the background thread writes.
    fill(&kv, &mut rng, 300, 60, 200);
    let info = writer.join().expect("writer thread");
    assert_eq!(info.header.index, 200);
    assert_eq!(kv.applied_index(), 500);
    let target = kv_at(&vfs, "/other/kv.redb");
    s.install(&target, &file_of(&info)).expect("install");
    assert_eq!(target.digest().expect("digest"), at_view);
}

#[test]
fn install_refuses_stale_and_foreign_snapshots_and_damage_changes_nothing() {
    let vfs = MemVfs::new();
    let (_, info) = sample_snapshot(&vfs, 9);
    let s = store(&vfs);
    let target = kv_at(&vfs, "/other/kv.redb");
    fill(&target, &mut SplitMix64::new(1), 400, 10, 10);
    let before = target.digest().expect("d");
    let stale = s.install(&target, &file_of(&info)).expect_err("stale");
    assert!(
        matches!(
            stale,
            SnapshotError::Stale {
                applied: 400,
                index: 300
            }
        ),
        "{stale}"
    );

    let fresh = kv_at(&vfs, "/third/kv.redb");
    fill(&fresh, &mut SplitMix64::new(1), 10, 10, 10);
    let fresh_before = fresh.digest().expect("d");
    vfs.flip_bit(&info.path, info.len - 40, 3).expect("flip");
    let err = s.install(&fresh, &file_of(&info)).expect_err("damaged");
    assert!(err.is_damage(), "{err}");
    assert_eq!(fresh.digest().expect("d"), fresh_before);
    assert!(!vfs.exists(Path::new("/third/kv.redb.installing")));
    vfs.flip_bit(&info.path, info.len - 40, 3).expect("unflip");

    let other_group = SnapshotStore::open(
        Arc::new(vfs.clone()),
        Path::new(SNAP),
        2,
        SnapshotOptions::default(),
    )
    .expect("open")
    .0;
    assert!(matches!(
        other_group.install(&fresh, &file_of(&info)),
        Err(SnapshotError::Mismatch { .. })
    ));
    assert_eq!(target.digest().expect("d"), before);
}

#[test]
fn a_crash_at_any_point_of_an_install_leaves_the_old_state_or_the_new_one() {
    let (mut old_seen, mut new_seen) = (0, 0);
    let mut halt = 0u64;
    loop {
        let vfs = MemVfs::new();
        let (new_digest, info) = sample_snapshot(&vfs, 10);
        let target_path = "/target/kv.redb";
        let old_digest = {
            let kv = kv_at(&vfs, target_path);
            fill(&kv, &mut SplitMix64::new(11), 30, 20, 40);
            kv.flush().expect("flush");
            kv.digest().expect("d")
        };
        let kv = kv_at(&vfs, target_path);
        let s = store(&vfs);
        vfs.halt_after(Some(halt));
        let result = s.install(&kv, &file_of(&info));
        let completed = result.is_ok();
        vfs.crash(halt);
        drop(kv);
        let kv = kv_at(&vfs, target_path);
        let got = kv.digest().expect("digest after crash");
        if got == new_digest {
            new_seen += 1;
        } else {
            assert_eq!(got, old_digest, "halt {halt}: neither old nor new state");
            assert!(!completed, "halt {halt}: a completed install was lost");
            old_seen += 1;
        }
        assert!(!vfs.exists(Path::new("/target/kv.redb.installing")));
        if completed {
            break;
        }
        // Coarse steps through the long build phase, fine ones elsewhere.
        halt += if halt > 40 { 7 } else { 1 };
    }
    assert!(
        old_seen > 5 && new_seen >= 1,
        "{old_seen} old, {new_seen} new"
    );
}

#[test]
fn readers_keep_working_across_an_install() {
    let vfs = MemVfs::new();
    let (digest, info) = sample_snapshot(&vfs, 12);
    let kv = Arc::new(kv_at(&vfs, "/target/kv.redb"));
    fill(&kv, &mut SplitMix64::new(3), 50, 20, 20);
    let old_view = kv.read_view().expect("view");
    let old_index = old_view.applied_index();
    store(&vfs).install(&kv, &file_of(&info)).expect("install");
    // A view taken before the swap still reads the old state.
    let mut n = 0;
    old_view
        .for_each(None, |_, _, _| {
            n += 1;
            Ok(true)
        })
        .expect("old view");
    assert!(n > 0);
    assert_eq!(old_view.applied_index(), old_index);
    assert_eq!(kv.digest().expect("d"), digest);
}

fn arb_state() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    proptest::collection::vec(
        (
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 0..3000),
        ),
        0..60,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn snapshot_then_install_reproduces_the_store(state in arb_state(), chunk in 4096usize..20_000) {
        let vfs = MemVfs::new();
        let kv = kv_at(&vfs, KV);
        let entries: Vec<Entry> = state
            .iter()
            .enumerate()
            .map(|(i, (k, v))| put(i as u64 + 1, 1 + i as u64 / 10, k, v))
            .collect();
        if !entries.is_empty() {
            kv.apply(&entries).expect("apply");
        }
        let s = store_with(&vfs, SnapshotOptions { keep: 2, chunk_bytes: chunk });
        let info = s.write(&kv.read_view().expect("view"), Bytes::from(vec![7u8; chunk % 100])).expect("write");
        let target = kv_at(&vfs, "/other/kv.redb");
        if info.header.index > 0 {
            s.install(&target, &file_of(&info)).expect("install");
            prop_assert_eq!(target.digest().expect("d"), kv.digest().expect("d"));
            prop_assert_eq!(target.applied_term().expect("t"), kv.applied_term().expect("t"));
        }
        // Reading from any offset reproduces the file's tail.
        let data = vfs.read_file(&info.path).expect("read");
        let from = (chunk as u64 * 7) % (data.len() as u64 + 1);
        let mut tail = Vec::new();
        for c in s.chunks(&info.path, from, 1 + chunk % 5000).expect("chunks") {
            tail.extend_from_slice(&c.expect("chunk").data);
        }
        prop_assert_eq!(&tail[..], &data[from as usize..]);
    }
}

#[test]
fn real_filesystem_round_trip() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let vfs: Arc<dyn Vfs> = Arc::new(crate::vfs::StdVfs::new());
    let kv = KvStore::open(Arc::clone(&vfs), &tmp.path().join("a/kv.redb")).expect("open");
    fill(&kv, &mut SplitMix64::new(13), 100, 40, 100);
    let dir: PathBuf = tmp.path().join("snap");
    let (s, _) =
        SnapshotStore::open(Arc::clone(&vfs), &dir, 1, SnapshotOptions::default()).expect("store");
    let info = s
        .write(&kv.read_view().expect("view"), Bytes::new())
        .expect("write");
    let target = KvStore::open(vfs, &tmp.path().join("b/kv.redb")).expect("open");
    s.install(&target, &file_of(&info)).expect("install");
    assert_eq!(target.digest().expect("d"), kv.digest().expect("d"));
    drop(target);
}

#[test]
fn receiver_and_views_can_move_to_other_threads() {
    fn check<T: Send + 'static>() {}
    check::<SnapshotReceiver>();
    check::<SnapshotChunks>();
    check::<crate::kv::KvReadView>();
}
