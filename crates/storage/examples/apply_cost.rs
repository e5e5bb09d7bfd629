//! Measures the state machine's apply cost: one entry per transaction (a single
//! client) and 16 per transaction (a group-committed batch).
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use keel_raft::{Entry, EntryKind};
use keel_storage::command::{Command, Expect};
use keel_storage::kv::KvStore;
use keel_storage::vfs::{StdVfs, Vfs};

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vfs: Arc<dyn Vfs> = Arc::new(StdVfs::new());
    let kv = KvStore::open(vfs, &dir.path().join("state.redb")).expect("open");
    let value = Bytes::from(vec![7u8; 256]);
    let mut index = 0u64;
    for batch in [1usize, 16] {
        let n = 20_000 / batch;
        let start = Instant::now();
        for _ in 0..n {
            let entries: Vec<Entry> = (0..batch)
                .map(|_| {
                    index += 1;
                    let cmd = Command::Put {
                        key: Bytes::from(format!("key-{:06}", index % 10_000)),
                        value: value.clone(),
                        expect: Expect::Any,
                    };
                    Entry {
                        term: 1,
                        index,
                        kind: EntryKind::Normal,
                        data: cmd.encode(),
                    }
                })
                .collect();
            kv.apply(&entries).expect("apply");
        }
        let per_txn = start.elapsed() / n as u32;
        println!(
            "batch {batch:>2}: {per_txn:?} per transaction, {:?} per entry",
            per_txn / batch as u32
        );
    }
    let start = Instant::now();
    kv.flush().expect("flush");
    println!("flush: {:?}", start.elapsed());
}
