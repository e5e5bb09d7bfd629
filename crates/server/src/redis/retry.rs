//! Riding out a leader change. A Redis client cannot follow a NOT_LEADER hint
//! the way keel's own client does, so the node does it for the client: a request
//! refused because no leader is known (or the one it reached stopped leading)
//! was not applied, and is tried again once a leader is known, until the
//! request timeout.

use std::time::{Duration, Instant};

use keel_proto::error::{ErrorDetail, Kind};

use crate::api::ApiContext;

/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// Runs `attempt` until it succeeds, fails for another reason than a missing
/// leader, or the request timeout has passed.
pub(crate) async fn until_leader<T, F, Fut>(
    ctx: &ApiContext,
    mut attempt: F,
) -> Result<T, ErrorDetail>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ErrorDetail>>,
{
    let deadline = Instant::now() + ctx.limits.request_timeout;
    let mut tries = 0u32;
    loop {
        match attempt().await {
            Err(e) if leaderless(&e) && Instant::now() < deadline => {
                tries += 1;
                pause(ctx, deadline, tries).await;
            }
            result => return result,
        }
    }
}

/// Failures that prove nothing was applied and a leader change may cure.
fn leaderless(e: &ErrorDetail) -> bool {
    matches!(e.kind(), Kind::NotLeader | Kind::NoLeader)
}

/// Waits until some leader is known, then a little longer each try, so that a
/// cluster in the middle of an election is not hammered.
async fn pause(ctx: &ApiContext, deadline: Instant, tries: u32) {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut status = ctx.node.watch_status();
    let _ = tokio::time::timeout(left, status.wait_for(|s| s.leader != 0)).await;
    let backoff = (Duration::from_millis(5) * tries.min(40)).min(MAX_BACKOFF);
    tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now()))).await;
}
