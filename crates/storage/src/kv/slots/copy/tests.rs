//! Copy engine tests: the source's pages, the target's plan and pages, the
//! evidence rule, and whole moves between two stores with writes interleaved.

use std::collections::BTreeMap;

use bytes::Bytes;
use keel_placement::{Slot, slot_for_key};
use keel_raft::Entry;

use super::driver::{MoveReport, Mover, apply};
use super::*;
use crate::command::{Command, Expect, IngestPut, MAX_INGEST_ITEMS, MoveStep};
use crate::kv::ApplyOutcome;
use crate::kv::slots::tests::{Replica, key_in, put, slot, step};
use crate::kv::slots::{SlotState, SlotUnavailable};
use crate::vfs::MemVfs;

/// The slot moved in these tests, another one beside it, and the move's epoch.
const S: u16 = 77;
const OTHER: u16 = 78;
const EPOCH: u64 = 5;

pub(crate) type Contents = BTreeMap<Bytes, (Bytes, u64)>;

/// Every key of `s` in `r` with its value and version.
pub(crate) fn slot_contents(r: &Replica, s: Slot) -> Contents {
    let view = r.kv.read_view().expect("view");
    let mut out = Contents::new();
    view.for_each_in_slot(s, None, |key, version, value| {
        let entry = (Bytes::copy_from_slice(value), version);
        out.insert(Bytes::copy_from_slice(key), entry);
        Ok(true)
    })
    .expect("scan");
    out
}

/// Every key of `r` outside `s`.
pub(crate) fn outside(r: &Replica, s: Slot) -> Contents {
    let view = r.kv.read_view().expect("view");
    let mut out = Contents::new();
    view.for_each(None, |key, version, value| {
        if slot_for_key(key) != s {
            let entry = (Bytes::copy_from_slice(value), version);
            out.insert(Bytes::copy_from_slice(key), entry);
        }
        Ok(true)
    })
    .expect("scan");
    out
}

/// Applies `commands` as one batch (one transaction: fast for many keys).
pub(crate) fn fill(r: &mut Replica, commands: Vec<Command>) {
    let entries: Vec<Entry> = commands.into_iter().map(|c| r.entry(None, c)).collect();
    r.kv.apply(&entries).expect("apply");
}

fn put_bytes(key: &Bytes, value: Vec<u8>) -> Command {
    Command::Put {
        key: key.clone(),
        value: Bytes::from(value),
        expect: Expect::Any,
    }
}

/// A (serving everything) and B (serving everything but `s`), each with keys
/// of another slot.
pub(crate) fn pair(s: Slot, other: Slot) -> (Replica, Replica) {
    let mut a = Replica::new(&MemVfs::new());
    let mut b = Replica::new(&MemVfs::new());
    b.release(s, 1);
    for name in ["x", "y"] {
        a.run(put(&key_in(other, name), "a-side"));
        b.run(put(&key_in(other, name), "b-side"));
    }
    (a, b)
}

/// [`pair`] for the slot `S`, with `n` keys `k0`.. of it on A, each `v`.
fn filled_pair(n: usize) -> (Replica, Replica) {
    let s = slot(S);
    let (mut a, b) = pair(s, slot(OTHER));
    let keys = (0..n).map(|i| put(&key_in(s, &format!("k{i}")), "v"));
    fill(&mut a, keys.collect());
    (a, b)
}

/// The test's writes on A, and what it learned from them.
#[derive(Default)]
struct Writer {
    calls: u64,
    /// The largest version A handed out for the slot.
    top_version: u64,
    /// Values written while the slot was fenced (all refused).
    late: Vec<Bytes>,
    /// A's slot as at its fence (taken at the first call after it).
    at_fence: Option<Contents>,
    /// What A must hold outside the slot: what it held before the move and
    /// the writes since.
    outside: Contents,
}

