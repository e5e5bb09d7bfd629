//! The Redis protocol against a real 3-node cluster, with real Redis clients:
//! `redis-cli` and `redis-benchmark` (Debian's redis-tools, which `.ci/run`
//! installs; a test fails, saying so, when they are missing) and the `redis`
//! crate. Writes through followers, reads through every node, counters raced
//! from many connections, atomic MSET, SCAN, errors, malformed frames, and a
//! leader killed under a Redis client.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{TestCluster, eventually};
use redis::Commands;

const LEADER_TIMEOUT: Duration = Duration::from_secs(15);

/// A program from Debian's redis-tools. These tests need the real clients;
/// skipping them silently would hide a broken protocol.
fn redis_tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: the Redis protocol tests need Debian's redis-tools \
                 (apt-get install -y redis-tools; .ci/run installs it)"
            )
        })
}

/// Runs `redis-cli -h IP -p PORT ARGS`.
fn cli_output(addr: SocketAddr, args: &[&str]) -> Output {
    Command::new(redis_tool("redis-cli"))
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .output()
        .expect("run redis-cli")
}

/// What `redis-cli ARGS` printed (stdout, then stderr), without the last newline.
fn cli(addr: SocketAddr, args: &[&str]) -> String {
    let out = cli_output(addr, args);
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    match text.strip_suffix('\n') {
        Some(t) => t.to_string(),
        None => text,
    }
}

/// A 3-node cluster serving Redis, its leader and its two followers.
async fn start() -> (TestCluster, u64, u64, u64) {
    let mut t = TestCluster::start_with_redis(3, &[]);
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    let [f1, f2] = followers(&t, leader)[..] else {
        panic!("two followers");
    };
    (t, leader, f1, f2)
}

/// The node whose Redis INFO says it leads, polled until one does.
async fn leader_by_info(t: &TestCluster) -> u64 {
    eventually(
        LEADER_TIMEOUT,
        "a node whose INFO says it leads",
        || async {
            (1..=t.cluster.spec().nodes).find(|&id| {
                let info = cli(t.cluster.redis_addr(id), &["INFO", "replication"]);
                info.contains("role:master") && info.contains(&format!("keel_leader_id:{id}"))
            })
        },
    )
    .await
}

fn followers(t: &TestCluster, leader: u64) -> Vec<u64> {
    (1..=t.cluster.spec().nodes)
        .filter(|&id| id != leader)
        .collect()
}

