//! The linearizability search for one key, in the manner of Wing and Gong with
//! Lowe's memoization: a depth-first search over partial linearizations, where a
//! node is the set of operations linearized so far and the register's state, and
//! a node already explored (and so known to fail) is never explored again.
//!
//! From a node, an operation may go next if it is not yet linearized and was
//! invoked no later than the earliest completion among the definite operations
//! still left (otherwise that one would have to come first). Optional operations
//! (unknown outcome) complete "never": they may go at any point after their
//! invocation, or not at all. The search succeeds once every definite operation is
//! linearized.
//!
//! One reduction keeps it fast: an operation that leaves the state unchanged (a
//! read, a failed compare-and-set) and can go next is taken at once without trying
//! alternatives, since any linearization from this node can be rearranged to
//! start with it.

use std::collections::HashSet;

use super::model::{ABSENT, KeyOp, State, Step};

/// How the search ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchOutcome {
    /// A linearization exists.
    Linearizable,
    /// None exists; where the search got furthest.
    NotLinearizable(Stuck),
    /// The search explored `explored` nodes without deciding.
    BudgetExceeded {
        /// Nodes explored.
        explored: u64,
    },
}

/// The deepest partial linearization found for a history that has none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stuck {
    /// Indices (into the searched slice) of the operations linearized, in order.
    pub prefix: Vec<usize>,
    /// The register's state after them.
    pub state: State,
    /// Definite operations not linearized whose completion closes the window: one
    /// of them had to go next, and none could.
    pub blocked: Vec<usize>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Box<[u64]>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)].into_boxed_slice())
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

struct Frame {
    op: usize,
    before: State,
    forced: bool,
}

/// Searches for a linearization of `ops` (sorted by invocation) from the absent
/// state, exploring at most `budget` nodes.
pub fn search(ops: &[KeyOp], budget: u64) -> SearchOutcome {
    let n = ops.len();
    let definite_total = ops.iter().filter(|o| !o.optional).count();
    let mut done = Bits::new(n);
    let mut state = ABSENT;
    let mut definite_done = 0usize;
    let mut stack: Vec<Frame> = Vec::new();
    let mut memo: HashSet<(Bits, State)> = HashSet::new();
    memo.insert((done.clone(), state));
    let mut cursor = 0usize;
    let mut explored = 0u64;
    let mut deepest: Option<(usize, Vec<usize>, State, u64)> = None;

    loop {
        if definite_done == definite_total {
            return SearchOutcome::Linearizable;
        }
        explored += 1;
        if explored > budget {
            return SearchOutcome::BudgetExceeded { explored };
        }
        let horizon = (0..n)
            .filter(|&i| !done.get(i) && !ops[i].optional)
            .map(|i| ops[i].complete)
            .min()
            .unwrap_or(u64::MAX);
        if deepest.as_ref().is_none_or(|d| definite_done > d.0) {
            let prefix = stack.iter().map(|f| f.op).collect();
            deepest = Some((definite_done, prefix, state, horizon));
        }
        let candidates = || (0..n).take_while(|&i| ops[i].invoke <= horizon);
        let mut chosen: Option<(usize, State, bool)> = None;
        if cursor == 0 {
            // First visit: a state-preserving operation that fits goes first.
            let preserving = candidates().find(|&i| {
                !done.get(i)
                    && matches!(ops[i].step, Step::Read(_) | Step::CasFailed { .. })
                    && ops[i].step.apply(state).is_some()
            });
            if let Some(i) = preserving {
                done.set(i);
                if memo.insert((done.clone(), state)) {
                    chosen = Some((i, state, true));
                } else {
                    done.clear(i);
                    cursor = usize::MAX;
                }
            }
        }
        if chosen.is_none() && cursor != usize::MAX {
            for i in candidates().skip(cursor) {
                if done.get(i) {
                    continue;
                }
                let Some(next) = ops[i].step.apply(state) else {
                    continue;
                };
                done.set(i);
                if memo.insert((done.clone(), next)) {
                    chosen = Some((i, next, false));
                    break;
                }
                done.clear(i);
            }
        }
        match chosen {
            Some((op, next, forced)) => {
                stack.push(Frame {
                    op,
                    before: state,
                    forced,
                });
                state = next;
                if !ops[op].optional {
                    definite_done += 1;
                }
                cursor = 0;
            }
            None => {
                let Some(frame) = stack.pop() else {
                    let (_, prefix, state, horizon) = deepest.unwrap_or_default();
                    let mut taken = Bits::new(n);
                    prefix.iter().for_each(|&i| taken.set(i));
                    let blocked = (0..n)
                        .filter(|&i| {
                            !taken.get(i) && !ops[i].optional && ops[i].complete == horizon
                        })
                        .collect();
                    return SearchOutcome::NotLinearizable(Stuck {
                        prefix,
                        state,
                        blocked,
                    });
                };
                done.clear(frame.op);
                state = frame.before;
                if !ops[frame.op].optional {
                    definite_done -= 1;
                }
                cursor = if frame.forced {
                    usize::MAX
                } else {
                    frame.op + 1
                };
            }
        }
    }
}
