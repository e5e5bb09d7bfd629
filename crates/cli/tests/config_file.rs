//! `keel serve --config`: a node started from the file `keel config default`
//! prints, with environment overrides, serves; bad files are refused before the
//! data directory is touched.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use keel_testkit::local_cluster::free_ports;
use keel_testkit::prometheus::http_get;

const DEADLINE: Duration = Duration::from_secs(20);

/// `keel ARGS` with the given `KEEL_*` variables and no others from this process.
fn keel(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(common::keel_bin());
    cmd.args(args).stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KEEL_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied());
    cmd
}

/// Polls `f` until it returns `Some`, or panics naming `what` after [`DEADLINE`].
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` to exit (killing it after [`DEADLINE`]); returns its status,
/// stdout and stderr. Outputs here are small enough not to fill a pipe.
fn finish(mut child: Child, what: &str) -> (ExitStatus, String, String) {
    let status = poll(what, || child.try_wait().expect("try_wait"));
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut out).expect("stdout");
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut err).expect("stderr");
    }
    (status, out, err)
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let child = keel(args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keel");
    finish(child, &format!("keel {args:?} to exit"))
}

/// The file `keel config default` prints, with `id`, `data_dir`, `listen` and
/// `initial_cluster` filled in for a one-node cluster on `grpc`.
fn filled_in_default(data_dir: &Path, grpc: SocketAddr) -> String {
    let (status, text, err) = run(&["config", "default"], &[]);
    assert!(status.success(), "keel config default: {err}");
    let replace = |text: String, from: &str, to: &str| {
        assert!(text.contains(from), "no {from:?} in the default file");
        text.replacen(from, to, 1)
    };
    let text = replace(text, "#id = 1\n", "id = 1\n");
    let text = replace(
        text,
        "#data_dir = \"/var/lib/keel\"\n",
        &format!("data_dir = {:?}\n", data_dir.display().to_string()),
    );
    let text = replace(
        text,
        "listen = \"127.0.0.1:7001\"\n",
        &format!("listen = \"{grpc}\"\n"),
    );
    replace(
        text,
        "#initial_cluster = {",
        &format!("initial_cluster = {{ 1 = \"{grpc}\" }}\n# {{"),
    )
}

#[test]
fn a_node_runs_from_the_default_file_with_environment_overrides() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let ip = common::unique_loopback();
    let [grpc, http_in_file, http_in_env] = free_ports(ip, 3)
        .expect("free ports")
        .try_into()
        .expect("three ports");
    let events = dir.path().join("events.log");
    let text = filled_in_default(&data_dir, grpc).replace(
        "#http = \"0.0.0.0:8001\"\n",
        &format!(
            "http = \"{http_in_file}\"\nevent_log = {:?}\n",
            events.display().to_string()
        ),
    );
    let config = dir.path().join("keel.toml");
    let id_line = text.lines().position(|l| l == "id = 1").expect("id") + 1;
    std::fs::write(&config, text).expect("write config");
    let config = config.to_str().expect("utf-8 path");
    // The file comes from KEEL_CONFIG; KEEL_HTTP overrides its `http`, a flag
    // overrides both a variable and the file.
    let http_env = http_in_env.to_string();
    let env = [
        ("KEEL_CONFIG", config),
        ("KEEL_HTTP", http_env.as_str()),
        ("KEEL_IO_THREADS", "4"),
    ];
    let flags = ["--io-threads", "1"];

    let (status, out, err) = run(&[&["config", "check"][..], &flags].concat(), &env);
    assert!(status.success(), "keel config check: {err}\n{out}");
    let origin = |key: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
            .split_once(" # ")
            .map(|(_, origin)| origin.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(origin("id"), format!("config file, line {id_line}"));
    assert_eq!(origin("http"), "environment variable KEEL_HTTP");
    assert_eq!(origin("io_threads"), "command line");
    assert!(origin("tick_ms").starts_with("config file, line "));
    assert!(out.contains("# OK: keel serve accepts this configuration."));
    assert!(!data_dir.exists(), "config check must not create anything");

    let mut node = keel(&[&["serve"][..], &flags].concat(), &env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keel serve");
    poll("the node to serve /healthz on KEEL_HTTP's address", || {
        if let Some(status) = node.try_wait().expect("try_wait") {
            let mut err = String::new();
            let _ = node.stderr.take().map(|mut e| e.read_to_string(&mut err));
            panic!("keel serve exited ({status}): {err}");
        }
        http_get(http_in_env, "/healthz", Duration::from_secs(2)).ok()
    });
    let (code, _, body) = common::http(http_in_env, "PUT", "/v1/kv/from-file", &[], b"yes");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let (code, _, body) = common::http(http_in_env, "GET", "/v1/kv/from-file?raw=true", &[], b"");
    assert_eq!((code, &body[..]), (200, &b"yes"[..]));
    assert!(
        std::net::TcpStream::connect_timeout(&http_in_file, Duration::from_millis(200)).is_err(),
        "the file's http address was overridden"
    );
    assert!(data_dir.join("identity.json").exists());
    assert!(events.exists(), "event_log from the file");

    // SIGTERM: a graceful stop exits 0.
    let pid = node.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.expect("kill").success());
    let (status, _, err) = finish(node, "keel serve to stop after SIGTERM");
    assert!(status.success(), "SIGTERM must exit 0: {status}\n{err}");
}

#[test]
fn bad_settings_are_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let ip = common::unique_loopback();
    let grpc = free_ports(ip, 1).expect("free port")[0];
    let base = format!(
        "id = 1\ndata_dir = {:?}\nlisten = \"{grpc}\"\ninitial_cluster = {{ 1 = \"{grpc}\" }}\n",
        data_dir.display().to_string()
    );
    let config = dir.path().join("keel.toml");
    let config_str = config.to_str().expect("utf-8 path");
    // (line 5 of the file, the environment, what the message must say)
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&str, Env, &[&str]); 6] = [
        (
            "electon_timeout_ms = 500",
            &[],
            &[
                "line 5",
                "unknown key `electon_timeout_ms` (did you mean `election_timeout_ms`?)",
            ],
        ),
        (
            "election_timeout_ms = \"500\"",
            &[],
            &[
                "line 5",
                "`election_timeout_ms` must be a non-negative integer, not a string",
            ],
        ),
        (
            "http = \"nowhere\"",
            &[],
            &[
                "line 5",
                "`http = \"nowhere\"`: invalid socket address syntax",
            ],
        ),
        (
            "tick_ms = 0",
            &[],
            &[
                "line 5",
                "tick_ms (--tick-ms, KEEL_TICK_MS) must be in 1..=1000, got 0 (tick_ms: config file",
            ],
        ),
        (
            "learner = true",
            &[],
            &["learner (--learner, KEEL_LEARNER) only applies with join (--join, KEEL_JOIN)"],
        ),
        (
            "",
            &[("KEEL_IO_THREADS", "0")],
            &["environment variable KEEL_IO_THREADS=\"0\": 0 is not in 1..=1024"],
        ),
    ];
    for (line, env, wants) in cases {
        std::fs::write(&config, format!("{base}{line}\n")).expect("write config");
        for command in [
            &["serve", "--config", config_str][..],
            &["config", "check", "--config", config_str],
        ] {
            let (status, _, err) = run(command, env);
            // 1: refused; 2: clap's usage error, for a variable it checks itself.
            let want_code = if line.is_empty() { 2 } else { 1 };
            assert_eq!(
                status.code(),
                Some(want_code),
                "{command:?} with {line:?}: {err}"
            );
            for want in wants {
                assert!(
                    err.contains(want),
                    "{command:?} with {line:?}: no {want:?} in:\n{err}"
                );
            }
            if !line.is_empty() {
                assert!(
                    err.contains(&format!("config file {config_str}, line 5")),
                    "{err}"
                );
            }
            assert!(
                !data_dir.exists(),
                "{command:?} with {line:?} created the data directory"
            );
        }
    }
}
