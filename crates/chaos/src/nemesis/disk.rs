//! Disk faults on a stopped node's WAL (`DATA_DIR/wal/*.wal`, see
//! docs/wal-format.md), then a restart:
//!
//! - **torn tail**: the last bytes written to the newest segment are zeroed, as
//!   if the last write had been cut short. keel discards the damaged frame(s) at
//!   start-up and says so; what it loses (entries it may have acknowledged) the
//!   other replicas still hold.
//! - **bit flip**: one bit of the newest segment's written part is flipped. In the
//!   last frame that is a torn tail again; in an earlier frame recovery finds
//!   valid frames after the damage, calls it corruption and refuses to start,
//!   naming file and offset (in the frame padding it changes nothing). A node
//!   that refuses is removed from the cluster, wiped and added back, which is
//!   what an operator does (docs/operations.md, "Replacing a failed node").

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Target, member};
use crate::rng::Rng;

/// Bytes of a segment's header, never damaged (damage there is reported as
/// corruption of the header, a different check).
const SEGMENT_HEADER_LEN: u64 = 32;

/// Kills `victim`, damages its WAL, restarts it and sees what it does.
pub(crate) async fn damage(target: &Target, victim: u64, rng: &mut Rng) -> anyhow::Result<String> {
    let dir = {
        let mut nodes = target.nodes();
        nodes.kill(victim)?;
        nodes.data_dir(victim).join("wal")
    };
    let what = match newest_segment(&dir) {
        Some(segment) if rng.chance(0.5) => tear_tail(&segment, rng)?,
        Some(segment) => flip_bit(&segment, rng)?,
        None => "no WAL segment to damage".to_owned(),
    };
    {
        let mut nodes = target.nodes();
        nodes.start(victim)?;
        target.net.set_owners(nodes.pids());
    }
    let verdict = match started_or_refused(target, victim, Duration::from_secs(15)).await {
        Started::Yes => "it recovered".to_owned(),
        Started::Refused(why) => {
            match member::remove_from_config(target, victim, Duration::from_secs(5)).await {
                Ok(()) => {
                    member::wipe_and_rejoin(target, victim).await?;
                    format!("it refused to start ({why}); removed, wiped, re-added with --join")
                }
                Err(e) => format!("it refused to start ({why}); removing it failed: {e}"),
            }
        }
        Started::Unknown => "no verdict before the deadline".to_owned(),
    };
    Ok(format!("wal: node {victim}: {what}; {verdict}"))
}

fn newest_segment(dir: &Path) -> Option<PathBuf> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    segments.pop()
}

/// Offset just past the last non-zero byte (segments are preallocated with zeros).
fn written_end(data: &[u8]) -> u64 {
    data.iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i as u64 + 1)
}

/// Zeroes the last 1-256 written bytes of `segment`.
fn tear_tail(segment: &Path, rng: &mut Rng) -> std::io::Result<String> {
    let data = std::fs::read(segment)?;
    let end = written_end(&data);
    if end <= SEGMENT_HEADER_LEN {
        return Ok(format!("{} holds no frame", segment.display()));
    }
    let n = rng.range(1, 256).min(end - SEGMENT_HEADER_LEN);
    write_at(segment, end - n, &vec![0; n as usize])?;
    Ok(format!(
        "zeroed the last {n} written bytes of {} (a torn tail)",
        file_name(segment)
    ))
}

/// Flips one bit of the written part of `segment`, after its header.
fn flip_bit(segment: &Path, rng: &mut Rng) -> std::io::Result<String> {
    let mut data = std::fs::read(segment)?;
    let end = written_end(&data);
    if end <= SEGMENT_HEADER_LEN {
        return Ok(format!("{} holds no frame", segment.display()));
    }
    let offset = rng.range(SEGMENT_HEADER_LEN, end - 1);
    let bit = rng.range(0, 7);
    data[offset as usize] ^= 1 << bit;
    write_at(segment, offset, &data[offset as usize..=offset as usize])?;
    Ok(format!(
        "flipped bit {bit} at offset {offset} of {} ({} written bytes)",
        file_name(segment),
        end
    ))
}

/// Overwrites `bytes` at `offset` (the file keeps its length) and syncs.
fn write_at(path: &Path, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.write_all_at(bytes, offset)?;
    file.sync_data()
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

enum Started {
    Yes,
    Refused(String),
    Unknown,
}

/// Polls until `id` answers a status request (it started) or its process exited
/// (it refused; the reason is the last line of its log that names the WAL).
async fn started_or_refused(target: &Target, id: u64, timeout: Duration) -> Started {
    let deadline = Instant::now() + timeout;
    let endpoint = target.nodes().spec(id).advertise.to_string();
    while Instant::now() < deadline {
        if target.client.status(&endpoint).await.is_ok() {
            return Started::Yes;
        }
        let (exited, log) = {
            let mut nodes = target.nodes();
            (nodes.has_exited(id), nodes.log_path(id))
        };
        if exited {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let why = text
                .lines()
                .rev()
                .find(|l| l.contains("corrupt") || l.contains("WAL") || l.contains("Error"))
                .unwrap_or("exited")
                .trim()
                .to_owned();
            return Started::Refused(why);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Started::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_stays_in_the_written_part() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seg = dir.path().join("0000000000000001.wal");
        let mut data = vec![7u8; 100];
        data.extend(vec![0u8; 1000]);
        std::fs::write(&seg, &data).expect("write");
        let mut rng = Rng::new(5);
        tear_tail(&seg, &mut rng).expect("tear");
        let torn = std::fs::read(&seg).expect("read");
        assert_eq!(torn.len(), 1100);
        assert!(written_end(&torn) < 100 && written_end(&torn) >= 32);
        std::fs::write(&seg, &data).expect("write");
        flip_bit(&seg, &mut rng).expect("flip");
        let flipped = std::fs::read(&seg).expect("read");
        let diff: Vec<usize> = (0..1100).filter(|&i| flipped[i] != data[i]).collect();
        assert_eq!(diff.len(), 1);
        assert!(diff[0] >= 32 && diff[0] < 100);
    }
}
