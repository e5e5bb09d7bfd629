//! Binary encoding of [`SlotCommand`] (ops `0x05`..=`0x0A`; format in the module
//! docs of [`super`]).

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use keel_placement::Slot;

use super::codec::{MAX_VARINT_LEN, Reader, put_varint};
use super::slot::{IngestPage, IngestPut, MAX_INGEST_ITEMS, MoveStep, SlotCommand};
use super::{CommandError, IngestError};

pub(super) const OP_FENCE_SLOT: u8 = 0x05;
pub(super) const OP_UNFENCE_SLOT: u8 = 0x06;
pub(super) const OP_INGEST_SLOT: u8 = 0x07;
pub(super) const OP_SLOT_INGESTED: u8 = 0x08;
pub(super) const OP_OWN_SLOT: u8 = 0x09;
pub(super) const OP_DROP_SLOT: u8 = 0x0A;

/// Whether `op` is one of the slot-move op codes.
pub(super) fn is_slot_op(op: u8) -> bool {
    (OP_FENCE_SLOT..=OP_DROP_SLOT).contains(&op)
}

/// An upper bound of what [`encode`] writes, for sizing buffers.
pub(super) fn encoded_len_bound(cmd: &SlotCommand) -> usize {
    let fixed = 1 + 4 * MAX_VARINT_LEN;
    match &cmd.step {
        MoveStep::Ingest(page) => {
            let puts: usize = page
                .puts
                .iter()
                .map(|p| 3 * MAX_VARINT_LEN + p.key.len() + p.value.len())
                .sum();
            let deletes: usize = page.deletes.iter().map(|k| MAX_VARINT_LEN + k.len()).sum();
            fixed + 2 * MAX_VARINT_LEN + puts + deletes
        }
        _ => fixed,
    }
}

/// Appends the op code and fields of `cmd`.
pub(super) fn encode(buf: &mut BytesMut, cmd: &SlotCommand) {
    let op = match &cmd.step {
        MoveStep::Fence => OP_FENCE_SLOT,
        MoveStep::Unfence => OP_UNFENCE_SLOT,
        MoveStep::Ingest(_) => OP_INGEST_SLOT,
        MoveStep::Ingested { .. } => OP_SLOT_INGESTED,
        MoveStep::Own { .. } => OP_OWN_SLOT,
        MoveStep::Drop { .. } => OP_DROP_SLOT,
    };
    buf.put_u8(op);
    put_varint(buf, u64::from(cmd.slot.get()));
    put_varint(buf, cmd.epoch);
    match &cmd.step {
        MoveStep::Fence | MoveStep::Unfence => {}
        MoveStep::Ingest(page) => encode_page(buf, page),
        MoveStep::Ingested {
            fence_index,
            revision,
        } => {
            put_varint(buf, *fence_index);
            put_varint(buf, *revision);
        }
        MoveStep::Own { map_version } | MoveStep::Drop { map_version } => {
            put_varint(buf, *map_version);
        }
    }
}

fn put_bytes(buf: &mut BytesMut, bytes: &[u8]) {
    put_varint(buf, bytes.len() as u64);
    buf.put_slice(bytes);
}

fn encode_page(buf: &mut BytesMut, page: &IngestPage) {
    put_varint(buf, page.round);
    put_varint(buf, page.page);
    put_varint(buf, page.puts.len() as u64);
    for put in &page.puts {
        put_bytes(buf, &put.key);
        put_varint(buf, put.version);
        put_bytes(buf, &put.value);
    }
    put_varint(buf, page.deletes.len() as u64);
    for key in &page.deletes {
        put_bytes(buf, key);
    }
}

