//! The node's identity, recorded in its data directory on first start.
//!
//! On restart the flags are checked against it: a node must not come back as a
//! different member, or in a different cluster, because its log and votes belong to
//! the identity they were written under. The identity also carries an
//! *incarnation*, a random number chosen when the data directory is created: peers
//! remember it, so a node whose data was wiped cannot rejoin as if it still
//! remembered its votes (see `peers.rs`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use keel_raft::NodeId;
use serde::{Deserialize, Serialize};

use crate::error::ServerError;

const IDENTITY_FILE: &str = "identity.json";
const LOCK_FILE: &str = "LOCK";
const FORMAT: u32 = 1;

/// What the data directory says this node is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Format of this file.
    pub format: u32,
    /// This node's id.
    pub node_id: NodeId,
    /// Cluster id: a hash of the cluster token and the initial membership.
    pub cluster_id: u64,
    /// Random id of this data directory's lifetime.
    pub incarnation: u64,
    /// Membership the cluster was bootstrapped with: id → gRPC address.
    pub members: BTreeMap<NodeId, String>,
    /// The placement group's bootstrap members (`keel_placement::placement_members`
    /// of `members`), recorded when the data directory is created so that a
    /// restart hosts exactly what the first start did. `None` in files written
    /// before the placement group existed: such a node hosts only group 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Vec<NodeId>>,
    /// The node joined through placement (`--join-as placed` or `spare`), not
    /// as a member of group 1: its group 1 replica is not one to serve from
    /// until group 1's configuration lists the node. Absent (false) in files
    /// written before such joins existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outside_group_1: bool,
}

impl Identity {
    /// Whether this node is one of the placement group's members.
    pub fn hosts_placement(&self) -> bool {
        self.placement
            .as_ref()
            .is_some_and(|p| p.contains(&self.node_id))
    }
}

/// The placement group's members for a cluster bootstrapped with `members`.
fn placement_of(members: &BTreeMap<NodeId, String>) -> Vec<NodeId> {
    let ids: Vec<NodeId> = members.keys().copied().collect();
    keel_placement::placement_members(&ids)
}