impl Writer {
    fn write(&mut self, a: &mut Replica) {
        let (s, other) = (slot(S), slot(OTHER));
        let fenced = a.kv.slot_state(s) == SlotState::Fenced { epoch: EPOCH };
        if fenced && self.at_fence.is_none() {
            self.at_fence = Some(slot_contents(a, s));
        }
        self.calls += 1;
        let i = self.calls;
        let key = key_in(s, &format!("k{}", i % 40));
        let value = Bytes::from(format!("v{i}"));
        let command = if i.is_multiple_of(3) {
            Command::Delete {
                key: key_in(s, &format!("k{}", (i * 7) % 40)),
                expect: Expect::Any,
            }
        } else {
            put(&key, std::str::from_utf8(&value).expect("utf-8"))
        };
        match a.run(command) {
            ApplyOutcome::Put { revision } | ApplyOutcome::Deleted { revision, .. } => {
                assert!(!fenced, "a write of a fenced slot applied");
                self.top_version = self.top_version.max(revision);
            }
            ApplyOutcome::SlotUnavailable(SlotUnavailable::Moving { slot: got, .. }) => {
                assert!(fenced && got == s);
                self.late.push(value);
            }
            other => panic!("unexpected outcome {other:?}"),
        }
        // Other slots keep taking writes throughout.
        let free = key_in(other, &format!("o{}", i % 5));
        let value = format!("o{i}");
        match a.run(put(&free, &value)) {
            ApplyOutcome::Put { revision } => {
                self.outside.insert(free, (Bytes::from(value), revision));
            }
            other => panic!("another slot refused a write: {other:?}"),
        }
    }
}

fn mover<'a>(chaos: &'a mut dyn FnMut(&mut Replica), page_bytes: usize) -> Mover<'a> {
    Mover {
        slot: slot(S),
        epoch: EPOCH,
        page_bytes,
        version_keys: 7,
        small: 0,
        max_rounds: 3,
        chaos,
        by_changes: false,
        baseline: None,
    }
}

/// A with 60 keys in the slot, then a move with `writer` interleaved.
fn move_with(writer: &mut Writer, page_bytes: usize) -> (Replica, Replica, MoveReport) {
    let s = slot(S);
    let (mut a, mut b) = pair(s, slot(OTHER));
    let keys = (0..60).map(|i| put(&key_in(s, &format!("k{i}")), &format!("first{i}")));
    fill(&mut a, keys.collect());
    writer.top_version = a.next - 1;
    writer.outside = outside(&a, s);
    let b_outside = outside(&b, s);
    let report = {
        let mut chaos = |a: &mut Replica| writer.write(a);
        mover(&mut chaos, page_bytes).run(&mut a, &mut b, EPOCH + 1)
    };
    // Other slots: B's untouched, A's as its own writes left them.
    assert_eq!(outside(&b, s), b_outside);
    assert_eq!(outside(&a, s), writer.outside);
    (a, b, report)
}

#[test]
fn a_move_copies_the_slot_exactly_as_at_the_fence() {
    let s = slot(S);
    let mut writer = Writer::default();
    let (mut a, mut b, report) = move_with(&mut writer, 200);
    let at_fence = writer.at_fence.clone().expect("the final round read A");
    assert!(at_fence.len() > 10);
    // Keys, values and versions all as at the fence.
    assert_eq!(slot_contents(&b, s), at_fence);
    // A holds nothing of the slot any more and refuses it as the wrong group.
    assert_eq!(a.kv.slot_state(s), SlotState::Absent);
    assert!(slot_contents(&a, s).is_empty());
    assert!(matches!(
        a.run(put(&key_in(s, "k1"), "stale")),
        ApplyOutcome::SlotUnavailable(SlotUnavailable::WrongGroup { .. })
    ));
    // Writes during the final round were refused and never reached B.
    assert!(!writer.late.is_empty());
    for (value, _) in slot_contents(&b, s).values() {
        assert!(!writer.late.contains(value));
    }
    // Several pages per round at 200 bytes.
    assert!(report.round_pages[0] > 1, "{report:?}");
    // The seal names an index at or after the fence.
    let Some(MoveStep::Ingested {
        fence_index,
        revision,
    }) = report.sealed
    else {
        panic!("not sealed: {report:?}");
    };
    assert!(fence_index >= report.fence_index);
    assert!(revision >= writer.top_version);
    // B serves the slot, above every version A handed out for it.
    match b.run(put(&key_in(s, "k1"), "at b")) {
        ApplyOutcome::Put { revision: at_b } => {
            assert!(at_b > writer.top_version && at_b > revision, "{at_b}")
        }
        other => panic!("B refused: {other:?}"),
    }
    let view = b.kv.read_view().expect("view");
    assert!(view.applied_index() + 1 + view.revision_offset() > revision);
}

