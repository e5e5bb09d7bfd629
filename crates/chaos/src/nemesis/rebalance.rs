//! Slot moves as a fault (`docs/sharding.md`, *Moving a slot*): the run starts
//! with a second data group on every node (the first five), and each fault begins moving the
//! slots of a few workload keys to the other group — half the time killing a
//! node while the moves run, so hand-offs meet crashes of the source's, the
//! target's or the placement group's leader. The moves themselves are the
//! cluster's business (the target group's leader drives each one); the
//! checker then holds the history to the same standard as without them.
//!
//! A node that the `member` or `wal` nemesis wipes would come back as a
//! voter of the data group with an empty log, so those nemeses take it out of
//! every data group first and put it back once it rejoined
//! ([`leave_data_groups`], [`rejoin_data_groups`]).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use keel_client::{ClusterMap, MapCommand, slot_for_key};

use super::{Injected, Target};
use crate::rng::Rng;

/// The data group the run adds beside group 1.
pub const SECOND_GROUP: u64 = 2;
/// Most slots one fault begins to move.
const SLOTS_PER_FAULT: u64 = 4;
/// Workload keys are `k0`, `k1`, ...: faults move slots of the first this
/// many, which covers every key a run of a few minutes uses.
const KEY_SPAN: u64 = 400;
/// How long the run waits at the end for moves in flight to finish (the
/// mover aborts a move after 60 s).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Creates the second data group on every node (once per run, before the
/// workload starts) and waits for it to elect a leader.
pub async fn prepare(target: &Target) -> anyhow::Result<()> {
    // A group has at most seven members; five tolerate two failures.
    let members: BTreeSet<u64> = target.nodes().ids().into_iter().take(5).collect();
    let replicas = u8::try_from(members.len()).unwrap_or(5);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let map = target.client.cluster_map().await.ok();
        if map
            .as_ref()
            .is_some_and(|m| m.groups().contains_key(&SECOND_GROUP))
        {
            break;
        }
        let create = MapCommand::CreateGroup {
            members: members.clone(),
            target_replicas: replicas,
        };
        match target.client.change_map(&create).await {
            Ok(_) => break,
            Err(e) if Instant::now() >= deadline => {
                anyhow::bail!("cannot create group {SECOND_GROUP}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let endpoints = target.endpoints();
    loop {
        let led = crate::cluster::statuses(&target.client, &endpoints)
            .await
            .into_iter()
            .flatten()
            .flat_map(|s| s.groups)
            .any(|g| g.group == SECOND_GROUP && g.role == "leader");
        if led {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("group {SECOND_GROUP} elected no leader");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Begins moving the slots of a few random workload keys to the group that
/// does not own them; half the time also kills a node.
pub(crate) async fn inject(target: &Target, rng: &mut Rng) -> anyhow::Result<Injected> {
    let mut detail = String::from("rebalance:");
    match target.client.cluster_map().await {
        Ok(map) => {
            for _ in 0..SLOTS_PER_FAULT {
                let key = format!("k{}", rng.range(0, KEY_SPAN));
                detail += &begin(target, &map, &key).await;
            }
        }
        Err(e) => detail += &format!(" no cluster map ({e})"),
    }
    if rng.chance(0.5) {
        let ids = target.nodes().ids();
        let victim = *rng.pick(&ids).unwrap_or(&1);
        target.nodes().kill(victim)?;
        detail += &format!("; kill -9 node {victim} during the moves");
    }
    Ok(Injected::just(detail))
}

/// Begins moving `key`'s slot to the other group; what happened, in words.
async fn begin(target: &Target, map: &ClusterMap, key: &str) -> String {
    let slot = slot_for_key(key.as_bytes());
    if map.moves().contains_key(&slot) {
        return format!(" slot {slot} ({key}) already moving;");
    }
    let to = match map.owner(slot) {
        Some(SECOND_GROUP) => 1,
        _ => SECOND_GROUP,
    };
    match target
        .client
        .change_map(&MapCommand::BeginSlotMove { slot, to })
        .await
    {
        Ok(_) => format!(" slot {slot} ({key}) to group {to};"),
        Err(e) => format!(" slot {slot} ({key}) to group {to} not begun ({e});"),
    }
}

/// Waits until no move is in flight (or the timeout), so that the final
/// reads do not meet a paused slot.
pub async fn settle(target: &Target) -> Result<(), String> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let moving = match target.client.cluster_map().await {
            Ok(map) => map.moves().len(),
            Err(_) => usize::MAX,
        };
        if moving == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "moves still in flight {SETTLE_TIMEOUT:?} after the faults ended"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The data groups (other than group 1) that list `id` as a member.
async fn data_groups_of(target: &Target, id: u64) -> Vec<u64> {
    match target.client.cluster_map().await {
        Ok(map) => map
            .groups()
            .iter()
            .filter(|(g, info)| **g != 1 && info.members.contains(&id))
            .map(|(g, _)| *g)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Takes `id` out of every data group it is a member of, and waits until no
/// running node's replica of those groups counts it in a committed
/// configuration; the groups it left, to rejoin later.
pub(crate) async fn leave_data_groups(target: &Target, id: u64, timeout: Duration) -> Vec<u64> {
    let groups = data_groups_of(target, id).await;
    let deadline = Instant::now() + timeout;
    for &group in &groups {
        let remove = MapCommand::RemoveGroupMember { group, node: id };
        while target.client.change_map(&remove).await.is_err() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let endpoints = target.endpoints();
    while Instant::now() < deadline {
        let statuses = crate::cluster::statuses(&target.client, &endpoints).await;
        let counted = statuses
            .iter()
            .flatten()
            .filter(|s| s.id != id)
            .flat_map(|s| &s.groups)
            .filter(|g| groups.contains(&g.group))
            .any(|g| {
                g.voters.contains(&id) || g.learners.contains(&id) || g.commit_index < g.conf_index
            });
        if !counted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    groups
}

/// Puts `id` back into `groups` (it joins them as a learner, promoted once it
/// caught up, like any new member).
pub(crate) async fn rejoin_data_groups(target: &Target, id: u64, groups: &[u64]) {
    for &group in groups {
        let add = MapCommand::AddGroupMember { group, node: id };
        for _ in 0..25 {
            if target.client.change_map(&add).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
