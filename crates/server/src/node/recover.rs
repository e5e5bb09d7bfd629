//! Start-up: open the WAL (recovering it), and for every group this node hosts
//! (group 1 always; the placement group on its members) open the state machine
//! and rebuild the consensus core from both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_placement::PLACEMENT_GROUP;
use keel_raft::{ConfState, Config, GroupId, InitialState, NodeId, Raft};
use keel_storage::kv::{KvOptions, KvStore};
use keel_storage::vfs::{StdVfs, Vfs};
use keel_storage::wal::{RecoveredGroup, Wal, WalOptions};

use super::hosting::GroupBoot;
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::events::EventLog;
use crate::identity::{Identity, os_random_u64};
use crate::members::MemberBook;

/// The Raft group that holds the key-value data: group 1 of the cluster map (the
/// only data group until slots move).
pub const KV_GROUP: u64 = 1;

/// What start-up produces: the node's WAL and every group it hosts.
pub(crate) struct Recovered {
    pub(crate) wal: Wal,
    /// The key-value group, always hosted.
    pub(crate) kv_group: GroupBoot,
    /// The placement group, when this node is one of its members.
    pub(crate) placement: Option<GroupBoot>,
    /// Data groups created at run time from the cluster map (`boot_file.rs`).
    pub(crate) others: Vec<GroupBoot>,
}

/// The label of a data group's events, for every group but group 1.
pub(crate) fn group_label(group: GroupId) -> String {
    format!("group {group}")
}

/// The label of the placement group's events.
pub(crate) const PLACEMENT_LABEL: &str = "placement group";

pub(crate) fn recover(
    cfg: &ServerConfig,
    identity: &Identity,
    events: &mut EventLog,
) -> Result<Recovered, ServerError> {
    let vfs: Arc<dyn Vfs> = Arc::new(StdVfs::new());
    let wal_dir = cfg.data_dir.join("wal");
    let opts = WalOptions {
        segment_bytes: cfg.wal_segment_bytes,
    };
    let (mut wal, mut recovery) = Wal::open(vfs.clone(), &wal_dir, opts)?;
    if let Some(torn) = &recovery.torn_tail {
        let line = format!(
            "Node {} found a torn write at the end of its log ({} at offset {}, {} bytes) \
             and truncated it; this is expected after a crash.",
            cfg.id,
            torn.file.display(),
            torn.offset,
            torn.discarded_bytes
        );
        tracing::warn!("{line}");
        events.note(&line);
    }
    // The WAL keeps the records of any group not hosted (none today), and
    // compaction keeps the segments holding them.
    let kv_group = recover_group(
        cfg,
        &vfs,
        &mut wal,
        GroupSpec {
            id: KV_GROUP,
            log: recovery.groups.remove(&KV_GROUP).unwrap_or_default(),
            state: state_path(&cfg.data_dir),
            voters: identity.members.clone(),
        },
        events,
    )?;
    let placement = match placement_voters(identity) {
        Some(voters) => {
            let state = group_state_path(&cfg.data_dir, PLACEMENT_GROUP);
            create_state_dir(&state)?;
            let mut events = events.labelled(PLACEMENT_LABEL);
            let group = recover_group(
                cfg,
                &vfs,
                &mut wal,
                GroupSpec {
                    id: PLACEMENT_GROUP,
                    log: recovery.groups.remove(&PLACEMENT_GROUP).unwrap_or_default(),
                    state,
                    voters,
                },
                &mut events,
            )?;
            events.flush();
            Some(group)
        }
        None => None,
    };
    let mut others = Vec::new();
    for (group, voters) in super::boot_file::read_all(&cfg.data_dir)? {
        if group == KV_GROUP || group == PLACEMENT_GROUP {
            return Err(ServerError::Recovery(format!(
                "a boot file names group {group}, whose configuration comes from identity.json"
            )));
        }
        if wal.is_removed(group) {
            // Removed, and the crash came before its files were deleted:
            // finish the deletion.
            delete_group_files(&cfg.data_dir, group)?;
            continue;
        }
        let mut events = events.labelled(group_label(group));
        let boot = recover_group(
            cfg,
            &vfs,
            &mut wal,
            GroupSpec {
                id: group,
                log: recovery.groups.remove(&group).unwrap_or_default(),
                state: group_state_path(&cfg.data_dir, group),
                voters,
            },
            &mut events,
        )?;
        events.flush();
        others.push(boot);
    }
    for group in recovery.groups.keys() {
        // Not hosted, yet in the log: a replica whose boot file is gone. Its
        // records stay (compaction keeps them) until an operator decides.
        let line = format!(
            "Node {} found log records of group {group} but no boot file for it;              the group is not hosted here.",
            cfg.id
        );
        tracing::error!("{line}");
        events.note(&line);
    }
    Ok(Recovered {
        wal,
        kv_group,
        placement,
        others,
    })
}

