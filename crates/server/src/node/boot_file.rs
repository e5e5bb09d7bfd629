//! A group's boot file, `groups/<group>.json`: the Raft configuration a
//! replica created at run time starts from (the group's initial members in the
//! cluster map, with their addresses), kept beside the WAL so that a restart
//! rebuilds the replica from the same configuration.
//!
//! Group 1 and the placement group do not have one: theirs come from
//! `identity.json`. A boot file is written (and made durable) before the first
//! WAL record of its group, so a group with records in the WAL always has one;
//! a boot file without records is a replica created just before a crash, which
//! recovery hosts again from the file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use keel_raft::{GroupId, NodeId};
use serde::{Deserialize, Serialize};

use crate::error::ServerError;

/// The format this build writes and reads.
const FORMAT: u32 = 1;
/// A boot file names at most seven voters: far below this.
const MAX_BOOT_FILE_BYTES: u64 = 64 << 10;

/// What a boot file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BootRecord {
    format: u32,
    group: GroupId,
    /// Voter id → address (gRPC `host:port`; empty when the map no longer
    /// knew the node).
    voters: BTreeMap<NodeId, String>,
}

/// The directory of boot files in a data directory.
pub(crate) fn boot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("groups")
}

fn boot_path(data_dir: &Path, group: GroupId) -> PathBuf {
    boot_dir(data_dir).join(format!("{group}.json"))
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ServerError {
    let path = path.to_path_buf();
    move |source| ServerError::Io { what, path, source }
}

/// Writes `group`'s boot file durably (a temporary file, synced, renamed over
/// the name, and the directory synced), replacing any earlier one.
pub(crate) fn write(
    data_dir: &Path,
    group: GroupId,
    voters: &BTreeMap<NodeId, String>,
) -> Result<(), ServerError> {
    let dir = boot_dir(data_dir);
    std::fs::create_dir_all(&dir).map_err(io("cannot create the groups directory", &dir))?;
    let record = BootRecord {
        format: FORMAT,
        group,
        voters: voters.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&record).expect("a boot record serializes");
    let path = boot_path(data_dir, group);
    let tmp = path.with_extension("json.tmp");
    let mut file =
        std::fs::File::create(&tmp).map_err(io("cannot create a group's boot file", &tmp))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(io("cannot write a group's boot file", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("cannot rename a group's boot file", &path))?;
    sync_dir(&dir)
}

/// Deletes `group`'s boot file (none is fine), durably.
pub(crate) fn remove(data_dir: &Path, group: GroupId) -> Result<(), ServerError> {
    let path = boot_path(data_dir, group);
    match std::fs::remove_file(&path) {
        Ok(()) => sync_dir(&boot_dir(data_dir)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("cannot delete a group's boot file", &path)(e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), ServerError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot sync the groups directory", dir))
}

/// Every boot file in `data_dir`, by group. Leftover temporary files (a crash
/// while writing one) are deleted: the write they belonged to never finished,
/// so no WAL record of their group was written after them. A damaged or
/// foreign file refuses start-up with a message naming it.
pub(crate) fn read_all(
    data_dir: &Path,
) -> Result<BTreeMap<GroupId, BTreeMap<NodeId, String>>, ServerError> {
    let dir = boot_dir(data_dir);
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io("cannot list the groups directory", &dir)(e)),
    };
    for entry in entries {
        let path = entry
            .map_err(io("cannot list the groups directory", &dir))?
            .path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".json.tmp") {
            std::fs::remove_file(&path).map_err(io("cannot delete a torn boot file", &path))?;
            continue;
        }
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        let bad = |why: String| {
            ServerError::Recovery(format!(
                "the group boot file {} is unusable: {why}; move it away only if the \
                 node should forget that group's replica",
                path.display()
            ))
        };
        let named: GroupId = stem
            .parse()
            .map_err(|_| bad("its name is not a group id".into()))?;
        let record = read_one(&path).map_err(bad)?;
        if record.group != named {
            return Err(bad(format!("it names group {}", record.group)));
        }
        out.insert(named, record.voters);
    }
    Ok(out)
}

fn read_one(path: &Path) -> Result<BootRecord, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_BOOT_FILE_BYTES {
        return Err(format!(
            "it is {len} bytes, over the limit of {MAX_BOOT_FILE_BYTES}"
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let record: BootRecord = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if record.format != FORMAT {
        return Err(format!(
            "format {} (this build reads {FORMAT})",
            record.format
        ));
    }
    if record.voters.is_empty() || record.voters.contains_key(&0) {
        return Err("its voters are empty or name node 0".into());
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voters() -> BTreeMap<NodeId, String> {
        BTreeMap::from([(2, "127.0.0.1:7002".into()), (3, "127.0.0.1:7003".into())])
    }

    #[test]
    fn written_files_read_back_and_removal_forgets_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(read_all(dir.path()).expect("no directory yet").is_empty());
        write(dir.path(), 2, &voters()).expect("write");
        write(dir.path(), 5, &voters()).expect("write");
        let all = read_all(dir.path()).expect("read");
        assert_eq!(all.keys().copied().collect::<Vec<_>>(), [2, 5]);
        assert_eq!(all[&2], voters());
        remove(dir.path(), 2).expect("remove");
        remove(dir.path(), 2).expect("removing twice is fine");
        assert_eq!(
            read_all(dir.path())
                .expect("read")
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            [5]
        );
    }

    #[test]
    fn a_torn_write_is_cleaned_up_and_damage_refuses_with_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), 2, &voters()).expect("write");
        let groups = boot_dir(dir.path());
        std::fs::write(groups.join("3.json.tmp"), b"{\"form").expect("torn");
        assert_eq!(read_all(dir.path()).expect("read").len(), 1);
        assert!(!groups.join("3.json.tmp").exists());

        std::fs::write(groups.join("4.json"), b"{\"format\":1,").expect("damaged");
        let err = read_all(dir.path()).expect_err("damaged").to_string();
        assert!(err.contains("4.json"), "{err}");

        let other = serde_json::json!({"format": 1, "group": 9, "voters": {"1": "a:1"}});
        std::fs::write(groups.join("4.json"), other.to_string()).expect("misnamed");
        let err = read_all(dir.path()).expect_err("misnamed").to_string();
        assert!(err.contains("names group 9"), "{err}");

        let future = serde_json::json!({"format": 2, "group": 4, "voters": {"1": "a:1"}});
        std::fs::write(groups.join("4.json"), future.to_string()).expect("future");
        let err = read_all(dir.path()).expect_err("future format").to_string();
        assert!(err.contains("format 2"), "{err}");
    }
}
