//! Session tests: dedup, forgetting, expiry, bounds, persistence, determinism.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use keel_raft::{Entry, EntryKind};

use super::*;
use crate::command::{Command, Envelope, Expect, SessionHeader};
use crate::kv::tests::get as value;
use crate::kv::{ApplyOutcome, KvStore};
use crate::vfs::MemVfs;

const PATH: &str = "/node/state/kv.redb";
const HOUR: u64 = 3_600_000;

fn open(vfs: &MemVfs) -> KvStore {
    KvStore::open(Arc::new(vfs.clone()), Path::new(PATH)).expect("open")
}

/// A session header with the defaults most tests want.
fn h(client: u128, seq: u64) -> SessionHeader {
    SessionHeader {
        client_id: client,
        seq,
        first_unacked: 1,
        now_ms: 1_000,
        idle_timeout_ms: HOUR,
        max_sessions: 100,
    }
}

fn incr_cas(version: u64, value: u64) -> Command {
    Command::Put {
        key: Bytes::from_static(b"counter"),
        value: Bytes::from(value.to_string()),
        expect: if version == 0 {
            Expect::Absent
        } else {
            Expect::Version(version)
        },
    }
}

fn put(key: &'static str) -> Command {
    Command::Put {
        key: Bytes::from_static(key.as_bytes()),
        value: Bytes::from_static(b"v"),
        expect: Expect::Any,
    }
}

/// A log being built: entries with consecutive indexes.
#[derive(Default)]
struct Log(Vec<Entry>);

impl Log {
    fn push(&mut self, session: Option<SessionHeader>, command: Command) -> &Entry {
        let index = self.0.len() as u64 + 1;
        self.0.push(Entry {
            term: 1,
            index,
            kind: EntryKind::Normal,
            data: Envelope { session, command }.encode(),
        });
        self.0.last().expect("just pushed")
    }

    /// Appends and applies one entry; its outcome.
    fn run(
        &mut self,
        kv: &KvStore,
        session: Option<SessionHeader>,
        command: Command,
    ) -> ApplyOutcome {
        let entry = self.push(session, command).clone();
        kv.apply(&[entry]).expect("apply")[0].clone()
    }
}

#[test]
fn a_repeated_write_gets_its_first_outcome_and_runs_once() {
    let kv = open(&MemVfs::new());
    let mut log = Log::default();
    let first = log.run(&kv, Some(h(7, 1)), incr_cas(0, 1));
    assert_eq!(first, ApplyOutcome::Put { revision: 1 });
    // The retry (another entry, same session and number) is not executed: had it
    // been, its precondition (absent) would fail now.
    assert_eq!(log.run(&kv, Some(h(7, 1)), incr_cas(0, 1)), first);
    assert_eq!(value(&kv, "counter"), Some(("1".into(), 1)));
    // A CONFLICT is remembered as such, even once the precondition would hold.
    let conflict = log.run(&kv, Some(h(7, 2)), incr_cas(2, 2));
    assert_eq!(
        conflict,
        ApplyOutcome::Conflict {
            current_version: Some(1)
        }
    );
    log.run(&kv, None, incr_cas(1, 2));
    assert_eq!(value(&kv, "counter"), Some(("2".into(), 4)));
    assert_eq!(log.run(&kv, Some(h(7, 2)), incr_cas(4, 3)), conflict);
    assert_eq!(value(&kv, "counter"), Some(("2".into(), 4)));
    let stats = kv.session_stats();
    assert_eq!(
        (stats.sessions, stats.duplicates, stats.rejected),
        (1, 2, 0)
    );
}

#[test]
fn writes_without_a_session_are_untouched() {
    let kv = open(&MemVfs::new());
    let mut log = Log::default();
    assert_eq!(
        log.run(&kv, None, put("a")),
        ApplyOutcome::Put { revision: 1 }
    );
    assert_eq!(
        log.run(&kv, None, put("a")),
        ApplyOutcome::Put { revision: 2 }
    );
    assert_eq!(kv.session_stats(), SessionStats::default());
    let d = kv.digest().expect("digest");
    assert_eq!(d.sessions, 0);
}

#[test]
fn only_a_client_that_acknowledged_nothing_opens_a_session() {
    let kv = open(&MemVfs::new());
    let mut log = Log::default();
    let later = SessionHeader {
        first_unacked: 4,
        ..h(7, 5)
    };
    assert_eq!(
        log.run(&kv, Some(later), put("a")),
        ApplyOutcome::SessionRejected(SessionRejection::UnknownSession)
    );
    assert_eq!(value(&kv, "a"), None);
    assert_eq!(kv.session_stats().sessions, 0);
    assert_eq!(kv.session_stats().rejected, 1);
    // Concurrent first writes may arrive in any order: number 3 of a session
    // whose number 1 is still unanswered opens it.
    assert_eq!(
        log.run(&kv, Some(h(8, 3)), put("b")),
        ApplyOutcome::Put { revision: 2 }
    );
    assert_eq!(
        log.run(&kv, Some(h(8, 1)), put("c")),
        ApplyOutcome::Put { revision: 3 }
    );
    assert_eq!(kv.session_stats().sessions, 1);
}

