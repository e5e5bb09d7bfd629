//! The `keel bench move` command line, and what makes it invalid.

use std::time::Duration;

use clap::Args;

use crate::parse;
use crate::scenario_files::ScenarioFiles;
use crate::target::ReadConsistency;

/// `keel bench move`: how long moving a slot takes under load, and what the
/// move costs the clients, on a 3-node loopback cluster of real `keel serve`
/// processes.
///
/// 1. Starts the cluster, creates group 2 on all three nodes and waits for its
///    leader.
/// 2. Preloads `--slot-keys` keys of one slot (`{TAG}key-000000` ..., one hash
///    tag) and the `--keys` ordinary keys (`key-000000` ..., spread over every
///    slot).
/// 3. Runs a closed loop of `--clients` clients over both key sets: a warm-up,
///    a steady window, then it begins moving the slot to group 2 and keeps the
///    load up until the map names group 2 the owner with no move in flight, and
///    `--after` more.
/// 4. Reports the move's duration, latency percentiles and ops/s per window,
///    the p99 ratio (during the move / steady), errors, and each node's CPU
///    time; then reads a sample of the moved keys back and checks their values.
#[derive(Args, Debug, Clone)]
pub struct MoveArgs {
    /// Keys of the moving slot, preloaded before the load.
    #[arg(long, default_value_t = 100_000)]
    pub slot_keys: u64,
    /// Ordinary keys (`key-000000` .., spread over every slot), preloaded too.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Hash tag of the moving slot's keys: `{TAG}key-000000`.
    #[arg(long, default_value = "mv")]
    pub tag: String,
    /// Size of every value (bytes); each key has its own value.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Concurrent clients of the load.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Independent client handles the load's clients share, round-robin.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Fraction of operations that are reads.
    #[arg(long, default_value = "0.5", value_parser = parse::fraction)]
    pub read_fraction: f64,
    /// How reads are served.
    #[arg(long, value_enum, default_value = "linearizable")]
    pub read_mode: ReadConsistency,
    /// Fraction of operations on the moving slot's keys (default: in
    /// proportion to the key counts, i.e. uniform over all keys).
    #[arg(long, value_parser = parse::fraction)]
    pub moving_fraction: Option<f64>,
    /// Load before the steady window, excluded from every figure.
    #[arg(long, default_value = "2s", value_parser = parse::duration)]
    pub warmup: Duration,
    /// Length of the steady window, before the move begins.
    #[arg(long, default_value = "10s", value_parser = parse::duration)]
    pub steady: Duration,
    /// Load kept up after the move is done (the "after" window).
    #[arg(long, default_value = "3s", value_parser = parse::duration)]
    pub after: Duration,
    /// Give up on the move (an error) after this long.
    #[arg(long, default_value = "2m", value_parser = parse::duration)]
    pub move_timeout: Duration,
    /// Concurrent writers of the preload.
    #[arg(long, default_value_t = 256)]
    pub preload_clients: usize,
    /// Moved keys read back and checked after the move (evenly spaced).
    #[arg(long, default_value_t = 1_000)]
    pub verify_keys: u64,
    /// Seed of the clients' key and operation choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Results, data directory, binary and extra node flags.
    #[command(flatten)]
    pub files: ScenarioFiles,
}

/// Why a `keel bench move` command line cannot run.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ArgsError {
    /// A count that must be positive is zero.
    #[error("--{0} must be greater than zero")]
    Zero(&'static str),
    /// A hash tag must be non-empty and hold no `}`.
    #[error("--tag must be non-empty and must not contain '}}': {0:?}")]
    BadTag(String),
    /// Load on ordinary keys was asked for, but there are none.
    #[error("--moving-fraction {0} leaves load for ordinary keys, but --keys is 0")]
    NoOrdinaryKeys(f64),
}

