//! Read-only inspection agrees with recovery and changes nothing.

use std::path::PathBuf;

use super::*;
use crate::wal::{Verdict, WalRecord, inspect};

fn build(vfs: &MemVfs) {
    let (mut wal, _) = open(vfs, 1024);
    for i in 1..=20u64 {
        wal.append_entries(i % 2, &[entry(1, i.div_ceil(2), &[i as u8; 90])])
            .expect("append");
        wal.set_hard_state(
            i % 2,
            keel_raft::HardState {
                term: 1,
                vote: 0,
                commit: i / 2,
            },
        )
        .expect("hs");
        wal.sync().expect("sync");
    }
}

fn snapshot(vfs: &MemVfs) -> Vec<(String, Vec<u8>)> {
    vfs.list_dir(dir())
        .expect("list")
        .into_iter()
        .map(|n| {
            let data = vfs.read_file(&dir().join(&n)).expect("read");
            (n, data)
        })
        .collect()
}

#[test]
fn inspect_yields_every_record_in_order_with_its_location() {
    let vfs = MemVfs::new();
    build(&vfs);
    let mut seen: Vec<(PathBuf, u64, u64, WalRecord)> = Vec::new();
    let verdict = inspect(&vfs, dir(), |r| {
        seen.push((
            r.file.to_path_buf(),
            r.offset,
            r.frame_seq,
            r.record.clone(),
        ));
    })
    .expect("inspect");
    assert_eq!(verdict, Verdict::Ok);
    assert_eq!(seen.len(), 40);
    // Locations strictly increase through the files; frames are 1..=20, two records each.
    for pair in seen.windows(2) {
        assert!((&pair[0].0, pair[0].1) < (&pair[1].0, pair[1].1));
    }
    let seqs: Vec<u64> = seen.iter().map(|s| s.2).collect();
    let expected: Vec<u64> = (1..=20).flat_map(|s| [s, s]).collect();
    assert_eq!(seqs, expected);
    // The location points at the record's bytes.
    let (file, offset, _, record) = &seen[6];
    let data = vfs.read_file(file).expect("read");
    let payload = bytes::Bytes::copy_from_slice(&data[*offset as usize..]);
    let (decoded, _) = crate::wal::record::decode(&payload, 0).expect("decode at offset");
    assert_eq!(decoded, crate::wal::record::ScanRecord::Wal(record.clone()));
}

#[test]
fn inspect_reports_torn_tail_and_corruption_without_changing_anything() {
    let vfs = MemVfs::new();
    build(&vfs);
    let all = frames(&vfs);
    let last = all.last().expect("frames").clone();
    poke(&vfs, &last.file, last.offset + 40, &[0xEE; 4]);
    let before = snapshot(&vfs);
    let verdict = inspect(&vfs, dir(), |_| {}).expect("inspect");
    match verdict {
        Verdict::TornTail(t) => assert_eq!((t.file, t.offset), (last.file.clone(), last.offset)),
        other => panic!("expected a torn tail, got {other:?}"),
    }
    assert_eq!(snapshot(&vfs), before, "inspect must not write");

    let early = all[3].clone();
    vfs.flip_bit(&early.file, early.offset + 50, 1)
        .expect("flip");
    let mut count = 0;
    match inspect(&vfs, dir(), |_| count += 1).expect("inspect") {
        Verdict::Corrupt {
            file,
            offset,
            reason,
        } => {
            assert_eq!((file, offset), (early.file.clone(), early.offset));
            assert!(
                reason.starts_with("frame payload checksum mismatch, but a valid frame follows"),
                "{reason}"
            );
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(count, 6, "records before the damage are still shown");
}

#[test]
fn inspect_of_a_missing_directory_is_an_io_error() {
    let vfs = MemVfs::new();
    assert!(inspect(&vfs, Path::new("/nope"), |_| {}).is_err());
}