#[test]
fn catch_up_converges_once_writes_stop() {
    let s = slot(S);
    let (mut a, mut b) = pair(s, slot(OTHER));
    let keys = (0..60).map(|i| put(&key_in(s, &format!("k{i}")), &format!("first{i}")));
    fill(&mut a, keys.collect());
    // Writes during the bulk copy (which reads A about ten times at 300
    // bytes a page) to keys it has already read: changed, new and deleted.
    let mut calls = 0;
    let mut chaos = |a: &mut Replica| {
        calls += 1;
        match calls {
            2 => assert!(matches!(
                a.run(put(&key_in(s, "k0"), "new")),
                ApplyOutcome::Put { .. }
            )),
            3 => {
                a.run(put(&key_in(s, "k00"), "new"));
                let delete = Command::Delete {
                    key: key_in(s, "k1"),
                    expect: Expect::Any,
                };
                assert!(matches!(
                    a.run(delete),
                    ApplyOutcome::Deleted { existed: true, .. }
                ));
            }
            _ => {}
        }
    };
    let report = mover(&mut chaos, 300).run(&mut a, &mut b, EPOCH + 1);
    // The first catch-up round picks up the three, the next finds nothing
    // (so fencing follows), and the final delta is empty.
    assert!(report.round_pages[0] > 3, "{report:?}");
    assert_eq!(report.round_items, [60, 3, 0, 0], "{report:?}");
    let b_slot = slot_contents(&b, s);
    assert_eq!(b_slot.len(), 60);
    assert_eq!(b_slot[&key_in(s, "k0")].0, Bytes::from_static(b"new"));
    assert!(!b_slot.contains_key(&key_in(s, "k1")));
}

#[test]
fn an_abandoned_copy_leaves_b_absent_and_a_serving() {
    let s = slot(S);
    let (mut a, mut b) = filled_pair(30);
    let (a_before, b_outside) = (slot_contents(&a, s), outside(&b, s));
    let mut writer = Writer::default();
    let mut chaos = |a: &mut Replica| writer.write(a);
    let mut m = mover(&mut chaos, 100);
    let mut report = MoveReport::default();
    m.bulk_copy(&mut a, &mut b, &mut report);
    m.round(1, &mut a, &mut b, None, &mut report)
        .expect("round");
    assert!(!slot_contents(&b, s).is_empty());
    // The move is aborted: B discards what it staged.
    m.release(&mut b, EPOCH + 1);
    assert_eq!(b.kv.slot_state(s), SlotState::Absent);
    assert!(slot_contents(&b, s).is_empty());
    assert_eq!(outside(&b, s), b_outside);
    // A never stopped serving.
    assert_eq!(a.kv.slot_state(s), SlotState::Serving);
    assert_ne!(slot_contents(&a, s), a_before, "the writer wrote");
    assert!(matches!(
        a.run(put(&key_in(s, "k1"), "after")),
        ApplyOutcome::Put { .. }
    ));
}

