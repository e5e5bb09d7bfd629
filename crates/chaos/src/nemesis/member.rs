//! Membership changes: a node is removed from the cluster (`keel member remove`),
//! its data wiped, and at the repair it is started again with `--join`, which
//! asks the cluster to add it back (as a learner, promoted to voter once caught
//! up). Removing one node of a healthy cluster never makes a quorum impossible:
//! faults come one at a time.

use std::time::{Duration, Instant};

use super::{Target, rebalance};

/// Removes `victim` from the configuration, stops it and wipes its data; the
/// next heal starts it with `--join`. Returns the fault's description.
pub(crate) async fn remove(
    target: &Target,
    victim: u64,
    leader: Option<u64>,
) -> anyhow::Result<String> {
    let role = if leader == Some(victim) {
        " (leader)"
    } else {
        ""
    };
    if let Err(e) = remove_from_config(target, victim, Duration::from_secs(5)).await {
        return Ok(format!("member: removing node {victim}{role} failed: {e}"));
    }
    wipe_and_rejoin(target, victim).await?;
    Ok(format!(
        "member: removed node {victim}{role}, wiped it; it rejoins with --join"
    ))
}

/// Asks the leader to remove `id` until the configuration no longer lists it.
pub(crate) async fn remove_from_config(
    target: &Target,
    id: u64,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match target.client.remove_member(id).await {
            Ok(_) => return Ok(()),
            Err(e) => e.to_string(),
        };
        // An unknown outcome may have removed it after all.
        if let Ok(m) = target.client.members().await
            && !m.change_in_progress
            && !m.members.iter().any(|m| m.id == id)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Takes `id` out of the data groups too (a wiped node must not come back as
/// a voter with an empty log), then stops and wipes it; the next heal starts
/// it with `--join` and puts it back into those groups once admitted.
pub(crate) async fn wipe_and_rejoin(target: &Target, id: u64) -> std::io::Result<()> {
    let groups = rebalance::leave_data_groups(target, id, Duration::from_secs(10)).await;
    if !groups.is_empty() {
        target.left_groups().insert(id, groups);
    }
    rejoin_later(target, id)
}

/// Stops `id`, wipes its data directory and makes its next start a `--join`
/// through another member.
fn rejoin_later(target: &Target, id: u64) -> std::io::Result<()> {
    let mut nodes = target.nodes();
    nodes.wipe(id)?;
    let through = nodes
        .ids()
        .into_iter()
        .find(|&other| other != id)
        .map(|other| nodes.spec(other).advertise.to_string());
    nodes.spec_mut(id).join = through;
    Ok(())
}

/// Polls until `id` is a voter again (a joining node is promoted once it caught
/// up), restarting it if its process gave up; gives up at the deadline (the run's
/// final convergence check then reports a node that never came back).
pub(crate) async fn wait_admitted(target: &Target, id: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let voter = target
            .client
            .members()
            .await
            .ok()
            .is_some_and(|m| m.members.iter().any(|m| m.id == id && m.voter));
        if voter {
            return;
        }
        {
            let mut nodes = target.nodes();
            if nodes.has_exited(id) {
                let _ = nodes.start(id);
                target.net.set_owners(nodes.pids());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
