//! A one-line progress report on stderr, refreshed every second while a run is under
//! way: phase, time, completed operations, current rate and errors.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Counters the clients bump and the progress line reads.
#[derive(Debug, Default)]
pub struct Counters {
    /// Operations completed successfully (warm-up included).
    pub done: AtomicU64,
    /// Operations failed (warm-up included).
    pub errors: AtomicU64,
}

impl Counters {
    /// Counts one operation's outcome.
    pub fn count(&self, ok: bool) {
        let c = if ok { &self.done } else { &self.errors };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The running progress line; [`Progress::finish`] removes it.
pub struct Progress {
    task: Option<JoinHandle<()>>,
    terminal: bool,
}

impl Progress {
    /// Starts refreshing, or does nothing if `enabled` is false. `measure_start` ends
    /// the warm-up; `planned` is the measurement's length when known.
    pub fn start(
        enabled: bool,
        label: String,
        counters: Arc<Counters>,
        measure_start: Instant,
        planned: Option<Duration>,
    ) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let task = enabled
            .then(|| tokio::spawn(refresh(label, counters, measure_start, planned, terminal)));
        Progress { task, terminal }
    }

    /// Stops refreshing and clears the line.
    pub fn finish(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            if self.terminal {
                eprint!("\r\x1b[2K");
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn refresh(
    label: String,
    counters: Arc<Counters>,
    measure_start: Instant,
    planned: Option<Duration>,
    terminal: bool,
) {
    // Off a terminal (a log file), one line every 5 s is plenty.
    let every = if terminal { 1 } else { 5 };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last_done = counters.done.load(Ordering::Relaxed);
    let mut seconds = 0u64;
    loop {
        tick.tick().await;
        seconds += 1;
        let done = counters.done.load(Ordering::Relaxed);
        let rate = done - last_done;
        last_done = done;
        if !seconds.is_multiple_of(every) {
            continue;
        }
        let line = line(
            &label,
            Instant::now(),
            measure_start,
            planned,
            done,
            rate,
            counters.errors.load(Ordering::Relaxed),
        );
        let mut err = std::io::stderr().lock();
        let _ = if terminal {
            write!(err, "\r\x1b[2K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
}

fn line(
    label: &str,
    now: Instant,
    measure_start: Instant,
    planned: Option<Duration>,
    done: u64,
    rate: u64,
    errors: u64,
) -> String {
    let phase = match now.checked_duration_since(measure_start) {
        None => format!(
            "warm-up, {:.0} s left",
            (measure_start - now).as_secs_f64().ceil()
        ),
        Some(elapsed) => match planned {
            Some(p) => format!("{:.0}/{:.0} s", elapsed.as_secs_f64(), p.as_secs_f64()),
            None => format!("{:.0} s", elapsed.as_secs_f64()),
        },
    };
    format!("{label}: {phase}, {done} ops, {rate} ops/s, {errors} errors")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_phase_rate_and_errors() {
        let start = Instant::now();
        let measure = start + Duration::from_secs(2);
        let warm = line("keel c=16", start, measure, None, 10, 10, 0);
        assert_eq!(
            warm,
            "keel c=16: warm-up, 2 s left, 10 ops, 10 ops/s, 0 errors"
        );
        let later = measure + Duration::from_secs(3);
        let run = line(
            "etcd c=1",
            later,
            measure,
            Some(Duration::from_secs(10)),
            500,
            120,
            2,
        );
        assert_eq!(run, "etcd c=1: 3/10 s, 500 ops, 120 ops/s, 2 errors");
    }
}
