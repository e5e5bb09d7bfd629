//! A whole move between two stores, for tests: every step is a real command
//! applied by the real state machine, in the protocol's order, and the test
//! interleaves its own writes on A between any two reads of A.

use bytes::Bytes;
use keel_placement::Slot;

use keel_raft::Index;

use super::{
    FenceWitness, PageBuilder, SourceView, fetch_changes, fetch_page, fetch_values, fetch_versions,
    plan_changed, plan_delta,
};
use crate::command::{Command, MoveStep, SlotCommand};
use crate::kv::ApplyOutcome;
use crate::kv::slots::tests::Replica;
use crate::kv::slots::{Changes, SlotState};

/// How a move is paged, and what the test does between reads of A.
pub(crate) struct Mover<'a> {
    pub(crate) slot: Slot,
    pub(crate) epoch: u64,
    /// Page budget in bytes.
    pub(crate) page_bytes: usize,
    /// Keys per page of the key list.
    pub(crate) version_keys: usize,
    /// A catch-up round with at most this many items ends the catch-up.
    pub(crate) small: usize,
    /// Most catch-up rounds before fencing anyway.
    pub(crate) max_rounds: u64,
    /// Called with A before every read of A.
    pub(crate) chaos: &'a mut dyn FnMut(&mut Replica),
    /// Whether rounds ask A's change index first (the mover's way), or
    /// always list the slot.
    pub(crate) by_changes: bool,
    /// The index A's changes are asked since: the last round's baseline.
    pub(crate) baseline: Option<Index>,
}

/// What a move did.
#[derive(Debug, Default)]
pub(crate) struct MoveReport {
    /// Items (puts and deletes) of each round, round 0 first, the final last.
    pub(crate) round_items: Vec<usize>,
    /// `IngestSlot` commands of each round.
    pub(crate) round_pages: Vec<usize>,
    /// Index of A's fence entry.
    pub(crate) fence_index: u64,
    /// What B was sealed with.
    pub(crate) sealed: Option<MoveStep>,
}

/// Applies a move command on `r`, which must take it.
pub(crate) fn apply(r: &mut Replica, cmd: SlotCommand) -> SlotState {
    match r.run(Command::Slot(cmd)) {
        ApplyOutcome::SlotStep { state, .. } => state,
        other => panic!("move step refused: {other:?}"),
    }
}

/// Applies the pages `builder` has ready on B; how many.
fn propose_ready(b: &mut Replica, builder: &mut PageBuilder) -> usize {
    let ready = builder.take_ready();
    let pages = ready.len();
    for cmd in ready {
        apply(b, cmd);
    }
    pages
}

/// Applies a round's last pages on B and reports the round; its items.
fn end_round(
    b: &mut Replica,
    builder: PageBuilder,
    items: usize,
    mut pages: usize,
    report: &mut MoveReport,
) -> usize {
    for cmd in builder.finish() {
        apply(b, cmd);
        pages += 1;
    }
    report.round_items.push(items);
    report.round_pages.push(pages);
    items
}