/// The files of a replica of `group` started at run time, before anything
/// else: any left by an earlier life (or by a creation that crashed before its
/// first WAL record) are deleted, since they mean nothing to an empty log, and
/// the boot file is written. Nothing is in the WAL yet, so a failure here
/// leaves the node as it was (a later order tries again).
pub(crate) fn prepare_group_files(
    cfg: &ServerConfig,
    group: GroupId,
    voters: &BTreeMap<NodeId, String>,
) -> Result<(), ServerError> {
    delete_group_files(&cfg.data_dir, group)?;
    super::boot_file::write(&cfg.data_dir, group, voters)?;
    create_state_dir(&group_state_path(&cfg.data_dir, group))
}

/// Opens the replica [`prepare_group_files`] prepared: its state machine and
/// snapshots empty, its core from the configuration `voters` with an empty
/// log — from term 0, or, if this node held a replica of the group before and
/// left it, from that replica's last term and vote (`Wal::recreate_group`,
/// which buffers the group's new life in the WAL).
pub(crate) fn open_new_group(
    cfg: &ServerConfig,
    wal: &mut Wal,
    group: GroupId,
    voters: BTreeMap<NodeId, String>,
    events: &mut EventLog,
) -> Result<GroupBoot, ServerError> {
    let vfs: Arc<dyn Vfs> = Arc::new(StdVfs::new());
    let mut log = RecoveredGroup::default();
    if wal.is_removed(group) {
        log.hard_state = wal.recreate_group(group)?;
    }
    recover_group(
        cfg,
        &vfs,
        wal,
        GroupSpec {
            id: group,
            log,
            state: group_state_path(&cfg.data_dir, group),
            voters,
        },
        events,
    )
}

/// Deletes a data group's boot file, state machine and snapshots.
pub(crate) fn delete_group_files(data_dir: &Path, group: GroupId) -> Result<(), ServerError> {
    let state = group_state_path(data_dir, group);
    match std::fs::remove_file(&state) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ServerError::Io {
                what: "cannot delete a group's state file",
                path: state,
                source,
            });
        }
    }
    let snaps = super::snapshots::group_snapshot_dir(data_dir, group);
    match std::fs::remove_dir_all(&snaps) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ServerError::Io {
                what: "cannot delete a group's snapshots",
                path: snaps,
                source,
            });
        }
    }
    super::boot_file::remove(data_dir, group)
}

/// The placement group's bootstrap voters with their addresses, if this node
/// is one of them.
fn placement_voters(identity: &Identity) -> Option<BTreeMap<NodeId, String>> {
    if !identity.hosts_placement() {
        return None;
    }
    let ids = identity.placement.as_deref().unwrap_or_default();
    Some(
        identity
            .members
            .iter()
            .filter(|(id, _)| ids.contains(id))
            .map(|(id, addr)| (*id, addr.clone()))
            .collect(),
    )
}

/// A group start-up recovers: its id, its records from the WAL, its state
/// file, and the voters it was bootstrapped with.
struct GroupSpec {
    id: GroupId,
    log: RecoveredGroup,
    state: PathBuf,
    voters: BTreeMap<NodeId, String>,
}

