//! Measures snapshots of a large state machine: write (from a read view), transfer
//! (chunked read into a receiver), install (build + swap), with the peak RSS of each
//! phase above the RSS just before it.
//!
//! `cargo run --release -p keel-storage --example snapshot_bench -- [KEYS] [VALUE_BYTES] [DIR]`
//! (default 1,000,000 keys of 256 bytes in a temporary directory). Linux only: RSS
//! comes from `/proc/self/status`, and the peak is reset through
//! `/proc/self/clear_refs` before each phase.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use keel_raft::{Entry, EntryKind};
use keel_storage::command::{Command, Expect};
use keel_storage::kv::KvStore;
use keel_storage::snapshot::{SnapshotFile, SnapshotOptions, SnapshotStore};
use keel_storage::vfs::{StdVfs, Vfs};

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Resets the peak RSS (VmHWM) to the current RSS; returns the current RSS in MiB.
fn reset_peak() -> f64 {
    // Best effort: without it the peaks below are lifetime peaks.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_kib("VmRSS:") as f64 / 1024.0
}

fn peak() -> f64 {
    status_kib("VmHWM:") as f64 / 1024.0
}

fn report(what: &str, bytes: u64, start: Instant, base: f64) {
    let secs = start.elapsed().as_secs_f64();
    let mb = bytes as f64 / 1e6;
    let top = peak();
    println!(
        "{what:<10} {mb:8.1} MB in {secs:6.2} s = {:7.1} MB/s; RSS before {base:6.1} MiB, peak {top:6.1} MiB (+{:.1} MiB)",
        mb / secs,
        top - base
    );
}

fn open_store(vfs: &Arc<dyn Vfs>, dir: &Path) -> SnapshotStore {
    SnapshotStore::open(Arc::clone(vfs), dir, 1, SnapshotOptions::default())
        .expect("store")
        .0
}

fn newest(store: &SnapshotStore) -> SnapshotFile {
    store
        .list()
        .expect("list")
        .pop()
        .expect("a snapshot exists")
}

fn put(index: u64, key: u64, value: &Bytes) -> Entry {
    Entry {
        term: 1,
        index,
        kind: EntryKind::Normal,
        data: Command::Put {
            key: Bytes::from(format!("key-{key:012}")),
            value: value.clone(),
            expect: Expect::Any,
        }
        .encode(),
    }
}

/// Runs one phase in a child process, so that its peak RSS is its own.
fn child(phase: &str, root: &Path, keys: u64, value_len: usize) {
    let exe = std::env::current_exe().expect("own path");
    let status = std::process::Command::new(exe)
        .args([
            "--phase",
            phase,
            &root.display().to_string(),
            &keys.to_string(),
            &value_len.to_string(),
        ])
        .status()
        .expect("spawn phase");
    assert!(status.success(), "phase {phase} failed");
}

fn phase(name: &str, root: &Path, keys: u64, value_len: usize) {
    let vfs: Arc<dyn Vfs> = Arc::new(StdVfs::new());
    match name {
        "write" | "write-busy" => {
            let source =
                Arc::new(KvStore::open(Arc::clone(&vfs), &root.join("a/kv.redb")).expect("open"));
            // A serving node's page cache is warm: read everything once first.
            source.digest().expect("warm up");
            let base = reset_peak();
            let start = Instant::now();
            let view = source.read_view().expect("view");
            let sender_dir = root.join("a/snap");
            let thread_vfs = Arc::clone(&vfs);
            let writer = std::thread::spawn(move || {
                open_store(&thread_vfs, &sender_dir)
                    .write(&view, Bytes::new())
                    .expect("write")
            });
            let value = Bytes::from(vec![0x33; value_len]);
            let mut index = source.applied_index();
            let mut applied = 0u64;
            if name == "write-busy" {
                while !writer.is_finished() {
                    index += 1;
                    source
                        .apply(&[put(index, index % keys, &value)])
                        .expect("apply during snapshot");
                    applied += 1;
                }
            }
            let info = writer.join().expect("writer");
            report(name, info.len, start, base);
            if applied > 0 {
                let secs = start.elapsed().as_secs_f64();
                println!(
                    "           ({applied} single-entry applies meanwhile on another thread, {:.0}/s)",
                    applied as f64 / secs
                );
            }
        }
        "transfer" => {
            let sender = open_store(&vfs, &root.join("a/snap"));
            let receiver = open_store(&vfs, &root.join("b/snap"));
            let file = newest(&sender);
            let base = reset_peak();
            let start = Instant::now();
            let total = vfs
                .open(&file.path, false)
                .and_then(|f| f.len())
                .expect("len");
            let mut rx = receiver.receive(file.term, file.index, total).expect("rx");
            for chunk in sender.chunks(&file.path, 0, 1 << 20).expect("chunks") {
                let chunk = chunk.expect("chunk");
                rx.write_chunk(chunk.offset, &chunk.data)
                    .expect("write chunk");
            }
            let got = rx.finish().expect("finish");
            report("transfer", got.len, start, base);
        }
        "validate" => {
            let receiver = open_store(&vfs, &root.join("b/snap"));
            let file = newest(&receiver);
            let base = reset_peak();
            let start = Instant::now();
            let info = receiver.validate(&file).expect("validate");
            report("validate", info.len, start, base);
        }
        "install" => {
            let receiver = open_store(&vfs, &root.join("b/snap"));
            let file = newest(&receiver);
            let target = KvStore::open(Arc::clone(&vfs), &root.join("b/kv.redb")).expect("open");
            let base = reset_peak();
            let start = Instant::now();
            let info = receiver.install(&target, &file).expect("install");
            report("install", info.len, start, base);
            let d = target.digest().expect("digest");
            assert_eq!(d.keys, keys);
            let source = KvStore::open(vfs, &root.join("a/kv.redb")).expect("open");
            println!("digest of the installed store: {d}");
            if source.applied_index() == d.applied_index {
                assert_eq!(source.digest().expect("digest"), d, "replicas differ");
                println!("           (equal to the source's)");
            }
        }
        other => panic!("unknown phase {other}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--phase") {
        let keys = args[4].parse().expect("keys");
        let value_len = args[5].parse().expect("value bytes");
        phase(&args[2], Path::new(&args[3]), keys, value_len);
        return;
    }
    let keys: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let value_len: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(256);
    let tmp = tempfile::tempdir().expect("tempdir");
    let root: PathBuf = args
        .get(3)
        .map_or_else(|| tmp.path().to_path_buf(), PathBuf::from);
    {
        let vfs: Arc<dyn Vfs> = Arc::new(StdVfs::new());
        let source = KvStore::open(vfs, &root.join("a/kv.redb")).expect("open");
        let start = Instant::now();
        let value = Bytes::from(vec![0x5a; value_len]);
        let mut index = 0u64;
        while index < keys {
            let batch: Vec<Entry> = (index + 1..=(index + 1000).min(keys))
                .map(|i| put(i, i, &value))
                .collect();
            index = batch.last().map_or(index, |e| e.index);
            source.apply(&batch).expect("apply");
        }
        source.flush().expect("flush");
        println!(
            "loaded {keys} keys of {value_len} bytes in {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }
    for p in ["write", "transfer", "validate", "install", "write-busy"] {
        child(p, &root, keys, value_len);
    }
}