impl Mover<'_> {
    /// Round 0: every key of A's slot into B's staging (B's slot must be absent).
    pub(crate) fn bulk_copy(&mut self, a: &mut Replica, b: &mut Replica, report: &mut MoveReport) {
        if self.by_changes {
            self.baseline = self.track(a, None).expect("tracking starts");
        }
        let mut builder = PageBuilder::new(self.slot, self.epoch, 0, self.page_bytes);
        let (mut cursor, mut items, mut pages) = (None::<Bytes>, 0, 0);
        loop {
            (self.chaos)(a);
            let view = a.kv.read_view().expect("view");
            let page = fetch_page(
                &view,
                self.slot,
                self.epoch,
                cursor.as_deref(),
                self.page_bytes,
            )
            .expect("fetch page");
            items += page.puts.len();
            cursor = page.puts.last().map(|p| p.key.clone()).or(cursor);
            builder.add(page.puts, Vec::new()).expect("add");
            pages += propose_ready(b, &mut builder);
            if !page.more {
                break;
            }
        }
        end_round(b, builder, items, pages, report);
    }

    /// Asks A's change index since `since`: the keys written since then if it
    /// can show them (`Ok(Err(keys))`), else the baseline a full listing read
    /// from now on establishes (`Ok(Ok(from))`).
    #[allow(clippy::type_complexity)]
    fn ask(
        &mut self,
        a: &mut Replica,
        since: Option<Index>,
        witness: Option<&mut FenceWitness>,
    ) -> Result<Result<Index, (Index, Vec<Bytes>)>, super::CopyError> {
        (self.chaos)(a);
        let view = a.kv.read_view()?;
        let page = fetch_changes(&a.kv, &view, self.slot, self.epoch, since)?;
        if let Some(w) = witness {
            w.witness(&page.source)?;
        }
        Ok(match page.changes {
            Changes::Listed(keys) => Err((page.source.applied_index, keys)),
            Changes::Unknown { from } => Ok(from),
        })
    }

    /// Starts (or restarts) tracking at A: the baseline of a full listing.
    fn track(
        &mut self,
        a: &mut Replica,
        witness: Option<&mut FenceWitness>,
    ) -> Result<Option<Index>, super::CopyError> {
        match self.ask(a, None, witness)? {
            Ok(from) => Ok(Some(from)),
            Err(_) => unreachable!("a fresh start lists nothing"),
        }
    }

    /// One catch-up round (`witness: None`) or the final one; returns how
    /// many items it ingested. With `by_changes`, by A's change index when it
    /// can show what changed since the last baseline, else by listing.
    pub(crate) fn round(
        &mut self,
        round: u64,
        a: &mut Replica,
        b: &mut Replica,
        mut witness: Option<&mut FenceWitness>,
        report: &mut MoveReport,
    ) -> Result<usize, super::CopyError> {
        if self.by_changes {
            let asked = match self.baseline {
                Some(since) => self.ask(a, Some(since), witness.as_deref_mut())?,
                None => Ok(self.track(a, witness.as_deref_mut())?.expect("tracked")),
            };
            match asked {
                Err((applied, keys)) => {
                    let items = self.changed_round(round, a, b, &keys, applied, witness, report)?;
                    self.baseline = Some(applied);
                    return Ok(items);
                }
                Ok(from) => self.baseline = Some(from),
            }
        }
        self.listed_round(round, a, b, witness, report)
    }

    /// A round by the change index: fetches `keys` (written since the
    /// baseline, as of A's view at `applied`) and makes B match.
    #[allow(clippy::too_many_arguments)]
    fn changed_round(
        &mut self,
        round: u64,
        a: &mut Replica,
        b: &mut Replica,
        keys: &[Bytes],
        applied: Index,
        mut witness: Option<&mut FenceWitness>,
        report: &mut MoveReport,
    ) -> Result<usize, super::CopyError> {
        let mut builder = PageBuilder::new(self.slot, self.epoch, round, self.page_bytes);
        let (mut done, mut items, mut pages) = (0, 0, 0);
        while done < keys.len() {
            (self.chaos)(a);
            let view = a.kv.read_view()?;
            let values =
                fetch_values(&view, self.slot, self.epoch, &keys[done..], self.page_bytes)?;
            assert!(values.source.applied_index >= applied, "an older view");
            if let Some(w) = witness.as_deref_mut() {
                w.witness(&values.source)?;
            }
            let asked = &keys[done..done + values.covered];
            done += values.covered;
            let staged = b.kv.read_view()?;
            let (puts, deletes) = plan_changed(&staged, self.slot, self.epoch, asked, values.puts)?;
            items += puts.len() + deletes.len();
            builder.add(puts, deletes)?;
            pages += propose_ready(b, &mut builder);
        }
        Ok(end_round(b, builder, items, pages, report))
    }

    /// A round by listing A's whole slot and comparing it with B's.
    fn listed_round(
        &mut self,
        round: u64,
        a: &mut Replica,
        b: &mut Replica,
        mut witness: Option<&mut FenceWitness>,
        report: &mut MoveReport,
    ) -> Result<usize, super::CopyError> {
        let mut see = |source: &SourceView| match witness.as_deref_mut() {
            Some(w) => w.witness(source),
            None => Ok(()),
        };
        let mut builder = PageBuilder::new(self.slot, self.epoch, round, self.page_bytes);
        let (mut cursor, mut items, mut pages) = (None::<Bytes>, 0, 0);
        loop {
            (self.chaos)(a);
            let view = a.kv.read_view()?;
            let list = fetch_versions(
                &view,
                self.slot,
                self.epoch,
                cursor.as_deref(),
                self.version_keys,
            )?;
            see(&list.source)?;
            let staged = b.kv.read_view()?;
            let delta = plan_delta(&staged, self.slot, self.epoch, cursor.as_deref(), &list)?;
            let mut puts = Vec::new();
            let mut done = 0;
            while done < delta.fetch.len() {
                (self.chaos)(a);
                let view = a.kv.read_view()?;
                let values = fetch_values(
                    &view,
                    self.slot,
                    self.epoch,
                    &delta.fetch[done..],
                    self.page_bytes,
                )?;
                see(&values.source)?;
                done += values.covered;
                puts.extend(values.puts);
            }
            items += puts.len() + delta.delete.len();
            builder.add(puts, delta.delete)?;
            pages += propose_ready(b, &mut builder);
            match delta.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(end_round(b, builder, items, pages, report))
    }

    /// The whole move: bulk copy, catch-up rounds, fence, final delta, seal,
    /// own, release. `map_version` is the version the commit produced.
    pub(crate) fn run(&mut self, a: &mut Replica, b: &mut Replica, map_version: u64) -> MoveReport {
        let mut report = MoveReport::default();
        self.bulk_copy(a, b, &mut report);
        let mut round = 1;
        while round <= self.max_rounds {
            let items = self.round(round, a, b, None, &mut report).expect("round");
            round += 1;
            if items <= self.small {
                break;
            }
        }
        report.fence_index = a.next;
        let fenced = apply(a, self.command(MoveStep::Fence));
        assert_eq!(fenced, SlotState::Fenced { epoch: self.epoch });
        let mut witness = FenceWitness::new(self.slot, self.epoch);
        self.round(round, a, b, Some(&mut witness), &mut report)
            .expect("final round");
        let seal = witness.seal().expect("fenced evidence");
        report.sealed = Some(seal.step.clone());
        assert_eq!(apply(b, seal), SlotState::Ingested { epoch: self.epoch });
        assert_eq!(
            apply(b, self.command(MoveStep::Own { map_version })),
            SlotState::Serving
        );
        self.release(a, map_version);
        report
    }

    /// `DropSlot` on `r` until the slot is absent (A after the commit, B after
    /// an abort).
    pub(crate) fn release(&self, r: &mut Replica, map_version: u64) {
        while apply(r, self.command(MoveStep::Drop { map_version })) != SlotState::Absent {}
    }

    pub(crate) fn command(&self, step: MoveStep) -> SlotCommand {
        SlotCommand {
            slot: self.slot,
            epoch: self.epoch,
            step,
        }
    }
}
