//! Joining a running cluster from an empty data directory (`keel serve --join`),
//! and leaving it on a graceful stop (`--leave-on-shutdown`).
//!
//! Joining asks the cluster (any member; the client follows the leader) for its
//! id and bootstrap membership, checks that the cluster token names that cluster,
//! then asks the leader to add this node as a learner. Only once the change is
//! committed is the identity written: a node that crashes in between simply asks
//! again, which the leader answers as done (adding a member that is already there
//! at the same address changes nothing).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keel_client::{BearerToken, Client, ClientConfig, Error as ClientError, MapCommand, Member};
use keel_raft::NodeId;

use crate::config::{JoinAs, ServerConfig};
use crate::error::ServerError;
use crate::identity;
use crate::transport::PeerConnector;

/// How this node talks to other members as a client: the peers' TLS (mutual,
/// under the cluster CA) and the cluster's bearer token, if any.
#[derive(Clone, Debug, Default)]
pub(crate) struct Credentials {
    pub(crate) peers: PeerConnector,
    pub(crate) token: Option<BearerToken>,
}

/// How long a node keeps asking to be added before it gives up.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between refused attempts (e.g. while another change commits).
const JOIN_RETRY: Duration = Duration::from_millis(500);

/// What a node learns by joining.
#[derive(Debug)]
pub(crate) struct Joined {
    /// The cluster's id.
    pub(crate) cluster_id: u64,
    /// Its bootstrap membership.
    pub(crate) bootstrap: BTreeMap<NodeId, String>,
    /// The membership after this node was added: group 1's, or for a node
    /// placed by the placement service the members of its groups.
    pub(crate) members: BTreeMap<NodeId, String>,
    /// The data groups placement put the node in (empty for a member of
    /// group 1 and for a spare).
    pub(crate) groups: Vec<keel_client::GroupId>,
}

pub(crate) fn client(
    endpoints: Vec<String>,
    deadline: Duration,
    creds: &Credentials,
) -> Result<Client, ServerError> {
    let mut cfg = ClientConfig::with_endpoints(endpoints);
    cfg.deadline = deadline;
    cfg.tls = creds.peers.tls().cloned();
    cfg.token = creds.token.clone();
    Client::new(cfg).map_err(|e| ServerError::Config(format!("cannot build a client: {e}")))
}

fn by_id(members: &[Member]) -> BTreeMap<NodeId, String> {
    members.iter().map(|m| (m.id, m.address.clone())).collect()
}

/// Asks the cluster at `cfg.join` to add this node; returns what the node needs
/// to create its identity.
pub(crate) async fn join(cfg: &ServerConfig, creds: &Credentials) -> Result<Joined, ServerError> {
    let seed = cfg.join.clone().unwrap_or_default();
    let fail =
        |what: String| ServerError::Config(format!("cannot join the cluster at {seed}: {what}"));
    let client = client(vec![seed.clone()], Duration::from_secs(10), creds)?;
    let give_up = Instant::now() + JOIN_TIMEOUT;
    let info = loop {
        match client.members().await {
            Ok(info) => break info,
            Err(e) if Instant::now() < give_up && e.is_definite_failure() => {
                tracing::warn!("cannot reach the cluster at {seed} yet: {e}; retrying");
            }
            Err(e) => return Err(fail(e.to_string())),
        }
    };
    let bootstrap = by_id(&info.bootstrap_members);
    if bootstrap.is_empty() {
        return Err(fail("it did not say how it was bootstrapped".into()));
    }
    if identity::cluster_id(&cfg.cluster_token, &bootstrap) != info.cluster_id {
        return Err(fail(format!(
            "its cluster id is {:016x}, which --cluster-token does not produce; \
             pass the token the cluster was started with",
            info.cluster_id
        )));
    }
    if bootstrap.contains_key(&cfg.id) && !info.members.iter().any(|m| m.id == cfg.id) {
        tracing::info!(
            "node {} was a bootstrap member and was removed; it joins again as a new member",
            cfg.id
        );
    }
    if cfg.join_as != JoinAs::Member {
        return join_placed(cfg, &client, info.cluster_id, bootstrap, give_up)
            .await
            .map_err(fail);
    }
    let mut last = String::new();
    loop {
        if Instant::now() >= give_up {
            return Err(fail(format!("no success within {JOIN_TIMEOUT:?}: {last}")));
        }
        match client.add_member(cfg.id, &cfg.advertise, cfg.learner).await {
            Ok(resp) => {
                return Ok(Joined {
                    cluster_id: resp.cluster_id,
                    bootstrap,
                    members: by_id(&resp.members),
                    groups: Vec::new(),
                });
            }
            // Refusals may pass (a change in flight commits, a voter comes back, the
            // leader's disk gets space), and an unknown outcome is settled by asking
            // again.
            Err(
                e @ (ClientError::Refused(_)
                | ClientError::OutcomeUnknown { .. }
                | ClientError::Unavailable { .. }
                | ClientError::Overloaded { .. }
                | ClientError::DiskFull { .. }),
            ) => {
                tracing::warn!("joining the cluster at {seed}: {e}; retrying");
                last = e.to_string();
                tokio::time::sleep(JOIN_RETRY).await;
            }
            Err(e) => return Err(fail(e.to_string())),
        }
    }
}

