//! Concurrent clients doing get, put and compare-and-set with unique values over a
//! rotating set of keys, every operation recorded in the history.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_client::{Client, ClientConfig, Error, Precondition, ReadMode};

use crate::history::{Call, Op, OpResult, Outcome, write_op};
use crate::lull::WriteLull;
use crate::rng::Rng;

/// The shape of the workload.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// Concurrent workers (each one operation at a time).
    pub workers: usize,
    /// Keys in use at once.
    pub active_keys: usize,
    /// Operations per key before it is retired for a fresh one (bounds the
    /// checker's work per key).
    pub ops_per_key: u32,
    /// Percent of operations that are reads.
    pub read_percent: u64,
    /// Percent of operations that are compare-and-sets (the rest are puts).
    pub cas_percent: u64,
    /// Deadline of one client call.
    pub call_deadline: Duration,
    /// How reads are served. `Stale` is a deliberately broken workload, for
    /// checking that the checker notices stale reads; `Lease` reads under the
    /// leader's lease.
    pub read_mode: ReadMode,
    /// Percent of reads sent to a random node (which serves them itself, a
    /// follower through a read index) instead of the leader.
    pub any_node_read_percent: u64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            workers: 12,
            active_keys: 8,
            ops_per_key: 150,
            read_percent: 40,
            cas_percent: 30,
            call_deadline: Duration::from_secs(2),
            read_mode: ReadMode::Linearizable,
            any_node_read_percent: 30,
        }
    }
}

/// Records operations with timestamps relative to one start instant, in memory and
/// as JSON lines in a file.
pub struct Recorder {
    start: Instant,
    next_id: AtomicU64,
    inner: Mutex<(Vec<Op>, BufWriter<std::fs::File>)>,
}

impl Recorder {
    /// A recorder writing to `path`, timing from `start`.
    pub fn create(path: &Path, start: Instant) -> std::io::Result<Recorder> {
        let file = std::fs::File::create(path)?;
        Ok(Recorder {
            start,
            next_id: AtomicU64::new(0),
            inner: Mutex::new((Vec::new(), BufWriter::new(file))),
        })
    }

    /// Nanoseconds since the start.
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// A fresh operation id.
    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn record(&self, op: Op) {
        let mut inner = self.inner.lock().expect("recorder lock");
        let _ = write_op(&mut inner.1, &op);
        inner.0.push(op);
    }

    /// Flushes the file and returns the history, sorted by id.
    pub fn finish(&self) -> std::io::Result<Vec<Op>> {
        let mut inner = self.inner.lock().expect("recorder lock");
        inner.1.flush()?;
        let mut ops = inner.0.clone();
        ops.sort_by_key(|o| o.id);
        Ok(ops)
    }

    /// Runs one call and records it. `final_read` marks reads of the final check.
    async fn invoke_with(
        &self,
        client: &Client,
        client_id: u64,
        key: &str,
        (call, version, mode): (Call, Option<u64>, ReadMode),
        final_read: bool,
    ) -> Op {
        let id = self.id();
        let invoke_ns = self.now_ns();
        let (outcome, result) = execute(client, key, &call, version, mode).await;
        let op = Op {
            id,
            client: client_id,
            call,
            key: key.to_owned(),
            invoke_ns,
            complete_ns: self.now_ns(),
            outcome,
            result,
            final_read,
        };
        self.record(op.clone());
        op
    }

    /// A linearizable read of `key` after the faults, marked final.
    pub async fn final_read(&self, client: &Client, key: &str) -> Op {
        let call = (Call::Get, None, ReadMode::Linearizable);
        self.invoke_with(client, 0, key, call, true).await
    }
}

/// Runs a call; `version` is the CAS precondition (`None`: create only).
async fn execute(
    client: &Client,
    key: &str,
    call: &Call,
    version: Option<u64>,
    mode: ReadMode,
) -> (Outcome, OpResult) {
    let key = key.to_owned();
    let done = |r: Result<u64, Error>| match r {
        Ok(revision) => (
            Outcome::Ok,
            OpResult {
                revision: Some(revision),
                ..OpResult::default()
            },
        ),
        Err(e) => failure(e),
    };
    match call {
        Call::Get => match client.get(key, mode).await {
            Ok(got) => (
                Outcome::Ok,
                OpResult {
                    value: got
                        .kv
                        .as_ref()
                        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()),
                    version: got.kv.map(|kv| kv.version),
                    ..OpResult::default()
                },
            ),
            Err(e) => failure(e),
        },
        Call::Put { value } => done(client.put(key, value.clone()).await),
        Call::Cas { new, .. } => {
            let condition = version.map_or(Precondition::Absent, Precondition::Version);
            done(client.put_with(key, new.clone(), condition).await)
        }
    }
}