/// Derives the cluster id from the token and the bootstrap membership.
pub fn cluster_id(token: &str, members: &BTreeMap<NodeId, String>) -> u64 {
    let mut text = format!("{token}|");
    for (id, addr) in members {
        text.push_str(&format!("{id}={addr},"));
    }
    // FNV-1a: stable across builds and platforms, which a std hasher is not.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}

/// A random u64 from the operating system.
pub fn os_random_u64() -> u64 {
    let mut buf = [0u8; 8];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok()
    {
        return u64::from_le_bytes(buf);
    }
    // Fallback: std's per-process random hasher keys.
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// Holds the data directory's lock for the life of the process.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Creates the data directory if needed and locks it against other processes.
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock, ServerError> {
    std::fs::create_dir_all(dir).map_err(|source| ServerError::Io {
        what: "cannot create data directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| ServerError::Io {
            what: "cannot open",
            path: path.clone(),
            source,
        })?;
    file.try_lock()
        .map_err(|_| ServerError::DataDirLocked(dir.to_path_buf()))?;
    Ok(DataDirLock { _file: file })
}

/// Loads the identity, creating it on first start. `members` and `cluster_token`
/// come from the flags; on restart `members` may be empty (use what is stored) but
/// must otherwise match.
pub fn load_or_create(
    dir: &Path,
    node_id: NodeId,
    members: &BTreeMap<NodeId, String>,
    cluster_token: &str,
) -> Result<(Identity, bool), ServerError> {
    let path = dir.join(IDENTITY_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|source| ServerError::Io {
            what: "cannot read",
            path: path.clone(),
            source,
        })?;
        let id: Identity = serde_json::from_str(&text).map_err(|e| {
            ServerError::Recovery(format!(
                "{} is not a valid identity file: {e}",
                path.display()
            ))
        })?;
        if id.format != FORMAT {
            return Err(ServerError::Recovery(format!(
                "{} has format {}, this keel understands {FORMAT}",
                path.display(),
                id.format
            )));
        }
        if id.node_id != node_id {
            return Err(ServerError::IdentityMismatch(format!(
                "data directory {} belongs to node {}, but --id is {node_id}",
                dir.display(),
                id.node_id
            )));
        }
        if !members.is_empty() && *members != id.members {
            return Err(ServerError::IdentityMismatch(format!(
                "--initial-cluster {} contradicts the membership recorded in {}: {}",
                fmt_members(members),
                dir.display(),
                fmt_members(&id.members)
            )));
        }
        if !members.is_empty() && cluster_id(cluster_token, members) != id.cluster_id {
            return Err(ServerError::IdentityMismatch(format!(
                "--cluster-token does not match the cluster recorded in {}",
                dir.display()
            )));
        }
        return Ok((id, false));
    }
    if members.is_empty() {
        return Err(ServerError::Config(format!(
            "data directory {} is empty: pass --initial-cluster to bootstrap a new cluster, \
             or --join to join a running one",
            dir.display()
        )));
    }
    let id = Identity {
        format: FORMAT,
        node_id,
        cluster_id: cluster_id(cluster_token, members),
        incarnation: os_random_u64().max(1),
        members: members.clone(),
        placement: Some(placement_of(members)),
        outside_group_1: false,
    };
    let text = serde_json::to_string_pretty(&id).expect("identity serializes");
    write_atomically(&path, text.as_bytes())?;
    Ok((id, true))
}

/// Whether the data directory holds an identity (the node was initialised).
pub fn is_initialised(dir: &Path) -> bool {
    dir.join(IDENTITY_FILE).exists()
}

/// Records the identity of a node that joined a running cluster: its cluster id
/// and the cluster's bootstrap membership, which its log starts from like every
/// member's.
pub fn create_joined(
    dir: &Path,
    node_id: NodeId,
    cluster_id: u64,
    bootstrap: &BTreeMap<NodeId, String>,
    outside_group_1: bool,
) -> Result<Identity, ServerError> {
    let path = dir.join(IDENTITY_FILE);
    let id = Identity {
        format: FORMAT,
        node_id,
        cluster_id,
        incarnation: os_random_u64().max(1),
        members: bootstrap.clone(),
        // A joining node is never a bootstrap placement member (it is not in
        // the bootstrap membership), but it follows the map from them.
        placement: Some(placement_of(bootstrap)),
        outside_group_1,
    };
    let text = serde_json::to_string_pretty(&id).expect("identity serializes");
    write_atomically(&path, text.as_bytes())?;
    Ok(id)
}

fn fmt_members(m: &BTreeMap<NodeId, String>) -> String {
    m.iter()
        .map(|(id, a)| format!("{id}={a}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Writes `path` so that a crash leaves either the old or the new content: write a
/// temporary file, fsync it, rename over, fsync the directory.
pub(crate) fn write_atomically(path: &Path, data: &[u8]) -> Result<(), ServerError> {
    let io = |what: &'static str, p: &Path| {
        let p: PathBuf = p.to_path_buf();
        move |source| ServerError::Io {
            what,
            path: p,
            source,
        }
    };
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io("cannot create", &tmp))?;
    f.write_all(data).map_err(io("cannot write", &tmp))?;
    f.sync_all().map_err(io("cannot fsync", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("cannot rename into", path))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot fsync directory", dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> BTreeMap<NodeId, String> {
        [(1, "a:1".to_string()), (2, "b:2".to_string())].into()
    }

    #[test]
    fn created_once_then_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, created) = load_or_create(dir.path(), 1, &members(), "t").expect("create");
        assert!(created);
        let (b, created) = load_or_create(dir.path(), 1, &BTreeMap::new(), "t").expect("reload");
        assert!(!created);
        assert_eq!(a, b);
        let err = load_or_create(dir.path(), 2, &members(), "t").expect_err("must be refused");
        assert!(err.to_string().contains("belongs to node 1"), "{err}");
        let mut other = members();
        other.insert(3, "c:3".into());
        let err = load_or_create(dir.path(), 1, &other, "t").expect_err("must be refused");
        assert!(err.to_string().contains("contradicts"), "{err}");
        let err =
            load_or_create(dir.path(), 1, &members(), "other-token").expect_err("must be refused");
        assert!(err.to_string().contains("cluster-token"), "{err}");
    }

    #[test]
    fn joined_identity_reloads_without_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!is_initialised(dir.path()));
        let made = create_joined(dir.path(), 4, 99, &members(), false).expect("create");
        assert!(is_initialised(dir.path()));
        let (back, created) = load_or_create(dir.path(), 4, &BTreeMap::new(), "t").expect("reload");
        assert!(!created);
        assert_eq!(made, back);
        assert_eq!(back.cluster_id, 99);
    }

    #[test]
    fn new_identities_record_the_placement_members() {
        let dir = tempfile::tempdir().expect("tempdir");
        let four: BTreeMap<NodeId, String> = (1..=4).map(|i| (i, format!("h{i}:1"))).collect();
        let (a, _) = load_or_create(dir.path(), 4, &four, "t").expect("create");
        assert_eq!(a.placement, Some(vec![1, 2, 3]));
        assert!(!a.hosts_placement());
        let (back, _) = load_or_create(dir.path(), 4, &BTreeMap::new(), "t").expect("reload");
        assert_eq!(back.placement, Some(vec![1, 2, 3]));
        let joined = tempfile::tempdir().expect("tempdir");
        let j = create_joined(joined.path(), 9, 99, &four, true).expect("join");
        assert_eq!(j.placement, Some(vec![1, 2, 3]));
        assert!(!j.hosts_placement());
        // A node placed outside group 1 keeps saying so across restarts.
        assert!(j.outside_group_1);
        let (back, _) = load_or_create(joined.path(), 9, &BTreeMap::new(), "t").expect("reload");
        assert!(back.outside_group_1);
        assert!(!a.outside_group_1);
    }

    #[test]
    fn an_identity_written_before_placement_still_loads_without_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = r#"{"format":1,"node_id":1,"cluster_id":7,"incarnation":9,
                      "members":{"1":"a:1","2":"b:2","3":"c:3"}}"#;
        std::fs::write(dir.path().join(IDENTITY_FILE), old).expect("write");
        let (id, created) = load_or_create(dir.path(), 1, &BTreeMap::new(), "t").expect("load");
        assert!(!created);
        assert_eq!(id.placement, None);
        assert!(!id.hosts_placement());
        // Rewritten by this build, it stays without the field.
        let text = serde_json::to_string(&id).expect("encode");
        assert!(!text.contains("placement"), "{text}");
    }

    #[test]
    fn empty_dir_needs_initial_cluster() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err =
            load_or_create(dir.path(), 1, &BTreeMap::new(), "t").expect_err("must be refused");
        assert!(err.to_string().contains("--initial-cluster"), "{err}");
    }

    #[test]
    fn cluster_id_depends_on_token_and_members() {
        let a = cluster_id("t", &members());
        assert_eq!(a, cluster_id("t", &members()));
        assert_ne!(a, cluster_id("u", &members()));
        assert_ne!(a, cluster_id("t", &BTreeMap::new()));
    }

    #[test]
    fn second_lock_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _held = lock_data_dir(dir.path()).expect("first lock");
        assert!(matches!(
            lock_data_dir(dir.path()),
            Err(ServerError::DataDirLocked(_))
        ));
    }
}