impl MoveArgs {
    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), ArgsError> {
        let counts = [
            ("slot-keys", self.slot_keys as usize),
            ("clients", self.clients),
            ("connections", self.connections),
            ("preload-clients", self.preload_clients),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, n)| *n == 0) {
            return Err(ArgsError::Zero(name));
        }
        if self.steady.is_zero() {
            return Err(ArgsError::Zero("steady"));
        }
        if self.tag.is_empty() || self.tag.contains('}') {
            return Err(ArgsError::BadTag(self.tag.clone()));
        }
        if self.keys == 0 && self.moving_fraction.is_some_and(|f| f < 1.0) {
            return Err(ArgsError::NoOrdinaryKeys(
                self.moving_fraction.unwrap_or(0.0),
            ));
        }
        Ok(())
    }

    /// The fraction of operations on the moving slot: `--moving-fraction`, or
    /// the moving slot's share of all keys.
    pub fn moving_share(&self) -> f64 {
        self.moving_fraction
            .unwrap_or_else(|| self.slot_keys as f64 / (self.slot_keys + self.keys).max(1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::Parser;

    use super::*;
    use crate::args::{BenchArgs, Scenario};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(words: &[&str]) -> MoveArgs {
        let cli =
            Cli::try_parse_from(["bench", "move"].iter().chain(words)).expect("valid command line");
        let Some(Scenario::Move(a)) = cli.bench.scenario else {
            panic!("not the move scenario");
        };
        a
    }

    #[test]
    fn defaults_are_the_issue_s_target() {
        let a = parse(&[]);
        assert_eq!(a.slot_keys, 100_000);
        assert_eq!(a.keys, 10_000);
        assert_eq!(a.value_size, 256);
        assert_eq!(a.clients, 64);
        assert_eq!(a.read_fraction, 0.5);
        assert_eq!(a.read_mode, ReadConsistency::Linearizable);
        assert_eq!(a.steady, Duration::from_secs(10));
        assert_eq!(a.after, Duration::from_secs(3));
        assert_eq!(a.tag, "mv");
        assert_eq!(a.validate(), Ok(()));
        assert!((a.moving_share() - 100_000.0 / 110_000.0).abs() < 1e-12);
    }

    #[test]
    fn flags_parse() {
        let a = parse(&[
            "--slot-keys",
            "500",
            "--keys",
            "50",
            "--moving-fraction",
            "0.25",
            "--steady",
            "1s",
            "--after",
            "500ms",
            "--keel-arg=--io-threads=1",
            "--json",
            "out.json",
        ]);
        assert_eq!(a.slot_keys, 500);
        assert_eq!(a.moving_share(), 0.25);
        assert_eq!(a.after, Duration::from_millis(500));
        assert_eq!(a.files.keel_arg, ["--io-threads=1"]);
        assert_eq!(a.files.json, Some(PathBuf::from("out.json")));
        let bad = Cli::try_parse_from(["bench", "move", "--moving-fraction", "1.5"]);
        assert!(bad.is_err());
    }

    #[test]
    fn invalid_combinations_are_refused() {
        let ok = parse(&[]);
        let with = |f: fn(&mut MoveArgs)| {
            let mut a = ok.clone();
            f(&mut a);
            a.validate()
        };
        assert_eq!(with(|a| a.slot_keys = 0), Err(ArgsError::Zero("slot-keys")));
        assert_eq!(with(|a| a.clients = 0), Err(ArgsError::Zero("clients")));
        assert_eq!(
            with(|a| a.steady = Duration::ZERO),
            Err(ArgsError::Zero("steady"))
        );
        assert_eq!(
            with(|a| a.tag = "a}b".into()),
            Err(ArgsError::BadTag("a}b".into()))
        );
        assert_eq!(
            with(|a| {
                a.keys = 0;
                a.moving_fraction = Some(0.5);
            }),
            Err(ArgsError::NoOrdinaryKeys(0.5))
        );
        // No ordinary keys: every operation goes to the moving slot.
        assert_eq!(with(|a| a.keys = 0), Ok(()));
        let mut only = ok.clone();
        only.keys = 0;
        assert_eq!(only.moving_share(), 1.0);
    }
}
