//! Measures the state machine's apply cost: one entry per transaction (a single
//! client) and 16 per transaction (a group-committed batch), for writes without a
//! client session, from one session with 64 writes in flight (a shared client),
//! and from 64 sessions with one write in flight each (independent clients).
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use keel_raft::{Entry, EntryKind};
use keel_storage::command::{Command, Envelope, Expect, SessionHeader};
use keel_storage::kv::KvStore;
use keel_storage::vfs::{StdVfs, Vfs};

/// Who sends the writes.
#[derive(Clone, Copy, Debug)]
enum Clients {
    NoSession,
    OneSession64InFlight,
    Sessions64,
}

fn session(clients: Clients, index: u64) -> Option<SessionHeader> {
    let (client_id, seq, in_flight) = match clients {
        Clients::NoSession => return None,
        Clients::OneSession64InFlight => (1, index, 64),
        Clients::Sessions64 => (u128::from(index % 64) + 1, index / 64 + 1, 1),
    };
    Some(SessionHeader {
        client_id,
        seq,
        first_unacked: seq.saturating_sub(in_flight - 1).max(1),
        now_ms: 1_700_000_000_000 + index,
        idle_timeout_ms: 3_600_000,
        max_sessions: 100_000,
    })
}

fn main() {
    let value = Bytes::from(vec![7u8; 256]);
    for clients in [
        Clients::NoSession,
        Clients::OneSession64InFlight,
        Clients::Sessions64,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let vfs: Arc<dyn Vfs> = Arc::new(StdVfs::new());
        let kv = KvStore::open(vfs, &dir.path().join("state.redb")).expect("open");
        let mut index = 0u64;
        for batch in [1usize, 16] {
            let n = 20_000 / batch;
            let start = Instant::now();
            for _ in 0..n {
                let entries: Vec<Entry> = (0..batch)
                    .map(|_| {
                        index += 1;
                        let command = Command::Put {
                            key: Bytes::from(format!("key-{:06}", index % 10_000)),
                            value: value.clone(),
                            expect: Expect::Any,
                        };
                        let envelope = Envelope {
                            session: session(clients, index),
                            command,
                        };
                        Entry {
                            term: 1,
                            index,
                            kind: EntryKind::Normal,
                            data: envelope.encode(),
                        }
                    })
                    .collect();
                kv.apply(&entries).expect("apply");
            }
            let per_txn = start.elapsed() / n as u32;
            println!(
                "{clients:?} batch {batch:>2}: {per_txn:?} per transaction, {:?} per entry",
                per_txn / batch as u32
            );
        }
        let start = Instant::now();
        kv.flush().expect("flush");
        println!("{clients:?} flush: {:?}", start.elapsed());
    }
}
