//! Damage before the last valid frame refuses to open, naming file and offset.

use std::sync::Arc;

use super::*;
use crate::wal::WalError;
use crate::wal::format::SegmentHeader;

const SEG: u64 = 2048;

/// Writes `n` frames of one entry each, across several segments.
fn build(vfs: &MemVfs, n: u64) -> Model {
    let (mut wal, _) = open(vfs, SEG);
    let mut model = Model::default();
    for i in 1..=n {
        let es = [entry(1, i, &[i as u8; 150])];
        wal.append_entries(1, &es).expect("append");
        model.append(1, &es);
        wal.sync().expect("sync");
    }
    model
}

fn open_err(vfs: &MemVfs) -> WalError {
    Wal::open(Arc::new(vfs.clone()), dir(), opts(SEG)).expect_err("must refuse to open")
}

fn assert_corrupt_at(err: WalError, file: &Path, offset: u64, what: &str) -> String {
    match err {
        WalError::Corrupt {
            file: f,
            offset: o,
            reason,
        } => {
            assert_eq!((f.as_path(), o), (file, offset), "{what}: {reason}");
            reason
        }
        other => panic!("{what}: expected Corrupt, got {other}"),
    }
}

#[test]
fn a_bit_flip_in_any_earlier_frame_is_corruption_at_that_frame() {
    let n = 30;
    let all = {
        let vfs = MemVfs::new();
        build(&vfs, n);
        frames(&vfs)
    };
    assert!(
        all.iter()
            .map(|f| &f.file)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 2
    );
    for (i, target) in all.iter().enumerate().take(all.len() - 1) {
        // Once in the header, once in the payload.
        for delta in [5, FRAME_HEADER_LEN + 17] {
            let vfs = MemVfs::new();
            build(&vfs, n);
            vfs.flip_bit(&target.file, target.offset + delta, 2)
                .expect("flip");
            let what = format!("frame {i} byte {delta}");
            assert_corrupt_at(open_err(&vfs), &target.file, target.offset, &what);
        }
    }
}

#[test]
fn the_error_message_names_file_and_offset() {
    let vfs = MemVfs::new();
    build(&vfs, 5);
    let f = frames(&vfs)[1].clone();
    vfs.flip_bit(&f.file, f.offset + 40, 0).expect("flip");
    let msg = open_err(&vfs).to_string();
    assert!(
        msg.contains(&format!("{}:{}", f.file.display(), f.offset)),
        "{msg}"
    );
}

#[test]
fn garbage_at_the_end_of_a_full_segment_before_a_later_valid_frame_is_corruption() {
    let vfs = MemVfs::new();
    build(&vfs, 30);
    let all = frames(&vfs);
    let first_seg = all[0].file.clone();
    let end_of_first = all
        .iter()
        .filter(|f| f.file == first_seg)
        .map(|f| f.offset + f.len)
        .max()
        .expect("frames in first segment");
    poke(&vfs, &first_seg, end_of_first + 8, b"junk");
    let reason = assert_corrupt_at(open_err(&vfs), &first_seg, end_of_first, "tail junk");
    assert!(reason.contains("valid frame follows"), "{reason}");
}

#[test]
fn a_zeroed_frame_at_the_end_of_a_segment_breaks_the_sequence() {
    let vfs = MemVfs::new();
    build(&vfs, 30);
    let all = frames(&vfs);
    let first_seg = all[0].file.clone();
    let last_of_first = all
        .iter()
        .rfind(|f| f.file == first_seg)
        .expect("frames")
        .clone();
    poke(
        &vfs,
        &first_seg,
        last_of_first.offset,
        &vec![0; last_of_first.len as usize],
    );
    let next = all
        .iter()
        .find(|f| f.file != first_seg)
        .expect("second segment");
    let reason = assert_corrupt_at(open_err(&vfs), &next.file, next.offset, "lost frame");
    assert!(reason.contains("frame sequence"), "{reason}");
}

#[test]
fn a_missing_segment_is_corruption() {
    for victim in [0, 1] {
        let vfs = MemVfs::new();
        build(&vfs, 30);
        let names = segment_names(&vfs);
        assert!(names.len() >= 3, "{names:?} {:?}", frames(&vfs));
        vfs.remove_file(&dir().join(&names[victim]))
            .expect("remove");
        let err = open_err(&vfs);
        let reason = assert_corrupt_at(err, &dir().join(&names[victim + 1]), 0, "missing");
        assert!(reason.contains("missing"), "{reason}");
    }
}

