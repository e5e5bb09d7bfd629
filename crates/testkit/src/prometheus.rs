//! Reading one value out of a server's Prometheus `/metrics` page, enough to ask an
//! etcd member whether it leads and how often the leader changed.
//!
//! The page is fetched with a plain HTTP/1.0 GET over a blocking socket: no HTTP
//! client library, and the connection closes when the body ends.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Fetches `http://{addr}{path}` and returns the body, or an error if the server is
/// unreachable, slower than `timeout` per socket operation, or answers other than 200.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "no end of HTTP headers")
    })?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(std::io::Error::other(format!(
            "GET {path} from {addr}: {status}"
        )));
    }
    Ok(body.to_owned())
}

/// The value of the first sample named exactly `name` (with or without labels) in a
/// Prometheus text exposition, or `None` if there is none.
pub fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = if let Some(labelled) = rest.strip_prefix('{') {
                labelled.split_once('}')?.1
            } else if rest.starts_with(' ') {
                rest
            } else {
                return None; // a longer name with this one as prefix
            };
            value.split_whitespace().next()?.parse().ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "\
# HELP etcd_server_is_leader Whether or not this member is a leader.
# TYPE etcd_server_is_leader gauge
etcd_server_is_leader 1
etcd_server_is_leader_total 7
etcd_server_leader_changes_seen_total 2
etcd_disk_wal_fsync_duration_seconds_count{le=\"+Inf\"} 1.5e3 1700000000
";

    #[test]
    fn finds_exact_names_only() {
        assert_eq!(sample(PAGE, "etcd_server_is_leader"), Some(1.0));
        assert_eq!(
            sample(PAGE, "etcd_server_leader_changes_seen_total"),
            Some(2.0)
        );
        assert_eq!(sample(PAGE, "etcd_server_is"), None);
        assert_eq!(sample(PAGE, "missing"), None);
    }

    #[test]
    fn reads_labelled_samples_and_ignores_timestamps() {
        assert_eq!(
            sample(PAGE, "etcd_disk_wal_fsync_duration_seconds_count"),
            Some(1500.0)
        );
    }

    #[test]
    fn unreachable_server_is_an_error() {
        // Port 1 on loopback is essentially never listening.
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("valid address");
        assert!(http_get(addr, "/metrics", Duration::from_millis(200)).is_err());
    }
}