/// Reads a slot command after its op code `op` (one [`is_slot_op`] accepts).
pub(super) fn decode(
    op: u8,
    r: &mut Reader<'_>,
    make: &impl Fn(Range<usize>) -> Bytes,
) -> Result<SlotCommand, CommandError> {
    let slot = r.varint("slot")?;
    let slot = u16::try_from(slot)
        .ok()
        .and_then(Slot::new)
        .ok_or(CommandError::SlotOutOfRange(slot))?;
    let epoch = r.varint("epoch")?;
    if epoch == 0 {
        return Err(CommandError::ZeroEpoch);
    }
    let step = match op {
        OP_FENCE_SLOT => MoveStep::Fence,
        OP_UNFENCE_SLOT => MoveStep::Unfence,
        OP_INGEST_SLOT => MoveStep::Ingest(decode_page(r, make)?),
        OP_SLOT_INGESTED => MoveStep::Ingested {
            fence_index: r.varint("fence index")?,
            revision: r.varint("revision")?,
        },
        OP_OWN_SLOT => MoveStep::Own {
            map_version: r.varint("map version")?,
        },
        OP_DROP_SLOT => MoveStep::Drop {
            map_version: r.varint("map version")?,
        },
        other => return Err(CommandError::UnknownOp(other)),
    };
    Ok(SlotCommand { slot, epoch, step })
}

/// A count of items, refused before anything is allocated if it (with `used`
/// items already read) exceeds [`MAX_INGEST_ITEMS`].
fn item_count(r: &mut Reader<'_>, field: &'static str, used: usize) -> Result<usize, CommandError> {
    let n = r.varint(field)?;
    let total = u64::try_from(used).unwrap_or(u64::MAX).saturating_add(n);
    if total > MAX_INGEST_ITEMS as u64 {
        let total = usize::try_from(total).unwrap_or(usize::MAX);
        return Err(CommandError::Ingest(IngestError::TooManyItems(total)));
    }
    // Bounded by MAX_INGEST_ITEMS just above.
    Ok(n as usize)
}

fn decode_page(
    r: &mut Reader<'_>,
    make: &impl Fn(Range<usize>) -> Bytes,
) -> Result<IngestPage, CommandError> {
    let round = r.varint("round")?;
    let page = r.varint("page")?;
    let n = item_count(r, "put count", 0)?;
    let mut puts = Vec::with_capacity(n);
    for _ in 0..n {
        let key = make(r.bytes("key")?);
        let version = r.varint("version")?;
        let value = make(r.bytes("value")?);
        puts.push(IngestPut {
            key,
            version,
            value,
        });
    }
    let n = item_count(r, "delete count", puts.len())?;
    let mut deletes = Vec::with_capacity(n);
    for _ in 0..n {
        deletes.push(make(r.bytes("key")?));
    }
    let page = IngestPage {
        round,
        page,
        puts,
        deletes,
    };
    page.validate()?;
    Ok(page)
}

#[cfg(test)]
pub(crate) mod tests {
    use keel_placement::SLOT_COUNT;
    use proptest::prelude::*;

    use super::*;
    use crate::command::Command;

    fn slot(n: u16) -> Slot {
        Slot::new(n).expect("in range")
    }

    fn cmd(step: MoveStep) -> Command {
        Command::Slot(SlotCommand {
            slot: slot(300),
            epoch: 7,
            step,
        })
    }

    #[test]
    fn known_encodings_are_stable() {
        // Pinned bytes: changing them breaks every existing WAL and replica.
        // Slot 300 is the varint 0xAC 0x02.
        let cases: Vec<(Command, Vec<u8>)> = vec![
            (cmd(MoveStep::Fence), vec![1, 0x05, 0xAC, 0x02, 7]),
            (cmd(MoveStep::Unfence), vec![1, 0x06, 0xAC, 0x02, 7]),
            (
                cmd(MoveStep::Ingest(IngestPage {
                    round: 2,
                    page: 1,
                    puts: vec![IngestPut {
                        key: Bytes::from_static(b"k"),
                        version: 9,
                        value: Bytes::from_static(b"vv"),
                    }],
                    deletes: vec![Bytes::from_static(b"x")],
                })),
                vec![
                    1, 0x07, 0xAC, 0x02, 7, 2, 1, 1, 1, b'k', 9, 2, b'v', b'v', 1, 1, b'x',
                ],
            ),
            (
                cmd(MoveStep::Ingested {
                    fence_index: 40,
                    revision: 41,
                }),
                vec![1, 0x08, 0xAC, 0x02, 7, 40, 41],
            ),
            (
                cmd(MoveStep::Own { map_version: 8 }),
                vec![1, 0x09, 0xAC, 0x02, 7, 8],
            ),
            (
                cmd(MoveStep::Drop { map_version: 8 }),
                vec![1, 0x0A, 0xAC, 0x02, 7, 8],
            ),
        ];
        for (command, bytes) in cases {
            assert_eq!(&command.encode()[..], &bytes[..], "{command}");
            assert_eq!(Command::decode(&bytes), Ok(command));
        }
    }

