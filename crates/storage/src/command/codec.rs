//! Binary encoding of [`Command`] (format in the module docs of [`super`]).

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use super::add::{unzigzag, zigzag};
use super::{Command, CommandError, Expect, slot_codec, txn_codec};

/// The format version of a command without a header (`session.rs` has version 2).
pub(super) const PLAIN_VERSION: u8 = 1;

const OP_PUT: u8 = 0x01;
const OP_DELETE: u8 = 0x02;
const OP_TXN: u8 = 0x03;
const OP_ADD: u8 = 0x04;

const EXPECT_ANY: u8 = 0x00;
const EXPECT_ABSENT: u8 = 0x01;
const EXPECT_VERSION: u8 = 0x02;

/// Longest LEB128 encoding of a `u64`.
pub(super) const MAX_VARINT_LEN: usize = 10;

impl Command {
    /// Encodes the command (format version 1: no header).
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(1 + self.max_op_len());
        buf.put_u8(PLAIN_VERSION);
        self.encode_op(&mut buf);
        buf.freeze()
    }

    /// An upper bound of what [`Command::encode_op`] writes, for sizing buffers.
    pub(super) fn max_op_len(&self) -> usize {
        let (key, value) = match self {
            Command::Put { key, value, .. } => (key.len(), value.len()),
            Command::Delete { key, .. } | Command::Add { key, .. } => (key.len(), 0),
            Command::Txn(txn) => return 1 + txn_codec::encoded_len_bound(txn),
            Command::Slot(cmd) => return slot_codec::encoded_len_bound(cmd),
        };
        2 + MAX_VARINT_LEN * 3 + key + value
    }

    /// Appends the `op` production of the format (everything after the version
    /// byte and any header).
    pub(super) fn encode_op(&self, buf: &mut BytesMut) {
        let (op, key, value, expect) = match self {
            Command::Put { key, value, expect } => (OP_PUT, key, Some(value), expect),
            Command::Delete { key, expect } => (OP_DELETE, key, None, expect),
            Command::Txn(txn) => {
                buf.put_u8(OP_TXN);
                txn_codec::encode(buf, txn);
                return;
            }
            Command::Add { key, delta } => {
                buf.put_u8(OP_ADD);
                put_varint(buf, key.len() as u64);
                buf.put_slice(key);
                put_varint(buf, zigzag(*delta));
                return;
            }
            Command::Slot(cmd) => {
                slot_codec::encode(buf, cmd);
                return;
            }
        };
        buf.put_u8(op);
        match expect {
            Expect::Any => buf.put_u8(EXPECT_ANY),
            Expect::Absent => buf.put_u8(EXPECT_ABSENT),
            Expect::Version(v) => {
                buf.put_u8(EXPECT_VERSION);
                put_varint(buf, *v);
            }
        }
        put_varint(buf, key.len() as u64);
        buf.put_slice(key);
        if let Some(value) = value {
            put_varint(buf, value.len() as u64);
            buf.put_slice(value);
        }
    }

    /// Decodes a command, copying key and value out of `data`.
    pub fn decode(data: &[u8]) -> Result<Command, CommandError> {
        decode_with(data, |r| Bytes::copy_from_slice(&data[r]))
    }

    /// Decodes a command whose key and value share `data`'s allocation (no copy).
    pub fn decode_bytes(data: &Bytes) -> Result<Command, CommandError> {
        decode_with(data, |r| data.slice(r))
    }
}

