//! What the nodes say about snapshots in their process logs (the event sentences
//! of `docs/operations.md`, which `keel serve` also logs at info level), read back
//! from a position onwards so that earlier runs of the same node do not count.

use std::path::{Path, PathBuf};

/// A node's process log from a byte offset on (lines appended after a mark).
#[derive(Clone, Debug)]
pub struct LogMark {
    path: PathBuf,
    offset: u64,
}

impl LogMark {
    /// The current end of `path` (0 if it does not exist yet).
    pub fn at_end(path: &Path) -> Self {
        let offset = std::fs::metadata(path).map_or(0, |m| m.len());
        LogMark {
            path: path.to_path_buf(),
            offset,
        }
    }

    /// The lines written since the mark.
    pub fn lines(&self) -> Vec<String> {
        let bytes = std::fs::read(&self.path).unwrap_or_default();
        let start = (self.offset as usize).min(bytes.len());
        String::from_utf8_lossy(&bytes[start..])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The numbers of the last event of kind `event` written since the mark.
    pub fn last(&self, event: LogEvent) -> Option<Vec<u64>> {
        self.find_last(event, |_| true).map(|(_, n)| n)
    }

    /// The last event of kind `event` since the mark whose numbers satisfy `ok`,
    /// with the line's time of day (seconds since midnight UTC) if it has one.
    pub fn find_last(
        &self,
        event: LogEvent,
        ok: impl Fn(&[u64]) -> bool,
    ) -> Option<(Option<f64>, Vec<u64>)> {
        self.lines().iter().rev().find_map(|l| {
            let numbers = event.parse(l).filter(|n| ok(n))?;
            Some((time_of_day(l), numbers))
        })
    }
}

/// The time of day (seconds since midnight UTC) of a log line's RFC 3339
/// timestamp (`2026-01-01T17:56:53.876902Z`), which may be wrapped in colour codes.
pub fn time_of_day(line: &str) -> Option<f64> {
    let (_, rest) = line.split_once('T')?;
    let (clock, _) = rest.split_once('Z')?;
    let mut parts = clock.splitn(3, ':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// The time of day now, as [`time_of_day`] reads log lines.
pub fn time_of_day_now() -> f64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    since_epoch.as_secs_f64() % 86_400.0
}

/// Seconds from time of day `from` to `to`, across midnight if need be.
pub fn seconds_between(from: f64, to: f64) -> f64 {
    (to - from).rem_euclid(86_400.0)
}

/// A snapshot-related sentence and the numbers it carries, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogEvent {
    /// `took a snapshot at index I (term T): K keys, B bytes, in MS ms`.
    Took,
    /// `is sending its snapshot at index I to Node N`.
    Sending,
    /// `sent its snapshot at index I to Node N (B bytes in MS ms)`.
    Sent,
    /// `installed the leader's snapshot at index I (term T): K keys, B bytes, in MS ms`.
    Installed,
    /// `started: term T, N log entries, applied through index A`.
    Started,
}

impl LogEvent {
    fn marker(self) -> &'static str {
        match self {
            LogEvent::Took => " took a snapshot at index ",
            LogEvent::Sending => " is sending its snapshot at index ",
            LogEvent::Sent => " sent its snapshot at index ",
            LogEvent::Installed => " installed the leader's snapshot at index ",
            LogEvent::Started => " started: term ",
        }
    }

    /// The numbers after the sentence's marker, if `line` is this sentence.
    pub fn parse(self, line: &str) -> Option<Vec<u64>> {
        let (_, rest) = line.split_once(self.marker())?;
        let numbers: Vec<u64> = rest
            .split(|c: char| !c.is_ascii_digit())
            .filter(|w| !w.is_empty())
            .filter_map(|w| w.parse().ok())
            .collect();
        (!numbers.is_empty()).then_some(numbers)
    }
}

/// A snapshot the leader wrote: `took a snapshot` numbers by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Taken {
    /// Last index it covers.
    pub index: u64,
    /// Keys in it.
    pub keys: u64,
    /// File size.
    pub bytes: u64,
    /// Time to write it (background thread).
    pub ms: u64,
}

impl Taken {
    /// From the numbers of a [`LogEvent::Took`] line.
    pub fn from_numbers(n: &[u64]) -> Option<Self> {
        Some(Taken {
            index: *n.first()?,
            keys: *n.get(2)?,
            bytes: *n.get(3)?,
            ms: *n.get(4)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOOK: &str = "2026-01-01T00:00:00.123456Z  INFO keel::events: Node 1 took a snapshot at \
        index 1000001 (term 2): 1000000 keys, 301234567 bytes, in 4321 ms; its log in memory \
        now starts at index 999002.";

    #[test]
    fn sentences_give_their_numbers_in_order() {
        assert_eq!(
            LogEvent::Took.parse(TOOK),
            Some(vec![1000001, 2, 1000000, 301234567, 4321, 999002])
        );
        assert_eq!(
            Taken::from_numbers(&LogEvent::Took.parse(TOOK).expect("took")),
            Some(Taken {
                index: 1000001,
                keys: 1000000,
                bytes: 301234567,
                ms: 4321
            })
        );
        let sent = "Node 1 sent its snapshot at index 20000 to Node 3 (5000000 bytes in 120 ms).";
        assert_eq!(
            LogEvent::Sent.parse(sent),
            Some(vec![20000, 3, 5000000, 120])
        );
        let started = "Node 2 started: term 3, 17 log entries, applied through index 1000017.";
        assert_eq!(LogEvent::Started.parse(started), Some(vec![3, 17, 1000017]));
        assert_eq!(LogEvent::Installed.parse(TOOK), None);
        assert_eq!(
            LogEvent::Took.parse("Node 1 took a snapshot at index x"),
            None
        );
    }

    #[test]
    fn timestamps_give_the_time_of_day() {
        let line = "\u{1b}[2m2026-11-22T17:56:53.876902Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m Node 2 \
            is sending its snapshot at index 20001 to Node 1.";
        let t = time_of_day(line).expect("timestamp");
        assert!((t - (17.0 * 3600.0 + 56.0 * 60.0 + 53.876902)).abs() < 1e-6);
        assert_eq!(LogEvent::Sending.parse(line), Some(vec![20001, 1]));
        assert_eq!(time_of_day("Node 1 started: term 3"), None);
        assert!((seconds_between(86_399.5, 0.25) - 0.75).abs() < 1e-9);
        assert!((seconds_between(10.0, 12.5) - 2.5).abs() < 1e-9);
        assert!((0.0..86_400.0).contains(&time_of_day_now()));
    }

    #[test]
    fn a_mark_sees_only_later_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node-1.log");
        assert!(LogMark::at_end(&path).lines().is_empty());
        std::fs::write(&path, format!("{TOOK}\n")).expect("write");
        let mark = LogMark::at_end(&path);
        assert_eq!(mark.last(LogEvent::Took), None);
        let later = TOOK.replace("index 1000001", "index 2000001");
        std::fs::write(
            &path,
            format!(
                "{TOOK}\n{later}\nNode 1 started: term 3, 0 log entries, applied through index 5.\n"
            ),
        )
        .expect("write");
        assert_eq!(mark.last(LogEvent::Took).map(|n| n[0]), Some(2000001));
        assert_eq!(mark.lines().len(), 2);
    }
}
