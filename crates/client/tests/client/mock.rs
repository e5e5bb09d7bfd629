//! In-process stand-ins for keel members, bound to loopback ports.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use keel_client::{Client, ClientConfig};
use keel_proto::error::ErrorDetail;
use keel_proto::v1::cluster_server::{Cluster, ClusterServer};
use keel_proto::v1::kv_server::{Kv, KvServer};
use keel_proto::v1::precondition::Condition;
use keel_proto::v1::{self, Precondition};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// How a mock member answers a call.
#[derive(Clone, Debug)]
pub enum Behavior {
    /// Serve from an in-memory map, like a healthy leader.
    Serve,
    /// NOT_LEADER, naming the leader's address ("" for unknown).
    NotLeader(String),
    /// NO_LEADER.
    NoLeader,
    /// OVERLOADED.
    Overloaded,
    /// SHUTTING_DOWN.
    ShuttingDown,
    /// OUTCOME_UNKNOWN.
    OutcomeUnknown,
    /// INTERNAL.
    Internal,
    /// SESSION_EXPIRED.
    SessionExpired,
    /// WRONG_GROUP naming map version 5; `by_group`: the group's own answer
    /// (its state machine), else a node's from its map.
    WrongGroup { by_group: bool },
    /// SLOT_MOVING; `by_group` as for `WrongGroup`.
    SlotMoving { by_group: bool },
    /// Never answer.
    Hang,
}

#[derive(Default)]
struct Store {
    map: BTreeMap<Bytes, (Bytes, u64)>,
    last_index: u64,
}

struct State {
    id: u64,
    address: String,
    /// Answers for the next calls, in order; then `default`.
    script: Mutex<VecDeque<Behavior>>,
    default: Mutex<Behavior>,
    calls: Mutex<HashMap<&'static str, usize>>,
    /// The session of every put and delete that arrived, in order.
    sessions: Mutex<Vec<Option<v1::ClientSession>>>,
    store: Mutex<Store>,
    /// The map `Cluster.Map` answers with.
    map: Mutex<keel_client::ClusterMap>,
    /// Serves `Kv/Batch` (else answers it UNIMPLEMENTED, like an older build).
    batching: bool,
}

/// A tonic server implementing `keel.v1.Kv` and `keel.v1.Cluster` on 127.0.0.1.
pub struct MockNode {
    state: Arc<State>,
    server: JoinHandle<()>,
}

impl MockNode {
    pub async fn start(id: u64, default: Behavior) -> MockNode {
        MockNode::start_with(id, default, false).await
    }

    /// Like `start`, also serving `Kv/Batch` (each request as its unary method).
    pub async fn start_batching(id: u64, default: Behavior) -> MockNode {
        MockNode::start_with(id, default, true).await
    }

    async fn start_with(id: u64, default: Behavior, batching: bool) -> MockNode {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let address = listener.local_addr().expect("local addr").to_string();
        let state = Arc::new(State {
            id,
            address,
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(default),
            calls: Mutex::new(HashMap::new()),
            sessions: Mutex::new(Vec::new()),
            store: Mutex::new(Store::default()),
            map: Mutex::new(mock_map()),
            batching,
        });
        let service = Service(state.clone());
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(KvServer::new(service.clone()))
                .add_service(ClusterServer::new(service))
                .serve_with_incoming(incoming)
                .await;
        });
        MockNode { state, server }
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        self.state.address.clone()
    }

    /// Makes the next calls answer these ways, in order.
    pub fn script(&self, behaviors: impl IntoIterator<Item = Behavior>) {
        lock(&self.state.script).extend(behaviors);
    }

    /// How many calls of `method` ("get", "put", "delete", "scan", "status",
    /// "members", and "batch" for streams opened) reached the service; a batched
    /// request counts as a call of its method.
    pub fn calls(&self, method: &str) -> usize {
        lock(&self.state.calls).get(method).copied().unwrap_or(0)
    }

    /// Makes `Cluster.Map` answer with `map` from now on.
    pub fn set_map(&self, map: keel_client::ClusterMap) {
        *lock(&self.state.map) = map;
    }

    /// The session of every put and delete that reached the service, in order.
    pub fn sessions(&self) -> Vec<Option<v1::ClientSession>> {
        lock(&self.state.sessions).clone()
    }
}

impl Drop for MockNode {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().expect("mock lock")
}

#[derive(Clone)]
struct Service(Arc<State>);

