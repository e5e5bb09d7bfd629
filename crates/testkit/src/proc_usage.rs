//! CPU time and memory of a process on this machine, read from Linux's `/proc`, so
//! the benchmark can say what each node cost.

use std::time::Duration;

/// A process's CPU time (user + system) so far.
pub fn cpu_time(pid: u32) -> std::io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = parse_stat_cpu_ticks(&stat).ok_or_else(|| malformed(pid, "stat"))?;
    let per_second = rustix::param::clock_ticks_per_second().max(1);
    Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// A process's peak resident set size (`VmHWM`) in bytes, since it started or
/// since [`reset_peak_rss`].
pub fn peak_rss_bytes(pid: u32) -> std::io::Result<u64> {
    status_bytes(pid, "VmHWM")
}

/// A process's resident set size now (`VmRSS`) in bytes.
pub fn rss_bytes(pid: u32) -> std::io::Result<u64> {
    status_bytes(pid, "VmRSS")
}

fn status_bytes(pid: u32, name: &str) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = parse_status_kib(&status, name).ok_or_else(|| malformed(pid, "status"))?;
    Ok(kib * 1024)
}

/// Resets the process's peak RSS to its current RSS (writes `5` to
/// `/proc/<pid>/clear_refs`), so that a later [`peak_rss_bytes`] covers only what
/// happened in between. Needs permission to modify the process (same user).
pub fn reset_peak_rss(pid: u32) -> std::io::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

fn malformed(pid: u32, file: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("unexpected format of /proc/{pid}/{file}"),
    )
}

/// `utime + stime` in clock ticks from the text of `/proc/<pid>/stat`.
///
/// The command name (field 2) is in parentheses and may itself contain spaces and
/// parentheses, so fields are counted from the last `)`: after it come field 3
/// (state) onwards, and utime and stime are fields 14 and 15.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    let mut fields = after_comm.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The value in KiB of a `Name:   123 kB` line of `/proc/<pid>/status`.
fn parse_status_kib(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with a space and a parenthesis must not shift the fields.
        let stat = "4242 (keel (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 37 0 0 20 0 8 0 123456 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(287));
        assert_eq!(parse_stat_cpu_ticks("4242 (keel) S 1 2"), None);
        assert_eq!(parse_stat_cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn status_values_are_found_by_exact_name() {
        let status = "Name:\tkeel\nVmPeak:\t  900 kB\nVmHWM:\t   51234 kB\nVmRSS:\t 40000 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(51234));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(40000));
        assert_eq!(parse_status_kib(status, "VmHW"), None);
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(peak_rss_bytes(me).expect("own status") > 0);
        assert!(rss_bytes(me).expect("own status") > 0);
        cpu_time(me).expect("own stat");
    }
}