#[test]
fn a_later_segment_with_a_stale_frame_is_corruption() {
    let vfs = MemVfs::new();
    build(&vfs, 10);
    let names = segment_names(&vfs);
    let seq = names.len() as u64 + 1;
    let path = dir().join(segment::file_name(seq));
    // A well-formed segment holding a well-formed frame with an old sequence number.
    let payload = {
        let mut p = Vec::new();
        crate::wal::record::encode_entry(&mut p, 1, &entry(1, 11, b"stale"));
        p
    };
    let header = FrameHeader {
        payload_len: payload.len() as u32,
        frame_seq: 3,
        segment_seq: seq,
        payload_crc: crc32c::crc32c(&payload),
    };
    let f = vfs.open(&path, true).expect("create");
    f.allocate(SEG).expect("allocate");
    f.write_all_at(0, &SegmentHeader { seq }.encode())
        .expect("header");
    f.write_all_at(SEGMENT_HEADER_LEN, &header.encode())
        .expect("frame header");
    f.write_all_at(SEGMENT_HEADER_LEN + FRAME_HEADER_LEN, &payload)
        .expect("payload");
    f.sync_data().expect("sync");
    let reason = assert_corrupt_at(open_err(&vfs), &path, SEGMENT_HEADER_LEN, "stale");
    assert!(reason.contains("frame sequence 3, expected 11"), "{reason}");
}

#[test]
fn a_segment_header_that_disagrees_with_its_name_is_corruption() {
    let vfs = MemVfs::new();
    build(&vfs, 30);
    let path = dir().join(&segment_names(&vfs)[1]);
    poke(&vfs, &path, 0, &SegmentHeader { seq: 77 }.encode());
    let reason = assert_corrupt_at(open_err(&vfs), &path, 0, "renamed");
    assert!(reason.contains("77"), "{reason}");
}

#[test]
fn a_damaged_header_of_an_earlier_segment_is_corruption() {
    let vfs = MemVfs::new();
    build(&vfs, 30);
    let path = dir().join(&segment_names(&vfs)[0]);
    vfs.flip_bit(&path, 3, 0).expect("flip");
    assert_corrupt_at(open_err(&vfs), &path, 0, "header");
}

#[test]
fn a_damaged_header_of_the_last_segment_with_frames_in_it_is_corruption() {
    let vfs = MemVfs::new();
    build(&vfs, 30);
    let path = dir().join(segment_names(&vfs).last().expect("segments"));
    vfs.flip_bit(&path, 20, 0).expect("flip");
    let reason = assert_corrupt_at(open_err(&vfs), &path, 0, "last header");
    assert!(reason.contains("valid frame follows"), "{reason}");
}

#[test]
fn a_future_format_version_is_refused_not_discarded() {
    let vfs = MemVfs::new();
    build(&vfs, 3);
    let path = dir().join(&segment_names(&vfs)[0]);
    let mut header = SegmentHeader { seq: 1 }.encode();
    header[8] = 2;
    let crc = crc32c::crc32c(&header[..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    poke(&vfs, &path, 0, &header);
    let reason = assert_corrupt_at(open_err(&vfs), &path, 0, "version");
    assert!(reason.contains("version 2"), "{reason}");
    assert!(vfs.exists(&path));
}

#[test]
fn an_incomplete_trailing_segment_is_removed_and_reported() {
    for garbage in [
        &b""[..],
        &[0u8; 20][..],
        &[0u8; 64][..],
        b"KEELWAL\0garbage-garbage-garbage!",
    ] {
        let vfs = MemVfs::new();
        let model = build(&vfs, 10);
        let seq = segment_names(&vfs).len() as u64 + 1;
        let path = dir().join(segment::file_name(seq));
        let f = vfs.open(&path, true).expect("create");
        f.write_all_at(0, garbage).expect("write");
        f.sync_data().expect("sync");
        drop(f);
        vfs.sync_dir(dir()).expect("sync dir");
        let (mut wal, rec) = open(&vfs, SEG);
        assert_eq!(rec.groups, model.groups);
        let torn = rec.torn_tail.expect("reported");
        assert_eq!((torn.file.as_path(), torn.offset), (path.as_path(), 0));
        assert!(!vfs.exists(&path), "removed");
        // The next rollover reuses the number.
        wal.append_entries(1, &[entry(2, 11, &[0; 1900])])
            .expect("append");
        wal.sync().expect("sync");
        assert!(vfs.exists(&path));
    }
}
