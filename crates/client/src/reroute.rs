//! What a session write does when it meets a slot in another group, or one in
//! hand-off (docs/sharding.md, *Sessions across moves*).
//!
//! A session write belongs to the group whose session numbered it (its
//! [`crate::session::Ticket`]'s group), and every attempt of it goes there
//! with the same number. That group's answer settles it: the result (from its
//! session table if a retry), or `WRONG_GROUP`/`SLOT_MOVING` from its state
//! machine, which looks the number up in its session table first, so such an
//! answer means the number was never applied there (and, the slot being fenced
//! or gone, never will be). Only then is the write sent again, as a new write
//! with a new number, in the session of the group the map names now.
//!
//! A `WRONG_GROUP` a node gives from its own map (routing, or the session
//! check) did not ask the group. It settles nothing for a write an earlier
//! attempt may have applied: that write keeps going to its group, with its
//! number, until the group answers (or the retry window ends in
//! `OutcomeUnknown`). An unknown outcome is never re-sent to another group.

use keel_placement::GroupId;

/// What to do after an attempt of a session write was answered `WRONG_GROUP`
/// or `SLOT_MOVING`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotVerdict {
    /// The write was definitely not applied: give up its number and send it as
    /// a new write to the owner the (refreshed) map names.
    Reroute,
    /// The write may have been applied by an earlier attempt and the answer
    /// did not come from its group: retry in the same group, same number.
    RetryInGroup,
}

/// The verdict on a slot answer: `by_group` says the group's state machine
/// gave it, `maybe_applied` that an earlier attempt may have applied the write.
pub(crate) fn slot_verdict(by_group: bool, maybe_applied: bool) -> SlotVerdict {
    if by_group || !maybe_applied {
        SlotVerdict::Reroute
    } else {
        SlotVerdict::RetryInGroup
    }
}

/// A session write's attempts in one group ended with a definite "not
/// applied" for a slot reason; it is to be sent again elsewhere or later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reroute {
    /// `SLOT_MOVING` (the hand-off is under way: wait before the next try).
    pub(crate) moving: bool,
    /// The map version the answer named (0: unknown).
    pub(crate) map_version: u64,
    /// Attempts the call made.
    pub(crate) attempts: u32,
    /// The last answer, for the error if the deadline ends the write.
    pub(crate) reason: String,
}

/// Whether a write its group refused keeps its number for the next try: yes
/// while the slot is in hand-off (`SLOT_MOVING`) and the map still names the
/// group that refused. The group's refusal proves only that the number was
/// not applied *yet*: if the move aborts, the group serves the slot again,
/// and an older attempt of the write still on its way (a retry after a lost
/// reply) could apply after a resend under a new number — twice. Under its
/// own number the session table applies it once. Once the map names another
/// owner the move committed, the source never applies the slot's writes
/// again, and the write may go to the owner as a new one.
pub(crate) fn keep_number(reroute: &Reroute, refused: GroupId, owner: GroupId) -> bool {
    reroute.moving && refused == owner
}

/// Whether to back off before sending a rerouted write again: always during a
/// hand-off, and whenever the map still names the group that just refused
/// (an immediate resend would meet the same answer); a write whose slot's
/// owner changed goes to the new owner at once.
pub(crate) fn wait_before_resend(reroute: &Reroute, refused: GroupId, owner: GroupId) -> bool {
    reroute.moving || refused == owner
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_refused_as_moving_keeps_its_number_until_another_group_owns_the_slot() {
        let moving = Reroute {
            moving: true,
            map_version: 0,
            attempts: 1,
            reason: String::new(),
        };
        assert!(keep_number(&moving, 1, 1));
        assert!(!keep_number(&moving, 1, 2));
        let elsewhere = Reroute {
            moving: false,
            ..moving
        };
        assert!(!keep_number(&elsewhere, 1, 1));
        assert!(!keep_number(&elsewhere, 1, 2));
    }

    #[test]
    fn an_unknown_outcome_is_never_sent_to_another_group() {
        // An earlier attempt may have applied the write: only the group's own
        // answer lets it go elsewhere; a node's map-based answer keeps it home.
        assert_eq!(slot_verdict(false, true), SlotVerdict::RetryInGroup);
        assert_eq!(slot_verdict(true, true), SlotVerdict::Reroute);
        // Nothing may have applied it: any slot answer is definite.
        assert_eq!(slot_verdict(false, false), SlotVerdict::Reroute);
        assert_eq!(slot_verdict(true, false), SlotVerdict::Reroute);
    }

    #[test]
    fn a_rerouted_write_waits_unless_the_owner_changed() {
        let reroute = |moving| Reroute {
            moving,
            map_version: 3,
            attempts: 1,
            reason: String::new(),
        };
        assert!(!wait_before_resend(&reroute(false), 1, 2));
        assert!(wait_before_resend(&reroute(false), 2, 2));
        assert!(wait_before_resend(&reroute(true), 1, 2));
    }
}