impl Service {
    /// Counts the call and answers it per the script; `Ok` means "serve it".
    async fn begin(&self, method: &'static str) -> Result<(), Status> {
        *lock(&self.0.calls).entry(method).or_default() += 1;
        let behavior = lock(&self.0.script)
            .pop_front()
            .unwrap_or_else(|| lock(&self.0.default).clone());
        let detail = match behavior {
            Behavior::Serve => return Ok(()),
            Behavior::Hang => std::future::pending().await,
            Behavior::NotLeader(addr) => ErrorDetail::not_leader(0, addr),
            Behavior::NoLeader => ErrorDetail::no_leader(),
            Behavior::Overloaded => ErrorDetail::overloaded("too many requests"),
            Behavior::ShuttingDown => ErrorDetail::shutting_down(),
            Behavior::OutcomeUnknown => ErrorDetail::outcome_unknown("lost leadership"),
            Behavior::Internal => ErrorDetail::internal("disk on fire"),
            Behavior::SessionExpired => ErrorDetail::session_expired("idle too long"),
            Behavior::WrongGroup { by_group } => {
                let d = ErrorDetail::wrong_group(7, 5, "not this group's slot");
                if by_group { d.by_group() } else { d }
            }
            Behavior::SlotMoving { by_group } => {
                let d = ErrorDetail::slot_moving(7, "in hand-off");
                if by_group { d.by_group() } else { d }
            }
        };
        Err(detail.into_status())
    }

    fn check(store: &Store, key: &Bytes, precondition: Option<Precondition>) -> Result<(), Status> {
        let current = store.map.get(key).map_or(0, |(_, v)| *v);
        let holds = match precondition.and_then(|p| p.condition) {
            None => true,
            Some(Condition::Version(v)) => v == current,
            Some(Condition::Absent(_)) => current == 0,
        };
        if holds {
            Ok(())
        } else {
            Err(ErrorDetail::conflict(current).into_status())
        }
    }
}

impl Service {
    /// One batched request, answered by its unary method.
    async fn answer(
        &self,
        request: Option<v1::batch_request_item::Request>,
    ) -> v1::batch_response_item::Response {
        use v1::batch_request_item::Request as Item;
        use v1::batch_response_item::Response as Answer;
        let result = match request {
            Some(Item::Get(r)) => self
                .get(Request::new(r))
                .await
                .map(|r| Answer::Get(r.into_inner())),
            Some(Item::Put(r)) => self
                .put(Request::new(r))
                .await
                .map(|r| Answer::Put(r.into_inner())),
            Some(Item::Delete(r)) => self
                .delete(Request::new(r))
                .await
                .map(|r| Answer::Delete(r.into_inner())),
            Some(Item::Txn(r)) => self
                .txn(Request::new(r))
                .await
                .map(|r| Answer::Txn(r.into_inner())),
            None => Err(Status::invalid_argument("empty batch item")),
        };
        result.unwrap_or_else(|s| {
            Answer::Error(v1::BatchError {
                code: s.code() as i32,
                message: s.message().to_owned(),
                detail: keel_proto::error::error_detail(&s),
            })
        })
    }
}

fn kv(key: &Bytes, (value, version): &(Bytes, u64)) -> v1::KeyValue {
    v1::KeyValue {
        key: key.clone(),
        value: value.clone(),
        version: *version,
    }
}

#[tonic::async_trait]
impl Kv for Service {
    type BatchStream = ReceiverStream<Result<v1::BatchResponse, Status>>;

    async fn batch(
        &self,
        req: Request<tonic::Streaming<v1::BatchRequest>>,
    ) -> Result<Response<Self::BatchStream>, Status> {
        *lock(&self.0.calls).entry("batch").or_default() += 1;
        if !self.0.batching {
            return Err(Status::unimplemented("this mock has no Batch"));
        }
        let mut inbound = req.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let service = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                for item in message.items {
                    let service = service.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let response = service.answer(item.request).await;
                        let items = vec![v1::BatchResponseItem {
                            id: item.id,
                            response: Some(response),
                        }];
                        let _ = tx.send(Ok(v1::BatchResponse { items })).await;
                    });
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get(&self, req: Request<v1::GetRequest>) -> Result<Response<v1::GetResponse>, Status> {
        self.begin("get").await?;
        let req = req.into_inner();
        let store = lock(&self.0.store);
        Ok(Response::new(v1::GetResponse {
            kv: store.map.get(&req.key).map(|e| kv(&req.key, e)),
            revision: store.last_index,
        }))
    }

    async fn put(&self, req: Request<v1::PutRequest>) -> Result<Response<v1::PutResponse>, Status> {
        lock(&self.0.sessions).push(req.get_ref().session.clone());
        self.begin("put").await?;
        let req = req.into_inner();
        let mut store = lock(&self.0.store);
        Service::check(&store, &req.key, req.precondition)?;
        store.last_index += 1;
        let revision = store.last_index;
        store.map.insert(req.key, (req.value, revision));
        Ok(Response::new(v1::PutResponse { revision }))
    }

