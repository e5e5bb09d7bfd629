//! `keel shard move|abort-move|rebalance`: an operator's slot moves, sent as
//! map commands (`Cluster.ChangeMap`) through any node to the placement
//! group's leader (docs/sharding.md, *Moving a slot*).
//!
//! - `move SLOT --to GROUP` begins a move (`BeginSlotMove`); with `--wait` it
//!   then reads the map until the slot's owner is GROUP (committed) or the
//!   move is gone without that (aborted), or `--timeout` passes.
//! - `abort-move SLOT` aborts the slot's move in flight (`AbortSlotMove`,
//!   with the move's epoch read from the map).
//! - `rebalance` plans the fewest moves that spread the slots evenly over
//!   the full groups (`keel_placement::plan::rebalance`) and begins each;
//!   `--dry-run` only prints them.
//!
//! Bad input (a slot out of range, a zero move count, a bad duration) is
//! refused before anything is sent; a command placement refuses (an unknown
//! group, the slot's own owner, a slot already moving elsewhere) changes
//! nothing and says why.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use keel_client::{Client, ClusterMap, GroupId, MapCommand, Slot};
use keel_placement::plan::{PlannedMove, rebalance};

use crate::client_cmds::{ConnArgs, report};

/// How often `--wait` reads the map.
const POLL: Duration = Duration::from_millis(200);

#[derive(Args, Debug)]
pub(crate) struct MoveArgs {
    /// The slot (0..=4095).
    #[arg(value_parser = parse_slot)]
    slot: Slot,
    /// The group it moves to.
    #[arg(long, value_name = "GROUP")]
    to: GroupId,
    /// Wait until the move committed or was aborted, and say which.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up waiting after this long (`90s`, `500ms`, `2m`;
    /// a bare number is seconds). The move itself goes on.
    #[arg(long, value_parser = parse_duration, default_value = "60s", requires = "wait")]
    timeout: Duration,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Args, Debug)]
pub(crate) struct AbortArgs {
    /// The slot whose move to abort.
    #[arg(value_parser = parse_slot)]
    slot: Slot,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Args, Debug)]
pub(crate) struct RebalanceArgs {
    /// Begin at most this many moves.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=256))]
    max_moves: u32,
    /// Print the planned moves without beginning any.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    conn: ConnArgs,
}

/// A slot number within the slot space.
pub(crate) fn parse_slot(s: &str) -> Result<Slot, String> {
    let n: u16 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a slot number (0..=4095)"))?;
    Slot::new(n).ok_or_else(|| format!("slot {n} is out of range: slots are 0..=4095"))
}

/// `500ms`, `90s`, `2m`, or a bare number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 500ms, 90s, 2m)"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(format!("`{s}`: the unit must be ms, s or m")),
    };
    if d.is_zero() {
        return Err("the duration must be more than zero".into());
    }
    Ok(d)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `keel shard move`.
pub(crate) fn run_move(a: MoveArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let client = a.conn.client()?;
        let begin = MapCommand::BeginSlotMove {
            slot: a.slot,
            to: a.to,
        };
        let outcome = match client.change_map(&begin).await {
            Ok(o) => o,
            Err(e) => return Ok(report(&e)),
        };
        let map = &outcome.map;
        let slot = a.slot.get();
        match map.moves().get(&a.slot) {
            Some(m) if outcome.changed => println!(
                "began moving slot {slot} from group {} to group {} (epoch {}, map version {})",
                m.from,
                m.to,
                m.epoch,
                map.version()
            ),
            Some(m) => println!(
                "slot {slot} is already moving from group {} to group {} (epoch {}); nothing \
                 changed (map version {})",
                m.from,
                m.to,
                m.epoch,
                map.version()
            ),
            None => println!(
                "slot {slot} belongs to group {} (map version {})",
                owner_text(map, a.slot),
                map.version()
            ),
        }
        if !a.wait {
            return Ok(ExitCode::SUCCESS);
        }
        let since = map.version();
        Ok(wait_for(&client, a.slot, a.to, since, a.timeout).await)
    })
}

/// What `--wait` saw last.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum MoveState {
    /// The slot belongs to the target.
    Done,
    /// No move of the slot is in flight and another group owns it.
    Aborted(Option<GroupId>),
    /// Still in flight, or `map` is older than the begin (a node's cached
    /// copy may lag): look again.
    Moving,
}

