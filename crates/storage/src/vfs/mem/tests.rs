//! Tests of the simulated disk's durability model and fault injection.

use std::io;
use std::path::Path;

use super::MemVfs;
use crate::vfs::Vfs;

fn vfs_with_dir() -> MemVfs {
    let vfs = MemVfs::new();
    vfs.create_dir_all(Path::new("/d")).expect("mkdir");
    vfs.sync_dir(Path::new("/")).expect("sync root");
    vfs
}

#[test]
fn synced_file_in_synced_dir_survives_every_crash() {
    for seed in 0..64 {
        let vfs = vfs_with_dir();
        let f = vfs.open(Path::new("/d/f"), true).expect("create");
        f.write_all_at(0, b"hello").expect("write");
        f.sync_data().expect("sync");
        vfs.sync_dir(Path::new("/d")).expect("sync dir");
        drop(f);
        vfs.crash(seed);
        assert_eq!(vfs.read_file(Path::new("/d/f")).expect("read"), b"hello");
    }
}

#[test]
fn creation_without_dir_sync_is_undone() {
    let vfs = vfs_with_dir();
    let f = vfs.open(Path::new("/d/f"), true).expect("create");
    f.write_all_at(0, b"data").expect("write");
    f.sync_data().expect("sync");
    vfs.crash(1);
    assert!(!vfs.exists(Path::new("/d/f")));
    assert_eq!(
        vfs.list_dir(Path::new("/d")).expect("list"),
        Vec::<String>::new()
    );
}

#[test]
fn directory_without_parent_sync_is_undone_with_its_files() {
    let vfs = MemVfs::new();
    vfs.create_dir_all(Path::new("/a/b")).expect("mkdir");
    let f = vfs.open(Path::new("/a/b/f"), true).expect("create");
    f.sync_data().expect("sync");
    vfs.sync_dir(Path::new("/a/b")).expect("sync b");
    // "/a" itself was never made durable in "/".
    vfs.crash(3);
    assert!(!vfs.exists(Path::new("/a")));
    assert!(!vfs.exists(Path::new("/a/b/f")));
}

#[test]
fn rename_and_remove_without_dir_sync_are_undone() {
    let vfs = vfs_with_dir();
    for name in ["/d/x", "/d/y"] {
        let f = vfs.open(Path::new(name), true).expect("create");
        f.write_all_at(0, name.as_bytes()).expect("write");
        f.sync_data().expect("sync");
    }
    vfs.sync_dir(Path::new("/d")).expect("sync dir");
    vfs.rename(Path::new("/d/x"), Path::new("/d/z"))
        .expect("rename");
    vfs.remove_file(Path::new("/d/y")).expect("remove");
    assert_eq!(vfs.list_dir(Path::new("/d")).expect("list"), vec!["z"]);
    vfs.crash(9);
    assert_eq!(vfs.list_dir(Path::new("/d")).expect("list"), vec!["x", "y"]);
    assert_eq!(vfs.read_file(Path::new("/d/y")).expect("read"), b"/d/y");
}

#[test]
fn unsynced_writes_survive_fully_partly_or_not_at_all_depending_on_seed() {
    let mut outcomes = std::collections::BTreeSet::new();
    for seed in 0..200 {
        let vfs = vfs_with_dir();
        let f = vfs.open(Path::new("/d/f"), true).expect("create");
        f.write_all_at(0, &[1u8; 1024]).expect("write");
        f.sync_data().expect("sync");
        vfs.sync_dir(Path::new("/d")).expect("sync dir");
        f.write_all_at(0, &[2u8; 1024]).expect("write");
        vfs.crash(seed);
        let data = vfs.read_file(Path::new("/d/f")).expect("read");
        assert_eq!(data.len(), 1024);
        let twos = data.iter().filter(|&&b| b == 2).count();
        assert!(data.iter().all(|&b| b == 1 || b == 2));
        outcomes.insert(match twos {
            0 => "none",
            1024 => "all",
            _ => "torn",
        });
        // Determinism: the same seed gives the same disk.
        let again = vfs_with_dir();
        let g = again.open(Path::new("/d/f"), true).expect("create");
        g.write_all_at(0, &[1u8; 1024]).expect("write");
        g.sync_data().expect("sync");
        again.sync_dir(Path::new("/d")).expect("sync dir");
        g.write_all_at(0, &[2u8; 1024]).expect("write");
        again.crash(seed);
        assert_eq!(again.read_file(Path::new("/d/f")).expect("read"), data);
    }
    assert_eq!(
        outcomes.len(),
        3,
        "expected all three outcomes, got {outcomes:?}"
    );
}

