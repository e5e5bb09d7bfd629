//! The simulated network: per-message loss, duplication and random delay (hence
//! reordering), plus directed link cuts from which symmetric and one-way partitions
//! are built.
//!
//! A cut link loses messages both when they are sent and when they would arrive,
//! like a real partition that also eats packets already in flight.

use std::collections::BTreeMap;

use bytes::Bytes;
use keel_raft::{EntryKind, Message, MessageBody, NodeId};

use crate::config::{TICK, Time};
use crate::rng::SimRng;

/// Rates and delays of a run's network, drawn from its seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetParams {
    /// Probability that a message is lost, in parts per million.
    pub drop_ppm: u32,
    /// Probability that a message is delivered twice.
    pub dup_ppm: u32,
    /// Usual one-way delay range.
    pub min_delay: Time,
    /// Upper end of the usual delay.
    pub max_delay: Time,
    /// Probability of a much slower delivery (a retransmission, a congested link),
    /// which reorders a message behind many later ones.
    pub slow_ppm: u32,
    /// Upper end of a slow delivery's delay.
    pub slow_max_delay: Time,
}

impl NetParams {
    /// Random but bounded rates for a fault run: from a clean LAN to a lossy, slow
    /// one — up to 10% loss and 5% duplication, delays up to half a tick, and a few
    /// percent of messages delayed by up to five ticks.
    pub fn random(rng: &mut SimRng) -> Self {
        NetParams {
            drop_ppm: rng.range(0, 100_000) as u32,
            dup_ppm: rng.range(0, 50_000) as u32,
            min_delay: rng.range(1, 5),
            max_delay: rng.range(10, TICK / 2),
            slow_ppm: rng.range(0, 30_000) as u32,
            slow_max_delay: rng.range(TICK, 5 * TICK),
        }
    }

    /// A healthy network: no loss, no duplication, delays well under a heartbeat
    /// interval. Used for the liveness phase, and for runs without faults (which
    /// still reorder).
    pub fn calm() -> Self {
        NetParams {
            drop_ppm: 0,
            dup_ppm: 0,
            min_delay: 1,
            max_delay: TICK / 4,
            slow_ppm: 0,
            slow_max_delay: TICK / 4,
        }
    }
}

/// Why a message was not delivered.
pub const CUT: &str = "link cut";

/// The network of one run.
#[derive(Debug)]
pub struct Network {
    params: NetParams,
    /// Directed links `(from, to)` that lose everything, with how many active faults
    /// cut each (faults overlap; a link heals when the last one ends).
    cut: BTreeMap<(NodeId, NodeId), u32>,
    /// Active loss storms: fault id -> (drop ppm, dup ppm). The worst one applies.
    storms: BTreeMap<u64, (u32, u32)>,
}

impl Network {
    /// A network with the given rates and no cuts.
    pub fn new(params: NetParams) -> Self {
        Network {
            params,
            cut: BTreeMap::new(),
            storms: BTreeMap::new(),
        }
    }

    /// Whether messages from `from` to `to` are lost.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut.contains_key(&(from, to))
    }

    /// Cuts the given directed links.
    pub fn cut(&mut self, links: &[(NodeId, NodeId)]) {
        for &link in links {
            *self.cut.entry(link).or_insert(0) += 1;
        }
    }

    /// Undoes one [`Network::cut`] of the given links.
    pub fn uncut(&mut self, links: &[(NodeId, NodeId)]) {
        for link in links {
            if let Some(n) = self.cut.get_mut(link) {
                *n -= 1;
                if *n == 0 {
                    self.cut.remove(link);
                }
            }
        }
    }

    /// Starts a loss storm (fault `id`).
    pub fn start_storm(&mut self, id: u64, drop_ppm: u32, dup_ppm: u32) {
        self.storms.insert(id, (drop_ppm, dup_ppm));
    }

    /// Ends loss storm `id`.
    pub fn end_storm(&mut self, id: u64) {
        self.storms.remove(&id);
    }

    /// Heals every cut and storm and makes the network calm.
    pub fn heal_all(&mut self) {
        self.cut.clear();
        self.storms.clear();
        self.params = NetParams::calm();
    }

    /// Delays after which copies of a message from `from` to `to` arrive: none if it
    /// is lost, two if it is duplicated.
    pub fn route(&self, from: NodeId, to: NodeId, rng: &mut SimRng) -> Vec<Time> {
        if self.is_cut(from, to) {
            return Vec::new();
        }
        let (storm_drop, storm_dup) = self
            .storms
            .values()
            .fold((0, 0), |(d, u), &(sd, su)| (d.max(sd), u.max(su)));
        let drop = self.params.drop_ppm.max(storm_drop);
        let dup = self.params.dup_ppm.max(storm_dup);
        if rng.chance_ppm(drop) {
            return Vec::new();
        }
        let copies = if rng.chance_ppm(dup) { 2 } else { 1 };
        (0..copies).map(|_| self.delay(rng)).collect()
    }

    fn delay(&self, rng: &mut SimRng) -> Time {
        let p = &self.params;
        if rng.chance_ppm(p.slow_ppm) {
            rng.range(p.max_delay, p.slow_max_delay)
        } else {
            rng.range(p.min_delay, p.max_delay)
        }
    }
}

/// The injected [`crate::Bug::CorruptEntries`]: with probability 1/4, rewrites the
/// payload of one normal entry of an AppendEntries, keeping its index and term — a
/// forged message no correct node could have sent. Returns whether it did.
pub fn corrupt(m: &mut Message, rng: &mut SimRng) -> bool {
    let MessageBody::AppendEntries { entries, .. } = &mut m.body else {
        return false;
    };
    let normal: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].kind == EntryKind::Normal)
        .collect();
    let Some(i) = rng.pick(&normal) else {
        return false;
    };
    if !rng.one_in(4) {
        return false;
    }
    let mut forged = entries[i].data.to_vec();
    forged.extend_from_slice(b"-forged");
    entries[i].data = Bytes::from(forged);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_are_directed_and_counted() {
        let mut net = Network::new(NetParams::calm());
        let mut rng = SimRng::new(1);
        net.cut(&[(1, 2)]);
        net.cut(&[(1, 2)]);
        assert!(net.route(1, 2, &mut rng).is_empty());
        assert_eq!(
            net.route(2, 1, &mut rng).len(),
            1,
            "one-way: 2 -> 1 still works"
        );
        net.uncut(&[(1, 2)]);
        assert!(net.is_cut(1, 2), "still cut by the other fault");
        net.uncut(&[(1, 2)]);
        assert!(!net.is_cut(1, 2));
    }

    #[test]
    fn calm_network_neither_drops_nor_duplicates_and_delays_stay_bounded() {
        let net = Network::new(NetParams::calm());
        let mut rng = SimRng::new(2);
        for _ in 0..1000 {
            let d = net.route(1, 2, &mut rng);
            assert_eq!(d.len(), 1);
            assert!((1..=TICK / 4).contains(&d[0]));
        }
    }

    #[test]
    fn storms_drop_and_duplicate_and_end() {
        let mut net = Network::new(NetParams::calm());
        let mut rng = SimRng::new(3);
        net.start_storm(9, 500_000, 500_000);
        let copies: Vec<usize> = (0..1000).map(|_| net.route(1, 2, &mut rng).len()).collect();
        assert!(
            copies.contains(&0) && copies.contains(&2),
            "storm had no effect"
        );
        net.end_storm(9);
        assert!((0..100).all(|_| net.route(1, 2, &mut rng).len() == 1));
    }
}
