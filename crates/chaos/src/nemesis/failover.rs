//! The failover nemesis: the leader cut off while its followers learn of commits
//! late, and then a lull in the writes.
//!
//! 1. Every link between nodes slows down (each chunk delayed by a random
//!    20-80 ms in the proxy; the clients' own links stay fast). A follower now
//!    learns that an entry is committed one delay after the leader acknowledged
//!    it to its client, so at any moment the writes acknowledged in the last
//!    delay are committed without any follower knowing it.
//! 2. Halfway through the hold a write lull begins ([`crate::lull`]): the
//!    clients only read until the repair. Once the writes in flight are
//!    answered, the leader of that moment is cut off from every other node at
//!    once (the delay stays). Whoever is elected next inherits a commit index
//!    below the last writes, and it must commit an entry of its own term (its
//!    NO-OP) before it serves a read (thesis §6.4). No client write does that job
//!    for it: none is in flight, none begins, and the reads are about the keys
//!    just written.
//!
//! The fault lasts half a hold slowed and a whole hold cut off.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Target, partition};
use crate::cluster;
use crate::proxy::Rules;
use crate::rng::Rng;

/// The delay of the first stage, `(min, max)` milliseconds: tens of
/// milliseconds, well inside keel's election timeout (300 ms).
pub(crate) fn delay_ms(rng: &mut Rng) -> (u64, u64) {
    let lo = rng.range(20, 40);
    (lo, lo + rng.range(0, 40))
}

/// The rules of the second stage: `leader` (if known) cut off from everyone,
/// every link still delayed by `delay_ms`.
pub(crate) fn cut_rules(ids: &[u64], leader: Option<u64>, delay_ms: (u64, u64)) -> Rules {
    Rules {
        blocked: leader.map_or_else(BTreeSet::new, |l| partition::isolate(ids, l)),
        delay_ms: Some(delay_ms),
        ..Rules::default()
    }
}

/// How long the second stage waits for the writes in flight to finish before
/// it cuts the leader off anyway (the workload's call deadline).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The second stage: starts the write lull, waits for the writes in flight to
/// be answered, and at once cuts the leader off; says what it did.
pub(crate) async fn cut(target: &Target, delay_ms: (u64, u64)) -> anyhow::Result<String> {
    let leader = cluster::leader(&target.client, &target.endpoints()).await;
    let ids = target.nodes().ids();
    target.lull.start();
    // A write still in flight at the cut would be retried at the new leader by
    // its client and commit an entry of the new term, doing the NO-OP's job.
    // The last answers go out less than one delay before the cut, so the
    // followers have not heard that they are committed.
    let drained = target.lull.drained(DRAIN_TIMEOUT).await;
    target
        .net
        .set_rules_at_once(cut_rules(&ids, leader, delay_ms))?;
    let mut detail = match leader {
        Some(l) => format!("; then the clients only read and node {l} (the leader) is isolated"),
        None => "; then the clients only read (no leader to isolate)".into(),
    };
    if !drained {
        detail.push_str(&format!(
            " with {} writes still in flight",
            target.lull.writes_in_flight()
        ));
    }
    Ok(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_is_cut_off_and_links_stay_slow() {
        let ids = [1, 2, 3, 4, 5];
        let rules = cut_rules(&ids, Some(3), (25, 60));
        assert_eq!(rules.delay_ms, Some((25, 60)));
        assert_eq!(rules.blocked, partition::isolate(&ids, 3));
        assert!(rules.blocked.iter().all(|&(a, b)| a == 3 || b == 3));
        assert!(!rules.blocked.contains(&(1, 2)));

        let nobody = cut_rules(&ids, None, (25, 60));
        assert!(nobody.blocked.is_empty());
        assert_eq!(nobody.delay_ms, Some((25, 60)));
    }

    #[test]
    fn delays_are_tens_of_milliseconds() {
        let mut rng = Rng::new(5);
        for _ in 0..200 {
            let (lo, hi) = delay_ms(&mut rng);
            assert!((20..=40).contains(&lo) && lo <= hi && hi <= 80, "{lo}-{hi}");
        }
    }
}
