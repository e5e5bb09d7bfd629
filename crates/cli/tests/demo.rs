//! `keel demo` end to end, driven through its shell's stdin: write, kill the
//! leader, watch another take over, read the value back.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn demo_shows_fail_over() {
    let mut child = Command::new(common::keel_bin())
        .arg("demo")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start demo");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"put greeting hello\nkill leader\nget greeting\nstatus\nquit\n")
        .expect("script");
    let out = child.wait_with_output().expect("demo exits");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("is the leader (term"), "{stdout}");
    assert!(
        stdout.contains("  redis 127.0.0.1:"),
        "every node serves the Redis protocol:\n{stdout}"
    );
    assert!(stdout.contains("OK (revision"), "{stdout}");
    assert!(stdout.contains("it was the leader"), "{stdout}");
    assert!(stdout.contains("became the leader for term"), "{stdout}");
    assert!(
        stdout.contains("hello (version"),
        "the write survived fail-over:\n{stdout}"
    );
    assert!(stdout.contains("Stopping the cluster."), "{stdout}");
}
