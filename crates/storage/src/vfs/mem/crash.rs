//! The power-failure model of [`super::MemVfs::crash`].

use std::collections::BTreeMap;

use super::state::{MemState, Node, Pending, apply_write, is_root, resize, to_usize};
use keel_raft::SplitMix64;

/// Disk sector size: the unit a torn write loses or keeps.
const SECTOR: u64 = 512;

/// Reverts `st` to what a disk could hold after losing power, and reboots it.
pub(super) fn crash(st: &mut MemState, seed: u64) {
    let mut rng = SplitMix64::new(seed);

    // Contents: the durable image plus a random selection of the pending writes, in
    // order (a later write may survive while an earlier one is lost: the disk and the
    // page cache reorder freely between syncs).
    for inode in st.inodes.values_mut() {
        let mut image = std::mem::take(&mut inode.durable);
        for op in inode.pending.drain(..) {
            apply_some(&mut image, op, &mut rng);
        }
        inode.data.clone_from(&image);
        inode.durable = image;
        inode.links = 0;
        inode.handles = 0;
        inode.lock_holder = None;
        inode.fail_next_sync = false;
    }

    // Names: exactly the durable namespace, minus entries whose directory did not
    // survive (a name cannot outlive its directory).
    let durable = std::mem::take(&mut st.durable);
    let mut survivors: BTreeMap<_, _> = BTreeMap::new();
    for (path, node) in durable {
        // BTreeMap order visits a directory before anything inside it.
        let parent_ok = path
            .parent()
            .is_none_or(|dir| is_root(dir) || survivors.get(dir) == Some(&Node::Dir));
        if parent_ok {
            survivors.insert(path, node);
        }
    }
    for node in survivors.values() {
        if let Node::File(id) = node
            && let Some(inode) = st.inodes.get_mut(id)
        {
            inode.links += 1;
        }
    }
    st.inodes.retain(|_, inode| inode.links > 0);
    st.visible = survivors.clone();
    st.durable = survivors;

    st.generation += 1;
    st.halt_after = None;
    st.halted = false;
}

/// Applies one pending operation to `image` fully, not at all, or torn.
fn apply_some(image: &mut Vec<u8>, op: Pending, rng: &mut SplitMix64) {
    match op {
        // A length change is metadata: it lands or it does not.
        Pending::SetLen(len) => {
            if rng.below(2) == 0 {
                resize(image, len);
            }
        }
        Pending::Write { offset, data } => match rng.below(4) {
            0 => apply_write(image, offset, &data),
            1 => {}
            2 => {
                let keep = to_usize(rng.below(data.len() as u64 + 1));
                apply_write(image, offset, &data[..keep]);
            }
            _ => apply_sectors(image, offset, &data, rng),
        },
    }
}

/// Applies a random subset of the 512-byte sectors `data` covers (sector boundaries
/// are absolute file offsets, as on a real disk).
fn apply_sectors(image: &mut Vec<u8>, offset: u64, data: &[u8], rng: &mut SplitMix64) {
    let end = offset + data.len() as u64;
    let mut start = offset;
    while start < end {
        let sector_end = ((start / SECTOR) + 1) * SECTOR;
        let stop = sector_end.min(end);
        if rng.below(2) == 0 {
            let from = to_usize(start - offset);
            let to = to_usize(stop - offset);
            apply_write(image, start, &data[from..to]);
        }
        start = stop;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sector_tearing_keeps_whole_sectors_only() {
        let data = vec![0xAA; 2000];
        for seed in 0..50 {
            let mut image = vec![0u8; 3000];
            apply_sectors(&mut image, 100, &data, &mut SplitMix64::new(seed));
            // Each sector of the written range is either all new or all old.
            for s in 0..5u64 {
                let lo = (s * SECTOR).max(100) as usize;
                let hi = ((s + 1) * SECTOR).min(2100) as usize;
                let slice = &image[lo..hi];
                assert!(
                    slice.iter().all(|&b| b == 0xAA) || slice.iter().all(|&b| b == 0),
                    "seed {seed}: sector {s} is mixed"
                );
            }
        }
    }
}
