//! Checking the command line and turning it into a plan: which systems, which
//! client counts, what workload.

use std::path::PathBuf;
use std::time::Duration;

use crate::args::{AgainstArg, BenchArgs, ClusterArg};
use crate::driver::StopAt;
use crate::target::ReadConsistency;
use crate::workload::Workload;

/// A system to run the workload against, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SystemPlan {
    /// A keel cluster already running at these endpoints.
    KeelAt(Vec<String>),
    /// A keel cluster the bench starts.
    KeelLocal {
        /// Nodes.
        nodes: u64,
        /// The `keel` binary.
        bin: PathBuf,
        /// Whether nodes write event logs.
        event_logs: bool,
        /// Extra flags for every `keel serve`.
        extra_args: Vec<String>,
    },
    /// An etcd cluster the bench starts.
    Etcd {
        /// Members.
        members: usize,
        /// The `etcd` binary.
        bin: PathBuf,
    },
}

/// Everything a bench run does.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Systems, run one after the other (never at the same time).
    pub systems: Vec<SystemPlan>,
    /// Client counts, each run against every system.
    pub client_counts: Vec<usize>,
    /// Connections the clients share.
    pub connections: usize,
    /// The load.
    pub workload: Workload,
    /// How reads are served.
    pub reads: ReadConsistency,
    /// keel's client batches concurrent operations (see `--keel-unbatched`).
    pub keel_batching: bool,
    /// Warm-up before each measurement.
    pub warmup: Duration,
    /// End of each measurement.
    pub stop: StopAt,
    /// Write every key before measuring.
    pub preload: bool,
    /// Show the progress line.
    pub progress: bool,
    /// Where to write JSON results.
    pub json: Option<PathBuf>,
    /// Where to write the SVG chart.
    pub chart: Option<PathBuf>,
    /// Parent of the started clusters' data directories.
    pub work_dir: PathBuf,
    /// Keep the started clusters' directory after the run.
    pub keep_data: bool,
}

/// A command line that cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Nothing to run keel against.
    #[error("say which keel cluster to load: --endpoints HOST:PORT,... or --cluster local")]
    NoKeelCluster,
    /// The etcd binary is missing.
    #[error(
        "--against etcd needs the etcd server, which is not installed ({0}). \
         On Debian or Ubuntu: apt-get install etcd-server; or pass --etcd-bin PATH"
    )]
    EtcdMissing(String),
    /// The keel binary cannot be found.
    #[error("cannot find the keel binary to start: {0}; pass --keel-bin PATH")]
    KeelBinary(String),
    /// A count that must be positive is zero.
    #[error("--{0} must be greater than zero")]
    Zero(&'static str),
    /// A started cluster of unsupported size.
    #[error("--nodes must be between 1 and 7, not {0}")]
    Nodes(u64),
}

