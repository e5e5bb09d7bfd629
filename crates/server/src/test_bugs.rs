//! Deliberately broken variants of keel, for the chaos harness's sanity runs: do
//! its faults and checker catch a node that breaks one of the contracts? (See
//! `docs/chaos.md`, "Is the harness awake?".)
//!
//! A bug is chosen at start-up by the environment variable `KEEL_TEST_BUG`, and
//! only in a build with the `test-bugs` feature (the `keel-test-bugs` binary).
//! In every other build [`active`] is the constant `false`, so the broken code
//! paths are compiled out, and `keel serve` refuses to start when `KEEL_TEST_BUG`
//! is set (see [`check_env`]).

use std::fmt;

/// The environment variable that selects a bug.
pub const ENV: &str = "KEEL_TEST_BUG";

/// A deliberately broken behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestBug {
    /// Appends and votes are acknowledged as soon as they are in the WAL's
    /// in-memory buffer; the buffer is written and fsynced at most once a second.
    AckBeforeFsync,
    /// A new leader appends no NO-OP at the start of its term and serves
    /// ReadIndex reads at the commit index it inherited.
    NoNoop,
    /// The leader trusts its lease for the whole lease duration, with no margin
    /// for clock drift.
    LeaseWithoutDriftMargin,
    /// A follower serves a linearizable read from its own applied state at once,
    /// without asking the leader for a read index.
    FollowerReadWithoutReadIndex,
}

impl TestBug {
    /// Every bug.
    pub const ALL: [TestBug; 4] = [
        TestBug::AckBeforeFsync,
        TestBug::NoNoop,
        TestBug::LeaseWithoutDriftMargin,
        TestBug::FollowerReadWithoutReadIndex,
    ];

    /// The bug's name in `KEEL_TEST_BUG`.
    pub fn name(self) -> &'static str {
        match self {
            TestBug::AckBeforeFsync => "ack-before-fsync",
            TestBug::NoNoop => "no-noop",
            TestBug::LeaseWithoutDriftMargin => "lease-without-drift-margin",
            TestBug::FollowerReadWithoutReadIndex => "follower-read-without-read-index",
        }
    }

    /// Parses a name.
    pub fn parse(name: &str) -> Result<TestBug, String> {
        TestBug::ALL
            .into_iter()
            .find(|b| b.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = TestBug::ALL.iter().map(|b| b.name()).collect();
                format!("unknown test bug {name:?}; known: {}", names.join(", "))
            })
    }
}

impl fmt::Display for TestBug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Checks `KEEL_TEST_BUG` at start-up: the bug it selects (with the `test-bugs`
/// feature), `None` when it is unset, or an error when it names no bug or this
/// build cannot inject bugs.
pub fn check_env() -> Result<Option<TestBug>, String> {
    let Some(value) = std::env::var_os(ENV) else {
        return Ok(None);
    };
    if !cfg!(feature = "test-bugs") {
        return Err(format!(
            "{ENV} is set, but this keel was built without the test-bugs feature \
             (use the keel-test-bugs binary)"
        ));
    }
    TestBug::parse(&value.to_string_lossy()).map(Some)
}

/// Whether `bug` is switched on: always `false` without the `test-bugs` feature.
#[inline]
pub fn active(bug: TestBug) -> bool {
    #[cfg(feature = "test-bugs")]
    {
        static SELECTED: std::sync::OnceLock<Option<TestBug>> = std::sync::OnceLock::new();
        *SELECTED.get_or_init(|| check_env().ok().flatten()) == Some(bug)
    }
    #[cfg(not(feature = "test-bugs"))]
    {
        let _ = bug;
        false
    }
}

/// [`TestBug::AckBeforeFsync`]: whether this turn's WAL sync is skipped (the
/// records stay buffered in memory until a turn at least a second after the last
/// real sync).
pub(crate) fn skip_wal_sync() -> bool {
    #[cfg(feature = "test-bugs")]
    {
        use std::sync::Mutex;
        use std::time::{Duration, Instant};
        static LAST_SYNC: Mutex<Option<Instant>> = Mutex::new(None);
        if !active(TestBug::AckBeforeFsync) {
            return false;
        }
        let mut last = LAST_SYNC.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match *last {
            Some(t) if now.duration_since(t) < Duration::from_secs(1) => true,
            _ => {
                *last = Some(now);
                false
            }
        }
    }
    #[cfg(not(feature = "test-bugs"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for b in TestBug::ALL {
            assert_eq!(TestBug::parse(b.name()), Ok(b));
        }
        assert!(TestBug::parse("nope").is_err());
    }

    #[cfg(not(feature = "test-bugs"))]
    #[test]
    fn nothing_is_active_without_the_feature() {
        assert!(TestBug::ALL.iter().all(|&b| !active(b)));
        assert!(!skip_wal_sync());
    }
}
