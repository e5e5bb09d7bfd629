//! INFO: the node described in Redis's `field:value` text sections, with keel's
//! own fields (`keel_*`) beside Redis's. The leader reports `role:master`, every
//! other member `role:slave`, as a Redis replica would.

use std::fmt::Write as _;

use super::Shared;
use super::local::REDIS_VERSION;
use crate::api::status_response;

/// The sections INFO knows, in the order it prints them.
const SECTIONS: &[&str] = &["server", "clients", "replication"];

/// The text for `INFO [section ...]`: no section, `default`, `all` or
/// `everything` mean every section; unknown sections are left out (Redis does
/// the same).
pub(crate) fn render(shared: &Shared, asked: &[String]) -> String {
    let all = asked.is_empty()
        || asked
            .iter()
            .any(|s| matches!(s.as_str(), "default" | "all" | "everything"));
    let mut out = String::new();
    for section in SECTIONS {
        if !all && !asked.iter().any(|s| s == section) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        match *section {
            "server" => server(shared, &mut out),
            "clients" => clients(shared, &mut out),
            _ => replication(shared, &mut out),
        }
    }
    out
}

/// Appends `name:value\r\n`. Writing to a String cannot fail.
fn field(out: &mut String, name: &str, value: impl std::fmt::Display) {
    let _ = write!(out, "{name}:{value}\r\n");
}

fn server(shared: &Shared, out: &mut String) {
    let status = status_response(&shared.ctx);
    let uptime = status.uptime_ms / 1000;
    out.push_str("# Server\r\n");
    field(out, "redis_version", REDIS_VERSION);
    field(out, "keel_version", &status.version);
    field(out, "redis_mode", "standalone");
    field(out, "process_id", std::process::id());
    field(out, "tcp_port", shared.port);
    field(out, "uptime_in_seconds", uptime);
    field(out, "uptime_in_days", uptime / 86_400);
}

fn clients(shared: &Shared, out: &mut String) {
    out.push_str("# Clients\r\n");
    field(out, "connected_clients", shared.connection_count());
    field(out, "maxclients", super::limits::MAX_CONNECTIONS);
}

fn replication(shared: &Shared, out: &mut String) {
    let status = status_response(&shared.ctx);
    let leader = status.role == "leader";
    out.push_str("# Replication\r\n");
    field(out, "role", if leader { "master" } else { "slave" });
    if leader {
        let followers = status.progress.iter().filter(|p| p.active).count();
        field(out, "connected_slaves", followers);
    } else {
        let link = if status.leader_id != 0 { "up" } else { "down" };
        field(out, "master_link_status", link);
    }
    field(out, "keel_node_id", status.id);
    field(out, "keel_role", &status.role);
    field(out, "keel_term", status.term);
    field(out, "keel_leader_id", status.leader_id);
    field(out, "keel_commit_index", status.commit_index);
    field(out, "keel_applied_index", status.applied_index);
    field(out, "keel_last_index", status.last_index);
    let members = shared.ctx.members.members();
    field(out, "keel_members", members.len());
    for m in &members {
        let kind = if m.voter { "voter" } else { "learner" };
        let address = if m.address.is_empty() {
            "unknown"
        } else {
            &m.address
        };
        field(
            out,
            &format!("keel_member_{}", m.id),
            format_args!("address={address},{kind}"),
        );
    }
}