impl BenchArgs {
    /// Checks the arguments and makes the plan. `find_etcd` locates the etcd binary
    /// when `--etcd-bin` is not given.
    pub fn plan(&self, find_etcd: impl FnOnce() -> Option<PathBuf>) -> Result<Plan, PlanError> {
        for (name, value) in [
            ("clients", self.clients as u64),
            ("connections", self.connections as u64),
            ("keys", self.keys),
            ("ops", self.ops.unwrap_or(1)),
        ] {
            if value == 0 {
                return Err(PlanError::Zero(name));
            }
        }
        let started = self.cluster.is_some() || self.against.is_some();
        if started && !(1..=7).contains(&self.nodes) {
            return Err(PlanError::Nodes(self.nodes));
        }

        let keel = match self.cluster {
            Some(ClusterArg::Local) => SystemPlan::KeelLocal {
                nodes: self.nodes,
                bin: match &self.files.keel_bin {
                    Some(b) => b.clone(),
                    None => {
                        std::env::current_exe().map_err(|e| PlanError::KeelBinary(e.to_string()))?
                    }
                },
                event_logs: self.keel_event_logs,
                extra_args: self.files.keel_arg.clone(),
            },
            None => {
                let endpoints: Vec<String> = self
                    .endpoints
                    .iter()
                    .map(|e| e.trim().to_owned())
                    .filter(|e| !e.is_empty())
                    .collect();
                if endpoints.is_empty() {
                    return Err(PlanError::NoKeelCluster);
                }
                SystemPlan::KeelAt(endpoints)
            }
        };
        let mut systems = vec![keel];
        if let Some(AgainstArg::Etcd) = self.against {
            let bin = match &self.etcd_bin {
                Some(b) if b.is_file() => b.clone(),
                Some(b) => {
                    return Err(PlanError::EtcdMissing(format!(
                        "{} does not exist",
                        b.display()
                    )));
                }
                None => find_etcd().ok_or_else(|| {
                    PlanError::EtcdMissing("no `etcd` on PATH nor /usr/bin/etcd".to_owned())
                })?,
            };
            systems.push(SystemPlan::Etcd {
                members: self.nodes as usize,
                bin,
            });
        }

        Ok(Plan {
            systems,
            client_counts: self
                .sweep_clients
                .as_ref()
                .map_or_else(|| vec![self.clients], |c| c.0.clone()),
            connections: self.connections,
            workload: Workload {
                keys: self.keys,
                value_size: self.value_size,
                read_fraction: self.read_fraction,
                seed: self.seed,
            },
            reads: self.read_mode,
            keel_batching: !self.keel_unbatched,
            warmup: self.warmup,
            stop: match self.ops {
                Some(n) => StopAt::Ops(n),
                None => StopAt::Elapsed(self.duration),
            },
            preload: !self.no_preload && (self.preload || self.read_fraction > 0.0),
            progress: !self.quiet,
            json: self.files.json.clone(),
            chart: self.chart.clone(),
            work_dir: self
                .files
                .work_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir),
            keep_data: self.files.keep_data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn args(line: &str) -> BenchArgs {
        let words = std::iter::once("bench").chain(line.split_whitespace());
        Cli::try_parse_from(words)
            .expect("valid command line")
            .bench
    }

    fn no_etcd() -> Option<PathBuf> {
        None
    }

    #[test]
    fn defaults_with_endpoints() {
        let plan = args("--endpoints 127.0.0.1:7001,127.0.0.1:7002")
            .plan(no_etcd)
            .expect("plan");
        assert_eq!(
            plan.systems,
            [SystemPlan::KeelAt(vec![
                "127.0.0.1:7001".into(),
                "127.0.0.1:7002".into()
            ])]
        );
        assert_eq!(plan.client_counts, [16]);
        assert_eq!(plan.stop, StopAt::Elapsed(Duration::from_secs(10)));
        assert_eq!(plan.warmup, Duration::from_secs(2));
        assert_eq!(plan.workload.value_size, 256);
        assert_eq!(plan.workload.read_fraction, 0.0);
        assert_eq!(plan.reads, ReadConsistency::Linearizable);
        assert!(!plan.preload);
        assert!(plan.progress);
    }

    #[test]
    fn sweep_local_cluster_against_etcd() {
        let plan = args(
            "--cluster local --keel-bin /bin/keel --against etcd --sweep-clients 1,16,64,256 \
             --duration 15s --warmup 3s --value-size 100 --keel-arg=--tick-ms=5",
        )
        .plan(|| Some(PathBuf::from("/opt/etcd")))
        .expect("plan");
        assert_eq!(
            plan.systems,
            [
                SystemPlan::KeelLocal {
                    nodes: 3,
                    bin: "/bin/keel".into(),
                    event_logs: false,
                    extra_args: vec!["--tick-ms=5".into()],
                },
                SystemPlan::Etcd {
                    members: 3,
                    bin: "/opt/etcd".into()
                }
            ]
        );
        assert_eq!(plan.client_counts, [1, 16, 64, 256]);
        assert_eq!(plan.stop, StopAt::Elapsed(Duration::from_secs(15)));
        assert_eq!(plan.workload.value_size, 100);
    }

    #[test]
    fn reads_preload_unless_told_not_to() {
        let reads = "--endpoints 127.0.0.1:1 --read-fraction 1.0 --read-mode stale";
        let plan = args(reads).plan(no_etcd).expect("plan");
        assert!(plan.preload);
        assert_eq!(plan.reads, ReadConsistency::Stale);
        let plan = args(&format!("{reads} --no-preload"))
            .plan(no_etcd)
            .expect("plan");
        assert!(!plan.preload);
        let plan = args("--endpoints 127.0.0.1:1 --preload --ops 500")
            .plan(no_etcd)
            .expect("plan");
        assert!(plan.preload);
        assert_eq!(plan.stop, StopAt::Ops(500));
    }

    #[test]
    fn missing_etcd_is_explained() {
        let err = args("--cluster local --against etcd")
            .plan(no_etcd)
            .expect_err("no etcd");
        assert!(
            err.to_string().contains("apt-get install etcd-server"),
            "{err}"
        );
        let err = args("--cluster local --against etcd --etcd-bin /nonexistent/etcd")
            .plan(|| Some(PathBuf::from("/usr/bin/etcd")))
            .expect_err("no such file");
        assert!(err.to_string().contains("/nonexistent/etcd"), "{err}");
    }

    #[test]
    fn rejects_what_cannot_run() {
        assert!(matches!(
            args("").plan(no_etcd),
            Err(PlanError::NoKeelCluster)
        ));
        assert!(matches!(
            args("--endpoints 127.0.0.1:1 --clients 0").plan(no_etcd),
            Err(PlanError::Zero("clients"))
        ));
        assert!(matches!(
            args("--cluster local --nodes 9").plan(no_etcd),
            Err(PlanError::Nodes(9))
        ));
        let cli = |line: &str| {
            Cli::try_parse_from(std::iter::once("bench").chain(line.split_whitespace()))
        };
        assert!(cli("--endpoints a:1 --cluster local").is_err());
        assert!(cli("--endpoints a:1 --read-fraction 1.5").is_err());
        assert!(cli("--endpoints a:1 --duration 10").is_err());
        assert!(cli("--endpoints a:1 --sweep-clients 0,4").is_err());
        assert!(cli("--endpoints a:1 --preload --no-preload").is_err());
    }
}
