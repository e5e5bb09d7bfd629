//! Backup and restore with real processes: `keel snapshot save` from a cluster
//! under writes holds every write acknowledged before it; three members of a new
//! cluster restored from it serve exactly that state (digests equal); a damaged
//! or truncated backup is refused and the data directory stays untouched.

mod common;

use common::workload::{
    LEADER_TIMEOUT, assert_keys, assert_same_digests, digest, value, wait_converged, write_keys,
};
use common::{TestCluster, keel_bin, unique_loopback};
use keel_testkit::local_cluster::{ClusterSpec, LocalCluster};
use std::path::Path;
use std::process::{Command, Output};

fn keel(args: &[&str]) -> Output {
    Command::new(keel_bin())
        .args(args)
        .output()
        .expect("run keel")
}

fn restore(file: &Path, dir: &Path, id: u64, initial: &str) -> Output {
    keel(&[
        "snapshot",
        "restore",
        file.to_str().expect("utf-8 path"),
        "--data-dir",
        dir.to_str().expect("utf-8 path"),
        "--id",
        &id.to_string(),
        "--initial-cluster",
        initial,
        "--cluster-token",
        "restored",
    ])
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_then_restore_a_new_cluster_from_it() {
    let mut t = TestCluster::start(3);
    t.wait_for_leader(LEADER_TIMEOUT).await;
    write_keys(&t, "k", 0..300, 100).await;
    t.client.delete("k7").await.expect("delete");

    let work = tempfile::tempdir().expect("tempdir");
    let backup = work.path().join("backup.keel");
    let endpoints = t.cluster.endpoints().join(",");
    let saved = keel(&[
        "snapshot",
        "save",
        backup.to_str().expect("utf-8"),
        "--endpoints",
        &endpoints,
    ]);
    assert!(saved.status.success(), "{}", text(&saved));
    assert!(text(&saved).contains("299 keys"), "{}", text(&saved));
    // Writes after the backup are not in it.
    write_keys(&t, "later", 0..10, 10).await;
    assert!(
        keel(&["snapshot", "save", backup.to_str().expect("utf-8")])
            .status
            .code()
            == Some(1),
        "an existing file is never overwritten"
    );

    // A damaged copy is refused, and the target directory is left alone.
    let bytes = std::fs::read(&backup).expect("read backup");
    let damaged = work.path().join("damaged.keel");
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    std::fs::write(&damaged, &flipped).expect("write");
    let truncated = work.path().join("truncated.keel");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).expect("write");
    for bad in [&damaged, &truncated] {
        let dir = work.path().join("refused");
        let out = restore(bad, &dir, 1, "1=127.0.0.1:1");
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("cannot restore"), "{}", text(&out));
        assert!(!dir.exists(), "nothing created for a refused restore");
    }

    // Three members of a new cluster, each restored from the same file.
    let mut spec =
        ClusterSpec::on_free_ports(3, unique_loopback(), work.path().join("new"), keel_bin())
            .expect("ports");
    spec.extra_args = vec!["--cluster-token".into(), "restored".into()];
    let initial = spec.initial_cluster();
    for id in 1..=3 {
        let dir = spec.base_dir.join(format!("node-{id}"));
        let out = restore(&backup, &dir, id, &initial);
        assert!(out.status.success(), "{}", text(&out));
        let again = restore(&backup, &dir, id, &initial);
        assert_eq!(again.status.code(), Some(1), "a second restore is refused");
    }
    let restored_digest = digest(&spec.base_dir.join("node-1"));
    assert_eq!(restored_digest.keys, 299);
    let new = LocalCluster::start(spec).expect("start the restored cluster");
    let mut r = TestCluster::adopt(new);
    r.wait_for_leader(LEADER_TIMEOUT).await;
    let got = r
        .client
        .get("k7", keel_client::ReadMode::Linearizable)
        .await;
    assert!(got.expect("read").kv.is_none(), "the delete was restored");
    assert_keys(&r, "k", 8..300, 100).await;
    let later = r
        .client
        .get("later0", keel_client::ReadMode::Linearizable)
        .await
        .expect("read");
    assert!(later.kv.is_none(), "writes after the backup are not in it");
    // The restored cluster takes writes; its replicas agree.
    r.client.put("fresh", value(1, 1)).await.expect("write");
    wait_converged(&mut r).await;
    r.assert_no_panics();
    assert_same_digests(&mut r, 300);
}