fn failure(e: Error) -> (Outcome, OpResult) {
    let outcome = if e.outcome_unknown() {
        Outcome::Unknown
    } else {
        Outcome::Fail
    };
    let result = OpResult {
        conflict: matches!(e, Error::Conflict { .. }),
        error: Some(e.to_string()),
        ..OpResult::default()
    };
    (outcome, result)
}

/// The keys in use, each retired after a fixed number of operations.
pub struct KeyPool {
    active: Vec<(String, u32)>,
    all: Vec<String>,
    per_key: u32,
}

impl KeyPool {
    /// `n` fresh keys, each good for `per_key` operations.
    pub fn new(n: usize, per_key: u32) -> KeyPool {
        let mut pool = KeyPool {
            active: Vec::new(),
            all: Vec::new(),
            per_key: per_key.max(1),
        };
        for _ in 0..n.max(1) {
            let key = pool.fresh();
            pool.active.push((key, 0));
        }
        pool
    }

    fn fresh(&mut self) -> String {
        let key = format!("k{}", self.all.len());
        self.all.push(key.clone());
        key
    }

    /// A key for one more operation.
    pub fn take(&mut self, rng: &mut Rng) -> String {
        let i = rng.range(0, self.active.len() as u64 - 1) as usize;
        self.active[i].1 += 1;
        let key = self.active[i].0.clone();
        if self.active[i].1 >= self.per_key {
            let fresh = self.fresh();
            self.active[i] = (fresh, 0);
        }
        key
    }

    /// Every key ever handed out.
    pub fn all(&self) -> &[String] {
        &self.all
    }
}

/// A client configuration for the workload: short timeouts, so that faults show up
/// as failures and unknown outcomes rather than long stalls.
pub fn client_config(endpoints: Vec<String>, deadline: Duration) -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_millis(500),
        request_timeout: deadline.min(Duration::from_secs(1)),
        deadline,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(200),
        ..ClientConfig::with_endpoints(endpoints)
    }
}

/// Runs the workers until `until`, reading only while `lull` is on; returns
/// every key used.
pub async fn run(
    cfg: &WorkloadConfig,
    endpoints: Vec<String>,
    recorder: Arc<Recorder>,
    rng: Rng,
    lull: WriteLull,
    until: Instant,
) -> anyhow::Result<Vec<String>> {
    let pool = Arc::new(Mutex::new(KeyPool::new(cfg.active_keys, cfg.ops_per_key)));
    let values = Arc::new(AtomicU64::new(0));
    let next_client = Arc::new(AtomicU64::new(cfg.workers as u64 + 1));
    let mut tasks = tokio::task::JoinSet::new();
    let node_clients = endpoints
        .iter()
        .map(|e| Client::new(client_config(vec![e.clone()], cfg.call_deadline)))
        .collect::<Result<Vec<_>, _>>()?;
    let node_clients = Arc::new(node_clients);
    for w in 0..cfg.workers {
        let client = Client::new(client_config(endpoints.clone(), cfg.call_deadline))?;
        let worker = Worker {
            cfg: cfg.clone(),
            client,
            node_clients: node_clients.clone(),
            client_id: w as u64 + 1,
            rng: rng.fork(w as u64),
            pool: pool.clone(),
            values: values.clone(),
            next_client: next_client.clone(),
            recorder: recorder.clone(),
            known: HashMap::new(),
            lull: lull.clone(),
        };
        tasks.spawn(worker.run(until));
    }
    while let Some(r) = tasks.join_next().await {
        r?;
    }
    let keys = pool.lock().expect("pool lock").all().to_vec();
    Ok(keys)
}

