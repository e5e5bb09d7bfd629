//! The clock nemesis: a node restarted under libfaketime, its clock running at a
//! rate other than 1 (`FAKETIME="+0 x0.95"`).
//!
//! libfaketime fakes `clock_gettime` for every clock, `CLOCK_MONOTONIC`
//! included (the harness leaves `DONT_FAKE_MONOTONIC` unset), and keel measures
//! both its ticks (heartbeats, election timeouts) and its leader lease on the
//! monotonic clock, so a slow node runs its timers and its lease slowly in real
//! time: the fault is a node whose clock *rate* is off, which is what
//! `max_clock_drift_ms` has to cover. A fixed offset would change nothing (keel
//! only measures intervals).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{Injected, Stage, Target, partition};
use crate::cluster;
use crate::proxy::Rules;
use crate::rng::Rng;

/// Settings of the clock nemesis.
#[derive(Clone, Debug, Default)]
pub struct Skew {
    /// libfaketime's thread-safe library (`libfaketimeMT.so.1`); `None` disables
    /// the nemesis.
    pub library: Option<PathBuf>,
    /// Clock rates to choose from (1.0 is the true rate).
    pub rates: Vec<f64>,
}

impl Skew {
    /// The library, found or (when `wanted`, as root) installed from Debian's
    /// `libfaketime`, and `rates`, by default [`Skew::within_bound`] of `keel
    /// serve`'s default timeouts (election 300 ms, drift 30 ms).
    pub fn setup(wanted: bool, rates: Vec<f64>) -> Skew {
        let rates = if rates.is_empty() {
            Skew::within_bound(300, 30)
        } else {
            rates
        };
        let mut library = find_libfaketime();
        if library.is_none() && wanted && rustix::process::geteuid().is_root() {
            eprintln!("keel-chaos: libfaketime is missing; installing it with apt-get");
            if let Err(e) = crate::net::cmd::apt_install(&["libfaketime"]) {
                eprintln!("keel-chaos: {e}");
            }
            library = find_libfaketime();
        }
        if library.is_none() && wanted {
            eprintln!("keel-chaos: libfaketime is not installed; the skew nemesis does nothing");
        }
        Skew { library, rates }
    }

    /// Rates within keel's drift bound for `election_timeout_ms` and
    /// `max_clock_drift_ms` (see [`drift_bound`]), a little inside it: two slow
    /// and two fast ones.
    pub fn within_bound(election_timeout_ms: u64, max_clock_drift_ms: u64) -> Vec<f64> {
        let (slow, fast) = drift_bound(election_timeout_ms, max_clock_drift_ms);
        let inside = |r: f64| (r * 100.0).round() / 100.0;
        vec![
            inside(1.0 - (1.0 - slow) * 0.8),
            inside(1.0 - (1.0 - slow) * 0.5),
            inside(1.0 + (fast - 1.0) * 0.5),
            inside(1.0 + (fast - 1.0) * 0.8),
        ]
    }
}

/// The clock rates keel's lease tolerates on one node while the others run true:
/// a leader whose clock runs at rate `r` trusts its lease for
/// `(L - d) / r` of real time, which must not exceed the `L` its voters wait, so
/// `r >= 1 - d / L`; a voter running at `f` waits `L / f`, which must cover the
/// leader's `L - d`, so `f <= L / (L - d)`.
pub fn drift_bound(election_timeout_ms: u64, max_clock_drift_ms: u64) -> (f64, f64) {
    let l = election_timeout_ms as f64;
    let d = max_clock_drift_ms as f64;
    (1.0 - d / l, l / (l - d))
}

/// libfaketime's thread-safe library, if installed (Debian's `libfaketime`).
pub fn find_libfaketime() -> Option<PathBuf> {
    let dirs = std::fs::read_dir("/usr/lib").ok()?;
    let mut candidates: Vec<PathBuf> = dirs
        .flatten()
        .map(|d| d.path().join("faketime/libfaketimeMT.so.1"))
        .collect();
    candidates.push(PathBuf::from("/usr/lib/faketime/libfaketimeMT.so.1"));
    candidates.into_iter().find(|p| p.is_file())
}

/// Restarts `victim` on a false clock; half the time, once it is back, makes it
/// the leader and cuts it off halfway through the fault, so that its lease (on
/// its own clock) meets a successor elected on the others' clocks.
pub(crate) async fn skew(target: &Target, victim: u64, rng: &mut Rng) -> anyhow::Result<Injected> {
    let (Some(library), Some(&rate)) = (&target.skew.library, rng.pick(&target.skew.rates)) else {
        return Ok(Injected::just("skew: libfaketime is not installed".into()));
    };
    {
        let mut nodes = target.nodes();
        nodes.kill(victim)?;
        nodes.spec_mut(victim).env = vec![
            ("LD_PRELOAD".into(), library.display().to_string()),
            ("FAKETIME".into(), format!("+0 x{rate}")),
        ];
        nodes.start(victim)?;
        target.net.set_owners(nodes.pids());
    }
    let mut detail = format!("restart node {victim} with its clock at x{rate}");
    if !rng.chance(0.5) {
        return Ok(Injected::just(detail));
    }
    let endpoints = target.endpoints();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut led = false;
    while Instant::now() < deadline && !led {
        let _ = target.client.transfer_leader(victim).await;
        led = cluster::leader(&target.client, &endpoints).await == Some(victim);
        if !led {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    if !led {
        detail.push_str("; it could not be made the leader");
        return Ok(Injected::just(detail));
    }
    detail.push_str("; made the leader, then isolated");
    let ids = target.nodes().ids();
    Ok(Injected {
        detail,
        then: Some(Stage::Block(Rules {
            blocked: partition::isolate(&ids, victim),
            ..Rules::default()
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_stay_inside_the_bound() {
        let (slow, fast) = drift_bound(300, 30);
        assert!((slow - 0.9).abs() < 1e-9);
        assert!((fast - 300.0 / 270.0).abs() < 1e-9);
        for r in Skew::within_bound(300, 30) {
            assert!(r > slow && r < fast && r != 1.0, "{r}");
        }
    }
}
