//! Properties that must hold for any sequence of commands, and for any
//! rebalance plan.

use std::collections::BTreeMap;

use keel_placement::plan;
use keel_placement::{ClusterMap, Command, GroupId, PlacementMachine, Slot};
use proptest::prelude::*;

/// A command described by picks among what the map holds, resolved when it is
/// applied: random ids would almost never name a real node, group or move, and
/// the sequences would test little beyond refusals. `wild` makes a pick name
/// something that may not exist (or be invalid) instead.
#[derive(Clone, Debug)]
struct Op {
    kind: Kind,
    picks: [usize; 3],
    wild: bool,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Register,
    Drain,
    RemoveNode,
    Create,
    RemoveGroup,
    SetTarget,
    AddMember,
    RemoveMember,
    Begin,
    Commit,
    Abort,
}

fn op() -> impl Strategy<Value = Op> {
    use Kind::*;
    let kind = prop_oneof![
        3 => Just(Register),
        1 => Just(Drain),
        1 => Just(RemoveNode),
        2 => Just(Create),
        1 => Just(RemoveGroup),
        1 => Just(SetTarget),
        2 => Just(AddMember),
        2 => Just(RemoveMember),
        4 => Just(Begin),
        3 => Just(Commit),
        1 => Just(Abort),
    ];
    (kind, any::<[usize; 3]>(), proptest::bool::weighted(0.15)).prop_map(|(kind, picks, wild)| Op {
        kind,
        picks,
        wild,
    })
}

/// The `pick`-th of `items`, if there are any.
fn nth<T: Copy>(items: impl IntoIterator<Item = T>, pick: usize) -> Option<T> {
    let items: Vec<T> = items.into_iter().collect();
    (!items.is_empty()).then(|| items[pick % items.len()])
}

fn resolve(map: &ClusterMap, op: Op) -> Command {
    let [a, b, c] = op.picks;
    let wild = op.wild;
    let node = |pick: usize| match nth(map.nodes().keys().copied(), pick) {
        Some(n) if !wild => n,
        _ => (pick % 11) as u64,
    };
    let group = |pick: usize| match nth(map.groups().keys().copied(), pick) {
        Some(g) if !wild => g,
        _ => (pick % 8) as u64,
    };
    let target = |pick: usize| {
        if wild {
            (pick % 9) as u8
        } else {
            (pick % 4) as u8 + 1
        }
    };
    let moving = nth(map.moves().iter().map(|(&s, m)| (s, m.epoch)), a)
        .map(|(s, e)| (s, e + u64::from(wild)))
        .unwrap_or((
            Slot::new((a % 4096) as u16).expect("in range"),
            b as u64 % 4,
        ));
    match op.kind {
        Kind::Register => {
            let id = (a % 9) as u64 + 1;
            let address = match (wild, c % 6) {
                (true, 0) => String::new(),
                (true, _) => "two words:1".to_owned(),
                // Now and then another node's address.
                (false, 0) => format!("h{}:1", b % 9 + 1),
                (false, _) => format!("h{id}:1"),
            };
            Command::RegisterNode { node: id, address }
        }
        Kind::Drain => Command::DrainNode { node: node(a) },
        Kind::RemoveNode => Command::RemoveNode { node: node(a) },
        Kind::Create => Command::CreateGroup {
            members: (0..a % 4 + usize::from(wild))
                .map(|i| node(b.wrapping_add(i)))
                .collect(),
            target_replicas: target(c),
        },
        Kind::RemoveGroup => Command::RemoveGroup { group: group(a) },
        Kind::SetTarget => Command::SetTargetReplicas {
            group: group(a),
            target_replicas: target(b),
        },
        Kind::AddMember => Command::AddGroupMember {
            group: group(a),
            node: node(b),
        },
        Kind::RemoveMember => Command::RemoveGroupMember {
            group: group(a),
            node: node(b),
        },
        Kind::Begin => {
            // Mostly a few slots, so that moves meet; sometimes any.
            let n = if c % 3 == 0 { c % 4096 } else { c % 4 };
            let slot = Slot::new(n as u16).expect("in range");
            Command::BeginSlotMove { slot, to: group(b) }
        }
        Kind::Commit => Command::CommitSlotMove {
            slot: moving.0,
            epoch: moving.1,
        },
        Kind::Abort => Command::AbortSlotMove {
            slot: moving.0,
            epoch: moving.1,
        },
    }
}

