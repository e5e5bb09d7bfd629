//! A brute-force linearizability oracle for tiny histories: every subset of the
//! optional operations, every permutation of the chosen operations, each checked
//! against real-time order and the register. Exponential, obviously right.

use super::model::{ABSENT, KeyOp};

/// Whether some order of some of the operations (all definite ones, any optional
/// ones) respects real time and the register.
pub fn linearizable(ops: &[KeyOp]) -> bool {
    let optional: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].optional).collect();
    let definite: Vec<usize> = (0..ops.len()).filter(|&i| !ops[i].optional).collect();
    (0u32..1 << optional.len()).any(|mask| {
        let mut chosen = definite.clone();
        chosen.extend(
            optional
                .iter()
                .enumerate()
                .filter(|(bit, _)| mask & (1 << bit) != 0)
                .map(|(_, &i)| i),
        );
        permutations(&chosen).iter().any(|order| legal(ops, order))
    })
}

fn legal(ops: &[KeyOp], order: &[usize]) -> bool {
    for (pos, &a) in order.iter().enumerate() {
        for &b in &order[pos + 1..] {
            // b goes after a, so b must not have completed before a was invoked.
            if ops[b].complete < ops[a].invoke {
                return false;
            }
        }
    }
    let mut state = ABSENT;
    for &i in order {
        match ops[i].step.apply(state) {
            Some(next) => state = next,
            None => return false,
        }
    }
    true
}

fn permutations(items: &[usize]) -> Vec<Vec<usize>> {
    if items.is_empty() {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for (i, &first) in items.iter().enumerate() {
        let mut rest = items.to_vec();
        rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first);
            out.push(tail);
        }
    }
    out
}