    async fn delete(
        &self,
        req: Request<v1::DeleteRequest>,
    ) -> Result<Response<v1::DeleteResponse>, Status> {
        lock(&self.0.sessions).push(req.get_ref().session.clone());
        self.begin("delete").await?;
        let req = req.into_inner();
        let mut store = lock(&self.0.store);
        Service::check(&store, &req.key, req.precondition)?;
        store.last_index += 1;
        let deleted = store.map.remove(&req.key).is_some();
        Ok(Response::new(v1::DeleteResponse {
            revision: store.last_index,
            deleted,
        }))
    }

    async fn scan(
        &self,
        req: Request<v1::ScanRequest>,
    ) -> Result<Response<v1::ScanResponse>, Status> {
        self.begin("scan").await?;
        let req = req.into_inner();
        let store = lock(&self.0.store);
        let limit = if req.limit == 0 {
            100
        } else {
            req.limit as usize
        };
        let mut matching = store
            .map
            .iter()
            .filter(|(k, _)| k.starts_with(&req.prefix) && k.as_ref() > req.start_after.as_ref());
        let kvs: Vec<_> = matching
            .by_ref()
            .take(limit)
            .map(|(k, e)| kv(k, e))
            .collect();
        Ok(Response::new(v1::ScanResponse {
            kvs,
            more: matching.next().is_some(),
            revision: store.last_index,
        }))
    }

    /// Version comparisons only; enough to see the client's side of transactions.
    async fn txn(&self, req: Request<v1::TxnRequest>) -> Result<Response<v1::TxnResponse>, Status> {
        use v1::txn_op::Op;
        use v1::txn_op_result::Result as R;
        self.begin("txn").await?;
        let req = req.into_inner();
        let mut store = lock(&self.0.store);
        let succeeded = req.compares.iter().all(|c| {
            let current = store.map.get(&c.key).map_or(0, |(_, v)| *v);
            matches!(c.target, Some(v1::compare::Target::Version(v)) if v == current)
        });
        store.last_index += 1;
        let revision = store.last_index;
        let ops = if succeeded { req.success } else { req.failure };
        let mut results = Vec::new();
        for op in ops {
            results.push(v1::TxnOpResult {
                result: Some(match op.op {
                    Some(Op::Put(p)) => {
                        store.map.insert(p.key, (p.value, revision));
                        R::Put(v1::TxnPutResult {})
                    }
                    Some(Op::Delete(d)) => R::Delete(v1::TxnDeleteResult {
                        deleted: store.map.remove(&d.key).is_some(),
                    }),
                    Some(Op::Get(g)) => R::Get(v1::TxnGetResult {
                        kv: store.map.get(&g.key).map(|e| kv(&g.key, e)),
                    }),
                    None => return Err(Status::invalid_argument("empty op")),
                }),
            });
        }
        Ok(Response::new(v1::TxnResponse {
            succeeded,
            revision,
            results,
        }))
    }

    async fn add(
        &self,
        _req: Request<v1::AddRequest>,
    ) -> Result<Response<v1::AddResponse>, Status> {
        // The client library does not call Add.
        Err(Status::unimplemented("the mock has no Add"))
    }
}

#[tonic::async_trait]
impl Cluster for Service {
    async fn status(
        &self,
        _req: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        self.begin("status").await?;
        Ok(Response::new(v1::StatusResponse {
            id: self.0.id,
            role: "leader".into(),
            address: self.0.address.clone(),
            ..Default::default()
        }))
    }

    async fn members(
        &self,
        _req: Request<v1::MembersRequest>,
    ) -> Result<Response<v1::MembersResponse>, Status> {
        self.begin("members").await?;
        Ok(Response::new(v1::MembersResponse {
            members: vec![v1::Member {
                id: self.0.id,
                address: self.0.address.clone(),
                voter: true,
                ..Default::default()
            }],
            leader_id: self.0.id,
            ..Default::default()
        }))
    }

    async fn transfer_leader(
        &self,
        _req: Request<v1::TransferLeaderRequest>,
    ) -> Result<Response<v1::TransferLeaderResponse>, Status> {
        self.begin("transfer_leader").await?;
        Ok(Response::new(v1::TransferLeaderResponse {
            leader_id: self.0.id,
        }))
    }

    async fn add_member(
        &self,
        _req: Request<v1::AddMemberRequest>,
    ) -> Result<Response<v1::AddMemberResponse>, Status> {
        self.begin("add_member").await?;
        Ok(Response::new(v1::AddMemberResponse::default()))
    }

    async fn remove_member(
        &self,
        _req: Request<v1::RemoveMemberRequest>,
    ) -> Result<Response<v1::RemoveMemberResponse>, Status> {
        self.begin("remove_member").await?;
        Ok(Response::new(v1::RemoveMemberResponse::default()))
    }

