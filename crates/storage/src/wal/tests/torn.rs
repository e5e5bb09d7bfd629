//! Torn writes at the end of the log are discarded, reported, and writing resumes.

use keel_raft::HardState;

use super::*;

const SEG: u64 = 4096;

/// Writes five frames; returns the model without and with the last one.
fn build(vfs: &MemVfs) -> (Model, Model) {
    let (mut wal, _) = open(vfs, SEG);
    let mut model = Model::default();
    let mut before = Model::default();
    for batch in 1..=5u64 {
        if batch == 5 {
            before = model.clone();
        }
        let next = model.last_index(1) + 1;
        let es = [
            entry(batch, next, &[batch as u8; 60]),
            entry(batch, next + 1, b"second"),
        ];
        wal.append_entries(1, &es).expect("append");
        model.append(1, &es);
        let hs = HardState {
            term: batch,
            vote: 1,
            commit: next,
        };
        wal.set_hard_state(1, hs).expect("hs");
        model.hard_state(1, hs);
        wal.sync().expect("sync");
    }
    (before, model)
}

fn last_frame(vfs: &MemVfs) -> FramePos {
    frames(vfs).pop().expect("a frame")
}

/// Reopens, checks the result, then proves writing continues correctly.
fn check_recovers(vfs: &MemVfs, expect: &Model, torn_at: Option<(&Path, u64)>, what: &str) {
    let (mut wal, rec) = open(vfs, SEG);
    assert_eq!(rec.groups, expect.groups, "{what}");
    match torn_at {
        Some((file, offset)) => {
            let torn = rec
                .torn_tail
                .unwrap_or_else(|| panic!("{what}: no torn tail reported"));
            assert_eq!((torn.file.as_path(), torn.offset), (file, offset), "{what}");
            assert!(torn.discarded_bytes > 0, "{what}");
        }
        None => assert_eq!(rec.torn_tail, None, "{what}"),
    }
    let mut expect = expect.clone();
    let next = expect.last_index(1) + 1;
    let es = [entry(99, next, b"after recovery")];
    wal.append_entries(1, &es).expect("append after recovery");
    expect.append(1, &es);
    wal.sync().expect("sync after recovery");
    drop(wal);
    let (_, rec) = open(vfs, SEG);
    assert_eq!(rec.groups, expect.groups, "{what}: after continuing");
    assert_eq!(rec.torn_tail, None, "{what}: repaired for good");
}

#[test]
fn cutting_the_last_frame_at_every_byte_loses_only_that_frame() {
    let len = {
        let vfs = MemVfs::new();
        build(&vfs);
        last_frame(&vfs).len
    };
    for cut in 0..=len {
        let vfs = MemVfs::new();
        let (before, full) = build(&vfs);
        // Only the first `cut` bytes of the frame reached the disk.
        let (f, whole) = tear_last_frame(&vfs, cut);
        let what = format!("prefix of {cut} bytes kept");
        if whole {
            // Only zeros (padding, high bytes of integers) are missing: the frame is
            // whole.
            check_recovers(&vfs, &full, None, &what);
        } else if cut == 0 {
            // Nothing of it landed: a clean end, nothing to report.
            check_recovers(&vfs, &before, None, &what);
        } else {
            check_recovers(&vfs, &before, Some((&f.file, f.offset)), &what);
        }
    }
}

#[test]
fn losing_the_start_of_the_last_frame_at_every_byte_loses_only_that_frame() {
    let len = {
        let vfs = MemVfs::new();
        build(&vfs);
        last_frame(&vfs).len
    };
    for cut in 1..len {
        let vfs = MemVfs::new();
        let (before, _) = build(&vfs);
        let f = last_frame(&vfs);
        // The first `cut` bytes were lost, the rest landed.
        poke(&vfs, &f.file, f.offset, &vec![0u8; cut as usize]);
        let data = vfs.read_file(&f.file).expect("read");
        let rest = &data[(f.offset + cut) as usize..(f.offset + len) as usize];
        let torn = rest
            .iter()
            .any(|&b| b != 0)
            .then_some((f.file.as_path(), f.offset));
        check_recovers(&vfs, &before, torn, &format!("first {cut} bytes lost"));
    }
}

#[test]
fn damaging_any_byte_of_the_last_frame_reads_as_a_torn_tail() {
    // A documented limit: damage inside the very last frame cannot be told from a
    // torn write. It is still reported, never silent.
    let len = {
        let vfs = MemVfs::new();
        build(&vfs);
        last_frame(&vfs).len
    };
    for at in 0..len {
        let vfs = MemVfs::new();
        let (before, full) = build(&vfs);
        let f = last_frame(&vfs);
        vfs.flip_bit(&f.file, f.offset + at, (at % 8) as u8)
            .expect("flip");
        let what = format!("bit flipped at frame byte {at}");
        if at >= FRAME_HEADER_LEN + f.payload_len {
            // Padding is not covered by a checksum and carries nothing.
            let (_, rec) = open(&vfs, SEG);
            assert_eq!(rec.groups, full.groups, "{what}");
        } else {
            check_recovers(&vfs, &before, Some((&f.file, f.offset)), &what);
        }
    }
}

#[test]
fn a_crash_at_every_step_of_segment_creation_recovers_what_was_synced() {
    // Count the disk operations of a sync that has to roll over to a new segment.
    let ops_of_rollover = 12;
    let mut outcomes = std::collections::BTreeSet::new();
    for halt in 0..ops_of_rollover {
        for seed in 0..8 {
            let vfs = MemVfs::new();
            let (mut wal, _) = open(&vfs, 1024);
            let mut model = Model::default();
            let mut index = 0;
            // Fill the first segment.
            while frames(&vfs).last().is_none_or(|f| f.offset + f.len < 900) {
                index += 1;
                let es = [entry(1, index, &[1; 64])];
                wal.append_entries(1, &es).expect("append");
                model.append(1, &es);
                wal.sync().expect("sync");
            }
            let mut inflight = model.clone();
            let es = [entry(1, index + 1, &[2; 200])];
            wal.append_entries(1, &es).expect("append");
            inflight.append(1, &es);
            vfs.halt_after(Some(halt));
            let synced = wal.sync().is_ok();
            drop(wal);
            vfs.crash(seed);
            let (_, rec) = open(&vfs, 1024);
            let what = format!("halt after {halt} ops, seed {seed}");
            outcomes.insert((
                synced,
                rec.groups == inflight.groups,
                rec.torn_tail.is_some(),
            ));
            if synced {
                assert_eq!(rec.groups, inflight.groups, "{what}");
            } else {
                assert!(
                    rec.groups == model.groups || rec.groups == inflight.groups,
                    "{what}"
                );
            }
        }
    }
    // Interrupted before, during and after the new segment's header; frame kept or lost.
    assert!(outcomes.len() >= 4, "{outcomes:?}");
}
