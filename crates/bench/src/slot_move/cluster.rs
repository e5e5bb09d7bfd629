//! What the scenario asks of the cluster besides the load: a new group and its
//! leader, the move (begin, and wait until the map shows it done), and the
//! moved keys read back.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use keel_client::{Client, ClientConfig, GroupId, MapCommand, ReadMode, Slot};

use super::keys::KeySpace;

/// How often the map and group status are polled.
const POLL: Duration = Duration::from_millis(10);
/// Deadline of one admin call.
const CALL_DEADLINE: Duration = Duration::from_secs(10);

/// What went wrong with the cluster (not with the load).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A call failed.
    #[error("{what}: {source}")]
    Call {
        /// The call.
        what: String,
        /// The client's error.
        source: keel_client::Error,
    },
    /// Something did not happen in time.
    #[error("gave up after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        timeout: Duration,
    },
    /// Creating a group answered without a group id.
    #[error("creating a group did not create one")]
    NoGroupCreated,
    /// The move ended without the target owning the slot.
    #[error("the move of slot {slot} ended with group {owner:?} the owner, not {to} (aborted)")]
    Aborted {
        /// The slot.
        slot: Slot,
        /// The wanted owner.
        to: GroupId,
        /// The owner the map names.
        owner: Option<GroupId>,
    },
    /// Moved keys read back wrong.
    #[error("{bad} of {checked} moved keys read back wrong, e.g. {example}")]
    Verify {
        /// Keys checked.
        checked: u64,
        /// Keys missing or holding another value.
        bad: u64,
        /// One of them.
        example: String,
    },
}

fn call(what: impl Into<String>) -> impl FnOnce(keel_client::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Call { what, source }
}

/// An admin client of `endpoints`, without sessions.
pub fn admin(endpoints: &[String]) -> Result<Client, ClusterError> {
    Client::new(ClientConfig {
        sessions: false,
        deadline: CALL_DEADLINE,
        ..ClientConfig::with_endpoints(endpoints.iter().cloned())
    })
    .map_err(call("a client"))
}

/// Calls `f` every [`POLL`] until it returns something, for up to `timeout`.
async fn poll<T, F: Future<Output = Option<T>>>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> F,
) -> Result<T, ClusterError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(ClusterError::Timeout {
                what: what.to_owned(),
                timeout,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Creates a group on `members` and waits until it has a leader they all
/// agree on, in a term whose first entry committed; returns the group.
pub async fn create_group(
    client: &Client,
    endpoints: &[String],
    members: &[u64],
    timeout: Duration,
) -> Result<GroupId, ClusterError> {
    poll(timeout, "a cluster map", || async move {
        client.cluster_map().await.ok()
    })
    .await?;
    let command = MapCommand::CreateGroup {
        members: members.iter().copied().collect::<BTreeSet<_>>(),
        target_replicas: members.len() as _,
    };
    let outcome = client
        .change_map(&command)
        .await
        .map_err(call("create a group"))?;
    let group = outcome.created_group.ok_or(ClusterError::NoGroupCreated)?;
    poll(
        timeout,
        &format!("a leader of group {group}"),
        || async move {
            let mut seen = Vec::new();
            for ep in endpoints {
                let status = client.status(ep).await.ok()?;
                seen.push(status.groups.into_iter().find(|g| g.group == group)?);
            }
            let leader = seen.iter().find(|g| g.role == "leader")?;
            let agreed = seen
                .iter()
                .all(|g| g.leader_id == leader.leader_id && g.term == leader.term);
            (agreed && seen.iter().all(|g| g.commit_index >= 1)).then_some(())
        },
    )
    .await?;
    Ok(group)
}

/// A move begun: when the map change was accepted, and the map version that
/// holds it.
#[derive(Clone, Copy, Debug)]
pub struct Begun {
    /// When the begin was accepted.
    pub at: Instant,
    /// The map version with the move in flight.
    pub version: u64,
}

/// Begins moving `slot` to `to`.
pub async fn begin_move(client: &Client, slot: Slot, to: GroupId) -> Result<Begun, ClusterError> {
    let outcome = client
        .change_map(&MapCommand::BeginSlotMove { slot, to })
        .await
        .map_err(call(format!("begin moving slot {slot} to group {to}")))?;
    Ok(Begun {
        at: Instant::now(),
        version: outcome.map.version(),
    })
}

/// Waits until the map (as the node the client asks has it) names `to` the
/// owner of `slot` with no move of it in flight; returns when it first did.
/// Maps older than the begin are not looked at (a node's cached copy may lag
/// behind placement). A move that ends otherwise is an error.
pub async fn wait_moved(
    client: &Client,
    slot: Slot,
    to: GroupId,
    begun: Begun,
    timeout: Duration,
) -> Result<Instant, ClusterError> {
    let what = format!("slot {slot} to move to group {to}");
    let ended = poll(timeout, &what, || async move {
        let map = client.cluster_map().await.ok()?;
        let ended = map.version() >= begun.version && !map.moves().contains_key(&slot);
        ended.then(|| map.owner(slot))
    })
    .await?;
    match ended {
        Some(owner) if owner == to => Ok(Instant::now()),
        owner => Err(ClusterError::Aborted { slot, to, owner }),
    }
}

/// Waits until every node's cached map names `to` the owner of `slot`.
pub async fn every_map_agrees(
    client: &Client,
    endpoints: &[String],
    slot: Slot,
    to: GroupId,
    timeout: Duration,
) -> Result<(), ClusterError> {
    for ep in endpoints {
        poll(
            timeout,
            &format!("the map at {ep} to name group {to}"),
            || async move {
                let map = client.cluster_map_at(ep).await.ok()?;
                (map.owner(slot) == Some(to) && !map.moves().contains_key(&slot)).then_some(())
            },
        )
        .await?;
    }
    Ok(())
}

/// Reads `sample` evenly spaced moving-slot keys (linearizable) and checks
/// each holds its own value; returns how many were checked.
pub async fn verify(client: &Client, space: &KeySpace, sample: u64) -> Result<u64, ClusterError> {
    let sample = sample.clamp(1, space.slot_keys);
    let step = space.slot_keys / sample;
    let mut bad = 0;
    let mut example = String::new();
    for n in 0..sample {
        let key = space.slot_key(n * step);
        let got = client
            .get(key.clone(), ReadMode::Linearizable)
            .await
            .map_err(call(format!("read {}", String::from_utf8_lossy(&key))))?;
        let value = got.kv.map(|kv| kv.value);
        if value.as_deref() != Some(&space.value(&key)[..]) {
            bad += 1;
            if example.is_empty() {
                example = format!(
                    "{} = {:?}",
                    String::from_utf8_lossy(&key),
                    value.map(|v| String::from_utf8_lossy(&v).into_owned())
                );
            }
        }
    }
    if bad > 0 {
        return Err(ClusterError::Verify {
            checked: sample,
            bad,
            example,
        });
    }
    Ok(sample)
}
