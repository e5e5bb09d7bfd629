//! The demo's interactive shell. Reads commands from stdin (so it can be scripted:
//! `printf 'put a 1\nget a\n' | keel demo`).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use keel_client::{Client, Error, ReadMode, ScanOptions};
use keel_testkit::local_cluster::{LocalCluster, tail};

use crate::status_cmd;

const HELP: &str = "\
commands:
  put KEY VALUE     write a key
  get KEY           read a key (linearizable)
  del KEY           delete a key
  scan [PREFIX]     list keys
  status            every node's role, term, indexes and lag
  kill N            kill -9 node N (then watch a new leader take over)
  kill leader       kill -9 whichever node leads now
  restart N         start node N again from its data directory
  events N          the last events of node N (elections, votes, commits)
  help              this text
  quit              stop the cluster and exit";

/// Polls the members until one reports a leader (other than `not`), or `timeout`.
pub(crate) async fn wait_for_leader(
    client: &Client,
    endpoints: &[String],
    not: Option<u64>,
    timeout: Duration,
) -> Option<(u64, u64)> {
    let deadline = Instant::now() + timeout;
    let quick = client.with_deadline(Duration::from_millis(300));
    while Instant::now() < deadline {
        for ep in endpoints {
            if let Ok(s) = quick.status(ep).await
                && s.role == "leader"
                && Some(s.id) != not
            {
                return Some((s.id, s.term));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

pub(crate) async fn run(cluster: &mut LocalCluster, client: &Client) -> ExitCode {
    let interactive = std::io::stdin().is_terminal();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            print!("keel> ");
            let _ = std::io::stdout().flush();
        }
        let Some(Ok(line)) = lines.next() else {
            return ExitCode::SUCCESS;
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        if !interactive && !words.is_empty() {
            println!("keel> {line}");
        }
        match words.as_slice() {
            [] => {}
            ["help"] => println!("{HELP}"),
            ["quit" | "exit"] => return ExitCode::SUCCESS,
            ["put", key, value @ ..] if !value.is_empty() => {
                let value = value.join(" ");
                match client.put(key.to_string(), value).await {
                    Ok(rev) => println!("OK (revision {rev})"),
                    Err(e) => print_error(&e),
                }
            }
            ["get", key] => match client.get(key.to_string(), ReadMode::Linearizable).await {
                Ok(r) => match r.kv {
                    Some(kv) => println!(
                        "{} (version {})",
                        String::from_utf8_lossy(&kv.value),
                        kv.version
                    ),
                    None => println!("(not found)"),
                },
                Err(e) => print_error(&e),
            },
            ["del", key] => match client.delete(key.to_string()).await {
                Ok(d) if d.existed => println!("OK deleted (revision {})", d.revision),
                Ok(d) => println!("OK, no such key (revision {})", d.revision),
                Err(e) => print_error(&e),
            },
            ["scan"] | ["scan", _] => {
                let prefix = words.get(1).copied().unwrap_or("").to_string();
                match client
                    .scan(prefix, &ScanOptions::default().limit(100))
                    .await
                {
                    Ok(r) => {
                        for kv in &r.kvs {
                            println!(
                                "{} = {}",
                                String::from_utf8_lossy(&kv.key),
                                String::from_utf8_lossy(&kv.value)
                            );
                        }
                        println!(
                            "({} keys{})",
                            r.kvs.len(),
                            if r.more { ", more" } else { "" }
                        );
                    }
                    Err(e) => print_error(&e),
                }
            }
            ["status"] => {
                let rows = status_cmd::collect(
                    &client.with_deadline(Duration::from_secs(1)),
                    &cluster.endpoints(),
                )
                .await;
                print!("{}", status_cmd::table(&rows));
            }
            ["kill", "leader"] => {
                let endpoints = cluster.endpoints();
                match wait_for_leader(client, &endpoints, None, Duration::from_secs(5)).await {
                    Some((id, _)) => kill(cluster, client, id).await,
                    None => println!("no leader right now"),
                }
            }
            ["kill", n] => match node_id(cluster, n) {
                Some(id) => kill(cluster, client, id).await,
                None => println!("no node {n}"),
            },
            ["restart", n] => match node_id(cluster, n) {
                Some(id) => match cluster.spawn(id) {
                    Ok(()) => {
                        println!("node {id} restarted; it catches up from its log and the leader")
                    }
                    Err(e) => println!("could not restart node {id}: {e}"),
                },
                None => println!("no node {n}"),
            },
            ["events", n] => match node_id(cluster, n) {
                Some(id) => println!("{}", tail(&cluster.event_log_path(id), 15)),
                None => println!("no node {n}"),
            },
            _ => println!("unknown command; type `help`"),
        }
    }
}

fn node_id(cluster: &LocalCluster, n: &str) -> Option<u64> {
    n.parse()
        .ok()
        .filter(|id| (1..=cluster.spec().nodes).contains(id))
}

async fn kill(cluster: &mut LocalCluster, client: &Client, id: u64) {
    let was_leader = client
        .with_deadline(Duration::from_millis(500))
        .status(&cluster.grpc_addr(id).to_string())
        .await
        .is_ok_and(|s| s.role == "leader");
    if let Err(e) = cluster.kill(id) {
        println!("could not kill node {id}: {e}");
        return;
    }
    let killed = Instant::now();
    println!(
        "node {id} killed (SIGKILL){}",
        if was_leader {
            "; it was the leader"
        } else {
            ""
        }
    );
    if !was_leader {
        return;
    }
    let running = cluster.running();
    let nodes = cluster.spec().nodes as usize;
    if running.len() * 2 <= nodes {
        println!(
            "only {} of {nodes} nodes are running: no majority, so no leader can be elected \
             (and no write can commit) until another node is restarted",
            running.len()
        );
        return;
    }
    let endpoints: Vec<String> = running
        .into_iter()
        .map(|n| cluster.grpc_addr(n).to_string())
        .collect();
    match wait_for_leader(client, &endpoints, Some(id), Duration::from_secs(10)).await {
        Some((leader, term)) => println!(
            "Node {leader} became the leader for term {term}, {} ms after the kill.",
            killed.elapsed().as_millis()
        ),
        None => println!("no new leader within 10 s (is a majority still running?)"),
    }
}

fn print_error(e: &Error) {
    println!("error: {e}");
}
