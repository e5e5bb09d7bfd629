//! Writing every key once before a read-heavy measurement, so that reads find data.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::target::Target;
use crate::workload::{Op, OpKind, Workload, key};

/// Concurrent writers used to preload.
const PRELOAD_CLIENTS: usize = 64;
/// Attempts per key before giving up on it.
const ATTEMPTS: u32 = 3;

/// Writes keys `0..workload.keys` once each. Fails if some key could not be written
/// after a few attempts.
pub async fn preload(target: &Target, workload: &Workload) -> anyhow::Result<()> {
    let value = workload.value();
    let item = move |k: u64| (key(k), value.clone());
    preload_with(target, workload.keys, PRELOAD_CLIENTS, Arc::new(item)).await
}

/// Key number `k` of a preload and its value.
pub type Item = Arc<dyn Fn(u64) -> (Bytes, Bytes) + Send + Sync>;

/// Writes `item(0) .. item(count - 1)` once each, with `writers` concurrent
/// writers. Fails if some key could not be written after a few attempts.
pub async fn preload_with(
    target: &Target,
    count: u64,
    writers: usize,
    item: Item,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..writers.min(count as usize).max(1))
        .map(|i| {
            let mut conn = target.conn(i);
            let next = next.clone();
            let item = item.clone();
            tokio::spawn(async move {
                let mut failed = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= count {
                        return failed;
                    }
                    let (key, value) = item(k);
                    let op = Op {
                        kind: OpKind::Write,
                        key,
                    };
                    let mut last = None;
                    for _ in 0..ATTEMPTS {
                        match conn.execute(&op, &value).await {
                            Ok(()) => {
                                last = None;
                                break;
                            }
                            Err(e) => last = Some(e),
                        }
                    }
                    failed.extend(last);
                }
            })
        })
        .collect();
    let mut failed = Vec::new();
    for w in writers {
        failed.extend(w.await?);
    }
    match failed.first() {
        None => Ok(()),
        Some(e) => anyhow::bail!(
            "preload: {} keys could not be written (e.g. {e})",
            failed.len()
        ),
    }
}
