use std::collections::BTreeSet;

use clap::Parser;

use super::*;
use crate::shard_cmd::ShardCommand;

/// `keel shard ...` as clap parses it.
#[derive(Parser, Debug)]
struct Shard {
    #[command(subcommand)]
    command: ShardCommand,
}

fn parse(args: &[&str]) -> Result<ShardCommand, String> {
    Shard::try_parse_from(std::iter::once("shard").chain(args.iter().copied()))
        .map(|s| s.command)
        .map_err(|e| e.to_string())
}

fn slot(n: u16) -> Slot {
    Slot::new(n).expect("in range")
}

#[test]
fn move_takes_a_slot_a_target_and_an_optional_wait() {
    let Ok(ShardCommand::Move(a)) = parse(&["move", "4095", "--to", "2"]) else {
        panic!("a move");
    };
    assert_eq!((a.slot, a.to, a.wait), (slot(4095), 2, false));
    let Ok(ShardCommand::Move(a)) = parse(&["move", "7", "--to", "3", "--wait", "--timeout", "90s"])
    else {
        panic!("a move");
    };
    assert_eq!((a.wait, a.timeout), (true, Duration::from_secs(90)));
    // Bad input is refused before anything is sent.
    let e = parse(&["move", "4096", "--to", "2"]).expect_err("out of range");
    assert!(e.contains("slot 4096 is out of range"), "{e}");
    let e = parse(&["move", "x", "--to", "2"]).expect_err("not a number");
    assert!(e.contains("not a slot number"), "{e}");
    assert!(parse(&["move", "7"]).is_err(), "--to is required");
    let e = parse(&["move", "7", "--to", "2", "--timeout", "5s"]).expect_err("needs --wait");
    assert!(e.contains("--wait"), "{e}");
}

#[test]
fn abort_move_and_rebalance_parse_and_check_their_input() {
    let Ok(ShardCommand::AbortMove(a)) = parse(&["abort-move", "12"]) else {
        panic!("an abort");
    };
    assert_eq!(a.slot, slot(12));
    assert!(parse(&["abort-move"]).is_err());
    let Ok(ShardCommand::Rebalance(a)) = parse(&["rebalance"]) else {
        panic!("a rebalance");
    };
    assert_eq!((a.max_moves, a.dry_run), (16, false));
    let Ok(ShardCommand::Rebalance(a)) = parse(&["rebalance", "--max-moves", "3", "--dry-run"])
    else {
        panic!("a rebalance");
    };
    assert_eq!((a.max_moves, a.dry_run), (3, true));
    assert!(parse(&["rebalance", "--max-moves", "0"]).is_err());
    assert!(parse(&["rebalance", "--max-moves", "257"]).is_err());
}

#[test]
fn durations_take_a_unit_or_mean_seconds() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
    assert!(parse_duration("0s").is_err());
    assert!(parse_duration("1h").is_err());
    assert!(parse_duration("soon").is_err());
    assert!(parse_duration("").is_err());
}

/// Nodes 1..=3 and groups 1 and 2 on all of them.
fn two_groups() -> ClusterMap {
    let mut map = ClusterMap::new();
    for n in 1..=3 {
        map.apply(&MapCommand::RegisterNode {
            node: n,
            address: format!("127.0.0.1:{}", 7000 + n),
        })
        .expect("register");
    }
    for _ in 0..2 {
        map.apply(&MapCommand::CreateGroup {
            members: BTreeSet::from([1, 2, 3]),
            target_replicas: 3,
        })
        .expect("create");
    }
    map
}

#[test]
fn wait_tells_a_committed_move_from_an_aborted_one() {
    let mut map = two_groups();
    let before = map.clone();
    assert_eq!(move_state(&map, slot(7), 2, 0), MoveState::Aborted(Some(1)));
    map.apply(&MapCommand::BeginSlotMove {
        slot: slot(7),
        to: 2,
    })
    .expect("begin");
    let epoch = map.version();
    assert_eq!(move_state(&map, slot(7), 2, epoch), MoveState::Moving);
    // A node's copy from before the begin says nothing yet.
    assert_eq!(move_state(&before, slot(7), 2, epoch), MoveState::Moving);
    let mut aborted = map.clone();
    aborted
        .apply(&MapCommand::AbortSlotMove {
            slot: slot(7),
            epoch,
        })
        .expect("abort");
    assert_eq!(
        move_state(&aborted, slot(7), 2, epoch),
        MoveState::Aborted(Some(1))
    );
    map.apply(&MapCommand::CommitSlotMove {
        slot: slot(7),
        epoch,
    })
    .expect("commit");
    assert_eq!(move_state(&map, slot(7), 2, epoch), MoveState::Done);
}

#[test]
fn planned_moves_print_slot_and_groups() {
    let m = PlannedMove {
        slot: slot(4095),
        from: 1,
        to: 2,
    };
    assert_eq!(planned_text(&m), "slot 4095: group 1 -> group 2");
    // The plan for two full groups: half the slots, the highest first.
    let plan = rebalance(&two_groups(), 3);
    assert_eq!(plan.len(), 3);
    assert!(plan.iter().all(|m| m.from == 1 && m.to == 2));
}
