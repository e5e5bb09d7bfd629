//! Looking at the cluster from outside: who leads, whether it healed, and whether
//! every replica holds the same data.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use keel_client::{Client, StatusResponse};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Each node's status, or `None` where it did not answer in time.
pub async fn statuses(client: &Client, endpoints: &[String]) -> Vec<Option<StatusResponse>> {
    let mut set = tokio::task::JoinSet::new();
    for (i, e) in endpoints.iter().enumerate() {
        let client = client.with_deadline(Duration::from_millis(500));
        let e = e.clone();
        set.spawn(async move { (i, client.status(&e).await.ok()) });
    }
    let mut out = vec![None; endpoints.len()];
    while let Some(Ok((i, s))) = set.join_next().await {
        out[i] = s;
    }
    out
}

/// The id of the leader with the highest term among those that answer.
pub async fn leader(client: &Client, endpoints: &[String]) -> Option<u64> {
    statuses(client, endpoints)
        .await
        .into_iter()
        .flatten()
        .filter(|s| s.role == "leader")
        .max_by_key(|s| s.term)
        .map(|s| s.id)
}

/// Polls until every node answers, all agree on one leader and term, and every
/// node has applied everything the leader committed; `Err` says what was missing
/// at the deadline.
pub async fn wait_converged(
    client: &Client,
    endpoints: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let all = statuses(client, endpoints).await;
        let problem = convergence_problem(&all);
        match problem {
            None => return Ok(()),
            Some(p) if Instant::now() >= deadline => {
                return Err(format!("after {timeout:?}: {p}"));
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn convergence_problem(all: &[Option<StatusResponse>]) -> Option<String> {
    let mut answered = Vec::new();
    for (i, s) in all.iter().enumerate() {
        match s {
            Some(s) => answered.push(s),
            None => return Some(format!("node {} does not answer", i + 1)),
        }
    }
    let Some(leader) = answered.iter().find(|s| s.role == "leader") else {
        return Some("no leader".to_owned());
    };
    for s in &answered {
        if s.leader_id != leader.id || s.term != leader.term {
            return Some(format!(
                "node {} follows {} in term {}, not {} in term {}",
                s.id, s.leader_id, s.term, leader.id, leader.term
            ));
        }
        if s.applied_index < leader.commit_index {
            return Some(format!(
                "node {} applied {} of {}",
                s.id, s.applied_index, leader.commit_index
            ));
        }
    }
    None
}

/// One replica's data as its HTTP API shows it (a stale scan, served locally).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplicaData {
    /// Key → (value, version).
    pub kvs: BTreeMap<String, (String, u64)>,
    /// FNV-1a over keys, values and versions in key order.
    pub digest: String,
}

/// Reads every key from one node's local state, page by page.
pub async fn replica_data(http: SocketAddr) -> Result<ReplicaData, String> {
    let mut kvs = BTreeMap::new();
    let mut after = String::new();
    loop {
        let path = format!(
            "/v1/kv?prefix=&mode=stale&limit=1000&start_after={}",
            percent_encode(&after)
        );
        let body = http_get(http, &path).await?;
        let page: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{http}{path}: {e}: {body}"))?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        for item in &items {
            let key = item["key"].as_str().unwrap_or_default().to_owned();
            let value = item["value"].as_str().unwrap_or_default().to_owned();
            let version = item["version"].as_u64().unwrap_or_default();
            after.clone_from(&key);
            kvs.insert(key, (value, version));
        }
        if !page["more"].as_bool().unwrap_or(false) || items.is_empty() {
            break;
        }
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, (v, n)) in &kvs {
        for b in k.bytes().chain([0]).chain(v.bytes()).chain([0]) {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        for b in n.to_le_bytes() {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    Ok(ReplicaData {
        kvs,
        digest: format!("{hash:016x}"),
    })
}

/// The first difference between two replicas, if any.
pub fn first_difference(a: &ReplicaData, b: &ReplicaData) -> Option<String> {
    let keys: std::collections::BTreeSet<&String> = a.kvs.keys().chain(b.kvs.keys()).collect();
    keys.into_iter().find_map(|k| {
        let (x, y) = (a.kvs.get(k), b.kvs.get(k));
        (x != y).then(|| format!("{k:?}: {x:?} vs {y:?}"))
    })
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A minimal HTTP/1.0 GET; returns the body of a 200 answer.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .map_err(|_| format!("GET {addr}{path}: timed out"))?
        .map_err(|e| format!("GET {addr}{path}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {addr}{path}: malformed answer"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        let status = head.lines().next().unwrap_or_default();
        return Err(format!("GET {addr}{path}: {status}: {body}"));
    }
    Ok(body.to_owned())
}

/// Lines of a node log that report a panic.
pub fn panics_in(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("panicked"))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_named() {
        let mut a = ReplicaData::default();
        a.kvs.insert("k1".into(), ("v1".into(), 3));
        let mut b = a.clone();
        assert_eq!(first_difference(&a, &b), None);
        b.kvs.insert("k2".into(), ("v2".into(), 4));
        assert!(
            first_difference(&a, &b)
                .expect("differs")
                .starts_with("\"k2\"")
        );
        assert_eq!(percent_encode("k 1/é"), "k%201%2F%C3%A9");
    }
}