/// The rules of the map, checked independently of `validate`.
fn check_rules(map: &ClusterMap) {
    map.validate().expect("validate agrees");
    for slot in Slot::all() {
        match map.owner(slot) {
            Some(owner) => assert!(
                map.groups().contains_key(&owner),
                "slot {slot} owned by a group"
            ),
            None => assert!(
                map.groups().is_empty(),
                "slot {slot} unowned while groups exist"
            ),
        }
    }
    for (slot, m) in map.moves() {
        assert_eq!(map.owner(*slot), Some(m.from), "a move starts at the owner");
        assert_ne!(m.from, m.to);
        assert!(map.groups().contains_key(&m.to));
    }
    for g in map.groups().values() {
        assert!(!g.members.is_empty() && g.members.iter().all(|n| map.nodes().contains_key(n)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_command_sequence_keeps_the_rules(ops in proptest::collection::vec(op(), 1..80)) {
        let mut map = ClusterMap::new();
        for op in ops {
            let command = resolve(&map, op);
            let before = map.clone();
            match map.apply(&command) {
                Err(_) => prop_assert_eq!(&map, &before, "a refused command changed the map"),
                Ok(applied) => {
                    prop_assert_eq!(applied.changed, map != before, "changed means changed");
                    prop_assert_eq!(map.version(), before.version() + u64::from(applied.changed));
                    prop_assert_eq!(applied.version, map.version());
                    let creates = matches!(command, Command::CreateGroup { .. });
                    prop_assert_eq!(applied.created_group.is_some(), creates);
                }
            }
            check_rules(&map);
        }
        prop_assert_eq!(ClusterMap::decode(&map.encode()), Ok(map));
    }

    #[test]
    fn replaying_a_log_gives_the_same_map(ops in proptest::collection::vec(op(), 1..60)) {
        // Two replicas applying the same log: same answers, same map.
        let (mut a, mut b) = (ClusterMap::new(), ClusterMap::new());
        for op in ops {
            let command = resolve(&a, op);
            prop_assert_eq!(a.apply(&command), b.apply(&command));
        }
        prop_assert_eq!(a.encode(), b.encode());
    }

    #[test]
    fn a_snapshot_plus_the_rest_of_the_log_is_the_whole_log(
        ops in proptest::collection::vec((op(), proptest::bool::weighted(0.2)), 1..60),
        cut in any::<proptest::sample::Index>(),
    ) {
        // The log as the placement group's leader would build it: commands
        // resolved against its map, now and then an entry without one.
        let mut leader = one_node_cluster();
        let mut log: Vec<Option<Vec<u8>>> = Vec::new();
        for (op, empty) in ops {
            let entry = (!empty).then(|| resolve(leader.map(), op).encode());
            let index = log.len() as u64 + 1;
            leader.apply(index, entry.as_deref()).expect("in order");
            log.push(entry);
        }
        // A replica that restarts from a snapshot taken at `cut`, then applies
        // the rest of the log, ends as the one that applied all of it.
        let cut = cut.index(log.len() + 1);
        let mut before_cut = one_node_cluster();
        for (i, entry) in log[..cut].iter().enumerate() {
            before_cut.apply(i as u64 + 1, entry.as_deref()).expect("in order");
        }
        let mut restored = PlacementMachine::restore(&before_cut.snapshot()).expect("restore");
        prop_assert_eq!(&restored, &before_cut);
        for (i, entry) in log.iter().enumerate().skip(cut) {
            restored.apply(i as u64 + 1, entry.as_deref()).expect("in order");
        }
        prop_assert_eq!(restored, leader);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn plans_only_make_commands_that_apply(
        seed_members in 0u64..=7,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        // Random operations rarely build a large group; start from one.
        let mut map = ClusterMap::new();
        for node in 1..=9 {
            let _ = map.apply(&Command::RegisterNode { node, address: format!("h{node}:1") });
        }
        if seed_members > 0 {
            let members = (1..=seed_members).collect();
            let _ = map.apply(&Command::CreateGroup { members, target_replicas: 7 });
        }
        for op in ops {
            let command = resolve(&map, op);
            let _ = map.apply(&command);
        }
        for &node in map.nodes().keys() {
            if let Ok(removal) = plan::node_removal(&map, node) {
                let mut after = map.clone();
                for command in &removal.commands {
                    prop_assert!(after.apply(command).is_ok(), "{:?} refused", command);
                }
                prop_assert!(!after.nodes().contains_key(&node));
            }
        }
        let newcomer = 100;
        let _ = map.apply(&Command::RegisterNode { node: newcomer, address: "new:1".into() });
        if let Ok(Some(command)) = plan::join(&map, newcomer, 3) {
            prop_assert!(map.apply(&command).is_ok(), "{:?} refused", command);
            prop_assert!(!map.groups_of(newcomer).is_empty());
        }
        if map.moves().len() < keel_placement::MAX_MOVES {
            for m in plan::rebalance(&map, keel_placement::MAX_MOVES - map.moves().len()) {
                prop_assert!(map.apply(&m.begin()).is_ok(), "{:?} refused", m);
            }
        }
    }
}

/// The placement machine of a new one-node cluster.
fn one_node_cluster() -> PlacementMachine {
    PlacementMachine::bootstrap(&BTreeMap::from([(1, "h1:1".to_owned())])).expect("bootstrap")
}

/// A map with one node per group: group `i` on node `i + 1`, full or not as
/// asked, owning slots in proportion to its weight.
fn weighted_map(groups: &[(bool, u16)]) -> ClusterMap {
    let mut map = ClusterMap::new();
    let apply = |map: &mut ClusterMap, c: Command| {
        map.apply(&c).unwrap_or_else(|e| panic!("{c:?}: {e}"));
    };
    for (i, &(full, _)) in groups.iter().enumerate() {
        let node = i as u64 + 1;
        apply(
            &mut map,
            Command::RegisterNode {
                node,
                address: format!("n{node}:1"),
            },
        );
        apply(
            &mut map,
            Command::CreateGroup {
                members: [node].into(),
                target_replicas: if full { 1 } else { 2 },
            },
        );
    }
    let total: u32 = groups.iter().map(|&(_, w)| u32::from(w)).sum();
    let mut next = 0u32;
    for (i, &(_, weight)) in groups.iter().enumerate() {
        let end = if i + 1 == groups.len() {
            4096
        } else {
            next + 4096 * u32::from(weight) / total
        };
        let group = i as GroupId + 1;
        for n in next..end {
            let slot = Slot::new(n as u16).expect("in range");
            if group != 1 {
                let epoch = map
                    .apply(&Command::BeginSlotMove { slot, to: group })
                    .expect("begins")
                    .version;
                apply(&mut map, Command::CommitSlotMove { slot, epoch });
            }
        }
        next = end;
    }
    map
}

fn full_counts(map: &ClusterMap) -> BTreeMap<GroupId, usize> {
    let counts = map.slot_counts();
    map.groups()
        .iter()
        .filter(|(_, g)| g.is_full())
        .map(|(&id, _)| (id, counts[&id]))
        .collect()
}

/// The fewest moves any even spread needs, by trying every choice of which
/// groups keep the extra slot.
fn fewest_moves(counts: &BTreeMap<GroupId, usize>) -> usize {
    let c: Vec<usize> = counts.values().copied().collect();
    let total: usize = c.iter().sum();
    let (base, extra) = (total / c.len(), total % c.len());
    (0u32..1 << c.len())
        .filter(|mask| mask.count_ones() as usize == extra)
        .map(|mask| {
            c.iter()
                .enumerate()
                .map(|(i, &ci)| ci.saturating_sub(base + usize::from(mask & (1 << i) != 0)))
                .sum()
        })
        .min()
        .unwrap_or(0)
}

fn apply_plan(map: &mut ClusterMap, moves: &[plan::PlannedMove]) {
    let mut seen = std::collections::BTreeSet::new();
    for m in moves {
        assert!(seen.insert(m.slot), "slot {} planned twice", m.slot);
        assert_eq!(map.owner(m.slot), Some(m.from));
        assert!(map.groups()[&m.from].is_full() && map.groups()[&m.to].is_full());
        let epoch = map
            .apply(&m.begin())
            .expect("a planned move begins")
            .version;
        map.apply(&Command::CommitSlotMove {
            slot: m.slot,
            epoch,
        })
        .expect("and commits");
    }
}

fn assert_even(map: &ClusterMap) {
    let counts = full_counts(map);
    let (min, max) = (counts.values().min(), counts.values().max());
    assert!(
        max.zip(min).is_none_or(|(max, min)| max - min <= 1),
        "{counts:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn rebalancing_evens_slots_out_with_the_fewest_moves(
        groups in proptest::collection::vec((prop_oneof![3 => Just(true), 1 => Just(false)], 0u16..100), 1..7)
    ) {
        let mut map = weighted_map(&groups);
        let before = map.slot_counts();
        let fewest = if full_counts(&map).is_empty() { 0 } else { fewest_moves(&full_counts(&map)) };
        let moves = plan::rebalance(&map, usize::MAX);
        prop_assert_eq!(moves.len(), fewest);
        apply_plan(&mut map, &moves);
        assert_even(&map);
        let after = map.slot_counts();
        for (id, g) in map.groups() {
            if !g.is_full() {
                prop_assert_eq!(after[id], before[id], "a group short of replicas keeps its slots");
            }
        }
        prop_assert!(plan::rebalance(&map, usize::MAX).is_empty(), "an even map needs no moves");
    }

    #[test]
    fn rebalancing_with_moves_in_flight_converges(
        groups in proptest::collection::vec((Just(true), 0u16..100), 2..6),
        in_flight in proptest::collection::vec((0u16..4096, 0u64..6), 0..40),
        limit in 1usize..3000,
    ) {
        let mut map = weighted_map(&groups);
        for (n, to) in in_flight {
            // Whatever begins (a valid target, not the owner) stays in flight.
            let slot = Slot::new(n).expect("in range");
            let _ = map.apply(&Command::BeginSlotMove { slot, to: to + 1 });
        }
        let mut rounds = 0;
        loop {
            let moves = plan::rebalance(&map, limit);
            prop_assert!(moves.len() <= limit);
            prop_assert!(moves.iter().all(|m| !map.moves().contains_key(&m.slot)));
            // The moves in flight land in the meantime.
            let landing: Vec<_> = map.moves().iter().map(|(&s, m)| (s, m.epoch)).collect();
            for (slot, epoch) in landing {
                map.apply(&Command::CommitSlotMove { slot, epoch }).expect("commits");
            }
            if moves.is_empty() {
                break;
            }
            apply_plan(&mut map, &moves);
            rounds += 1;
            prop_assert!(rounds <= 4096 / limit + 3, "no convergence after {} rounds", rounds);
        }
        assert_even(&map);
    }
}