fn client(addr: SocketAddr, resp3: bool) -> redis::Connection {
    let url = if resp3 {
        format!("redis://{addr}/?protocol=resp3")
    } else {
        format!("redis://{addr}/")
    };
    let client = redis::Client::open(url).expect("redis url");
    client
        .get_connection_with_timeout(Duration::from_secs(10))
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_through_every_node() {
    let (t, leader, f1, f2) = start().await;
    let addr = |id| t.cluster.redis_addr(id);

    // A write through a follower is read back through every node.
    assert_eq!(cli(addr(f1), &["SET", "greeting", "hello"]), "OK");
    for id in [leader, f1, f2] {
        assert_eq!(cli(addr(id), &["GET", "greeting"]), "hello", "node {id}");
    }
    assert_eq!(cli(addr(f2), &["GET", "missing"]), "");

    // MSET through a follower; MGET (one consistent view) through the leader.
    assert_eq!(
        cli(addr(f2), &["MSET", "m1", "a", "m2", "b", "m3", "c"]),
        "OK"
    );
    assert_eq!(
        cli(addr(leader), &["MGET", "m1", "m2", "m3", "m4"]),
        "a\nb\nc\n"
    );
    assert_eq!(cli(addr(f1), &["DEL", "m1", "m2", "nope"]), "2");
    assert_eq!(cli(addr(f1), &["EXISTS", "m1", "m3", "m3"]), "2");

    // Unknown commands and bad arguments are errors that change nothing.
    assert!(
        cli(addr(f1), &["FLUSHALL"]).starts_with("ERR unknown command 'FLUSHALL'"),
        "{}",
        cli(addr(f1), &["FLUSHALL"])
    );
    assert!(cli(addr(f1), &["SET", "k", "v", "EX", "10"]).contains("does not expire keys"));
    assert_eq!(cli(addr(f1), &["EXISTS", "k"]), "0");
    assert_eq!(cli(addr(f1), &["SET", "word", "abc"]), "OK");
    assert_eq!(
        cli(addr(f2), &["INCR", "word"]).trim_end(),
        "ERR value is not an integer or out of range",
        "the leader's state machine refused it, and the follower says so"
    );
    assert_eq!(cli(addr(leader), &["GET", "word"]), "abc");

    // INCR raced from six connections on all three nodes: every increment
    // happens exactly once, each answered with a different value.
    let racers: Vec<_> = (0..6u64)
        .map(|i| {
            let a = addr(i % 3 + 1);
            Command::new(redis_tool("redis-cli"))
                .args(["-h", &a.ip().to_string(), "-p", &a.port().to_string()])
                .args(["-r", "40", "INCR", "hits"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("run redis-cli")
        })
        .collect();
    let mut seen = BTreeSet::new();
    for racer in racers {
        let out = racer.wait_with_output().expect("redis-cli");
        assert!(out.status.success());
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let n: u64 = line.trim().parse().unwrap_or_else(|_| panic!("{line:?}"));
            assert!(seen.insert(n), "{n} answered twice");
        }
    }
    assert_eq!(seen, (1..=240).collect::<BTreeSet<u64>>());
    assert_eq!(cli(addr(f2), &["GET", "hits"]), "240");

    // SCAN pages through a prefix (10 keys a page by default) with numeric
    // cursors, as redis-cli expects.
    let mut mset = vec!["MSET".to_string()];
    for i in 0..25 {
        mset.extend([format!("scan:{i:02}"), format!("v{i}")]);
    }
    mset.extend(["scanx".to_string(), "no".to_string()]);
    let args: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(cli(addr(leader), &args), "OK");
    let listed = cli(addr(f1), &["--scan", "--pattern", "scan:*"]);
    let listed: Vec<&str> = listed.lines().collect();
    let want: Vec<String> = (0..25).map(|i| format!("scan:{i:02}")).collect();
    assert_eq!(listed, want);
    assert!(cli(addr(f1), &["SCAN", "0", "MATCH", "s?an*"]).contains("prefix*"));
    assert!(cli(addr(f1), &["SCAN", "12345"]).contains("start again from 0"));

    // INFO tells the leader from the followers. The leader is asked for again:
    // on a loaded machine an election may have moved it since the start.
    let leader = leader_by_info(&t).await;
    let follower = followers(&t, leader)[0];
    let info = cli(addr(leader), &["INFO", "replication"]);
    assert!(info.contains("role:master"), "{info}");
    assert!(info.contains(&format!("keel_leader_id:{leader}")), "{info}");
    let info = cli(addr(follower), &["INFO"]);
    assert!(
        info.contains("role:slave") && info.contains("# Server"),
        "{info}"
    );
    assert_eq!(cli(addr(follower), &["PING"]), "PONG");
    t.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_crate_pipelines_counts_and_sets_atomically() {
    let (t, leader, f1, f2) = start().await;
    let addr = |id| t.cluster.redis_addr(id);

    // A pipeline runs in order: each command sees the writes before it.
    for (id, resp3) in [(leader, false), (f1, true)] {
        let mut con = client(addr(id), resp3);
        let key = format!("p{id}");
        let (set, got, n, missing, deleted): (String, String, i64, Option<String>, i64) =
            redis::pipe()
                .cmd("SET")
                .arg(&key)
                .arg("41")
                .cmd("GET")
                .arg(&key)
                .cmd("INCR")
                .arg(&key)
                .cmd("GET")
                .arg("nothing-here")
                .cmd("DEL")
                .arg(&key)
                .query(&mut con)
                .expect("pipeline");
        assert_eq!(
            (set.as_str(), got.as_str(), n, missing, deleted),
            ("OK", "41", 42, None, 1),
            "node {id}, RESP{}",
            if resp3 { 3 } else { 2 }
        );
    }

    // SET's options and the get-and-write commands.
    let mut con = client(addr(f2), false);
    let nx: Option<String> = redis::cmd("SET")
        .arg("o")
        .arg("v1")
        .arg("NX")
        .query(&mut con)
        .expect("set nx");
    assert_eq!(nx.as_deref(), Some("OK"));
    let again: Option<String> = redis::cmd("SET")
        .arg("o")
        .arg("v2")
        .arg("NX")
        .query(&mut con)
        .expect("set nx");
    assert_eq!(again, None, "NX on an existing key writes nothing");
    let old: Option<String> = redis::cmd("SET")
        .arg("o")
        .arg("v3")
        .arg("XX")
        .arg("GET")
        .query(&mut con)
        .expect("set xx get");
    assert_eq!(old.as_deref(), Some("v1"));
    let old: Option<String> = con.getset("o", "v4").expect("getset");
    assert_eq!(old.as_deref(), Some("v3"));
    let old: Option<String> = redis::cmd("GETDEL")
        .arg("o")
        .query(&mut con)
        .expect("getdel");
    assert_eq!(old.as_deref(), Some("v4"));
    let gone: Option<String> = con.get("o").expect("get");
    assert_eq!(gone, None);
    // READMODE: on a follower, lease reads are served as linearizable ones (only
    // the leader holds a lease), stale reads from local state.
    let () = con.set("rm", "seen").expect("set");
    for mode in ["lease", "stale", "linearizable", "default"] {
        let () = redis::cmd("READMODE")
            .arg(mode)
            .query(&mut con)
            .expect("readmode");
        let shown: String = redis::cmd("READMODE").query(&mut con).expect("readmode");
        assert_eq!(shown, mode);
        let got: String = con.get("rm").expect("get");
        assert_eq!(got, "seen", "mode {mode}");
    }
    let len: usize = con.strlen("greeting").expect("strlen");
    assert_eq!(len, 0);
    let err = con
        .incr::<_, _, i64>("counter", i64::MAX)
        .and_then(|_| con.incr::<_, _, i64>("counter", 1))
        .expect_err("overflow");
    assert!(err.to_string().contains("overflow"), "{err}");

    // Counters raced from connections on every node: exact, and every answer
    // distinct.
    let threads: Vec<_> = (0..6u64)
        .map(|i| {
            let a = addr(i % 3 + 1);
            std::thread::spawn(move || {
                let mut con = client(a, i % 2 == 0);
                (0..30)
                    .map(|_| con.incr::<_, _, i64>("race", 1).expect("incr"))
                    .collect::<Vec<i64>>()
            })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for th in threads {
        for n in th.join().expect("thread") {
            assert!(seen.insert(n), "{n} answered twice");
        }
    }
    assert_eq!(seen, (1..=180).collect::<BTreeSet<i64>>());

    // MSET is atomic: readers never see half of one.
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = [leader, f1]
        .into_iter()
        .enumerate()
        .map(|(w, id)| {
            let a = addr(id);
            std::thread::spawn(move || {
                let mut con = client(a, false);
                for i in 0..60 {
                    let v = format!("{w}-{i}");
                    let () = con
                        .mset(&[("pair:a", v.as_str()), ("pair:b", v.as_str())])
                        .expect("mset");
                }
            })
        })
        .collect();
    let reader = {
        let a = addr(f2);
        let done = done.clone();
        std::thread::spawn(move || {
            let mut con = client(a, true);
            let mut reads = 0;
            while !done.load(Ordering::Relaxed) || reads == 0 {
                let (x, y): (Option<String>, Option<String>) =
                    con.mget(&["pair:a", "pair:b"]).expect("mget");
                assert_eq!(x, y, "an MSET was seen half applied");
                reads += 1;
            }
            reads
        })
    };
    for w in writers {
        w.join().expect("writer");
    }
    done.store(true, Ordering::Relaxed);
    assert!(reader.join().expect("reader") > 0);

    // SCAN through the library's cursor iterator.
    let mut con = client(addr(leader), false);
    let pairs: Vec<(String, String)> = (0..30)
        .map(|i| (format!("it:{i:03}"), "x".to_string()))
        .collect();
    let () = con.mset(&pairs).expect("mset");
    let mut keys: Vec<String> = con
        .scan_match::<_, String>("it:*")
        .expect("scan")
        .collect::<Result<_, _>>()
        .expect("scan pages");
    keys.sort();
    assert_eq!(keys, pairs.into_iter().map(|(k, _)| k).collect::<Vec<_>>());
    t.assert_no_panics();
}

/// Sends `bytes` on a fresh connection and reads until the server closes it.
fn send_and_read_to_close(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(bytes).expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .expect("the server closes the connection");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_only_their_connection() {
    let mut t = TestCluster::start_with_redis(3, &[]);
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    let follower = followers(&t, leader)[0];
    let addr = t.cluster.redis_addr(follower);

    // A connection that stays open throughout.
    let mut good = TcpStream::connect(addr).expect("connect");
    good.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let ping = |s: &mut TcpStream| {
        s.write_all(b"*1\r\n$4\r\nPING\r\n").expect("write");
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b"+PONG\r\n");
    };
    ping(&mut good);

    for (bad, why) in [
        (&b"*1\r\n$x\r\n"[..], "invalid bulk length"),
        (b"*2\r\n$3\r\nGET\r\n:1\r\n", "expected '$', got ':'"),
        (b"*1\r\n$999999999999\r\n", "invalid bulk length"),
        (b"*99999999\r\n", "invalid multibulk length"),
        (b"*1\r\n$4\r\nPINGxx", "a bulk string must end with CRLF"),
    ] {
        // Requests before the broken one are answered first.
        let mut bytes = b"*1\r\n$4\r\nPING\r\n".to_vec();
        bytes.extend_from_slice(bad);
        let answer = send_and_read_to_close(addr, &bytes);
        assert_eq!(
            answer,
            format!("+PONG\r\n-ERR Protocol error: {why}\r\n"),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // An over-long inline line is refused without buffering it whole.
    let answer = send_and_read_to_close(addr, &vec![b'a'; 70 << 10]);
    assert!(answer.contains("too big inline request"), "{answer}");

    // The other connection and the node are unharmed.
    ping(&mut good);
    assert_eq!(cli(addr, &["SET", "after", "ok"]), "OK");
    assert_eq!(cli(t.cluster.redis_addr(leader), &["GET", "after"]), "ok");
    t.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_benchmark_and_a_leader_change() {
    let mut t = TestCluster::start_with_redis(3, &[]);
    let leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    let follower = followers(&t, leader)[0];

    // redis-benchmark against the leader and a follower completes without an
    // error (no timing is checked: that belongs in BENCHMARKS.md).
    for id in [leader, follower] {
        let a = t.cluster.redis_addr(id);
        let out = Command::new(redis_tool("redis-benchmark"))
            .args(["-h", &a.ip().to_string(), "-p", &a.port().to_string()])
            .args(["-t", "set,get", "-n", "2000", "-c", "10", "-q"])
            .output()
            .expect("run redis-benchmark");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "node {id}: {text}");
        assert!(!text.to_lowercase().contains("error"), "node {id}: {text}");
        assert!(text.contains("SET:") && text.contains("GET:"), "{text}");
        assert!(!text.contains("WARNING"), "node {id}: {text}");
    }
    // Its SETs landed: 3 random bytes in key:__rand_int__ (no -r given).
    let a = t.cluster.redis_addr(follower);
    assert_eq!(cli(a, &["STRLEN", "key:__rand_int__"]), "3");

    // Kill the leader: a write through a surviving node waits for the next
    // leader instead of failing, and is then readable everywhere.
    t.cluster.kill(leader).expect("kill");
    assert_eq!(cli(a, &["SET", "after-failover", "yes"]), "OK");
    let new_leader = t.wait_for_leader(LEADER_TIMEOUT).await;
    assert_ne!(new_leader, leader);
    for id in t.cluster.running() {
        assert_eq!(
            cli(t.cluster.redis_addr(id), &["GET", "after-failover"]),
            "yes"
        );
    }
    t.assert_no_panics();
}
