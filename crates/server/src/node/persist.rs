//! Step 2 of a turn's `Ready`s, across every hosted group: each group's entries
//! and hard state go into the WAL's one batch, and one fsync makes them all
//! durable — however many groups wrote (docs/sharding.md, "One WAL for all
//! groups").

use keel_raft::{GroupId, Ready};
use keel_storage::wal::{Wal, WalError};

/// One group's part of a round: its `Ready`, and its term and vote as last made
/// durable (only a change to them, or entries, needs the fsync).
pub(crate) struct GroupWrites<'a> {
    pub(crate) group: GroupId,
    pub(crate) ready: &'a Ready,
    pub(crate) durable_term_vote: (u64, u64),
}

/// What [`write_round`] did.
#[derive(Debug)]
pub(crate) enum RoundWrite {
    /// Nothing needed an fsync: what was buffered (commit indexes) rides along
    /// with the next one.
    Buffered,
    /// The records are written and durable, with one fsync that took this long.
    Synced { fsync: std::time::Duration },
    /// The records are buffered and the fsync was left to the caller's retry
    /// (the disk is full, or a test bug skips it).
    Deferred,
}

/// Appends every group's entries and hard state into the WAL's batch, then —
/// if any group's entries, term or vote changed and `may_sync` — makes the
/// batch durable with one fsync.
///
/// A failed fsync is returned as the WAL's error; the WAL is poisoned unless
/// the disk was full (`WalError::is_no_space`), and the records stay buffered.
pub(crate) fn write_round(
    wal: &mut Wal,
    round: &[GroupWrites<'_>],
    may_sync: bool,
) -> Result<RoundWrite, WalError> {
    let mut must_sync = false;
    for w in round {
        if !w.ready.entries.is_empty() {
            wal.append_entries(w.group, &w.ready.entries)?;
            must_sync = true;
        }
        if let Some(hs) = w.ready.hard_state {
            must_sync |= (hs.term, hs.vote) != w.durable_term_vote;
            wal.set_hard_state(w.group, hs)?;
        }
    }
    if !must_sync {
        return Ok(RoundWrite::Buffered);
    }
    if !may_sync {
        return Ok(RoundWrite::Deferred);
    }
    let started = std::time::Instant::now();
    wal.sync()?;
    Ok(RoundWrite::Synced {
        fsync: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;
    use std::sync::Arc;

    use keel_raft::{ConfState, Config, InitialState, Raft, Role};
    use keel_storage::vfs::MemVfs;
    use keel_storage::wal::{InspectedItem, Verdict, WalOptions, WalRecord, inspect_all};

    use super::*;

    const DIR: &str = "/data/wal";

    fn open(vfs: &MemVfs) -> Wal {
        let opts = WalOptions {
            segment_bytes: 1 << 20,
        };
        Wal::open(Arc::new(vfs.clone()), Path::new(DIR), opts)
            .expect("open")
            .0
    }

    /// A single-voter core of `group` that leads, its log durable in `wal`,
    /// with a proposal made: its next Ready holds a new entry.
    fn leader_with_proposal(group: GroupId, wal: &mut Wal) -> Raft {
        let mut core = candidate(group);
        while core.has_ready() {
            let rd = core.ready();
            let alone = [GroupWrites {
                group,
                ready: &rd,
                durable_term_vote: (0, 0),
            }];
            write_round(wal, &alone, true).expect("write");
            core.advance(rd);
        }
        assert_eq!(core.role(), Role::Leader);
        core.propose(bytes::Bytes::from_static(b"x"))
            .expect("the leader takes it");
        core
    }

    /// A single-voter core of `group` that just campaigned: its Ready holds a
    /// new term and its self-vote.
    fn candidate(group: GroupId) -> Raft {
        let cfg = Config {
            id: 1,
            group,
            ..Config::default()
        };
        let init = InitialState {
            conf: ConfState::with_voters([1]),
            ..InitialState::default()
        };
        let mut core = Raft::new(cfg, init, group).expect("valid config");
        core.campaign();
        core
    }

    /// The groups each frame (fsync batch) holds records of, by frame number.
    fn groups_by_frame(vfs: &MemVfs) -> BTreeMap<u64, BTreeSet<GroupId>> {
        let mut out: BTreeMap<u64, BTreeSet<GroupId>> = BTreeMap::new();
        let verdict = inspect_all(vfs, Path::new(DIR), |item| {
            if let InspectedItem::Record(r) = item {
                let group = match &r.record {
                    WalRecord::Entry { group, .. } | WalRecord::HardState { group, .. } => *group,
                };
                out.entry(r.frame_seq).or_default().insert(group);
            }
        })
        .expect("inspect");
        assert_eq!(verdict, Verdict::Ok);
        out
    }

    #[test]
    fn one_round_of_three_groups_is_one_frame_and_one_fsync() {
        let vfs = MemVfs::new();
        let mut wal = open(&vfs);
        let mut cores: Vec<Raft> = [1, 2, 7]
            .into_iter()
            .map(|g| leader_with_proposal(g, &mut wal))
            .collect();
        let before = groups_by_frame(&vfs).len();
        let readys: Vec<Ready> = cores.iter_mut().map(Raft::ready).collect();
        assert!(readys.iter().all(|rd| !rd.entries.is_empty()));
        let round: Vec<GroupWrites<'_>> = readys
            .iter()
            .zip(&cores)
            .map(|(ready, core)| GroupWrites {
                group: core.group(),
                ready,
                durable_term_vote: (0, 0),
            })
            .collect();
        assert!(matches!(
            write_round(&mut wal, &round, true),
            Ok(RoundWrite::Synced { .. })
        ));
        let frames = groups_by_frame(&vfs);
        assert_eq!(
            frames.len(),
            before + 1,
            "one frame (one fsync) for the round: {frames:?}"
        );
        let last = frames.values().last().expect("a frame");
        assert_eq!(
            last,
            &BTreeSet::from([1, 2, 7]),
            "it holds every group's writes"
        );
        for (core, rd) in cores.iter_mut().zip(readys) {
            core.advance(rd);
            assert_eq!(core.last_index(), 2, "the no-op and the proposal");
        }
    }

    #[test]
    fn a_commit_index_alone_waits_for_the_next_fsync() {
        let vfs = MemVfs::new();
        let mut wal = open(&vfs);
        let mut core = candidate(3);
        let rd = core.ready();
        let hs = rd.hard_state.expect("a new term");
        let first = [GroupWrites {
            group: 3,
            ready: &rd,
            durable_term_vote: (0, 0),
        }];
        assert!(matches!(
            write_round(&mut wal, &first, true),
            Ok(RoundWrite::Synced { .. })
        ));
        core.advance(rd);
        // Same term and vote, only the commit index moved: nothing to fsync.
        let only_commit = Ready {
            hard_state: Some(keel_raft::HardState {
                commit: hs.commit + 1,
                ..hs
            }),
            ..Ready::default()
        };
        let second = [GroupWrites {
            group: 3,
            ready: &only_commit,
            durable_term_vote: (hs.term, hs.vote),
        }];
        assert!(matches!(
            write_round(&mut wal, &second, true),
            Ok(RoundWrite::Buffered)
        ));
        assert!(wal.has_pending());
        assert_eq!(groups_by_frame(&vfs).len(), 1);
    }

    #[test]
    fn a_full_disk_defers_the_fsync_and_keeps_the_records() {
        let vfs = MemVfs::new();
        let mut wal = open(&vfs);
        let mut core = candidate(1);
        let rd = core.ready();
        let round = [GroupWrites {
            group: 1,
            ready: &rd,
            durable_term_vote: (0, 0),
        }];
        assert!(matches!(
            write_round(&mut wal, &round, false),
            Ok(RoundWrite::Deferred)
        ));
        assert!(wal.has_pending(), "the records wait for the retry");
        assert!(groups_by_frame(&vfs).is_empty(), "nothing written yet");
    }
}