    async fn promote_member(
        &self,
        _req: Request<v1::PromoteMemberRequest>,
    ) -> Result<Response<v1::PromoteMemberResponse>, Status> {
        self.begin("promote_member").await?;
        Ok(Response::new(v1::PromoteMemberResponse::default()))
    }

    async fn digest(
        &self,
        _req: Request<v1::DigestRequest>,
    ) -> Result<Response<v1::DigestResponse>, Status> {
        self.begin("digest").await?;
        Ok(Response::new(v1::DigestResponse::default()))
    }

    async fn map(
        &self,
        _req: Request<v1::MapRequest>,
    ) -> Result<Response<v1::MapResponse>, Status> {
        self.begin("map").await?;
        let map = lock(&self.0.map).clone();
        Ok(Response::new(v1::MapResponse {
            version: map.version(),
            map_json: String::from_utf8(map.encode()).expect("JSON"),
        }))
    }

    async fn change_map(
        &self,
        _req: Request<v1::ChangeMapRequest>,
    ) -> Result<Response<v1::ChangeMapResponse>, Status> {
        self.begin("change_map").await?;
        Err(Status::unimplemented("the mock does not change maps"))
    }

    type WatchMapStream = futures::stream::Empty<Result<v1::MapResponse, Status>>;

    async fn watch_map(
        &self,
        _req: Request<v1::WatchMapRequest>,
    ) -> Result<Response<Self::WatchMapStream>, Status> {
        self.begin("watch_map").await?;
        Ok(Response::new(futures::stream::empty()))
    }

    type SnapshotSaveStream = futures::stream::Empty<Result<v1::SnapshotSaveChunk, Status>>;

    async fn snapshot_save(
        &self,
        _req: Request<v1::SnapshotSaveRequest>,
    ) -> Result<Response<Self::SnapshotSaveStream>, Status> {
        self.begin("snapshot_save").await?;
        Ok(Response::new(futures::stream::empty()))
    }
}

/// The map every mock node serves: a new 3-node cluster's.
pub fn mock_map() -> keel_client::ClusterMap {
    let members: std::collections::BTreeMap<u64, String> = (1..=3)
        .map(|i| (i, format!("127.0.0.1:{}", 7000 + i)))
        .collect();
    keel_placement::PlacementMachine::bootstrap(&members)
        .expect("bootstrap")
        .map()
        .clone()
}

/// A TCP server that accepts HTTP/2 connections, reads until a request containing
/// `marker` has arrived, then drops the connection without answering: a member that
/// crashes right after receiving a request.
pub struct HangupNode {
    address: String,
    received: Arc<AtomicUsize>,
    server: JoinHandle<()>,
}

impl HangupNode {
    pub async fn start(marker: &'static [u8]) -> HangupNode {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let address = listener.local_addr().expect("local addr").to_string();
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        let server = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    // An empty SETTINGS frame: the server half of the HTTP/2 preface.
                    let _ = socket.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await;
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                        if seen.windows(marker.len()).any(|w| w == marker) {
                            counter.fetch_add(1, Ordering::SeqCst);
                            return; // drops the socket mid-call
                        }
                    }
                });
            }
        });
        HangupNode {
            address,
            received,
            server,
        }
    }

    pub fn addr(&self) -> String {
        self.address.clone()
    }

    /// How many requests carrying the marker arrived.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for HangupNode {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A loopback address with nothing listening: connecting is refused.
pub async fn refused_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    listener.local_addr().expect("local addr").to_string()
    // The listener is dropped here, closing the port.
}

/// A client over `endpoints` with timeouts short enough for tests.
pub fn client(endpoints: &[String]) -> Client {
    Client::new(test_config(endpoints)).expect("valid config")
}

/// Like [`client`], without a session: writes that may have been applied are
/// never retried.
pub fn sessionless_client(endpoints: &[String]) -> Client {
    Client::new(ClientConfig {
        sessions: false,
        ..test_config(endpoints)
    })
    .expect("valid config")
}

fn test_config(endpoints: &[String]) -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(1),
        deadline: Duration::from_secs(10),
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(50),
        ..ClientConfig::with_endpoints(endpoints.iter().cloned())
    }
}

/// Upper bound for "the call returned at all": generous, only there so that a bug
/// fails the test instead of hanging it.
pub const NEVER_HANGS: Duration = Duration::from_secs(60);

/// Awaits `fut`, failing the test if it takes longer than [`NEVER_HANGS`].
pub async fn bounded<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(NEVER_HANGS, fut)
        .await
        .expect("the call hung")
}

/// Polls `cond` until it holds, failing the test after [`NEVER_HANGS`].
pub async fn eventually(mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + NEVER_HANGS;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition never held"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
