//! The client-session header (format version 2) and [`Envelope`], a command with
//! its optional header: what a `Normal` entry holds.
//!
//! The header only tags the operation; `codec.rs` encodes the operation itself, so
//! any op, present or future, can travel with or without a session.

use std::fmt;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::{MAX_VARINT_LEN, PLAIN_VERSION, Reader, decode_op, put_varint};
use super::{Command, CommandError};

/// The format version of a command with a session header.
const SESSION_VERSION: u8 = 2;

/// Bytes of a client id on the wire.
const CLIENT_ID_LEN: usize = 16;

/// Who sent a write and when, so that the state machine applies it at most once.
///
/// The first three fields come from the client library; the last three are
/// stamped by the node that proposes the entry. The state machine takes its time
/// and its limits from the entry rather than from its own clock and
/// configuration, so that every replica makes the same decisions (see
/// `docs/sessions.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionHeader {
    /// The client's session id, chosen at random by the client library.
    pub client_id: u128,
    /// The write's sequence number within the session, from 1.
    pub seq: u64,
    /// The lowest sequence number the client may still retry: results of lower
    /// ones may be forgotten. 1 while the session's first write is unanswered,
    /// which is what lets a write open a session.
    pub first_unacked: u64,
    /// The proposer's wall clock, in milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// Sessions idle for longer than this (in log time) are dropped.
    pub idle_timeout_ms: u64,
    /// Most sessions kept; beyond it the least recently used one is evicted.
    pub max_sessions: u64,
}

/// A command as a `Normal` entry carries it: with a client-session header
/// (format version 2) or without (version 1, byte for byte what
/// [`Command::encode`] writes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Envelope {
    /// The session the write belongs to, if the client has one.
    pub session: Option<SessionHeader>,
    /// What the write does.
    pub command: Command,
}

impl From<Command> for Envelope {
    fn from(command: Command) -> Self {
        Envelope {
            session: None,
            command,
        }
    }
}

impl Envelope {
    /// Encodes as version 1 without a session, version 2 with one.
    pub fn encode(&self) -> Bytes {
        let Some(h) = &self.session else {
            return self.command.encode();
        };
        let mut buf = BytesMut::with_capacity(
            1 + CLIENT_ID_LEN + 5 * MAX_VARINT_LEN + self.command.max_op_len(),
        );
        buf.put_u8(SESSION_VERSION);
        buf.put_slice(&h.client_id.to_be_bytes());
        for v in [
            h.seq,
            h.first_unacked,
            h.now_ms,
            h.idle_timeout_ms,
            h.max_sessions,
        ] {
            put_varint(&mut buf, v);
        }
        self.command.encode_op(&mut buf);
        buf.freeze()
    }

    /// Decodes either version, copying key and value out of `data`.
    pub fn decode(data: &[u8]) -> Result<Envelope, CommandError> {
        decode_with(data, |r| Bytes::copy_from_slice(&data[r]))
    }

    /// Decodes either version; key and value share `data`'s allocation (no copy).
    pub fn decode_bytes(data: &Bytes) -> Result<Envelope, CommandError> {
        decode_with(data, |r| data.slice(r))
    }
}

fn decode_with(
    data: &[u8],
    make: impl Fn(Range<usize>) -> Bytes,
) -> Result<Envelope, CommandError> {
    let mut r = Reader::new(data);
    let session = match r.u8("version").map_err(|_| CommandError::Empty)? {
        PLAIN_VERSION => None,
        SESSION_VERSION => Some(SessionHeader {
            client_id: u128::from_be_bytes(r.array::<CLIENT_ID_LEN>("client id")?),
            seq: r.varint("sequence number")?,
            first_unacked: r.varint("first unacknowledged")?,
            now_ms: r.varint("proposer clock")?,
            idle_timeout_ms: r.varint("session idle timeout")?,
            max_sessions: r.varint("session limit")?,
        }),
        other => return Err(CommandError::UnsupportedVersion(other)),
    };
    let command = decode_op(&mut r, &make)?;
    r.finish()?;
    Ok(Envelope { session, command })
}

