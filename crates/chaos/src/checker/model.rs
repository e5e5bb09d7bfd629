//! The model the search checks against: one register per key, holding a value or
//! nothing, with reads, writes and compare-and-set; and the translation of a key's
//! history into the search's compact form.

use std::collections::HashMap;

use crate::history::{Call, Op, Outcome};

/// A register's state: 0 is "absent", any other number an interned value.
pub type State = u32;

/// The absent state.
pub const ABSENT: State = 0;

/// What an operation does to the register, in interned form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A read that returned this state.
    Read(State),
    /// An unconditional write.
    Write(State),
    /// A compare-and-set that succeeded (or, if optional, may have).
    Cas {
        /// Required current state.
        expected: State,
        /// New state.
        new: State,
    },
    /// A compare-and-set that failed because the register did not hold `expected`.
    CasFailed {
        /// The state the register did not hold.
        expected: State,
    },
}

impl Step {
    /// The state after this step from `state`, or `None` if the step is impossible
    /// there.
    pub fn apply(self, state: State) -> Option<State> {
        match self {
            Step::Read(seen) => (seen == state).then_some(state),
            Step::Write(v) => Some(v),
            Step::Cas { expected, new } => (expected == state).then_some(new),
            Step::CasFailed { expected } => (expected != state).then_some(state),
        }
    }
}

/// One operation as the search sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyOp {
    /// Invocation time.
    pub invoke: u64,
    /// Completion time; `u64::MAX` for optional operations (unknown outcome), which
    /// never constrain the order of others.
    pub complete: u64,
    /// What it does.
    pub step: Step,
    /// May be left out of the linearization (unknown outcome).
    pub optional: bool,
    /// Its position in the original history slice.
    pub source: usize,
}

/// A key's operations, ready for the search, sorted by invocation.
#[derive(Clone, Debug, Default)]
pub struct KeyHistory {
    /// The operations that matter to linearizability.
    pub ops: Vec<KeyOp>,
    /// Interned values: `values[s - 1]` is the value of state `s`.
    pub values: Vec<String>,
}

impl KeyHistory {
    /// Builds the search input from one key's operations (`ops` may hold other
    /// keys' operations too; only indices in `members` are used). Reads and failed
    /// writes that had no effect and observed nothing are left out.
    pub fn build(ops: &[Op], members: &[usize]) -> KeyHistory {
        let mut interner = Interner::default();
        let mut out = Vec::new();
        for &i in members {
            let op = &ops[i];
            let definite = |step| KeyOp {
                invoke: op.invoke_ns,
                complete: op.complete_ns.max(op.invoke_ns),
                step,
                optional: false,
                source: i,
            };
            let optional = |step| KeyOp {
                invoke: op.invoke_ns,
                complete: u64::MAX,
                step,
                optional: true,
                source: i,
            };
            let kop = match (&op.call, op.outcome) {
                (Call::Get, Outcome::Ok) => {
                    definite(Step::Read(interner.state(op.result.value.as_deref())))
                }
                (Call::Get, _) => continue,
                (Call::Put { value }, o) => {
                    let step = Step::Write(interner.state(Some(value)));
                    match o {
                        Outcome::Ok => definite(step),
                        Outcome::Unknown => optional(step),
                        Outcome::Fail => continue,
                    }
                }
                (Call::Cas { expected, new }, o) => {
                    let expected = interner.state(expected.as_deref());
                    let step = Step::Cas {
                        expected,
                        new: interner.state(Some(new)),
                    };
                    match o {
                        Outcome::Ok => definite(step),
                        Outcome::Unknown => optional(step),
                        Outcome::Fail if op.result.conflict => {
                            definite(Step::CasFailed { expected })
                        }
                        Outcome::Fail => continue,
                    }
                }
            };
            out.push(kop);
        }
        out.sort_by_key(|o| (o.invoke, o.complete, o.source));
        KeyHistory {
            ops: out,
            values: interner.values,
        }
    }

    /// The value of a state, for messages.
    pub fn describe(&self, s: State) -> String {
        match s {
            ABSENT => "(absent)".to_owned(),
            s => format!("{:?}", self.values[(s - 1) as usize]),
        }
    }
}

#[derive(Default)]
struct Interner {
    index: HashMap<String, State>,
    values: Vec<String>,
}

impl Interner {
    fn state(&mut self, v: Option<&str>) -> State {
        let Some(v) = v else { return ABSENT };
        if let Some(&s) = self.index.get(v) {
            return s;
        }
        self.values.push(v.to_owned());
        let s = self.values.len() as State;
        self.index.insert(v.to_owned(), s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_register_semantics() {
        assert_eq!(Step::Read(3).apply(3), Some(3));
        assert_eq!(Step::Read(3).apply(2), None);
        assert_eq!(Step::Write(4).apply(ABSENT), Some(4));
        let cas = Step::Cas {
            expected: ABSENT,
            new: 5,
        };
        assert_eq!(cas.apply(ABSENT), Some(5));
        assert_eq!(cas.apply(5), None);
        let failed = Step::CasFailed { expected: 2 };
        assert_eq!(failed.apply(2), None);
        assert_eq!(failed.apply(7), Some(7));
    }
}
