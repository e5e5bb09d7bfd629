//! Histories in the file format, as the CLI's `--check` reads them: the bad ones
//! must be rejected with the right anomaly, the good one accepted.

use std::path::PathBuf;

use keel_chaos::checker::{AnomalyKind, CheckOptions, check};
use keel_chaos::history::read_history_file;

fn verdict(name: &str) -> (String, Vec<AnomalyKind>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let ops = read_history_file(&path).expect("fixture parses");
    let report = check(&ops, &CheckOptions::default());
    let kinds = report.anomalies.iter().map(|a| a.kind).collect();
    (report.verdict().to_owned(), kinds)
}

#[test]
fn known_bad_histories_are_rejected() {
    for (name, kind) in [
        ("stale-read.jsonl", AnomalyKind::NotLinearizable),
        ("lost-write.jsonl", AnomalyKind::LostWrite),
        ("phantom.jsonl", AnomalyKind::Phantom),
        ("double-cas.jsonl", AnomalyKind::NotLinearizable),
    ] {
        let (verdict, kinds) = verdict(name);
        assert_eq!(verdict, "INVALID", "{name}");
        assert!(kinds.contains(&kind), "{name}: {kinds:?}");
    }
}

#[test]
fn a_known_good_history_is_accepted() {
    assert_eq!(verdict("good.jsonl"), ("valid".to_owned(), vec![]));
}