pub(crate) fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7F) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// A cursor over the input that hands out ranges, so the caller decides whether
/// fields are copied or shared.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, CommandError> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or(CommandError::Truncated(field))?;
        self.pos += 1;
        Ok(b)
    }

    /// A shortest-form LEB128 `u64`.
    pub(crate) fn varint(&mut self, field: &'static str) -> Result<u64, CommandError> {
        let mut v = 0u64;
        for i in 0..MAX_VARINT_LEN {
            let b = self.u8(field)?;
            let bits = u64::from(b & 0x7F);
            // The tenth byte may only hold the top bit of a u64.
            if i == MAX_VARINT_LEN - 1 && bits > 1 {
                return Err(CommandError::BadVarint(field));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                // A zero final byte after others is an overlong encoding.
                if i > 0 && b == 0 {
                    return Err(CommandError::BadVarint(field));
                }
                return Ok(v);
            }
        }
        Err(CommandError::BadVarint(field))
    }

    /// Exactly `N` bytes.
    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], CommandError> {
        let end = self.pos.checked_add(N).filter(|&e| e <= self.data.len());
        let end = end.ok_or(CommandError::Truncated(field))?;
        let out = self.data[self.pos..end]
            .try_into()
            .expect("the range is N bytes long");
        self.pos = end;
        Ok(out)
    }

    /// Ends the command: nothing may follow its last field.
    pub(crate) fn finish(&self) -> Result<(), CommandError> {
        match self.data.len() - self.pos {
            0 => Ok(()),
            extra => Err(CommandError::TrailingBytes(extra)),
        }
    }

    /// A length-prefixed byte string, as a range of the input.
    pub(super) fn bytes(&mut self, field: &'static str) -> Result<Range<usize>, CommandError> {
        let len = self.varint(field)?;
        let left = (self.data.len() - self.pos) as u64;
        if len > left {
            return Err(CommandError::Truncated(field));
        }
        let start = self.pos;
        // `len <= left`, which is a usize, so this cannot truncate.
        self.pos += len as usize;
        Ok(start..self.pos)
    }
}

fn decode_with(data: &[u8], make: impl Fn(Range<usize>) -> Bytes) -> Result<Command, CommandError> {
    let mut r = Reader::new(data);
    let version = r.u8("version").map_err(|_| CommandError::Empty)?;
    if version != PLAIN_VERSION {
        return Err(CommandError::UnsupportedVersion(version));
    }
    let command = decode_op(&mut r, &make)?;
    r.finish()?;
    Ok(command)
}

/// Reads the `op` production of the format.
pub(super) fn decode_op(
    r: &mut Reader<'_>,
    make: &impl Fn(Range<usize>) -> Bytes,
) -> Result<Command, CommandError> {
    let op = r.u8("op")?;
    if op == OP_TXN {
        return Ok(Command::Txn(txn_codec::decode(r, make)?));
    }
    if op == OP_ADD {
        let key = make(r.bytes("key")?);
        let delta = unzigzag(r.varint("delta")?);
        return Ok(Command::Add { key, delta });
    }
    if slot_codec::is_slot_op(op) {
        return Ok(Command::Slot(slot_codec::decode(op, r, make)?));
    }
    if op != OP_PUT && op != OP_DELETE {
        return Err(CommandError::UnknownOp(op));
    }
    let expect = match r.u8("precondition")? {
        EXPECT_ANY => Expect::Any,
        EXPECT_ABSENT => Expect::Absent,
        EXPECT_VERSION => Expect::Version(r.varint("precondition version")?),
        other => return Err(CommandError::UnknownExpect(other)),
    };
    let key = make(r.bytes("key")?);
    Ok(if op == OP_PUT {
        let value = make(r.bytes("value")?);
        Command::Put { key, value, expect }
    } else {
        Command::Delete { key, expect }
    })
}

#[cfg(test)]
pub(super) mod tests {
    use proptest::prelude::*;

    use super::*;

    fn put(key: &'static [u8], value: &'static [u8], expect: Expect) -> Command {
        Command::Put {
            key: Bytes::from_static(key),
            value: Bytes::from_static(value),
            expect,
        }
    }

    #[test]
    fn known_encodings_are_stable() {
        // Pinned bytes: changing them breaks every existing WAL and replica.
        assert_eq!(
            &put(b"k", b"vv", Expect::Any).encode()[..],
            &[1, 1, 0, 1, b'k', 2, b'v', b'v']
        );
        assert_eq!(
            &Command::Delete {
                key: Bytes::from_static(b"k"),
                expect: Expect::Version(300)
            }
            .encode()[..],
            &[1, 2, 2, 0xAC, 0x02, 1, b'k']
        );
        assert_eq!(
            &put(b"", b"", Expect::Absent).encode()[..],
            &[1, 1, 1, 0, 0]
        );
        let add = |delta| Command::Add {
            key: Bytes::from_static(b"n"),
            delta,
        };
        assert_eq!(&add(1).encode()[..], &[1, 4, 1, b'n', 2]);
        assert_eq!(&add(-1).encode()[..], &[1, 4, 1, b'n', 1]);
        assert_eq!(&add(-65).encode()[..], &[1, 4, 1, b'n', 0x81, 0x01]);
    }

