//! A steady write load in the background: N clients each writing a uniformly
//! chosen key as soon as their previous write completes, counting completions, so
//! that a phase can compare writes/s over windows it picks afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::progress::Counters;
use crate::target::Target;
use crate::workload::Workload;

/// Pause after a failed write, so that a client facing an election does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// A running load.
pub struct WriteLoad {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    clients: Vec<JoinHandle<()>>,
}

impl WriteLoad {
    /// Starts `clients` writers of `workload`'s keys and value on `rt`.
    pub fn start(rt: &Runtime, target: &Target, workload: &Workload, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let value = workload.value();
        let clients = (0..clients)
            .map(|i| {
                let mut conn = target.conn(i);
                let mut ops = workload.ops(i);
                let (stop, counters, value) = (stop.clone(), counters.clone(), value.clone());
                rt.spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let ok = conn.execute(&ops.next_op(), &value).await.is_ok();
                        counters.count(ok);
                        if !ok {
                            tokio::time::sleep(ERROR_PAUSE).await;
                        }
                    }
                })
            })
            .collect();
        WriteLoad {
            stop,
            counters,
            clients,
        }
    }

    /// A reader of the writes completed so far, for a sampler.
    pub fn completed(&self) -> Box<dyn FnMut() -> u64 + Send> {
        let counters = self.counters.clone();
        Box::new(move || counters.done.load(Ordering::Relaxed))
    }

    /// Stops the clients after their current write; returns (completed, failed).
    pub fn stop(self, rt: &Runtime) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients {
            // A panicking client is a bug in the bench; its count is still valid.
            let _ = rt.block_on(c);
        }
        (
            self.counters.done.load(Ordering::Relaxed),
            self.counters.errors.load(Ordering::Relaxed),
        )
    }
}
