//! TLS, mutual TLS between nodes and the bearer token, with real processes: a
//! 3-node cluster whose every port speaks TLS under a CA made by `keel certs`,
//! with client certificates and a token required. It serves the Rust client, the
//! CLI and HTTPS (a follower forwarding to the leader over the peers' TLS); and
//! it refuses, logs and counts: a client trusting another CA, a certificate of
//! another CA, expired certificates (a client's, a node's on the peer service),
//! a client certificate on the peer service, and a missing or wrong token
//! (changing nothing).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::TestCluster;
use common::tls::{Certs, https, resp};
use keel_client::{BearerToken, Client, ClientConfig, Error, ReadMode, TlsConfig};
use keel_proto::raft::MessageBatch;
use keel_proto::raft::raft_client::RaftClient;

const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
const TOKEN: &str = "test-token-0123456789";

/// Waits until a line of node `id`'s log mentions every one of `words`.
async fn logged(t: &TestCluster, id: u64, words: &[&str]) {
    let path = t.cluster.log_path(id);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text
            .lines()
            .any(|line| words.iter().all(|w| line.contains(w)))
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node {id} did not log {words:?}:\n{}",
            t.cluster.log_tail(id, 30)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A client of node `addr` only, failing fast.
fn client(addr: SocketAddr, tls: Option<TlsConfig>, token: Option<&str>) -> Client {
    Client::new(ClientConfig {
        deadline: Duration::from_secs(2),
        request_timeout: Duration::from_secs(1),
        tls,
        token: token.map(|t| BearerToken::new(t).expect("token")),
        ..ClientConfig::with_endpoints([addr.to_string()])
    })
    .expect("client")
}

/// Opens a peer stream to `addr` presenting `tls`'s certificate and sends one
/// empty batch; the answer says whether the peer service took it.
async fn peer_stream(addr: SocketAddr, tls: &TlsConfig) -> Result<(), String> {
    let endpoint = tls
        .endpoint(&format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2));
    let channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
    let batch = MessageBatch::default();
    RaftClient::new(channel)
        .stream(futures::stream::iter([batch]))
        .await
        .map(drop)
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

fn keel(args: &[&str]) -> std::process::Output {
    std::process::Command::new(common::keel_bin())
        .args(args)
        .output()
        .expect("run keel")
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_serves_tls_clients_and_refuses_wrong_credentials() {
    let dir = tempfile::Builder::new()
        .prefix("keel-tls-")
        .tempdir()
        .expect("tempdir");
    let ip = common::unique_loopback();
    let certs = Certs::make(&dir.path().join("certs"), ip, 3);
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let mut flags = certs.serve_flags();
    flags.extend([
        "--auth-token-file".into(),
        token_file.to_string_lossy().into(),
    ]);
    let alice = certs.client_tls(Some("client-alice"));
    let mut t = TestCluster::start_in(
        dir,
        ip,
        3,
        flags,
        keel_testkit::local_cluster::ClusterSpec::with_redis,
        Some(alice.clone()),
        Some(BearerToken::new(TOKEN).expect("token")),
    );
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;

    // The Rust client, over TLS with a client certificate and the token.
    t.client.put("k", "v1").await.expect("put over TLS");
    let got = t
        .client
        .get("k", ReadMode::Linearizable)
        .await
        .expect("get");
    assert_eq!(got.kv.expect("present").value, b"v1".as_slice());

    // The CLI, with --ca, --cert, --key and --token-file.
    let endpoints = t.cluster.endpoints().join(",");
    let tls_flags = [
        "--endpoints",
        &endpoints,
        "--ca",
        &certs.path_str("ca.pem"),
        "--cert",
        &certs.path_str("client-alice.pem"),
        "--key",
        &certs.path_str("client-alice-key.pem"),
        "--token-file",
        &token_file.to_string_lossy(),
    ];
    let out = keel(&[&["put", "cli", "yes"][..], &tls_flags].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = keel(&[&["get", "cli"][..], &tls_flags].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("yes"));

    // HTTPS through a follower, which forwards the write to the leader over the
    // peers' mutual TLS, with the token.
    let follower = t.follower_of(leader, LEADER_TIMEOUT).await;
    let auth = bearer();
    let with_token = [("Authorization", auth.as_str())];
    let (code, _, body) = https(
        &alice,
        t.cluster.http_addr(follower),
        "PUT",
        "/v1/kv/h",
        &with_token,
        b"over-https",
    )
    .expect("https put");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let (code, _, body) = https(
        &alice,
        t.cluster.http_addr(leader),
        "GET",
        "/v1/kv/h",
        &with_token,
        b"",
    )
    .expect("https get");
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("over-https"));
    // The status fan-out reaches every member over the peers' TLS.
    let (code, _, body) = https(
        &alice,
        t.cluster.http_addr(follower),
        "GET",
        "/v1/cluster/status",
        &with_token,
        b"",
    )
    .expect("cluster status");
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let members = status["members"].as_array().expect("members");
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| m["reachable"] == true), "{status:#}");

    // The Redis port: TLS, and nothing but AUTH before the token.
    let redis = t.cluster.redis_addr(follower);
    let replies = resp(
        &alice,
        redis,
        &[
            "GET k",
            "AUTH wrong-token",
            "SET k changed",
            &format!("AUTH {TOKEN}"),
            "GET k",
        ],
    )
    .expect("RESP over TLS");
    let lines: Vec<&str> = replies.lines().collect();
    assert!(lines[0].starts_with("-NOAUTH"), "{replies}");
    assert!(lines[1].starts_with("-WRONGPASS"), "{replies}");
    assert!(lines[2].starts_with("-NOAUTH"), "{replies}");
    assert_eq!(&lines[3..6], ["+OK", "$2", "v1"], "{replies}");

    // The token: missing or wrong is refused on HTTP and gRPC, and changes nothing.
    let http = t.cluster.http_addr(leader);
    let (code, _, _) = https(&alice, http, "GET", "/v1/kv/h", &[], b"").expect("no token");
    assert_eq!(code, 401);
    let (code, head, body) = https(
        &alice,
        http,
        "PUT",
        "/v1/kv/h",
        &[("Authorization", "Bearer wrong")],
        b"changed",
    )
    .expect("wrong token");
    assert_eq!(code, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer")
    );
    assert!(String::from_utf8_lossy(&body).contains("wrong"));
    let (code, _, _) = https(&alice, http, "GET", "/healthz", &[], b"").expect("healthz is open");
    assert_eq!(code, 200);
    let grpc = t.cluster.grpc_addr(leader);
    for token in [None, Some("wrong-token")] {
        let c = client(grpc, Some(alice.clone()), token);
        match c.put("k", "changed").await {
            Err(Error::Rejected { code, .. }) => assert_eq!(code, tonic::Code::Unauthenticated),
            other => panic!("token {token:?}: expected UNAUTHENTICATED, got {other:?}"),
        }
    }
    let got = t
        .client
        .get("k", ReadMode::Linearizable)
        .await
        .expect("get");
    assert_eq!(
        got.kv.expect("present").value,
        b"v1".as_slice(),
        "a refused write changed the key"
    );
    let (_, _, body) = https(&alice, http, "GET", "/v1/kv/h", &with_token, b"").expect("get");
    assert!(String::from_utf8_lossy(&body).contains("over-https"));

    // A client trusting another CA refuses the node's certificate.
    let other = Certs::make(&t.cluster.spec().base_dir.join("other-ca"), ip, 1);
    let c = client(
        grpc,
        Some(other.client_tls(Some("client-alice"))),
        Some(TOKEN),
    );
    let e = c
        .get("k", ReadMode::Linearizable)
        .await
        .expect_err("wrong CA");
    assert!(e.is_definite_failure(), "{e}");
    // A certificate of another CA is refused by the node, which logs why.
    let mut foreign = other.client_tls(Some("client-alice"));
    foreign.ca_pem = alice.ca_pem.clone();
    let e = client(grpc, Some(foreign), Some(TOKEN))
        .get("k", ReadMode::Linearizable)
        .await
        .expect_err("foreign certificate");
    assert!(e.is_definite_failure(), "{e}");
    logged(
        &t,
        leader,
        &[
            "refused a TLS connection",
            "invalid peer certificate: UnknownIssuer",
        ],
    )
    .await;

    // Expired certificates signed by the right CA: a client's on the client
    // services, a node's on the peer service.
    certs.expired("client-expired", Vec::new(), false);
    let e = client(
        grpc,
        Some(certs.client_tls(Some("client-expired"))),
        Some(TOKEN),
    )
    .get("k", ReadMode::Linearizable)
    .await
    .expect_err("expired client certificate");
    assert!(e.is_definite_failure(), "{e}");
    logged(&t, leader, &["refused a TLS connection", "expired"]).await;
    certs.expired("node-expired", vec![ip.to_string()], true);
    let refused = peer_stream(grpc, &certs.client_tls(Some("node-expired"))).await;
    assert!(refused.is_err(), "an expired node certificate was let in");

    // A client certificate, valid and of the right CA, is no node certificate.
    let refused = peer_stream(grpc, &alice)
        .await
        .expect_err("client certificate on the peer service");
    assert!(refused.contains("PermissionDenied"), "{refused}");
    logged(
        &t,
        leader,
        &["refused a peer connection", "not a node certificate"],
    )
    .await;
    // A node's certificate is (the batch is empty and names no cluster: the
    // stream gets as far as the cluster check).
    let past_tls = peer_stream(grpc, &certs.client_tls(Some(&format!("node-{follower}")))).await;
    assert!(
        past_tls
            .as_ref()
            .is_err_and(|e| e.contains("cluster id mismatch")),
        "{past_tls:?}"
    );

    // Every refusal was counted (the leader's, and the follower's Redis port).
    let mut metrics = String::new();
    for id in [leader, follower] {
        let (_, _, m) =
            https(&alice, t.cluster.http_addr(id), "GET", "/metrics", &[], b"").expect("metrics");
        metrics.push_str(&String::from_utf8_lossy(&m));
    }
    for line in [
        "keel_tls_handshake_failures_total{listener=\"grpc\"}",
        "keel_auth_failures_total{listener=\"grpc\",reason=\"missing_token\"}",
        "keel_auth_failures_total{listener=\"grpc\",reason=\"wrong_token\"}",
        "keel_auth_failures_total{listener=\"http\",reason=\"wrong_token\"}",
        "keel_auth_failures_total{listener=\"redis\",reason=\"wrong_token\"}",
        "keel_auth_failures_total{listener=\"grpc\",reason=\"not_a_node_certificate\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    t.assert_no_panics();
}

#[test]
fn a_node_with_an_expired_or_foreign_certificate_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = common::unique_loopback();
    let certs = Certs::make(&dir.path().join("certs"), ip, 1);
    certs.expired("node-expired", vec![ip.to_string()], true);
    let port = keel_testkit::local_cluster::free_ports(ip, 1).expect("port")[0];
    let start = |cert: &str, data: &Path| {
        keel(&[
            "serve",
            "--id",
            "1",
            "--data-dir",
            &data.to_string_lossy(),
            "--listen",
            &port.to_string(),
            "--initial-cluster",
            &format!("1={port}"),
            "--tls-cert",
            &certs.path_str(&format!("{cert}.pem")),
            "--tls-key",
            &certs.path_str(&format!("{cert}-key.pem")),
            "--peer-ca",
            &certs.path_str("ca.pem"),
        ])
    };
    let out = start("node-expired", &dir.path().join("a"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a node with an expired certificate started"
    );
    assert!(
        err.contains("--tls-cert") && err.contains("xpired"),
        "{err}"
    );
    // A client certificate cannot be a node's.
    let out = start("client-alice", &dir.path().join("b"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not a node certificate"), "{err}");
}
