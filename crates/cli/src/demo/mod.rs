//! `keel demo`: a local 3-node cluster as child processes, and a shell to poke it.
//! The first thing a newcomer runs: write a key, kill the leader, watch another
//! node take over, read the key back.

mod shell;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use keel_client::{Client, ClientConfig};
use keel_testkit::local_cluster::{ClusterSpec, LocalCluster, ports_free};

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Keep the cluster's data in this directory (default: a temporary directory,
    /// removed on exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
}

impl Default for DemoArgs {
    fn default() -> Self {
        DemoArgs {
            data_dir: None,
            nodes: 3,
        }
    }
}

/// The demo's preferred ports, which the CLI's default endpoints point at.
fn preferred_spec(nodes: u64, base: PathBuf, bin: PathBuf) -> std::io::Result<ClusterSpec> {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let grpc: Vec<SocketAddr> = (0..nodes)
        .map(|i| SocketAddr::new(ip, 7001 + i as u16))
        .collect();
    let http: Vec<SocketAddr> = (0..nodes)
        .map(|i| SocketAddr::new(ip, 8001 + i as u16))
        .collect();
    // Redis ports next to redis-server's 6379, so that one running there does
    // not stop the demo.
    let redis: Vec<SocketAddr> = (0..nodes)
        .map(|i| SocketAddr::new(ip, 6381 + i as u16))
        .collect();
    if !(ports_free(&grpc) && ports_free(&http)) {
        return ClusterSpec::on_free_ports(nodes, ip, base, bin)?.with_redis();
    }
    let spec = ClusterSpec {
        nodes,
        base_dir: base,
        keel_bin: bin,
        grpc,
        http,
        redis: Vec::new(),
        extra_args: Vec::new(),
    };
    if ports_free(&redis) {
        Ok(ClusterSpec { redis, ..spec })
    } else {
        spec.with_redis()
    }
}

pub(crate) fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if !(1..=7).contains(&args.nodes) {
        anyhow::bail!("--nodes must be between 1 and 7");
    }
    let temp;
    let base = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new().prefix("keel-demo-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let bin = std::env::current_exe().context("cannot find the keel binary")?;
    let spec = preferred_spec(args.nodes, base.clone(), bin)?;
    println!(
        "Starting a {}-node keel cluster in {} ...",
        args.nodes,
        base.display()
    );
    let started = Instant::now();
    let mut cluster = LocalCluster::start(spec).context("cannot start the nodes")?;
    for id in 1..=args.nodes {
        let redis = if cluster.has_redis() {
            format!("  redis {}", cluster.redis_addr(id))
        } else {
            String::new()
        };
        println!(
            "  node {id}: grpc {}  http http://{}{redis}  log {}",
            cluster.grpc_addr(id),
            cluster.http_addr(id),
            cluster.log_path(id).display()
        );
    }
    println!(
        "  live dashboard: http://{}/ (every node serves one at its http address)",
        cluster.http_addr(1)
    );
    let endpoints = cluster.endpoints();
    if endpoints.join(",") != crate::DEFAULT_ENDPOINTS {
        println!(
            "  (default ports busy; in another terminal: export KEEL_ENDPOINTS={})",
            endpoints.join(",")
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let client = Client::new(ClientConfig {
        deadline: Duration::from_secs(5),
        request_timeout: Duration::from_secs(2),
        ..ClientConfig::with_endpoints(endpoints)
    })?;
    match rt.block_on(shell::wait_for_leader(
        &client,
        &cluster.endpoints(),
        None,
        Duration::from_secs(15),
    )) {
        Some((leader, term)) => println!(
            "Node {leader} is the leader (term {term}), elected {:.1} s after start.",
            started.elapsed().as_secs_f64()
        ),
        None => {
            for id in 1..=args.nodes {
                eprintln!("--- node {id} log ---\n{}", cluster.log_tail(id, 20));
            }
            anyhow::bail!("no leader was elected within 15 s");
        }
    }
    println!(
        "Type `help` for commands. Try: put greeting hello, get greeting, kill <leader>, get greeting."
    );
    let code = rt.block_on(shell::run(&mut cluster, &client));
    println!("Stopping the cluster.");
    drop(cluster);
    Ok(code)
}