#[test]
fn handles_from_before_a_crash_are_stale() {
    let vfs = vfs_with_dir();
    let f = vfs.open(Path::new("/d/f"), true).expect("create");
    f.sync_data().expect("sync");
    vfs.sync_dir(Path::new("/d")).expect("sync dir");
    vfs.crash(0);
    assert!(f.write_all_at(0, b"late").is_err());
    assert!(f.len().is_err());
    drop(f);
    assert_eq!(vfs.read_file(Path::new("/d/f")).expect("read"), b"");
}

#[test]
fn injected_sync_failure_fails_once_and_leaves_data_unsynced() {
    let vfs = vfs_with_dir();
    let f = vfs.open(Path::new("/d/f"), true).expect("create");
    vfs.sync_dir(Path::new("/d")).expect("sync dir");
    f.write_all_at(0, b"abc").expect("write");
    vfs.fail_next_sync(Path::new("/d/f")).expect("inject");
    assert!(f.sync_data().is_err());
    f.sync_data().expect("second sync works");
}

#[test]
fn space_limit_fails_growth_with_storage_full() {
    let vfs = vfs_with_dir();
    vfs.set_space_limit(Some(100));
    let f = vfs.open(Path::new("/d/f"), true).expect("create");
    f.allocate(80).expect("fits");
    // Writing inside the allocated space needs no new space.
    f.write_all_at(0, &[7; 80]).expect("write inside");
    let err = f.write_all_at(80, &[7; 21]).expect_err("over the limit");
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    assert_eq!(
        f.allocate(200).expect_err("over").kind(),
        io::ErrorKind::StorageFull
    );
    f.write_all_at(80, &[7; 20]).expect("exactly at the limit");
}

#[test]
fn halt_after_stops_every_operation_until_crash() {
    let vfs = vfs_with_dir();
    let f = vfs.open(Path::new("/d/f"), true).expect("create");
    vfs.halt_after(Some(2));
    f.write_all_at(0, b"1").expect("first op");
    f.write_all_at(1, b"2").expect("second op");
    assert!(f.sync_data().is_err());
    assert!(f.len().is_err());
    assert!(vfs.list_dir(Path::new("/d")).is_err());
    vfs.crash(0);
    assert!(vfs.list_dir(Path::new("/d")).is_ok());
}

#[test]
fn flip_bit_changes_durable_contents() {
    let vfs = vfs_with_dir();
    let f = vfs.open(Path::new("/d/f"), true).expect("create");
    f.write_all_at(0, &[0u8; 4]).expect("write");
    f.sync_data().expect("sync");
    vfs.sync_dir(Path::new("/d")).expect("sync dir");
    vfs.flip_bit(Path::new("/d/f"), 2, 3).expect("flip");
    vfs.crash(5);
    assert_eq!(
        vfs.read_file(Path::new("/d/f")).expect("read"),
        vec![0, 0, 8, 0]
    );
    assert!(vfs.flip_bit(Path::new("/d/f"), 4, 0).is_err());
}

#[test]
fn lock_is_exclusive_between_handles_and_released_on_drop_or_crash() {
    let vfs = vfs_with_dir();
    let a = vfs.open(Path::new("/d/LOCK"), true).expect("open a");
    let b = vfs.open(Path::new("/d/LOCK"), true).expect("open b");
    assert!(a.try_lock().expect("lock a"));
    assert!(a.try_lock().expect("relock a"));
    assert!(!b.try_lock().expect("b conflicts"));
    drop(a);
    assert!(b.try_lock().expect("b after drop"));
    vfs.sync_dir(Path::new("/d")).expect("sync dir");
    vfs.crash(0);
    let c = vfs.open(Path::new("/d/LOCK"), false).expect("open c");
    assert!(c.try_lock().expect("c after crash"));
}

#[test]
fn reads_past_end_fail_and_gaps_read_as_zeros() {
    let vfs = vfs_with_dir();
    let f = vfs.open(Path::new("/d/f"), true).expect("create");
    f.write_all_at(4, b"x").expect("write");
    let mut buf = [9u8; 5];
    f.read_exact_at(0, &mut buf).expect("read");
    assert_eq!(&buf, b"\0\0\0\0x");
    let err = f.read_exact_at(1, &mut buf).expect_err("past end");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn open_without_create_fails_for_missing_file_and_missing_parent() {
    let vfs = vfs_with_dir();
    assert_eq!(
        vfs.open(Path::new("/d/nope"), false)
            .expect_err("missing")
            .kind(),
        io::ErrorKind::NotFound
    );
    assert_eq!(
        vfs.open(Path::new("/nodir/f"), true)
            .expect_err("no parent")
            .kind(),
        io::ErrorKind::NotFound
    );
}
