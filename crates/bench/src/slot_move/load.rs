//! The closed-loop load, in phases the scenario switches: every client issues
//! its next operation as soon as the previous one completes, and records it in
//! the histograms of the phase it started in, split by whether its key is in
//! the moving slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use keel_client::{Slot, slot_for_key};
use tokio::task::JoinHandle;

use super::keys::{Chooser, KeySpace};
use crate::stats::Recorder;
use crate::target::{Conn, Target};

/// Pause after a failed operation, so that a client facing an election does
/// not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// A phase of the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Running, not measured.
    Warmup = 0,
    /// Before the move.
    Steady = 1,
    /// From the move's begin until it is done.
    Moving = 2,
    /// After the move.
    After = 3,
    /// Clients finish their current operation and return.
    Stop = 4,
}

/// The measured phases, in order.
pub const MEASURED: [Phase; 3] = [Phase::Steady, Phase::Moving, Phase::After];

impl Phase {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Phase::Warmup,
            1 => Phase::Steady,
            2 => Phase::Moving,
            3 => Phase::After,
            _ => Phase::Stop,
        }
    }

    /// Index into [`MEASURED`], for a measured phase.
    fn measured(self) -> Option<usize> {
        MEASURED.iter().position(|&p| p == self)
    }
}

/// What the clients recorded in one measured phase.
#[derive(Clone, Debug, Default)]
pub struct PhaseRecords {
    /// Operations on the moving slot's keys.
    pub moving_slot: Recorder,
    /// Operations on other keys.
    pub other: Recorder,
}

impl PhaseRecords {
    fn merge(&mut self, other: &PhaseRecords) {
        self.moving_slot.merge(&other.moving_slot);
        self.other.merge(&other.other);
    }
}

/// A running load.
pub struct Load {
    phase: Arc<AtomicU8>,
    clients: Vec<JoinHandle<Vec<PhaseRecords>>>,
}

impl Load {
    /// Starts `clients` clients in the warm-up phase, on the current tokio
    /// runtime.
    pub fn start(
        target: &Target,
        space: &KeySpace,
        clients: usize,
        ops: impl Fn(usize) -> Chooser,
    ) -> Self {
        let phase = Arc::new(AtomicU8::new(Phase::Warmup as u8));
        let slot = space.slot();
        let clients = (0..clients)
            .map(|i| {
                let client = Client {
                    conn: target.conn(i),
                    ops: ops(i),
                    space: space.clone(),
                    slot,
                    phase: phase.clone(),
                };
                tokio::spawn(client.run())
            })
            .collect();
        Load { phase, clients }
    }

    /// Switches every client to `phase` (for operations they start from now);
    /// returns when.
    pub fn enter(&self, phase: Phase) -> Instant {
        self.phase.store(phase as u8, Ordering::SeqCst);
        Instant::now()
    }

    /// Stops the clients and merges their records, one entry per phase of
    /// [`MEASURED`].
    pub async fn stop(self) -> anyhow::Result<Vec<PhaseRecords>> {
        self.enter(Phase::Stop);
        let mut merged = vec![PhaseRecords::default(); MEASURED.len()];
        for c in self.clients {
            for (all, mine) in merged.iter_mut().zip(c.await?) {
                all.merge(&mine);
            }
        }
        Ok(merged)
    }
}

/// One client of the load.
struct Client {
    conn: Conn,
    ops: Chooser,
    space: KeySpace,
    slot: Slot,
    phase: Arc<AtomicU8>,
}

impl Client {
    async fn run(mut self) -> Vec<PhaseRecords> {
        let mut records = vec![PhaseRecords::default(); MEASURED.len()];
        let empty = Bytes::new();
        loop {
            let phase = Phase::from_u8(self.phase.load(Ordering::Relaxed));
            if phase == Phase::Stop {
                return records;
            }
            let op = self.ops.next_op();
            let value = match op.kind {
                crate::workload::OpKind::Write => self.space.value(&op.key),
                crate::workload::OpKind::Read => empty.clone(),
            };
            let began = Instant::now();
            let result = self.conn.execute(&op, &value).await;
            let took = began.elapsed();
            if let Some(i) = phase.measured() {
                let r = &mut records[i];
                let recorder = if slot_for_key(&op.key) == self.slot {
                    &mut r.moving_slot
                } else {
                    &mut r.other
                };
                let stats = recorder.get_mut(op.kind);
                match &result {
                    Ok(()) => stats.record_ok(took),
                    Err(e) => stats.record_error(e.kind, &e.message),
                }
            }
            if result.is_err() {
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_round_trip_and_only_three_are_measured() {
        for p in [
            Phase::Warmup,
            Phase::Steady,
            Phase::Moving,
            Phase::After,
            Phase::Stop,
        ] {
            assert_eq!(Phase::from_u8(p as u8), p);
        }
        assert_eq!(Phase::Warmup.measured(), None);
        assert_eq!(Phase::Steady.measured(), Some(0));
        assert_eq!(Phase::After.measured(), Some(2));
        assert_eq!(Phase::Stop.measured(), None);
    }
}
