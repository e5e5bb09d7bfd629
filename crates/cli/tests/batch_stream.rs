//! `keel.v1.Kv/Batch` spoken directly: each request is answered as its unary
//! method would answer it, and a message over the limits fails the stream
//! without running any of its requests.

mod common;

use std::time::Duration;

use common::TestCluster;
use keel_proto::error::Kind;
use keel_proto::v1::batch_request_item::Request as Item;
use keel_proto::v1::batch_response_item::Response as Answer;
use keel_proto::v1::kv_client::KvClient;
use keel_proto::v1::{
    BatchRequest, BatchRequestItem, BatchResponseItem, GetRequest, PutRequest, ReadMode,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const LEADER_TIMEOUT: Duration = Duration::from_secs(15);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

fn put(id: u64, key: &str, value: &str) -> BatchRequestItem {
    BatchRequestItem {
        id,
        request: Some(Item::Put(PutRequest {
            key: key.as_bytes().to_vec().into(),
            value: value.as_bytes().to_vec().into(),
            precondition: None,
            session: None,
        })),
    }
}

fn get(id: u64, key: &str) -> BatchRequestItem {
    BatchRequestItem {
        id,
        request: Some(Item::Get(GetRequest {
            key: key.as_bytes().to_vec().into(),
            read_mode: ReadMode::Linearizable.into(),
        })),
    }
}

/// Opens a batch stream to `addr`; returns the request sender and the answer stream.
async fn open(
    addr: std::net::SocketAddr,
) -> (
    mpsc::Sender<BatchRequest>,
    tonic::Streaming<keel_proto::v1::BatchResponse>,
) {
    let mut kv = KvClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let (tx, rx) = mpsc::channel(4);
    let answers = kv
        .batch(ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    (tx, answers)
}

/// Reads answers until `n` have arrived, keyed by id.
async fn answers(
    stream: &mut tonic::Streaming<keel_proto::v1::BatchResponse>,
    n: usize,
) -> std::collections::BTreeMap<u64, Answer> {
    let mut got = std::collections::BTreeMap::new();
    while got.len() < n {
        let message = tokio::time::timeout(ANSWER_TIMEOUT, stream.message())
            .await
            .expect("answers within the timeout")
            .expect("stream healthy")
            .expect("stream open");
        for BatchResponseItem { id, response } in message.items {
            assert!(
                got.insert(id, response.expect("an answer")).is_none(),
                "id {id} answered twice"
            );
        }
    }
    got
}

fn error_kind(answer: &Answer) -> Kind {
    match answer {
        Answer::Error(e) => e.detail.as_ref().expect("a keel error detail").kind(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_answered_like_its_unary_call() {
    let mut t = TestCluster::start(3);
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    // One that already knows the leader (else it answers NO_LEADER, rightly).
    let follower = t.follower_of(leader, LEADER_TIMEOUT).await;

    let (tx, mut stream) = open(t.cluster.grpc_addr(leader)).await;
    let empty = BatchRequestItem {
        id: 3,
        request: None,
    };
    let items = vec![put(1, "a", "1"), put(2, "", "empty key"), empty];
    tx.send(BatchRequest { items }).await.expect("send");
    let got = answers(&mut stream, 3).await;
    assert!(
        matches!(got[&1], Answer::Put(ref p) if p.revision > 0),
        "{got:?}"
    );
    assert_eq!(error_kind(&got[&2]), Kind::InvalidArgument);
    assert_eq!(error_kind(&got[&3]), Kind::InvalidArgument);

    // Later messages on the same stream see earlier writes.
    tx.send(BatchRequest {
        items: vec![get(4, "a")],
    })
    .await
    .expect("send");
    let got = answers(&mut stream, 1).await;
    match &got[&4] {
        Answer::Get(g) => assert_eq!(g.kv.as_ref().expect("present").value.as_ref(), b"1"),
        other => panic!("expected a get answer, got {other:?}"),
    }

    // A follower answers a batched write with NOT_LEADER naming the leader.
    let (tx, mut stream) = open(t.cluster.grpc_addr(follower)).await;
    tx.send(BatchRequest {
        items: vec![put(1, "b", "2")],
    })
    .await
    .expect("send");
    let got = answers(&mut stream, 1).await;
    assert_eq!(error_kind(&got[&1]), Kind::NotLeader);
    match &got[&1] {
        Answer::Error(e) => assert_eq!(
            e.detail.as_ref().expect("detail").leader_addr,
            t.cluster.grpc_addr(leader).to_string()
        ),
        _ => unreachable!(),
    }
    t.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_item_limit_fails_the_stream_and_runs_nothing() {
    let mut t = TestCluster::start(3);
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    let (tx, mut stream) = open(t.cluster.grpc_addr(leader)).await;
    let items = (0..1025)
        .map(|i| put(i, &format!("over{i}"), "x"))
        .collect();
    tx.send(BatchRequest { items }).await.expect("send");
    let status = tokio::time::timeout(ANSWER_TIMEOUT, stream.message())
        .await
        .expect("an answer within the timeout")
        .expect_err("the stream fails");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("1024"), "{status:?}");

    // None of its requests ran.
    let scan = t
        .client
        .scan("over", &keel_client::ScanOptions::default())
        .await
        .expect("scan");
    assert!(scan.kvs.is_empty(), "{:?}", scan.kvs.len());
    t.assert_no_panics();
}
