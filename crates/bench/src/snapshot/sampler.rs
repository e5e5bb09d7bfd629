//! Background sampling during a phase: each watched node's resident memory and
//! status, and the write load's completed writes, every few milliseconds, each
//! series on its own thread (a node that is still recovering answers its status
//! probe only after a timeout, and must not stretch the memory series).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::node::{Node, Status};

/// Points of one series: time since the sampler started, value.
pub type Points<T> = Vec<(Duration, T)>;

struct Series<T> {
    points: Arc<Mutex<Points<T>>>,
    thread: JoinHandle<()>,
}

impl<T: Clone + Send + 'static> Series<T> {
    fn spawn(
        started: Instant,
        every: Duration,
        stop: Arc<AtomicBool>,
        mut read: impl FnMut() -> T + Send + 'static,
    ) -> Self {
        let points = Arc::new(Mutex::new(Vec::new()));
        let out = points.clone();
        let thread = std::thread::spawn(move || {
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let value = read();
                let at = started.elapsed();
                out.lock().expect("sampler lock").push((at, value));
                next += every;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
        });
        Series { points, thread }
    }

    fn latest(&self) -> Option<T> {
        let points = self.points.lock().expect("sampler lock");
        points.last().map(|(_, v)| v.clone())
    }

    fn finish(self) -> Points<T> {
        let _ = self.thread.join();
        std::mem::take(&mut *self.points.lock().expect("sampler lock"))
    }
}

/// The sampling threads of one phase.
pub struct Sampler {
    started: Instant,
    every: Duration,
    stop: Arc<AtomicBool>,
    rss: BTreeMap<u64, Series<Option<u64>>>,
    status: BTreeMap<u64, Series<Option<Status>>>,
    writes: Option<Series<u64>>,
}

/// What a [`Sampler`] recorded.
#[derive(Debug, Default)]
pub struct Timeline {
    /// Resident memory by node.
    pub rss: BTreeMap<u64, Points<Option<u64>>>,
    /// Status by node (`None`: no answer).
    pub status: BTreeMap<u64, Points<Option<Status>>>,
    /// Writes completed so far by the load.
    pub writes: Points<u64>,
}

impl Sampler {
    /// Starts sampling `nodes` (and `writes()`, if given) every `every`.
    pub fn start(
        nodes: &[Node],
        every: Duration,
        writes: Option<Box<dyn FnMut() -> u64 + Send>>,
    ) -> Self {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let writes = writes.map(|w| Series::spawn(started, every, stop.clone(), w));
        let mut sampler = Sampler {
            started,
            every,
            stop,
            rss: BTreeMap::new(),
            status: BTreeMap::new(),
            writes,
        };
        for n in nodes {
            sampler.watch(*n);
        }
        sampler
    }

    /// Also samples `node` from now on (e.g. a node started after the sampler).
    pub fn watch(&mut self, node: Node) {
        let (started, every) = (self.started, self.every);
        let read = move || node.rss();
        let rss = Series::spawn(started, every, self.stop.clone(), read);
        self.rss.insert(node.id, rss);
        let read = move || node.status();
        let status = Series::spawn(started, every, self.stop.clone(), read);
        self.status.insert(node.id, status);
    }

    /// When sampling started (time zero of the timeline).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Time since sampling started.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// The latest status answer of node `id`.
    pub fn status(&self, id: u64) -> Option<Status> {
        self.status.get(&id)?.latest().flatten()
    }

    /// Polls `done` every few milliseconds until it holds; fails after `timeout`
    /// saying what it waited for.
    pub fn wait(
        &self,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&Self) -> bool,
    ) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + timeout;
        loop {
            if done(self) {
                return Ok(self.now());
            }
            if Instant::now() >= deadline {
                anyhow::bail!("gave up after {timeout:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops sampling and returns everything recorded.
    pub fn finish(self) -> Timeline {
        self.stop.store(true, Ordering::Relaxed);
        Timeline {
            rss: self.rss.into_iter().map(|(k, s)| (k, s.finish())).collect(),
            status: self
                .status
                .into_iter()
                .map(|(k, s)| (k, s.finish()))
                .collect(),
            writes: self.writes.map(Series::finish).unwrap_or_default(),
        }
    }
}

impl Timeline {
    /// The highest memory sample of node `id` in `[from, to]`.
    pub fn peak_rss(&self, id: u64, from: Duration, to: Duration) -> Option<u64> {
        self.rss
            .get(&id)?
            .iter()
            .filter(|(at, _)| (from..=to).contains(at))
            .filter_map(|(_, v)| *v)
            .max()
    }

    /// The last memory sample of node `id` at or before `at` (the first one if
    /// there is none before).
    pub fn rss_at(&self, id: u64, at: Duration) -> Option<u64> {
        let points = self.rss.get(&id)?;
        let valid = || points.iter().filter_map(|(t, v)| v.map(|v| (*t, v)));
        valid()
            .take_while(|(t, _)| *t <= at)
            .last()
            .or_else(|| valid().next())
            .map(|(_, v)| v)
    }

    /// When node `id` first answered with a status for which `pred` holds.
    pub fn first_status(&self, id: u64, pred: impl Fn(&Status) -> bool) -> Option<Duration> {
        self.status
            .get(&id)?
            .iter()
            .find(|(_, s)| s.as_ref().is_some_and(&pred))
            .map(|(at, _)| *at)
    }

    /// Writes completed by `at` (the last sample at or before it).
    pub fn writes_at(&self, at: Duration) -> u64 {
        self.writes
            .iter()
            .take_while(|(t, _)| *t <= at)
            .last()
            .map_or(0, |(_, w)| *w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn timeline_queries_use_the_samples_in_range() {
        let mut t = Timeline::default();
        t.rss.insert(
            1,
            vec![
                (ms(0), None),
                (ms(10), Some(5)),
                (ms(20), Some(9)),
                (ms(30), Some(7)),
            ],
        );
        t.writes = vec![(ms(0), 0), (ms(10), 100), (ms(20), 250)];
        assert_eq!(t.peak_rss(1, ms(0), ms(15)), Some(5));
        assert_eq!(t.peak_rss(1, ms(0), ms(40)), Some(9));
        assert_eq!(t.peak_rss(2, ms(0), ms(40)), None);
        assert_eq!(t.rss_at(1, ms(25)), Some(9));
        assert_eq!(t.rss_at(1, ms(0)), Some(5));
        assert_eq!(t.writes_at(ms(15)), 100);
        assert_eq!(t.writes_at(ms(99)), 250);
    }

    #[test]
    fn samples_this_process_until_finished() {
        let me = Node {
            id: 7,
            pid: std::process::id(),
            http: "127.0.0.1:1".parse().expect("address"),
        };
        let mut n = 0;
        let sampler = Sampler::start(
            &[me],
            ms(2),
            Some(Box::new(move || {
                n += 1;
                n
            })),
        );
        sampler
            .wait(Duration::from_secs(10), "samples", |s| s.now() > ms(30))
            .expect("time passes");
        assert_eq!(sampler.status(7), None);
        let t = sampler.finish();
        assert!(t.rss[&7].len() > 2);
        assert!(t.peak_rss(7, ms(0), ms(10_000)).is_some());
        assert!(t.writes.len() > 2);
    }
}
