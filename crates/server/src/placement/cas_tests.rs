//! The compare-and-set helper against an in-memory store that can be made to
//! lose races.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::*;
use keel_placement::PlacementMachine;

/// A map key in memory. Before each of the first `interfere` writes, another
/// proposer registers a node of its own, so that write conflicts.
struct MemStore {
    state: Mutex<MemState>,
}

struct MemState {
    value: Option<(Bytes, u64)>,
    next_version: u64,
    interfere: usize,
    writes: usize,
}

impl MemStore {
    fn new(map: Option<&ClusterMap>, interfere: usize) -> MemStore {
        MemStore {
            state: Mutex::new(MemState {
                value: map.map(|m| (Bytes::from(m.encode()), 1)),
                next_version: 2,
                interfere,
                writes: 0,
            }),
        }
    }

    fn map(&self) -> Option<(ClusterMap, u64)> {
        let s = self.state.lock().expect("lock");
        s.value
            .as_ref()
            .map(|(b, v)| (ClusterMap::decode(b).expect("decodes"), *v))
    }

    fn writes(&self) -> usize {
        self.state.lock().expect("lock").writes
    }
}

impl MemState {
    fn store(&mut self, value: Bytes) -> u64 {
        let version = self.next_version;
        self.next_version += 1;
        self.value = Some((value, version));
        version
    }
}

impl MapStore for MemStore {
    async fn read(&self) -> Result<Option<(Bytes, u64)>, CasError> {
        Ok(self.state.lock().expect("lock").value.clone())
    }

    async fn write(&self, value: Bytes, expect: Expect) -> Result<Written, CasError> {
        let mut s = self.state.lock().expect("lock");
        if s.interfere > 0 {
            s.interfere -= 1;
            let other = s.value.as_ref().map(|(b, _)| {
                let mut m = ClusterMap::decode(b).expect("decodes");
                let node = 100 + m.nodes().len() as u64;
                m.apply(&Command::RegisterNode {
                    node,
                    address: format!("other{node}:1"),
                })
                .expect("registers");
                Bytes::from(m.encode())
            });
            let other = other.unwrap_or_else(|| Bytes::from(bootstrap_map().encode()));
            s.store(other);
        }
        let current = s.value.as_ref().map(|(_, v)| *v);
        let holds = match expect {
            Expect::Any => true,
            Expect::Absent => current.is_none(),
            Expect::Version(v) => current == Some(v),
        };
        if !holds {
            return Ok(Written::Conflict);
        }
        s.writes += 1;
        Ok(Written::Stored {
            version: s.store(value),
        })
    }
}

fn bootstrap_map() -> ClusterMap {
    let members: BTreeMap<u64, String> = (1..=3).map(|i| (i, format!("n{i}:7000"))).collect();
    PlacementMachine::bootstrap(&members)
        .expect("bootstrap")
        .map()
        .clone()
}

fn register(node: u64) -> Command {
    Command::RegisterNode {
        node,
        address: format!("n{node}:7000"),
    }
}

fn block_on<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn a_change_is_applied_and_written_against_the_version_read() {
    let start = bootstrap_map();
    let store = MemStore::new(Some(&start), 0);
    let changed = block_on(change_map(&store, &register(4))).expect("changes");
    assert!(changed.applied.changed);
    assert_eq!(changed.map.version(), start.version() + 1);
    let (stored, version) = store.map().expect("a map");
    assert_eq!(stored, changed.map);
    assert_eq!(version, changed.stored_version);
    assert!(stored.nodes().contains_key(&4));
}

#[test]
fn a_conflict_is_retried_on_the_winners_map_and_loses_nothing() {
    let start = bootstrap_map();
    let store = MemStore::new(Some(&start), 2);
    let changed = block_on(change_map(&store, &register(4))).expect("changes");
    let (stored, _) = store.map().expect("a map");
    // Both interfering registrations and ours are in the map.
    for node in [4, 103, 104] {
        assert!(stored.nodes().contains_key(&node), "node {node} missing");
    }
    assert_eq!(stored.version(), start.version() + 3);
    assert_eq!(stored, changed.map);
}

#[test]
fn endless_conflicts_end_in_contended_after_bounded_attempts() {
    let store = MemStore::new(Some(&bootstrap_map()), usize::MAX);
    let err = block_on(change_map(&store, &register(4))).expect_err("contended");
    assert!(
        matches!(err, CasError::Contended { attempts } if attempts == MAX_CAS_ATTEMPTS),
        "{err}"
    );
    assert_eq!(store.writes(), 0);
}

#[test]
fn a_refused_command_changes_nothing() {
    let start = bootstrap_map();
    let store = MemStore::new(Some(&start), 0);
    // Node 1 holds a replica of group 1: it cannot be removed.
    let err = block_on(change_map(&store, &Command::RemoveNode { node: 1 })).expect_err("refused");
    assert!(matches!(err, CasError::Refused(_)), "{err}");
    assert_eq!(store.writes(), 0);
    assert_eq!(store.map(), Some((start, 1)));
}

#[test]
fn a_command_already_true_writes_nothing() {
    let start = bootstrap_map();
    let store = MemStore::new(Some(&start), 0);
    let changed = block_on(change_map(&store, &register(2))).expect("no-op");
    assert!(!changed.applied.changed);
    assert_eq!(changed.map, start);
    assert_eq!(store.writes(), 0);
}

#[test]
fn without_a_map_a_change_is_refused() {
    let store = MemStore::new(None, 0);
    let err = block_on(change_map(&store, &register(4))).expect_err("no map");
    assert!(matches!(err, CasError::NoMap), "{err}");
}

#[test]
fn create_if_absent_stores_once() {
    let store = MemStore::new(None, 0);
    let map = bootstrap_map();
    assert_eq!(
        block_on(create_map(&store, &map)).expect("creates"),
        Created::Stored { version: 2 }
    );
    assert_eq!(
        block_on(create_map(&store, &map)).expect("exists"),
        Created::Existing
    );
    assert_eq!(store.writes(), 1);
}

#[test]
fn a_create_that_loses_the_race_reports_the_winners_map() {
    // Another proposer creates the map between our read and our write.
    let store = MemStore::new(None, 1);
    let mut ours = bootstrap_map();
    ours.apply(&register(9)).expect("registers");
    assert_eq!(
        block_on(create_map(&store, &ours)).expect("exists"),
        Created::Existing
    );
    let (stored, _) = store.map().expect("a map");
    assert_eq!(stored, bootstrap_map());
    assert_eq!(store.writes(), 0);
}