    #[test]
    fn malformed_input_gets_a_precise_error() {
        let cases: &[(&[u8], CommandError)] = &[
            (&[], CommandError::Empty),
            (&[2, 1, 0, 0, 0], CommandError::UnsupportedVersion(2)),
            (&[1, 0x40], CommandError::UnknownOp(0x40)),
            (&[1, 0x0B], CommandError::UnknownOp(0x0B)),
            (&[1, 4, 1, b'n'], CommandError::Truncated("delta")),
            (
                &[1, 4, 1, b'n', 0x80, 0x00],
                CommandError::BadVarint("delta"),
            ),
            (&[1, 4, 1, b'n', 2, 0], CommandError::TrailingBytes(1)),
            (&[1, 1, 7], CommandError::UnknownExpect(7)),
            (&[1, 1], CommandError::Truncated("precondition")),
            (&[1, 1, 0, 5, b'a'], CommandError::Truncated("key")),
            (&[1, 1, 0, 1, b'a'], CommandError::Truncated("value")),
            (&[1, 2, 0, 0, 0xFF], CommandError::TrailingBytes(1)),
            (
                &[1, 2, 2, 0x80, 0x00, 0],
                CommandError::BadVarint("precondition version"),
            ),
            (
                &[
                    1, 2, 2, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02, 0,
                ],
                CommandError::BadVarint("precondition version"),
            ),
            (
                &[1, 1, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F],
                CommandError::Truncated("key"),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(Command::decode(bytes).as_ref(), Err(want), "{bytes:?}");
        }
    }

    #[test]
    fn the_largest_version_round_trips() {
        let c = Command::Delete {
            key: Bytes::from_static(b"x"),
            expect: Expect::Version(u64::MAX),
        };
        assert_eq!(Command::decode(&c.encode()), Ok(c));
    }

    pub(crate) fn arb_command() -> impl Strategy<Value = Command> {
        let expect = prop_oneof![
            Just(Expect::Any),
            Just(Expect::Absent),
            any::<u64>().prop_map(Expect::Version),
        ];
        let bytes = || proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from);
        prop_oneof![
            (bytes(), bytes(), expect.clone()).prop_map(|(key, value, expect)| Command::Put {
                key,
                value,
                expect
            }),
            (bytes(), expect).prop_map(|(key, expect)| Command::Delete { key, expect }),
            super::txn_codec::tests::arb_txn().prop_map(Command::Txn),
            (bytes(), any::<i64>()).prop_map(|(key, delta)| Command::Add { key, delta }),
            super::slot_codec::tests::arb_slot_command().prop_map(Command::Slot),
        ]
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(c in arb_command()) {
            let bytes = c.encode();
            prop_assert_eq!(Command::decode(&bytes), Ok(c.clone()));
            prop_assert_eq!(Command::decode_bytes(&bytes), Ok(c));
        }

        #[test]
        fn decode_never_panics_and_accepts_only_canonical_bytes(
            data in proptest::collection::vec(any::<u8>(), 0..64)
        ) {
            if let Ok(c) = Command::decode(&data) {
                prop_assert_eq!(&c.encode()[..], &data[..]);
            }
        }

        #[test]
        fn decode_of_mutated_encodings_never_panics(
            c in arb_command(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = c.encode().to_vec();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            let _ = Command::decode(&bytes);
            let keep = cut.index(bytes.len() + 1);
            if let Ok(d) = Command::decode(&bytes[..keep]) {
                prop_assert_eq!(&d.encode()[..], &bytes[..keep]);
            }
        }
    }
}