#[test]
fn a_round_by_the_change_index_fetches_only_what_changed() {
    let (s, other) = (slot(S), slot(OTHER));
    let (mut a, mut b) = filled_pair(100);
    let mut chaos = |_: &mut Replica| {};
    let mut m = mover(&mut chaos, 4096);
    m.by_changes = true;
    let mut report = MoveReport::default();
    m.bulk_copy(&mut a, &mut b, &mut report);
    a.run(put(&key_in(s, "k3"), "changed"));
    a.run(put(&key_in(s, "new"), "added"));
    a.run(Command::Delete {
        key: key_in(s, "k7"),
        expect: Expect::Any,
    });
    // Rewritten with the same value: a new version, so it is fetched too.
    a.run(put(&key_in(s, "k9"), "v"));
    a.run(put(&key_in(other, "x"), "not the slot"));
    let items = m
        .round(1, &mut a, &mut b, None, &mut report)
        .expect("round");
    assert_eq!(items, 4);
    assert_eq!(slot_contents(&b, s), slot_contents(&a, s));
    // Nothing changed since: an empty round, no page.
    let items = m
        .round(2, &mut a, &mut b, None, &mut report)
        .expect("round");
    assert_eq!((items, report.round_pages[2]), (0, 0));
    // A lost index (a restart): the round lists the slot and still matches.
    a.kv.lock_changes().reset(a.kv.applied_index());
    a.run(put(&key_in(s, "k1"), "after the restart"));
    let items = m
        .round(3, &mut a, &mut b, None, &mut report)
        .expect("round");
    assert_eq!(items, 1);
    assert_eq!(slot_contents(&b, s), slot_contents(&a, s));
}

#[test]
fn the_final_round_needs_a_fenced_source() {
    for by_changes in [false, true] {
        the_final_round_needs_a_fenced_source_when(by_changes);
    }
}

fn the_final_round_needs_a_fenced_source_when(by_changes: bool) {
    let s = slot(S);
    let (mut a, mut b) = pair(s, slot(OTHER));
    a.run(put(&key_in(s, "k"), "v"));
    let mut chaos = |_: &mut Replica| {};
    let mut m = mover(&mut chaos, 100);
    m.by_changes = by_changes;
    let mut report = MoveReport::default();
    m.bulk_copy(&mut a, &mut b, &mut report);
    let mut witness = FenceWitness::new(s, EPOCH);
    assert!(matches!(witness.seal(), Err(CopyError::NotFenced { .. })));
    let unfenced = m.round(1, &mut a, &mut b, Some(&mut witness), &mut report);
    assert!(
        matches!(
            unfenced,
            Err(CopyError::NotFenced {
                found: SlotState::Serving,
                ..
            })
        ),
        "{unfenced:?}"
    );
    assert!(matches!(witness.seal(), Err(CopyError::NotFenced { .. })));
    // Fenced for another move's epoch is no evidence either.
    let other_epoch = SourceView {
        applied_index: 9,
        revision: 9,
        state: SlotState::Fenced { epoch: EPOCH + 1 },
    };
    assert!(witness.witness(&other_epoch).is_err());
    apply(&mut a, m.command(MoveStep::Fence));
    m.round(2, &mut a, &mut b, Some(&mut witness), &mut report)
        .expect("fenced round");
    assert!(matches!(
        witness.seal().expect("sealed").step,
        MoveStep::Ingested { .. }
    ));
}

#[test]
fn pages_respect_the_byte_budget_and_the_item_limit() {
    let s = slot(S);
    let mut a = Replica::new(&MemVfs::new());
    // 5 values of 300 KiB: at most 3 per 1 MiB page, even if asked for more.
    let big = (0..5).map(|i| put_bytes(&key_in(s, &format!("b{i}")), vec![b'x'; 300 << 10]));
    fill(&mut a, big.collect());
    let view = a.kv.read_view().expect("view");
    let page = fetch_page(&view, s, EPOCH, None, usize::MAX).expect("page");
    assert_eq!(page.puts.len(), 3);
    assert!(page.more);
    let cost: usize = page.puts.iter().map(|p| item_cost(&p.key, &p.value)).sum();
    assert!(cost <= MAX_PAGE_BYTES);
    let last = page.puts.last().map(|p| p.key.clone());
    let rest = fetch_page(&view, s, EPOCH, last.as_deref(), usize::MAX).expect("page");
    assert_eq!((rest.puts.len(), rest.more), (2, false));
    // The page builder splits the same way.
    let mut builder = PageBuilder::new(s, EPOCH, 1, usize::MAX);
    builder
        .add(page.puts.into_iter().chain(rest.puts).collect(), Vec::new())
        .expect("add");
    let sizes: Vec<usize> = builder.finish().iter().map(page_items).collect();
    assert_eq!(sizes, [3, 2]);
    // Tiny keys: MAX_INGEST_ITEMS per page.
    let mut a = Replica::new(&MemVfs::new());
    let n = MAX_INGEST_ITEMS + 10;
    let tiny = (0..n).map(|i| put(&key_in(s, &format!("{i:05}")), ""));
    fill(&mut a, tiny.collect());
    let view = a.kv.read_view().expect("view");
    let page = fetch_page(&view, s, EPOCH, None, MAX_PAGE_BYTES).expect("page");
    assert_eq!((page.puts.len(), page.more), (MAX_INGEST_ITEMS, true));
    let mut builder = PageBuilder::new(s, EPOCH, 0, MAX_PAGE_BYTES);
    let deletes = vec![key_in(s, "~last")];
    builder.add(page.puts, deletes).expect("add");
    let pages = builder.finish();
    let sizes: Vec<usize> = pages.iter().map(page_items).collect();
    assert_eq!(sizes, [MAX_INGEST_ITEMS, 1]);
    let numbers: Vec<(u64, u64)> = pages.iter().map(page_number).collect();
    assert_eq!(numbers, [(0, 0), (0, 1)]);
    for cmd in &pages {
        let MoveStep::Ingest(page) = &cmd.step else {
            panic!("not a page")
        };
        assert_eq!(page.validate(), Ok(()));
    }
}