#[test]
fn acknowledged_results_are_forgotten_and_their_retries_refused() {
    let kv = open(&MemVfs::new());
    let mut log = Log::default();
    for seq in 1..=3 {
        log.run(&kv, Some(h(7, seq)), put("a"));
    }
    // The client acknowledged 1 and 2.
    let ack = SessionHeader {
        first_unacked: 3,
        ..h(7, 4)
    };
    assert_eq!(
        log.run(&kv, Some(ack), put("b")),
        ApplyOutcome::Put { revision: 4 }
    );
    assert_eq!(
        log.run(&kv, Some(h(7, 2)), put("a")),
        ApplyOutcome::SessionRejected(SessionRejection::Forgotten { lowest_known: 3 })
    );
    // Still remembered: 3 and 4.
    assert_eq!(
        log.run(&kv, Some(h(7, 3)), put("a")),
        ApplyOutcome::Put { revision: 3 }
    );
    assert_eq!(value(&kv, "a"), Some(("v".into(), 3)));
}

#[test]
fn at_most_max_results_are_remembered_per_session() {
    let kv = open(&MemVfs::new());
    let mut log = Log::default();
    let n = MAX_RESULTS_PER_SESSION as u64 + 2;
    for seq in 1..=n {
        log.push(Some(h(7, seq)), put("a"));
    }
    kv.apply(&log.0).expect("apply");
    assert_eq!(
        log.run(&kv, Some(h(7, 2)), put("a")),
        ApplyOutcome::SessionRejected(SessionRejection::Forgotten { lowest_known: 3 })
    );
    assert_eq!(
        log.run(&kv, Some(h(7, 3)), put("a")),
        ApplyOutcome::Put { revision: 3 }
    );
}

#[test]
fn idle_sessions_expire_in_log_time() {
    let kv = open(&MemVfs::new());
    let mut log = Log::default();
    let at = |client, seq, now_ms| SessionHeader {
        now_ms,
        ..h(client, seq)
    };
    log.run(&kv, Some(at(1, 1, 1_000)), put("a"));
    log.run(&kv, Some(at(2, 1, 2_000)), put("b"));
    // Exactly the idle time later: both still there.
    log.run(&kv, Some(at(3, 1, 1_000 + HOUR)), put("c"));
    assert_eq!(kv.session_stats().sessions, 3);
    // A millisecond more: session 1 goes, at this entry, on every replica.
    log.run(&kv, Some(at(3, 2, 1_001 + HOUR)), put("c"));
    assert_eq!(kv.session_stats().sessions, 2);
    let acked = |client, seq, now_ms| SessionHeader {
        first_unacked: seq,
        ..at(client, seq, now_ms)
    };
    assert_eq!(
        log.run(&kv, Some(acked(1, 2, 1_001 + HOUR)), put("a")),
        ApplyOutcome::SessionRejected(SessionRejection::UnknownSession)
    );
    // A proposer whose clock is behind does not turn time back: session 2 is
    // idle by the clock the log already reached.
    let behind = acked(2, 2, 2_001 + HOUR - 50_000);
    log.run(&kv, Some(at(3, 3, 2_001 + HOUR)), put("c"));
    assert_eq!(
        log.run(&kv, Some(behind), put("b")),
        ApplyOutcome::SessionRejected(SessionRejection::UnknownSession)
    );
}

#[test]
fn the_idle_time_comes_from_each_entry() {
    let kv = open(&MemVfs::new());
    let mut log = Log::default();
    log.run(&kv, Some(h(1, 1)), put("a"));
    let short = SessionHeader {
        idle_timeout_ms: 10,
        now_ms: 1_011,
        ..h(2, 1)
    };
    log.run(&kv, Some(short), put("b"));
    assert_eq!(kv.session_stats().sessions, 1, "session 1 expired");
}

#[test]
fn a_full_table_evicts_the_least_recently_used_session_after_the_grace() {
    let kv = open(&MemVfs::new());
    let mut log = Log::default();
    let at = |client, seq, now_ms| SessionHeader {
        now_ms,
        max_sessions: 2,
        ..h(client, seq)
    };
    log.run(&kv, Some(at(1, 1, 1_000)), put("a"));
    log.run(&kv, Some(at(2, 1, 1_000)), put("b"));
    // Session 1 was used later than 2, so 2 is the least recently used.
    log.run(&kv, Some(at(1, 2, 2_000)), put("a"));
    // Within the grace nobody is evicted: the new session is refused.
    assert_eq!(
        log.run(&kv, Some(at(3, 1, 1_000 + EVICTION_GRACE_MS - 1)), put("c")),
        ApplyOutcome::SessionRejected(SessionRejection::TooManySessions)
    );
    assert_eq!(value(&kv, "c"), None);
    assert_eq!(
        log.run(&kv, Some(at(3, 1, 1_000 + EVICTION_GRACE_MS)), put("c")),
        ApplyOutcome::Put { revision: 5 }
    );
    let evicted = SessionHeader {
        first_unacked: 2,
        ..at(2, 2, 1_000 + EVICTION_GRACE_MS)
    };
    assert_eq!(
        log.run(&kv, Some(evicted), put("b")),
        ApplyOutcome::SessionRejected(SessionRejection::UnknownSession)
    );
    assert_eq!(
        log.run(&kv, Some(at(1, 3, 1_000 + EVICTION_GRACE_MS)), put("a")),
        ApplyOutcome::Put { revision: 7 }
    );
}