/// Where the move of `slot` to `to`, begun at map version `since` or
/// before, stands in `map`.
pub(crate) fn move_state(map: &ClusterMap, slot: Slot, to: GroupId, since: u64) -> MoveState {
    if map.version() < since {
        return MoveState::Moving;
    }
    if map.owner(slot) == Some(to) {
        return MoveState::Done;
    }
    match map.moves().get(&slot) {
        Some(m) if m.to == to => MoveState::Moving,
        _ => MoveState::Aborted(map.owner(slot)),
    }
}

async fn wait_for(
    client: &Client,
    slot: Slot,
    to: GroupId,
    since: u64,
    timeout: Duration,
) -> ExitCode {
    let deadline = Instant::now() + timeout;
    loop {
        match client.cluster_map().await {
            Ok(map) => match move_state(&map, slot, to, since) {
                MoveState::Done => {
                    println!(
                        "slot {} now belongs to group {to} (map version {})",
                        slot.get(),
                        map.version()
                    );
                    return ExitCode::SUCCESS;
                }
                MoveState::Aborted(owner) => {
                    eprintln!(
                        "keel: the move of slot {} to group {to} ended without committing: \
                         group {} owns it (map version {})",
                        slot.get(),
                        owner.map_or_else(|| "?".into(), |g| g.to_string()),
                        map.version()
                    );
                    return ExitCode::from(1);
                }
                MoveState::Moving => {}
            },
            Err(e) if Instant::now() >= deadline => return report(&e),
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            eprintln!(
                "keel: slot {} is still moving to group {to} after {timeout:?}; the move goes on \
                 (`keel shard map` shows it, `keel shard abort-move {}` stops it)",
                slot.get(),
                slot.get()
            );
            return ExitCode::from(2);
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// `keel shard abort-move`.
pub(crate) fn run_abort(a: AbortArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let client = a.conn.client()?;
        let map = match client.cluster_map().await {
            Ok(map) => map,
            Err(e) => return Ok(report(&e)),
        };
        let Some(m) = map.moves().get(&a.slot).copied() else {
            bail!(
                "no move of slot {} is in flight (group {} owns it, map version {}); nothing changed",
                a.slot.get(),
                owner_text(&map, a.slot),
                map.version()
            );
        };
        let abort = MapCommand::AbortSlotMove {
            slot: a.slot,
            epoch: m.epoch,
        };
        match client.change_map(&abort).await {
            Ok(outcome) => {
                println!(
                    "aborted the move of slot {} to group {} (epoch {}); group {} keeps it \
                     (map version {})",
                    a.slot.get(),
                    m.to,
                    m.epoch,
                    owner_text(&outcome.map, a.slot),
                    outcome.map.version()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Ok(report(&e)),
        }
    })
}

/// `keel shard rebalance`.
pub(crate) fn run_rebalance(a: RebalanceArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let client = a.conn.client()?;
        let map = match client.cluster_map().await {
            Ok(map) => map,
            Err(e) => return Ok(report(&e)),
        };
        let planned = rebalance(&map, a.max_moves as usize);
        if planned.is_empty() {
            println!(
                "nothing to move: the slots are spread evenly over the full groups (map version {})",
                map.version()
            );
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "{} move(s) planned from map version {}:",
            planned.len(),
            map.version()
        );
        for m in &planned {
            println!("  {}", planned_text(m));
        }
        if a.dry_run {
            println!("dry run: nothing was begun");
            return Ok(ExitCode::SUCCESS);
        }
        for (i, m) in planned.iter().enumerate() {
            match client.change_map(&m.begin()).await {
                Ok(outcome) => {
                    let epoch = outcome
                        .map
                        .moves()
                        .get(&m.slot)
                        .map_or_else(|| "?".into(), |mv| mv.epoch.to_string());
                    println!("began {} (epoch {epoch})", planned_text(m));
                }
                Err(e) => {
                    eprintln!(
                        "keel: {} of {} planned moves began; the next failed",
                        i,
                        planned.len()
                    );
                    return Ok(report(&e));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn planned_text(m: &PlannedMove) -> String {
    format!(
        "slot {}: group {} -> group {}",
        m.slot.get(),
        m.from,
        m.to
    )
}

fn owner_text(map: &ClusterMap, slot: Slot) -> String {
    map.owner(slot)
        .map_or_else(|| "none".into(), |g| g.to_string())
}

#[cfg(test)]
#[path = "shard_move_cmd_tests.rs"]
mod tests;
