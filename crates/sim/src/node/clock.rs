//! A node's monotonic clock: what its runtime would read from the OS, and what
//! its core's leases are measured on (`Raft::set_clock`).
//!
//! Each node's clock runs at its own rate, drawn once per run within the drift
//! bound (`SimConfig::clock_drift_ppm`), from its own offset: like a machine's
//! oscillator, the rate belongs to the node, not to a process incarnation, and it
//! keeps running while the process is paused or down. Readings are in the same
//! units as simulated time at the nominal rate (1/100 of a tick), so a lease of
//! ten ticks is 1,000 units on every clock, and lasts 1,000/rate of simulated time.
//! The node's ticks are timed on this clock too: one every [`TICK`] of its units.

use crate::config::{TICK, Time};

/// Parts per million.
const PPM: u64 = 1_000_000;

/// One node's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeClock {
    /// Reading at simulated time 0.
    pub offset: u64,
    /// Clock units per million units of simulated time.
    pub rate_ppm: u64,
}

impl NodeClock {
    /// A clock running at exactly the nominal rate from 0.
    pub fn nominal() -> Self {
        NodeClock {
            offset: 0,
            rate_ppm: PPM,
        }
    }

    /// The reading at simulated time `t` (rounded down: two clocks' readings are
    /// each off by less than one unit).
    pub fn read(&self, t: Time) -> u64 {
        let scaled = u128::from(t) * u128::from(self.rate_ppm) / u128::from(PPM);
        self.offset + u64::try_from(scaled).expect("simulated runs are far shorter")
    }

    /// Simulated time this clock takes to advance `units` (rounded to the nearest
    /// unit, at least 1).
    pub fn duration_of(&self, units: u64) -> Time {
        let t = (u128::from(units) * u128::from(PPM) + u128::from(self.rate_ppm) / 2)
            / u128::from(self.rate_ppm);
        u64::try_from(t).expect("durations are short").max(1)
    }

    /// Time between two of the node's ticks: one nominal tick on its clock.
    pub fn tick_period(&self) -> Time {
        self.duration_of(TICK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_clock_reads_more_and_ticks_sooner() {
        let fast = NodeClock {
            offset: 7,
            rate_ppm: 1_050_000,
        };
        assert_eq!(fast.read(0), 7);
        assert_eq!(fast.read(1_000), 7 + 1_050);
        assert_eq!(fast.tick_period(), 95);
        let slow = NodeClock {
            offset: 0,
            rate_ppm: 950_000,
        };
        assert_eq!(slow.read(1_000), 950);
        assert_eq!(slow.tick_period(), 105);
        assert_eq!(NodeClock::nominal().tick_period(), TICK);
        // Readings never go backwards.
        assert!((0..500).all(|t| slow.read(t) <= slow.read(t + 1)));
    }
}
