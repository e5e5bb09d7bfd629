//! Compaction pressure: which group keeps the oldest segment, and how much the WAL
//! holds.

use std::sync::Arc;

use super::*;
use crate::wal::Pin;

const SEG: u64 = 1024;

/// Group 1 is busy (an entry per batch); group 2 wrote a few entries early on and
/// then went quiet.
fn build(vfs: &MemVfs, n: u64) -> Wal {
    let (mut wal, _) = open(vfs, SEG);
    for i in 1..=n {
        wal.append_entries(1, &[entry(1, i, &[1; 60])])
            .expect("append");
        if i <= 3 {
            wal.append_entries(2, &[entry(1, i, b"quiet")])
                .expect("append");
        }
        wal.sync().expect("sync");
    }
    wal
}

#[test]
fn the_quiet_group_pinning_the_oldest_segment_is_named_until_it_snapshots() {
    let vfs = MemVfs::new();
    let mut wal = build(&vfs, 100);
    wal.set_log_start(1, compacted(100, 1)).expect("start");
    wal.sync().expect("sync");
    assert!(compact_all(&mut wal).is_empty());
    let p = wal.pressure(|_| u64::MAX);
    let names = segment_names(&vfs);
    assert_eq!(p.segments, names.len() as u64);
    assert_eq!(p.bytes, SEG * names.len() as u64);
    assert_eq!(p.entries, 103);
    assert!(p.over(102, u64::MAX) && !p.over(103, u64::MAX));
    assert!(p.over(u64::MAX, p.bytes - 1) && !p.over(u64::MAX, p.bytes));
    assert_eq!(p.oldest, Some(1));
    assert_eq!(
        p.pinned_by,
        vec![Pin {
            group: 2,
            index: 3,
            log_start: 0
        }]
    );
    assert_eq!(p.pinning_group(), Some(2));

    // The runtime snapshots group 2; the next compaction frees the old segments.
    wal.set_log_start(2, compacted(3, 1)).expect("start");
    wal.sync().expect("sync");
    assert!(!compact_all(&mut wal).is_empty());
    let p = wal.pressure(|_| u64::MAX);
    assert_eq!((p.segments, p.oldest, p.pinning_group()), (1, None, None));
    assert!(p.pinned_by.is_empty());
    assert!(p.entries < 103);
    drop(wal);

    // Reopening rebuilds the same picture from the files.
    let (wal, _) = Wal::open(Arc::new(vfs.clone()), dir(), opts(SEG)).expect("reopen");
    assert_eq!(wal.pressure(|_| u64::MAX), p);
}

#[test]
fn a_trailing_window_pins_without_asking_for_a_snapshot() {
    let vfs = MemVfs::new();
    let mut wal = build(&vfs, 100);
    wal.set_log_start(1, compacted(100, 1)).expect("start");
    wal.set_log_start(2, compacted(3, 1)).expect("start");
    wal.sync().expect("sync");
    // Group 1 keeps its last 95 entries for slow followers.
    let up_to = |g| if g == 1 { 5 } else { u64::MAX };
    wal.compact(up_to).expect("compact");
    let p = wal.pressure(up_to);
    let oldest = p.oldest.expect("a pinned segment");
    assert_eq!(p.pinned_by.len(), 1, "{p:?}");
    let pin = p.pinned_by[0];
    assert_eq!((pin.group, pin.log_start), (1, 100));
    assert!(pin.index > 5 && !pin.needs_snapshot());
    assert_eq!(p.pinning_group(), None, "no snapshot would help");
    // The pinned segment is the oldest one compaction kept.
    let first_kept = segment::parse_name(&segment_names(&vfs)[0]).expect("name");
    assert_eq!(oldest, first_kept);
}

#[test]
fn a_removed_group_pins_nothing() {
    let vfs = MemVfs::new();
    let mut wal = build(&vfs, 100);
    wal.set_log_start(1, compacted(100, 1)).expect("start");
    wal.sync().expect("sync");
    assert_eq!(wal.pressure(|_| u64::MAX).pinning_group(), Some(2));
    wal.remove_group(2).expect("remove");
    // Judged before the tombstone is even synced: compaction syncs it first.
    let p = wal.pressure(|_| u64::MAX);
    assert_eq!((p.oldest, p.pinning_group()), (None, None));
    assert!(!compact_all(&mut wal).is_empty());
    assert_eq!(wal.pressure(|_| u64::MAX).segments, 1);
}
