//! The HTTP form of a client session: a `Keel-Session` request header
//! `<client id: 32 hex digits>/<seq>[/<first_unacked>[/<group>]]` makes a PUT,
//! POST or DELETE exactly-once, like the gRPC `ClientSession` (without
//! `first_unacked` it is `seq`: nothing earlier will be retried; without
//! `group` the session is group 1's, and a key another group owns is refused
//! with 421 `wrong_group`).

use axum::http::HeaderMap;
use bytes::Bytes;
use keel_proto::v1::ClientSession;

use super::http::{HttpError, bad_request};

/// The request header carrying the session.
pub(super) const SESSION_HEADER: &str = "keel-session";

/// The session named by the request's headers, if any.
pub(super) fn session_of(headers: &HeaderMap) -> Result<Option<ClientSession>, HttpError> {
    let Some(raw) = headers.get(SESSION_HEADER) else {
        return Ok(None);
    };
    parse(raw.to_str().unwrap_or_default())
        .map(Some)
        .ok_or_else(|| {
            bad_request(
                "Keel-Session must be <client id as 32 hex digits>/<seq>[/<first_unacked>[/<group>]]",
            )
        })
}

fn parse(raw: &str) -> Option<ClientSession> {
    let mut parts = raw.trim().split('/');
    let id = parts.next()?;
    if id.len() != 32 {
        return None;
    }
    let id = u128::from_str_radix(id, 16).ok()?;
    let seq: u64 = parts.next()?.parse().ok()?;
    let first_unacked = match parts.next() {
        Some(n) => n.parse().ok()?,
        None => seq,
    };
    let group = match parts.next() {
        Some(n) => n.parse().ok()?,
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(ClientSession {
        client_id: Bytes::copy_from_slice(&id.to_be_bytes()),
        seq,
        first_unacked,
        group,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_names_id_sequence_and_first_unacknowledged() {
        let s = parse("000102030405060708090a0b0c0d0e0f/7/5").expect("valid");
        assert_eq!(&s.client_id[..], &(0u8..16).collect::<Vec<_>>()[..]);
        assert_eq!((s.seq, s.first_unacked), (7, 5));
        let s = parse("ffffffffffffffffffffffffffffffff/3").expect("valid");
        assert_eq!((s.seq, s.first_unacked, s.group), (3, 3, 0));
        let s = parse("000102030405060708090a0b0c0d0e0f/7/5/2").expect("valid");
        assert_eq!((s.seq, s.first_unacked, s.group), (7, 5, 2));
        for bad in [
            "",
            "abc/1",
            "000102030405060708090a0b0c0d0e0f",
            "000102030405060708090a0b0c0d0e0f/x",
            "000102030405060708090a0b0c0d0e0f/1/2/3/4",
            "000102030405060708090a0b0c0d0e0f/1/2/x",
            "g00102030405060708090a0b0c0d0e0f/1",
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
        let mut headers = HeaderMap::new();
        assert!(session_of(&headers).expect("none").is_none());
        headers.insert(SESSION_HEADER, "nonsense".parse().expect("header"));
        assert!(session_of(&headers).is_err());
    }
}