/// Opens a group's state machine and snapshots, and rebuilds its core from
/// them and its log.
fn recover_group(
    cfg: &ServerConfig,
    vfs: &Arc<dyn Vfs>,
    wal: &mut Wal,
    spec: GroupSpec,
    events: &mut EventLog,
) -> Result<GroupBoot, ServerError> {
    // A data group created after the cluster serves only the slots moved to
    // it; group 1 and the placement group (one key, `map`) serve every slot.
    let opts = KvOptions {
        new_store_serves_all_slots: spec.id == KV_GROUP || spec.id == PLACEMENT_GROUP,
        ..KvOptions::default()
    };
    let kv = Arc::new(KvStore::open_with(vfs.clone(), &spec.state, opts)?);
    // Snapshots: the newest valid one, installed if the state machine is behind it,
    // and the log cut to what follows it (`snapshots.rs`).
    let boot = super::snapshots::boot(cfg, vfs.clone(), &kv, wal, (spec.id, spec.log), events)?;
    let applied = boot.applied;
    let (election_ticks, heartbeat_ticks) = cfg.ticks();
    let (lease_duration, max_clock_drift) = cfg.lease_nanos();
    let raft_cfg = Config {
        id: cfg.id,
        group: spec.id,
        election_ticks,
        heartbeat_ticks,
        lease_duration,
        max_clock_drift,
        quiesce_after_heartbeats: cfg.quiesce_after_heartbeats,
        ..Config::default()
    };
    // The member book: bootstrap, then the snapshot's, then the log's changes.
    let book = Arc::new(MemberBook::new(&spec.voters));
    for (id, info) in boot.book {
        book.record(id, info);
    }
    let mut conf_index = 0;
    for e in &boot.entries {
        if e.kind == keel_raft::EntryKind::ConfChange {
            conf_index = e.index;
        }
        if let Some((id, info)) = super::membership::member_of_entry(e) {
            book.record(id, info);
        }
    }
    let entries = boot.entries.len();
    let init = InitialState {
        hard_state: boot.hard_state,
        conf: ConfState::with_voters(spec.voters.keys().copied()),
        snapshot: boot.snapshot,
        entries: boot.entries,
        applied,
    };
    let mut raft = Raft::new(raft_cfg, init, os_random_u64())?;
    if spec.id == KV_GROUP {
        inject_test_bug(&mut raft);
    }
    events.note(&format!(
        "Node {} started: term {}, {} log entries, applied through index {applied}.",
        cfg.id,
        raft.term(),
        entries
    ));
    Ok(GroupBoot {
        raft,
        kv,
        snapshots: boot.state,
        book,
        conf_index,
    })
}

/// Creates the directory a group's state file goes in.
fn create_state_dir(state: &Path) -> Result<(), ServerError> {
    let dir = state.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| ServerError::Io {
        what: "cannot create the state directory",
        path: dir.to_path_buf(),
        source,
    })
}

/// Where group `group`'s state machine lives in a data directory, for every
/// group but the key-value group (which keeps [`state_path`] for
/// compatibility): `state/<group>.redb`.
pub fn group_state_path(data_dir: &Path, group: GroupId) -> PathBuf {
    data_dir.join("state").join(format!("{group}.redb"))
}

/// Where the state machine lives in a data directory.
pub fn state_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("state.redb")
}

/// Switches on the core's side of a test bug (`crate::test_bugs`); nothing without
/// the `test-bugs` feature.
fn inject_test_bug(raft: &mut Raft) {
    use crate::test_bugs::{TestBug, active};
    if active(TestBug::LeaseWithoutDriftMargin) {
        raft.inject_bug(Some(keel_raft::InjectedBug::LeaseWithoutDriftMargin));
    }
    #[cfg(feature = "test-bugs")]
    if active(TestBug::NoNoop) {
        raft.inject_bug(Some(keel_raft::InjectedBug::NoNoopAtTermStart));
    }
}