#[test]
fn ties_in_last_use_are_broken_by_client_id() {
    let kv = open(&MemVfs::new());
    let mut log = Log::default();
    let at = |client, now_ms| SessionHeader {
        now_ms,
        max_sessions: 2,
        ..h(client, 1)
    };
    log.run(&kv, Some(at(9, 1_000)), put("a"));
    log.run(&kv, Some(at(4, 1_000)), put("b"));
    log.run(&kv, Some(at(6, 1_000 + EVICTION_GRACE_MS)), put("c"));
    let retry = SessionHeader {
        seq: 1,
        ..at(9, 1_000 + EVICTION_GRACE_MS)
    };
    // 4 went (smaller id), 9 stayed and still answers its retry from memory.
    assert_eq!(
        log.run(&kv, Some(retry), put("a")),
        ApplyOutcome::Put { revision: 1 }
    );
}

#[test]
fn sessions_survive_a_restart() {
    let vfs = MemVfs::new();
    let mut log = Log::default();
    {
        let kv = open(&vfs);
        log.run(&kv, Some(h(7, 1)), incr_cas(0, 1));
        kv.flush().expect("flush");
    }
    let kv = open(&vfs);
    assert_eq!(kv.session_stats().sessions, 1);
    assert_eq!(
        log.run(&kv, Some(h(7, 1)), incr_cas(0, 1)),
        ApplyOutcome::Put { revision: 1 }
    );
}

/// The same log applied in different batches reaches the same state and outcomes:
/// the batch's row cache must not change what a replica decides.
#[test]
fn batching_does_not_change_the_outcome() {
    let mut log = Log::default();
    let mut rng = keel_raft::SplitMix64::new(11);
    for i in 0..600u64 {
        let client = u128::from(rng.below(5)) + 1;
        let seq = rng.below(40) + 1;
        let header = SessionHeader {
            first_unacked: seq.saturating_sub(rng.below(8)).max(1),
            now_ms: i * 997,
            idle_timeout_ms: 120_000,
            max_sessions: 3,
            ..h(client, seq)
        };
        let key = ["a", "b", "c"][rng.below(3) as usize];
        let version = rng.below(i + 1);
        let command = Command::Put {
            key: Bytes::from_static(key.as_bytes()),
            value: Bytes::from(i.to_string()),
            expect: Expect::Version(version),
        };
        let session = (rng.below(5) != 0).then_some(header);
        log.push(session, command);
    }
    let one_by_one = open(&MemVfs::new());
    let singly: Vec<ApplyOutcome> = log
        .0
        .iter()
        .map(|e| one_by_one.apply(std::slice::from_ref(e)).expect("apply")[0].clone())
        .collect();
    let at_once = open(&MemVfs::new());
    let batched = at_once.apply(&log.0).expect("apply");
    assert_eq!(singly, batched);
    assert_eq!(
        one_by_one.digest().expect("d"),
        at_once.digest().expect("d")
    );
    assert!(
        batched
            .iter()
            .any(|o| matches!(o, ApplyOutcome::SessionRejected(_)))
    );
    let stats = at_once.session_stats();
    assert!(stats.duplicates > 0, "{stats:?}");
}

#[test]
fn a_database_from_before_sessions_is_upgraded() {
    use redb::ReadableDatabase as _;
    let vfs = MemVfs::new();
    {
        let kv = open(&vfs);
        Log::default().run(&kv, None, put("a"));
        // Turn it into what the previous build left: schema 1, no session table.
        let db = kv.db();
        let txn = db.begin_write().expect("txn");
        txn.delete_table(SESSIONS).expect("drop");
        txn.open_table(crate::kv::META)
            .expect("meta")
            .insert("schema_version", 1)
            .expect("schema");
        txn.commit().expect("commit");
        drop(db);
        kv.flush().expect("flush");
    }
    let kv = open(&vfs);
    assert_eq!(value(&kv, "a"), Some(("v".into(), 1)));
    let txn = kv.db().begin_read().expect("read");
    let meta = txn.open_table(crate::kv::META).expect("meta");
    assert_eq!(
        meta.get("schema_version").expect("get").map(|g| g.value()),
        Some(crate::kv::schema::SCHEMA_VERSION)
    );
    let mut log = Log(vec![Entry {
        term: 1,
        index: 1,
        kind: EntryKind::Normal,
        data: put("a").encode(),
    }]);
    assert_eq!(
        log.run(&kv, Some(h(1, 1)), put("b")),
        ApplyOutcome::Put { revision: 2 }
    );
}
