//! A move's catch-up rounds and its final round (`docs/sharding.md`, *Moving
//! a slot*, steps 3 and 5): each asks the source's change index for the keys
//! written since the last round and fetches only those, or lists the whole
//! slot and compares it with the target's copy when the index cannot show
//! what changed (it is one replica's memory: restarts, snapshot installs and
//! other replicas know nothing of it).

use bytes::Bytes;
use keel_raft::Index;
use keel_storage::kv::slots::Changes;
use keel_storage::kv::slots::copy::{
    ChangePage, CopyError, FenceWitness, MAX_VERSION_KEYS, PageBuilder, SourceView, ValuePage,
    plan_changed, plan_delta,
};

use super::drive::Drive;
use super::error::MoveError;
use super::pace::Pacer;
use super::reach::{Answer, Read, with_view};

impl Drive<'_> {
    /// Asks the source's change index for the keys of the slot written since
    /// `since` (`None`: start tracking). `None` when the source cannot answer
    /// — a node of an older version refuses the fetch kind, or the read
    /// failed: the caller lists the slot instead, which is always complete,
    /// only slower.
    async fn changes(&self, since: Option<Index>) -> Option<ChangePage> {
        let read = Read::Changes(since);
        match self
            .reach
            .read(&self.source, self.slot, self.epoch, read)
            .await
        {
            Ok(Answer::Changes(page)) => Some(page),
            Ok(_) => unreachable!("a changes read answers changes"),
            Err(e) => {
                tracing::debug!(slot = %self.slot, "the source's change index did not answer: {e}");
                None
            }
        }
    }

    /// Starts tracking the slot's writes at the source; the index it runs
    /// from, or `None` when the source cannot track (see [`Drive::round`]:
    /// every round then lists the slot).
    pub(super) async fn track(&self) -> Result<Option<Index>, MoveError> {
        match self.changes(None).await.map(|page| page.changes) {
            Some(Changes::Unknown { from }) => Ok(Some(from)),
            Some(Changes::Listed(_)) => {
                Err(self.source_error("a fresh start of tracking listed keys"))
            }
            None => Ok(None),
        }
    }

    fn source_error(&self, why: &str) -> MoveError {
        MoveError::Unavailable {
            group: self.source.group,
            why: why.into(),
        }
    }

    /// One catch-up round, or the final one (with `witness`, which must see
    /// only fenced views): by the source's change index when it can name the
    /// keys written since `baseline`, else by listing the slot (then
    /// `baseline` becomes where tracking restarted). How many keys it changed
    /// at the target, and whether it listed the slot.
    pub(super) async fn round(
        &self,
        round: u64,
        baseline: &mut Option<Index>,
        mut witness: Option<&mut FenceWitness>,
    ) -> Result<(usize, bool), MoveError> {
        let Some(asked) = self.changes(*baseline).await else {
            *baseline = None;
            return Ok((self.listed_round(round, witness).await?, true));
        };
        if let Some(w) = witness.as_deref_mut() {
            w.witness(&asked.source)?;
        }
        match asked.changes {
            Changes::Listed(keys) if baseline.is_some() => {
                let applied = asked.source.applied_index;
                let items = self.changed_round(round, keys, applied, witness).await?;
                *baseline = Some(applied);
                Ok((items, false))
            }
            Changes::Listed(_) => Err(self.source_error("a fresh start of tracking listed keys")),
            Changes::Unknown { from } => {
                *baseline = Some(from);
                Ok((self.listed_round(round, witness).await?, true))
            }
        }
    }

    /// A round by the change index: fetches `keys` (every key written since
    /// the baseline up to the source's view at `applied`) from views at or
    /// after `applied`, and puts or deletes what differs at the target.
    async fn changed_round(
        &self,
        round: u64,
        keys: Vec<Bytes>,
        applied: Index,
        mut witness: Option<&mut FenceWitness>,
    ) -> Result<usize, MoveError> {
        let mut pace = Pacer::new(self.copy_rate.filter(|_| witness.is_none()));
        let mut builder = PageBuilder::new(self.slot, self.epoch, round, self.page_bytes());
        let (mut done, mut items) = (0, 0);
        while done < keys.len() {
            // A VALUES fetch names at most MAX_VERSION_KEYS keys.
            let ask = keys[done..]
                .iter()
                .take(MAX_VERSION_KEYS)
                .cloned()
                .collect();
            let values = self.values(ask).await?;
            if let Some(w) = witness.as_deref_mut() {
                w.witness(&values.source)?;
            }
            // An older view could hand back values older than the target's.
            if values.source.applied_index < applied {
                return Err(self.source_error("a values read from a view before the changes'"));
            }
            let asked = keys[done..done + values.covered].to_vec();
            done += values.covered;
            let (slot, epoch) = (self.slot, self.epoch);
            let (puts, deletes) = with_view(&self.target, move |staged| {
                plan_changed(staged, slot, epoch, &asked, values.puts)
            })
            .await?;
            items += puts.len() + deletes.len();
            pace.after(&puts).await;
            builder.add(puts, deletes)?;
            self.stage_pages(builder.take_ready()).await?;
        }
        self.stage_pages(builder.finish()).await?;
        Ok(items)
    }

    /// The values of a prefix of `keys` at the source (at least one key).
    async fn values(&self, keys: Vec<Bytes>) -> Result<ValuePage, MoveError> {
        let Answer::Values(values) = self
            .reach
            .read(&self.source, self.slot, self.epoch, Read::Values(keys))
            .await?
        else {
            unreachable!("a values read answers values");
        };
        if values.covered == 0 {
            return Err(self.source_error("a values read covered no key"));
        }
        Ok(values)
    }

    /// A round by listing the source's whole slot and comparing it with the
    /// target's copy; how many keys it changed at the target.
    async fn listed_round(
        &self,
        round: u64,
        mut witness: Option<&mut FenceWitness>,
    ) -> Result<usize, MoveError> {
        // The final round runs while the slot's writes wait: never paced.
        let final_round = witness.is_some();
        let mut pace = Pacer::new(self.copy_rate.filter(|_| !final_round));
        let mut see = |source: &SourceView| -> Result<(), CopyError> {
            match witness.as_deref_mut() {
                Some(w) => w.witness(source),
                None => Ok(()),
            }
        };
        let mut builder = PageBuilder::new(self.slot, self.epoch, round, self.page_bytes());
        let (mut cursor, mut items) = (None::<Bytes>, 0);
        loop {
            let Answer::Versions(list) = self
                .reach
                .read(
                    &self.source,
                    self.slot,
                    self.epoch,
                    Read::Versions(cursor.clone()),
                )
                .await?
            else {
                unreachable!("a versions read answers versions");
            };
            see(&list.source)?;
            let (slot, epoch, after) = (self.slot, self.epoch, cursor.clone());
            let delta = with_view(&self.target, move |staged| {
                plan_delta(staged, slot, epoch, after.as_deref(), &list)
            })
            .await?;
            let mut puts = Vec::new();
            let mut done = 0;
            while done < delta.fetch.len() {
                let values = self.values(delta.fetch[done..].to_vec()).await?;
                see(&values.source)?;
                done += values.covered;
                puts.extend(values.puts);
            }
            items += puts.len() + delta.delete.len();
            pace.after(&puts).await;
            builder.add(puts, delta.delete)?;
            self.stage_pages(builder.take_ready()).await?;
            match delta.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        self.stage_pages(builder.finish()).await?;
        Ok(items)
    }
}
