//! Throughput of the consensus core alone (no storage, no network, no threads):
//! three in-memory cores, the bench handing messages across.
//!
//! - `commit/cluster/N`: the leader takes N proposals of 256 bytes, sends them in
//!   one AppendEntries per follower, the followers answer, the leader commits;
//!   the time is all three cores' plus the harness's queue.
//! - `commit/leader/N`: the same rounds, timing only the calls into the leader's
//!   core: its share of the CPU of a write.
//! - `heartbeat/round`: five ticks of the leader (one heartbeat interval) and the
//!   heartbeat round they start, answered by both followers.
//! - `read_index/leader/N`: N linearizable reads on the leader, confirmed by one
//!   heartbeat round; `read_index/follower/1`: one read asked of a follower,
//!   which goes through the leader and back.
//!
//! `cargo bench -p keel-raft --bench step`; results in BENCHMARKS.md
//! ("Micro-benchmarks").

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/settings.rs"]
mod settings;

use cluster::{Cluster, LEADER};

/// Entries proposed per round.
const BATCHES: [usize; 3] = [1, 16, 256];
/// Size of each proposal, as in the end-to-end write benchmarks.
const PAYLOAD_BYTES: usize = 256;

fn commit(c: &mut Criterion) {
    let payload = Bytes::from(vec![0x5a; PAYLOAD_BYTES]);
    let mut group = c.benchmark_group("commit");
    for n in BATCHES {
        group.throughput(Throughput::Elements(n as u64));
        let mut cluster = Cluster::new();
        group.bench_function(BenchmarkId::new("cluster", n), |b| {
            b.iter(|| {
                cluster.propose(&payload, n);
                cluster.settle();
            });
        });
        assert!(cluster.all_committed());
        let mut cluster = Cluster::new();
        group.bench_function(BenchmarkId::new("leader", n), |b| {
            b.iter_custom(|iters| {
                cluster.time_leader(true);
                for _ in 0..iters {
                    cluster.propose(&payload, n);
                    cluster.settle();
                }
                let busy = cluster.leader_busy();
                cluster.time_leader(false);
                busy
            });
        });
        assert!(cluster.all_committed());
    }
    group.finish();
}

fn heartbeat(c: &mut Criterion) {
    let mut cluster = Cluster::new();
    c.bench_function("heartbeat/round", |b| b.iter(|| cluster.heartbeat_round()));
}

fn read_index(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_index");
    for (on, reads) in [(LEADER, 1), (LEADER, 64), (2, 1)] {
        let role = if on == LEADER { "leader" } else { "follower" };
        group.throughput(Throughput::Elements(reads));
        let mut cluster = Cluster::new();
        let mut ctx = 0;
        group.bench_function(BenchmarkId::new(role, reads), |b| {
            b.iter(|| {
                let before = cluster.read_states();
                for _ in 0..reads {
                    ctx += 1;
                    cluster.read_index(on, ctx);
                }
                cluster.settle();
                assert_eq!(cluster.read_states() - before, reads as usize);
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = settings::modest();
    targets = commit, heartbeat, read_index
}
criterion_main!(benches);