/// Joins through the placement service: one `JoinNode` command registers the
/// node and gives it its first replica, decided on the map as the command
/// applies (docs/sharding.md, *Joining through placement*); a spare is only
/// registered (`RegisterNode`). The node is in
/// no group 1 configuration; its replicas are hosted once its map says so.
/// Retried like a group 1 join: the command is harmless to repeat.
async fn join_placed(
    cfg: &ServerConfig,
    client: &Client,
    cluster_id: u64,
    bootstrap: BTreeMap<NodeId, String>,
    give_up: Instant,
) -> Result<Joined, String> {
    let command = match cfg.join_as {
        JoinAs::Spare => MapCommand::RegisterNode {
            node: cfg.id,
            address: cfg.advertise.clone(),
        },
        JoinAs::Member | JoinAs::Placed => MapCommand::JoinNode {
            node: cfg.id,
            address: cfg.advertise.clone(),
            new_group_replicas: cfg.new_group_replicas,
        },
    };
    let mut last = String::new();
    loop {
        if Instant::now() >= give_up {
            return Err(format!("no success within {JOIN_TIMEOUT:?}: {last}"));
        }
        match client.change_map(&command).await {
            Ok(outcome) => {
                let groups = outcome.map.groups_of(cfg.id);
                // The members of this node's groups, to reach at once (the
                // map, once this node has one, names them all anyway).
                let members = groups
                    .iter()
                    .filter_map(|g| outcome.map.groups().get(g))
                    .flat_map(|g| g.members.iter())
                    .filter_map(|n| {
                        let node = outcome.map.nodes().get(n)?;
                        Some((*n, node.address.clone()))
                    })
                    .collect();
                return Ok(Joined {
                    cluster_id,
                    bootstrap,
                    members,
                    groups: groups.into_iter().collect(),
                });
            }
            // No placement leader yet, or one that just changed: ask again. A
            // refusal (an address in use, a draining node) is final.
            Err(
                e @ (ClientError::OutcomeUnknown { .. }
                | ClientError::Unavailable { .. }
                | ClientError::Overloaded { .. }
                | ClientError::DiskFull { .. }),
            ) => {
                tracing::warn!("joining through placement: {e}; retrying");
                last = e.to_string();
                tokio::time::sleep(JOIN_RETRY).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Removes node `id` from the cluster through the members at `endpoints`, for a
/// graceful leave. Returns a line for the log either way.
pub(crate) async fn leave(
    id: NodeId,
    endpoints: Vec<String>,
    timeout: Duration,
    creds: &Credentials,
) -> String {
    if endpoints.is_empty() {
        return format!("node {id} is the only member; it stays in the configuration");
    }
    let client = match client(endpoints, timeout, creds) {
        Ok(c) => c,
        Err(e) => return format!("node {id} could not leave the cluster: {e}"),
    };
    match client.remove_member(id).await {
        Ok(resp) => format!(
            "node {id} left the cluster (log index {}); members now: {:?}",
            resp.index,
            resp.members.iter().map(|m| m.id).collect::<Vec<_>>()
        ),
        Err(e) => format!("node {id} could not leave the cluster: {e}"),
    }
}