impl fmt::Display for Envelope {
    /// The command as [`Command`] prints it, then ` SESSION=<client id>#<seq>` if
    /// it has a session: `SET k v SESSION=000…2a#7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.command)?;
        if let Some(h) = &self.session {
            write!(f, " SESSION={:032x}#{}", h.client_id, h.seq)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::command::Expect;
    use crate::command::codec::tests::arb_command;

    fn header() -> SessionHeader {
        SessionHeader {
            client_id: 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10,
            seq: 300,
            first_unacked: 299,
            now_ms: 1,
            idle_timeout_ms: 2,
            max_sessions: 3,
        }
    }

    fn del_k() -> Command {
        Command::Delete {
            key: Bytes::from_static(b"k"),
            expect: Expect::Any,
        }
    }

    #[test]
    fn known_session_encoding_is_stable() {
        // Pinned bytes: changing them breaks every existing WAL and replica.
        let e = Envelope {
            session: Some(header()),
            command: del_k(),
        };
        let mut want = vec![2];
        want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
        want.extend_from_slice(&[0xAC, 0x02, 0xAB, 0x02, 1, 2, 3]);
        want.extend_from_slice(&[2, 0, 1, b'k']);
        assert_eq!(&e.encode()[..], &want[..]);
        assert_eq!(
            e.to_string(),
            format!("DEL k SESSION={:032x}#300", header().client_id)
        );
    }

    #[test]
    fn version_1_is_an_envelope_without_session() {
        // Exactly the bytes `Command::encode` wrote before sessions existed.
        let old = [1, 2, 0, 1, b'k'];
        assert_eq!(Envelope::decode(&old), Ok(del_k().into()));
        assert_eq!(&Envelope::from(del_k()).encode()[..], &old[..]);
        assert_eq!(Envelope::from(del_k()).to_string(), "DEL k");
    }

    #[test]
    fn a_plain_command_decoder_refuses_a_session_entry() {
        let e = Envelope {
            session: Some(header()),
            command: del_k(),
        };
        assert_eq!(
            Command::decode(&e.encode()),
            Err(CommandError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn malformed_headers_get_a_precise_error() {
        let cases: &[(&[u8], CommandError)] = &[
            (&[3, 2, 0, 1, b'k'], CommandError::UnsupportedVersion(3)),
            (&[2, 1, 2, 3], CommandError::Truncated("client id")),
            (&[2; 18], CommandError::Truncated("first unacknowledged")),
            (&[2; 22], CommandError::Truncated("op")),
        ];
        for (bytes, want) in cases {
            assert_eq!(Envelope::decode(bytes).as_ref(), Err(want), "{bytes:?}");
        }
    }

    fn arb_header() -> impl Strategy<Value = SessionHeader> {
        (any::<u128>(), any::<[u64; 5]>()).prop_map(|(client_id, v)| SessionHeader {
            client_id,
            seq: v[0],
            first_unacked: v[1],
            now_ms: v[2],
            idle_timeout_ms: v[3],
            max_sessions: v[4],
        })
    }

    proptest! {
        #[test]
        fn envelopes_round_trip(
            session in proptest::option::of(arb_header()),
            command in arb_command(),
        ) {
            let e = Envelope { session, command };
            let bytes = e.encode();
            prop_assert_eq!(Envelope::decode(&bytes), Ok(e.clone()));
            prop_assert_eq!(Envelope::decode_bytes(&bytes), Ok(e));
        }

        #[test]
        fn envelope_decode_accepts_only_canonical_bytes(
            data in proptest::collection::vec(any::<u8>(), 0..80)
        ) {
            if let Ok(e) = Envelope::decode(&data) {
                prop_assert_eq!(&e.encode()[..], &data[..]);
            }
        }

        #[test]
        fn mutated_session_entries_never_panic(
            h in arb_header(),
            command in arb_command(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = Envelope { session: Some(h), command }.encode().to_vec();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            let keep = cut.index(bytes.len() + 1);
            if let Ok(e) = Envelope::decode(&bytes[..keep]) {
                prop_assert_eq!(&e.encode()[..], &bytes[..keep]);
            }
        }
    }
}