    #[test]
    fn malformed_slot_commands_get_a_precise_error() {
        let cases: &[(&[u8], CommandError)] = &[
            // Slot 4096 (0x80 0x20) is out of range.
            (
                &[1, 0x05, 0x80, 0x20, 7],
                CommandError::SlotOutOfRange(4096),
            ),
            (&[1, 0x05, 1, 0], CommandError::ZeroEpoch),
            (&[1, 0x05, 1], CommandError::Truncated("epoch")),
            (&[1, 0x05, 1, 7, 0], CommandError::TrailingBytes(1)),
            (&[1, 0x08, 1, 7, 3], CommandError::Truncated("revision")),
            (&[1, 0x09, 1, 7], CommandError::Truncated("map version")),
            (&[1, 0x0B, 1, 7], CommandError::UnknownOp(0x0B)),
            // 4097 puts claimed: refused before reading (or allocating) any.
            (
                &[1, 0x07, 1, 7, 0, 0, 0x81, 0x20],
                CommandError::Ingest(IngestError::TooManyItems(4097)),
            ),
            // 4096 puts claimed but none present.
            (
                &[1, 0x07, 1, 7, 0, 0, 0x80, 0x20],
                CommandError::Truncated("key"),
            ),
            // One put, then 4096 deletes: 4097 items.
            (
                &[1, 0x07, 1, 7, 0, 0, 1, 1, b'a', 1, 0, 0x80, 0x20],
                CommandError::Ingest(IngestError::TooManyItems(4097)),
            ),
            (
                &[1, 0x07, 1, 7, 0, 0, 2, 1, b'b', 1, 0, 1, b'a', 1, 0, 0],
                CommandError::Ingest(IngestError::PutsOutOfOrder),
            ),
            (
                &[1, 0x07, 1, 7, 0, 0, 1, 1, b'a', 1, 0, 1, 1, b'a'],
                CommandError::Ingest(IngestError::PutAndDelete),
            ),
            (
                &[1, 0x07, 1, 7, 0, 0, 1, 1, b'a', 0, 0, 0],
                CommandError::Ingest(IngestError::ZeroVersion),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(Command::decode(bytes).as_ref(), Err(want), "{bytes:?}");
        }
    }

    fn arb_page() -> impl Strategy<Value = IngestPage> {
        let key = || proptest::collection::vec(any::<u8>(), 0..20).prop_map(Bytes::from);
        (
            any::<u64>(),
            any::<u64>(),
            proptest::collection::btree_map(
                key(),
                (1..=u64::MAX, proptest::collection::vec(any::<u8>(), 0..40)),
                0..8,
            ),
            proptest::collection::btree_set(key(), 0..8),
        )
            .prop_map(|(round, page, puts, deletes)| IngestPage {
                round,
                page,
                deletes: deletes
                    .into_iter()
                    .filter(|k| !puts.contains_key(k))
                    .collect(),
                puts: puts
                    .into_iter()
                    .map(|(key, (version, value))| IngestPut {
                        key,
                        version,
                        value: Bytes::from(value),
                    })
                    .collect(),
            })
    }

    pub(crate) fn arb_slot_command() -> impl Strategy<Value = SlotCommand> {
        let step = prop_oneof![
            Just(MoveStep::Fence),
            Just(MoveStep::Unfence),
            arb_page().prop_map(MoveStep::Ingest),
            (any::<u64>(), any::<u64>()).prop_map(|(fence_index, revision)| {
                MoveStep::Ingested {
                    fence_index,
                    revision,
                }
            }),
            any::<u64>().prop_map(|map_version| MoveStep::Own { map_version }),
            any::<u64>().prop_map(|map_version| MoveStep::Drop { map_version }),
        ];
        (0..SLOT_COUNT, 1..=u64::MAX, step).prop_map(|(n, epoch, step)| SlotCommand {
            slot: slot(n),
            epoch,
            step,
        })
    }
}
