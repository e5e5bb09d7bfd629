//! Network partitions: which links to cut.

use std::collections::BTreeSet;

use crate::rng::Rng;

/// A network partition: the blocked links and a description.
pub fn choose(ids: &[u64], leader: Option<u64>, rng: &mut Rng) -> (BTreeSet<(u64, u64)>, String) {
    let mut shuffled = ids.to_vec();
    rng.shuffle(&mut shuffled);
    let mut blocked = BTreeSet::new();
    let cut_between = |blocked: &mut BTreeSet<(u64, u64)>, a: &[u64], b: &[u64]| {
        for &x in a {
            for &y in b {
                blocked.insert((x, y));
                blocked.insert((y, x));
            }
        }
    };
    match rng.range(0, 3) {
        0 => {
            let (a, b) = shuffled.split_at(shuffled.len() / 2);
            cut_between(&mut blocked, a, b);
            (blocked, format!("partition {a:?} | {b:?}"))
        }
        1 => {
            let alone = leader.unwrap_or(shuffled[0]);
            let rest: Vec<u64> = ids.iter().copied().filter(|&i| i != alone).collect();
            cut_between(&mut blocked, &[alone], &rest);
            (
                blocked,
                format!(
                    "isolate node {alone}{}",
                    if leader.is_some() { " (leader)" } else { "" }
                ),
            )
        }
        2 if ids.len() >= 3 => {
            // A bridge: two sides that cannot see each other, and one node that
            // sees both (each side plus the bridge is a majority of 5).
            let bridge = shuffled[0];
            let rest = &shuffled[1..];
            let (a, b) = rest.split_at(rest.len() / 2);
            cut_between(&mut blocked, a, b);
            (blocked, format!("bridge: {a:?} | {bridge} | {b:?}"))
        }
        _ => {
            // One-way: the leader (or a node) hears nobody, but everyone hears it.
            let deaf = leader.unwrap_or(shuffled[0]);
            for &other in ids.iter().filter(|&&i| i != deaf) {
                blocked.insert((other, deaf));
            }
            (
                blocked,
                format!("one-way: node {deaf} receives from nobody"),
            )
        }
    }
}

/// Cuts node `alone` off from every other node, both ways.
pub fn isolate(ids: &[u64], alone: u64) -> BTreeSet<(u64, u64)> {
    ids.iter()
        .filter(|&&i| i != alone)
        .flat_map(|&i| [(i, alone), (alone, i)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_never_touch_the_harness() {
        let ids = [1, 2, 3, 4, 5];
        let mut rng = Rng::new(3);
        for _ in 0..50 {
            let (blocked, detail) = choose(&ids, Some(2), &mut rng);
            assert!(!blocked.is_empty(), "{detail}");
            assert!(blocked.iter().all(|&(a, b)| a != b && a != 0 && b != 0));
        }
        assert_eq!(isolate(&ids, 3).len(), 8);
    }
}
