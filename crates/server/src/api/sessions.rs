//! Client sessions at the API: a write's session is checked, then stamped with
//! this node's clock and the session policy before it is proposed; a refusal by
//! the state machine becomes the error the client acts on. Also the lost-reply
//! test fault, which makes clients retry writes that did happen.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use keel_placement::GroupId;
use keel_proto::error::ErrorDetail;
use keel_proto::v1::ClientSession;
use keel_storage::command::SessionHeader;
use keel_storage::kv::SessionRejection;

use super::ApiLimits;
use super::route::KeyRoute;
use crate::node::KV_GROUP;

/// The entry header for a request's session (`None`: the write has none).
///
/// The leader's clock and policy go into the entry, not each replica's, so that
/// every replica expires and evicts sessions at the same entry. A clock set before
/// 1970 counts as 0: the state machine's clock never goes back anyway.
pub(super) fn header(
    limits: &ApiLimits,
    session: Option<&ClientSession>,
) -> Result<Option<SessionHeader>, ErrorDetail> {
    let Some(s) = session else {
        return Ok(None);
    };
    let id: [u8; 16] = s.client_id[..].try_into().map_err(|_| {
        ErrorDetail::invalid_argument(format!(
            "session client_id must be 16 bytes, got {}",
            s.client_id.len()
        ))
    })?;
    if s.seq == 0 || s.first_unacked == 0 || s.first_unacked > s.seq {
        return Err(ErrorDetail::invalid_argument(format!(
            "session numbers must satisfy 1 <= first_unacked <= seq, got first_unacked {} \
             and seq {}",
            s.first_unacked, s.seq
        )));
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Ok(Some(SessionHeader {
        client_id: u128::from_be_bytes(id),
        seq: s.seq,
        first_unacked: s.first_unacked,
        now_ms,
        idle_timeout_ms: limits.session_idle_timeout_ms,
        max_sessions: limits.max_client_sessions,
    }))
}

/// The group whose session `s` is: its `group` field, 0 meaning group 1 (the
/// only group before sharding, so older clients' sessions are group 1's).
pub(super) fn group_of(s: &ClientSession) -> GroupId {
    if s.group == 0 { KV_GROUP } else { s.group }
}

/// Refuses a session write that routing sends to a group other than its
/// session's. Sessions are per group (each group's state machine numbers a
/// client's writes on its own), so proposing it elsewhere would be checked
/// against the wrong sequence. The answer is `WRONG_GROUP` with the slot and
/// this node's map version, like routing's own: not applied, nothing proposed.
/// It is not the group's answer (`by_group` stays false), so a client whose
/// earlier attempt of the write may have applied it keeps asking that group.
pub(super) fn check_group(
    session: Option<&ClientSession>,
    route: &KeyRoute,
) -> Result<(), ErrorDetail> {
    let Some(session) = session else {
        return Ok(());
    };
    let named = group_of(session);
    if named == route.group {
        return Ok(());
    }
    Err(ErrorDetail::wrong_group(
        route.slot.get(),
        route.map_version,
        format!(
            "the write's session is group {named}'s, but slot {} belongs to group {} \
             (cluster map version {}); refresh the map and send it in the owner's session",
            route.slot.get(),
            route.group,
            route.map_version
        ),
    ))
}

/// What the client is told when the state machine refused a session write.
pub(super) fn rejection(why: SessionRejection) -> ErrorDetail {
    match why {
        SessionRejection::UnknownSession | SessionRejection::Forgotten { .. } => {
            ErrorDetail::session_expired(why.to_string())
        }
        // Nothing was applied and a retry may find room: back off and retry.
        SessionRejection::TooManySessions => ErrorDetail::overloaded(why.to_string()),
    }
}

/// The lost-reply test fault: every Nth write's answer is replaced by
/// OUTCOME_UNKNOWN after the write was applied.
#[derive(Debug)]
pub(super) struct LostReplies {
    every: u64,
    writes: AtomicU64,
}

impl LostReplies {
    /// Loses every `n`th reply; never if `n` is 0.
    pub(super) fn every(n: u64) -> Self {
        LostReplies {
            every: n,
            writes: AtomicU64::new(0),
        }
    }

    /// Whether the reply to the write just applied is to be lost.
    pub(super) fn lose(&self) -> bool {
        self.every != 0
            && (self.writes.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(self.every)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use keel_proto::error::Kind;

    use super::*;
    use crate::config::DefaultReadMode;

    fn limits() -> ApiLimits {
        ApiLimits {
            max_value_bytes: 1,
            max_scan_limit: 1,
            request_timeout: Duration::from_secs(1),
            default_read_mode: DefaultReadMode::Linearizable,
            session_idle_timeout_ms: 60_000,
            max_client_sessions: 5,
            fault_lose_write_reply_every: 0,
        }
    }

    fn session(id_len: usize, seq: u64, first_unacked: u64) -> ClientSession {
        ClientSession {
            client_id: Bytes::from(vec![1; id_len]),
            seq,
            first_unacked,
            group: 0,
        }
    }

    fn route(group: u64) -> KeyRoute {
        KeyRoute {
            group,
            slot: keel_placement::Slot::new(77).expect("a slot"),
            map_version: 9,
        }
    }

    #[test]
    fn a_session_write_goes_only_to_its_sessions_group() {
        // Without a session, and with group 1's (0 or 1), group 1 passes.
        assert_eq!(check_group(None, &route(2)), Ok(()));
        let old_client = session(16, 1, 1);
        assert_eq!(group_of(&old_client), 1);
        assert_eq!(check_group(Some(&old_client), &route(1)), Ok(()));
        let group_1 = ClientSession {
            group: 1,
            ..session(16, 1, 1)
        };
        assert_eq!(check_group(Some(&group_1), &route(1)), Ok(()));
        // A group-1 session routed to group 2, and the other way round, are
        // WRONG_GROUP with the slot and the map version, not by the group.
        let group_2 = ClientSession {
            group: 2,
            ..session(16, 3, 2)
        };
        assert_eq!(check_group(Some(&group_2), &route(2)), Ok(()));
        for (s, r) in [(&old_client, route(2)), (&group_2, route(1))] {
            let e = check_group(Some(s), &r).expect_err("another group's session");
            assert_eq!(e.kind(), Kind::WrongGroup);
            assert_eq!((e.slot, e.map_version, e.by_group), (77, 9, false));
            assert!(e.message.contains("session"), "{}", e.message);
        }
    }

    #[test]
    fn sessions_are_checked_and_stamped() {
        assert_eq!(header(&limits(), None), Ok(None));
        let h = header(&limits(), Some(&session(16, 4, 2)))
            .expect("valid")
            .expect("a header");
        assert_eq!((h.seq, h.first_unacked), (4, 2));
        assert_eq!((h.idle_timeout_ms, h.max_sessions), (60_000, 5));
        assert_eq!(h.client_id, u128::from_be_bytes([1; 16]));
        assert!(h.now_ms > 1_600_000_000_000, "a wall clock in ms");
        for bad in [session(15, 1, 1), session(16, 0, 0), session(16, 2, 3)] {
            let e = header(&limits(), Some(&bad)).expect_err("refused");
            assert_eq!(e.kind(), Kind::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn refusals_map_to_what_the_client_must_do() {
        assert_eq!(
            rejection(SessionRejection::UnknownSession).kind(),
            Kind::SessionExpired
        );
        assert_eq!(
            rejection(SessionRejection::Forgotten { lowest_known: 3 }).kind(),
            Kind::SessionExpired
        );
        assert_eq!(
            rejection(SessionRejection::TooManySessions).kind(),
            Kind::Overloaded
        );
    }

    #[test]
    fn every_nth_reply_is_lost() {
        let off = LostReplies::every(0);
        assert!((0..10).all(|_| !off.lose()));
        let third = LostReplies::every(3);
        let lost: Vec<bool> = (0..6).map(|_| third.lose()).collect();
        assert_eq!(lost, [false, false, true, false, false, true]);
    }
}