fn page_items(cmd: &crate::command::SlotCommand) -> usize {
    match &cmd.step {
        MoveStep::Ingest(page) => page.puts.len() + page.deletes.len(),
        other => panic!("not a page: {other:?}"),
    }
}

fn page_number(cmd: &crate::command::SlotCommand) -> (u64, u64) {
    match &cmd.step {
        MoveStep::Ingest(page) => (page.round, page.page),
        other => panic!("not a page: {other:?}"),
    }
}

#[test]
fn a_value_over_the_page_budget_moves_alone() {
    let s = slot(S);
    let (mut a, mut b) = pair(s, slot(OTHER));
    let huge = put_bytes(&key_in(s, "b"), vec![7; MAX_PAGE_BYTES + 1]);
    let small = ["a", "c"].map(|name| put(&key_in(s, name), "small"));
    fill(&mut a, [vec![huge], small.to_vec()].concat());
    let view = a.kv.read_view().expect("view");
    let first = fetch_page(&view, s, EPOCH, Some(&key_in(s, "a")), 10).expect("page");
    assert_eq!((first.puts.len(), first.more), (1, true));
    let values = fetch_values(&view, s, EPOCH, &[key_in(s, "b"), key_in(s, "c")], 10);
    assert_eq!(values.expect("values").covered, 1);
    let before = slot_contents(&a, s);
    let mut chaos = |_: &mut Replica| {};
    let report = mover(&mut chaos, 10).run(&mut a, &mut b, EPOCH + 1);
    assert_eq!(report.round_pages[0], 3, "{report:?}");
    assert_eq!(slot_contents(&b, s), before);
}

#[test]
fn the_source_must_serve_the_slot_or_have_fenced_it_for_this_move() {
    let s = slot(S);
    let mut a = Replica::new(&MemVfs::new());
    a.run(put(&key_in(s, "k"), "v"));
    let try_fetch = |a: &Replica| {
        let view = a.kv.read_view().expect("view");
        fetch_versions(&view, s, EPOCH, None, 10).map(|p| p.source.state)
    };
    assert_eq!(try_fetch(&a).expect("serving"), SlotState::Serving);
    a.run(step(s, EPOCH + 1, MoveStep::Fence));
    assert!(matches!(try_fetch(&a), Err(CopyError::NotSource { .. })));
    a.run(step(s, EPOCH + 1, MoveStep::Unfence));
    a.run(step(s, EPOCH, MoveStep::Fence));
    let fenced = SlotState::Fenced { epoch: EPOCH };
    assert_eq!(try_fetch(&a).expect("fenced"), fenced);
    a.release(s, EPOCH);
    assert!(matches!(try_fetch(&a), Err(CopyError::NotSource { .. })));
    // Values are only handed out for keys of the slot.
    let serving = Replica::new(&MemVfs::new());
    let view = serving.kv.read_view().expect("view");
    assert!(matches!(
        fetch_values(&view, s, EPOCH, &[key_in(slot(OTHER), "k")], 10),
        Err(CopyError::KeyOutsideSlot { .. })
    ));
}