struct Worker {
    cfg: WorkloadConfig,
    client: Client,
    /// One client per node, each with that node as its only endpoint.
    node_clients: Arc<Vec<Client>>,
    client_id: u64,
    rng: Rng,
    pool: Arc<Mutex<KeyPool>>,
    values: Arc<AtomicU64>,
    next_client: Arc<AtomicU64>,
    recorder: Arc<Recorder>,
    /// The last value and version this worker saw per key, for its CAS.
    known: HashMap<String, (String, u64)>,
    /// While on, the worker only reads.
    lull: WriteLull,
}

/// The kinds of operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Get,
    Cas,
    Put,
}

/// The kind of the next operation, for a `roll` uniform in `0..=99`: reads,
/// CAS and puts in the configured proportions, but only reads when `can_write`
/// is false (during a lull).
fn kind(cfg: &WorkloadConfig, roll: u64, can_write: bool) -> Kind {
    if !can_write || roll < cfg.read_percent {
        Kind::Get
    } else if roll < cfg.read_percent + cfg.cas_percent {
        Kind::Cas
    } else {
        Kind::Put
    }
}

impl Worker {
    async fn run(mut self, until: Instant) {
        while Instant::now() < until {
            let key = self.pool.lock().expect("pool lock").take(&mut self.rng);
            let roll = self.rng.range(0, 99);
            let value = format!("v{}", self.values.fetch_add(1, Ordering::Relaxed));
            let known = self.known.get(&key).cloned();
            // Leave to write, held until the write ends (refused during a lull).
            let write = (roll >= self.cfg.read_percent)
                .then(|| self.lull.begin_write())
                .flatten();
            let (call, version) = match kind(&self.cfg, roll, write.is_some()) {
                Kind::Get => (Call::Get, None),
                Kind::Cas => {
                    let call = Call::Cas {
                        expected: known.as_ref().map(|k| k.0.clone()),
                        new: value,
                    };
                    (call, known.map(|k| k.1))
                }
                Kind::Put => (Call::Put { value }, None),
            };
            let any_node =
                matches!(call, Call::Get) && self.rng.range(0, 99) < self.cfg.any_node_read_percent;
            let client = match any_node {
                true => self.rng.pick(&self.node_clients).unwrap_or(&self.client),
                false => &self.client,
            };
            let op = self
                .recorder
                .invoke_with(
                    client,
                    self.client_id,
                    &key,
                    (call, version, self.cfg.read_mode),
                    false,
                )
                .await;
            drop(write);
            self.learn(&op);
            if op.outcome == Outcome::Unknown {
                // The operation may still take effect: continue as a new client so
                // that each client has one operation in flight at most.
                self.client_id = self.next_client.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn learn(&mut self, op: &Op) {
        let seen = match (op.outcome, op.read_value(), op.call.written()) {
            (Outcome::Ok, Some(Some(v)), _) => op.result.version.map(|n| (v.to_owned(), n)),
            (Outcome::Ok, _, Some(v)) => op.result.revision.map(|n| (v.to_owned(), n)),
            _ => None,
        };
        match seen {
            Some(s) => {
                self.known.insert(op.key.clone(), s);
            }
            None if op.outcome == Outcome::Ok || op.outcome == Outcome::Unknown => {
                self.known.remove(&op.key);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_retire_after_their_quota() {
        let mut pool = KeyPool::new(2, 3);
        let mut rng = Rng::new(1);
        let mut counts: HashMap<String, u32> = HashMap::new();
        for _ in 0..30 {
            *counts.entry(pool.take(&mut rng)).or_default() += 1;
        }
        assert!(counts.values().all(|&c| c <= 3), "{counts:?}");
        assert!(pool.all().len() >= 10);
    }

    #[test]
    fn a_lull_leaves_only_reads() {
        let cfg = WorkloadConfig::default();
        let kinds: Vec<Kind> = (0..100).map(|roll| kind(&cfg, roll, true)).collect();
        let count = |k| kinds.iter().filter(|&&x| x == k).count() as u64;
        assert_eq!(count(Kind::Get), cfg.read_percent);
        assert_eq!(count(Kind::Cas), cfg.cas_percent);
        assert_eq!(count(Kind::Put), 100 - cfg.read_percent - cfg.cas_percent);
        assert!((0..100).all(|roll| kind(&cfg, roll, false) == Kind::Get));
    }
}
