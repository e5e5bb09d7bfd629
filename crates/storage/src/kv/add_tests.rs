//! Add semantics: absent keys count as 0, the sum is stored as decimal text with
//! the entry's index as version, and a value that is not an integer or a sum that
//! overflows changes nothing; the same log gives the same state in any batching.

use bytes::Bytes;

use super::tests::{contents, get, normal, open_mem};
use super::*;
use crate::command::{AddError, Command, Expect};
use crate::vfs::MemVfs;

fn add(key: &str, delta: i64) -> Command {
    Command::Add {
        key: Bytes::copy_from_slice(key.as_bytes()),
        delta,
    }
}

fn put(key: &str, value: &str) -> Command {
    Command::Put {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        expect: Expect::Any,
    }
}

#[test]
fn adds_start_from_zero_and_store_decimal_text() {
    let kv = open_mem(&MemVfs::new());
    let out = kv
        .apply(&[
            normal(1, &add("n", 5)),
            normal(2, &add("n", -7)),
            normal(3, &add("n", 0)),
        ])
        .expect("apply");
    assert_eq!(
        out,
        vec![
            ApplyOutcome::Added {
                revision: 1,
                value: 5
            },
            ApplyOutcome::Added {
                revision: 2,
                value: -2
            },
            ApplyOutcome::Added {
                revision: 3,
                value: -2
            },
        ]
    );
    assert_eq!(get(&kv, "n"), Some(("-2".to_string(), 3)));
}

#[test]
fn refused_adds_change_nothing() {
    let kv = open_mem(&MemVfs::new());
    kv.apply(&[
        normal(1, &put("text", "12a")),
        normal(2, &put("padded", " 1")),
        normal(3, &put("max", &i64::MAX.to_string())),
        normal(4, &put("min", &i64::MIN.to_string())),
    ])
    .expect("apply");
    let before = contents(&kv);
    let out = kv
        .apply(&[
            normal(5, &add("text", 1)),
            normal(6, &add("padded", 1)),
            normal(7, &add("max", 1)),
            normal(8, &add("min", -1)),
        ])
        .expect("apply");
    assert_eq!(
        out,
        vec![
            ApplyOutcome::AddRefused(AddError::NotAnInteger),
            ApplyOutcome::AddRefused(AddError::NotAnInteger),
            ApplyOutcome::AddRefused(AddError::Overflow),
            ApplyOutcome::AddRefused(AddError::Overflow),
        ]
    );
    assert_eq!(contents(&kv), before, "a refused add writes nothing");
    assert_eq!(kv.applied_index(), 8, "but the entries are applied");
    // The extremes themselves are reachable.
    let out = kv
        .apply(&[normal(9, &add("max", -1)), normal(10, &add("min", 1))])
        .expect("apply");
    assert_eq!(
        out,
        vec![
            ApplyOutcome::Added {
                revision: 9,
                value: i64::MAX - 1
            },
            ApplyOutcome::Added {
                revision: 10,
                value: i64::MIN + 1
            },
        ]
    );
}

#[test]
fn batching_does_not_change_the_result() {
    let log: Vec<Command> = (0..40)
        .map(|i| match i % 5 {
            0 => put("k", if i % 2 == 0 { "x" } else { "3" }),
            1 => add("k", i64::MAX),
            _ => add("k", i - 20),
        })
        .collect();
    let entries: Vec<_> = log
        .iter()
        .enumerate()
        .map(|(i, c)| normal(i as u64 + 1, c))
        .collect();
    let one = open_mem(&MemVfs::new());
    let all_at_once = one.apply(&entries).expect("apply");
    let many = open_mem(&MemVfs::new());
    let mut one_by_one = Vec::new();
    for e in &entries {
        one_by_one.extend(many.apply(std::slice::from_ref(e)).expect("apply"));
    }
    assert_eq!(all_at_once, one_by_one);
    assert_eq!(contents(&one), contents(&many));
    assert_eq!(
        one.digest().expect("digest"),
        many.digest().expect("digest")
    );
}