#[test]
fn a_plan_fetches_new_and_changed_keys_and_deletes_gone_ones() {
    let s = slot(S);
    let mut b = Replica::new(&MemVfs::new());
    b.release(s, 1);
    let k = |name: &str| key_in(s, name);
    let staged = [("a", 3), ("b", 4), ("d", 5), ("f", 6), ("h", 7)];
    let puts = staged.map(|(name, version)| IngestPut {
        key: k(name),
        version,
        value: Bytes::new(),
    });
    let mut builder = PageBuilder::new(s, EPOCH, 0, MAX_PAGE_BYTES);
    builder.add(puts.to_vec(), Vec::new()).expect("add");
    for cmd in builder.finish() {
        apply(&mut b, cmd);
    }
    let source = |versions: &[(&str, u64)], more| VersionPage {
        source: SourceView {
            applied_index: 1,
            revision: 1,
            state: SlotState::Serving,
        },
        versions: versions.iter().map(|(n, v)| (k(n), *v)).collect(),
        more,
    };
    let view = b.kv.read_view().expect("view");
    // A: a same, b changed, c new, d gone, e new; more follows, so f and h
    // (after e) are not judged in this step.
    let page = source(&[("a", 3), ("b", 9), ("c", 1), ("e", 2)], true);
    let delta = plan_delta(&view, s, EPOCH, None, &page).expect("plan");
    assert_eq!(delta.fetch, [k("b"), k("c"), k("e")]);
    assert_eq!(delta.delete, [k("d")]);
    assert_eq!(delta.next, Some(k("e")));
    // The last page: f same, g new, h gone.
    let page = source(&[("f", 6), ("g", 1)], false);
    let delta = plan_delta(&view, s, EPOCH, Some(&k("e")), &page).expect("plan");
    assert_eq!((delta.fetch, delta.delete), (vec![k("g")], vec![k("h")]));
    assert_eq!(delta.next, None);
    // Only a view staging this very move is planned against.
    assert!(matches!(
        plan_delta(&view, s, EPOCH + 1, None, &page),
        Err(CopyError::NotStaging { .. })
    ));
}

#[test]
fn the_page_builder_numbers_pages_and_refuses_disorder() {
    let s = slot(S);
    let k = |name: &str| key_in(s, name);
    // An empty round 0 still begins the copy; an empty later round is nothing.
    let round0 = PageBuilder::new(s, EPOCH, 0, 100).finish();
    assert_eq!(round0.iter().map(page_number).collect::<Vec<_>>(), [(0, 0)]);
    assert!(PageBuilder::new(s, EPOCH, 2, 100).finish().is_empty());
    let mut builder = PageBuilder::new(s, EPOCH, 2, MAX_PAGE_BYTES);
    builder.add(Vec::new(), vec![k("b")]).expect("add");
    assert!(matches!(
        builder.add(Vec::new(), vec![k("a")]),
        Err(CopyError::OutOfOrder { .. })
    ));
    assert!(matches!(
        builder.add(Vec::new(), vec![key_in(slot(OTHER), "z")]),
        Err(CopyError::KeyOutsideSlot { .. })
    ));
    // Puts and deletes merge by key.
    let put_of = |name: &str| IngestPut {
        key: k(name),
        version: 1,
        value: Bytes::new(),
    };
    builder
        .add(vec![put_of("c"), put_of("e")], vec![k("d"), k("f")])
        .expect("add");
    let pages = builder.finish();
    assert_eq!(pages.iter().map(page_number).collect::<Vec<_>>(), [(2, 0)]);
    let MoveStep::Ingest(page) = &pages[0].step else {
        panic!("not a page")
    };
    assert_eq!(page.deletes, [k("b"), k("d"), k("f")]);
    assert_eq!(page.validate(), Ok(()));
}
