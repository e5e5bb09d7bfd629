//! The map's stored form (Raft snapshots of the placement group, and what
//! nodes hand clients): JSON with a format number.
//!
//! JSON because the map is small (at most a few hundred KiB, usually a few
//! KiB), changes rarely, and is worth reading with `keel wal dump` and `jq`.
//! The format number lets a later build change the shape: an older build
//! refuses a newer format instead of misreading it. The slot table is stored as
//! runs of consecutive slots with one owner, which is a handful of lines for a
//! balanced map. Decoding checks every rule of [`ClusterMap`], so a damaged or
//! forged map is refused, never half-used.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{ClusterMap, Group, Node, NodeState, SlotMove};
use crate::error::{DecodeError, InvariantError};
use crate::ids::{GroupId, MAX_ENCODED_MAP_BYTES, NodeId};
use crate::slot::{SLOT_COUNT, Slot};

/// The format this build writes and reads.
const MAP_FORMAT: u32 = 1;

/// A map as stored. Built from a [`ClusterMap`]; turned back into one only
/// through [`ClusterMap::try_from`], which checks it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MapRecord {
    format: u32,
    version: u64,
    next_group: GroupId,
    nodes: Vec<NodeRecord>,
    groups: Vec<GroupRecord>,
    slots: Vec<SlotRun>,
    moves: Vec<MoveRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeRecord {
    id: NodeId,
    address: String,
    state: NodeState,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupRecord {
    id: GroupId,
    members: BTreeSet<NodeId>,
    target_replicas: u8,
    /// Absent in maps written before groups recorded how they were created.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    initial: BTreeSet<NodeId>,
}

/// Slots `first..=last` are owned by `group`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotRun {
    first: u16,
    last: u16,
    group: GroupId,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveRecord {
    slot: Slot,
    from: GroupId,
    to: GroupId,
    epoch: u64,
}

/// Just enough of any format to tell which one it is.
#[derive(Deserialize)]
struct FormatProbe {
    format: u32,
}

impl ClusterMap {
    /// The stored form of the map.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&MapRecord::from(self.clone()))
            .expect("a map record holds only strings, numbers and lists")
    }

    /// Reads a map written by [`ClusterMap::encode`], refusing anything too
    /// large, malformed, of an unknown format, or breaking a rule of the map.
    pub fn decode(bytes: &[u8]) -> Result<ClusterMap, DecodeError> {
        check_format(bytes, MAX_ENCODED_MAP_BYTES, MAP_FORMAT)?;
        let record: MapRecord =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        ClusterMap::try_from(record)
    }
}

/// Refuses `bytes` over `limit` or written in a format other than `format`,
/// before the whole of it is parsed.
pub(crate) fn check_format(bytes: &[u8], limit: usize, format: u32) -> Result<(), DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            bytes: bytes.len(),
            limit,
        });
    }
    let probe: FormatProbe =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if probe.format != format {
        return Err(DecodeError::UnsupportedFormat {
            format: probe.format,
            supported: format,
        });
    }
    Ok(())
}

impl From<ClusterMap> for MapRecord {
    fn from(map: ClusterMap) -> MapRecord {
        MapRecord {
            format: MAP_FORMAT,
            version: map.version,
            next_group: map.next_group,
            nodes: map
                .nodes
                .into_iter()
                .map(|(id, n)| NodeRecord {
                    id,
                    address: n.address,
                    state: n.state,
                })
                .collect(),
            groups: map
                .groups
                .into_iter()
                .map(|(id, g)| GroupRecord {
                    id,
                    members: g.members,
                    target_replicas: g.target_replicas,
                    initial: g.initial,
                })
                .collect(),
            slots: runs(&map.owners),
            moves: map
                .moves
                .into_iter()
                .map(|(slot, m)| MoveRecord {
                    slot,
                    from: m.from,
                    to: m.to,
                    epoch: m.epoch,
                })
                .collect(),
        }
    }
}

impl TryFrom<MapRecord> for ClusterMap {
    type Error = DecodeError;

    fn try_from(r: MapRecord) -> Result<ClusterMap, DecodeError> {
        if r.format != MAP_FORMAT {
            return Err(DecodeError::UnsupportedFormat {
                format: r.format,
                supported: MAP_FORMAT,
            });
        }
        const TWICE: &str = "it is listed twice";
        let nodes = unique(
            r.nodes.into_iter().map(|n| {
                let node = Node {
                    address: n.address,
                    state: n.state,
                };
                (n.id, node)
            }),
            |node| InvariantError::BadNode {
                node,
                reason: TWICE,
            },
        )?;
        let groups = unique(
            r.groups.into_iter().map(|g| {
                let group = Group {
                    members: g.members,
                    target_replicas: g.target_replicas,
                    initial: g.initial,
                };
                (g.id, group)
            }),
            |group| InvariantError::BadGroup {
                group,
                reason: TWICE,
            },
        )?;
        let moves = unique(
            r.moves.into_iter().map(|m| {
                let entry = SlotMove {
                    from: m.from,
                    to: m.to,
                    epoch: m.epoch,
                };
                (m.slot, entry)
            }),
            |slot| InvariantError::BadMove {
                slot,
                reason: TWICE,
            },
        )?;
        let map = ClusterMap {
            version: r.version,
            next_group: r.next_group,
            nodes,
            groups,
            owners: owners(&r.slots)?,
            moves,
        };
        map.validate()?;
        Ok(map)
    }
}

/// The records as a map by id, refusing an id listed twice (a stored map has
/// one record per id; which of two would win is a guess).
fn unique<K: Ord + Copy, V>(
    records: impl Iterator<Item = (K, V)>,
    twice: impl Fn(K) -> InvariantError,
) -> Result<BTreeMap<K, V>, InvariantError> {
    let mut out = BTreeMap::new();
    for (id, value) in records {
        if out.insert(id, value).is_some() {
            return Err(twice(id));
        }
    }
    Ok(out)
}

/// The slot table as runs of one owner.
fn runs(owners: &[GroupId]) -> Vec<SlotRun> {
    let mut runs: Vec<SlotRun> = Vec::new();
    for (slot, &group) in (0..SLOT_COUNT).zip(owners) {
        match runs.last_mut() {
            Some(run) if run.group == group => run.last = slot,
            _ => runs.push(SlotRun {
                first: slot,
                last: slot,
                group,
            }),
        }
    }
    runs
}

/// The slot table from runs, which must cover every slot once, in order (or be
/// empty: no group yet).
fn owners(runs: &[SlotRun]) -> Result<Vec<GroupId>, InvariantError> {
    let bad = |what: String| Err(InvariantError::SlotRuns(what));
    let mut owners = Vec::new();
    for run in runs {
        let next = owners.len();
        if usize::from(run.first) != next {
            return bad(format!("a run starts at {}, expected {next}", run.first));
        }
        if run.last < run.first || run.last >= SLOT_COUNT {
            return bad(format!("run {}..={} is out of order", run.first, run.last));
        }
        owners.extend(std::iter::repeat_n(
            run.group,
            usize::from(run.last - run.first) + 1,
        ));
    }
    if !owners.is_empty() && owners.len() != usize::from(SLOT_COUNT) {
        return bad(format!("the runs end at slot {}", owners.len()));
    }
    Ok(owners)
}
