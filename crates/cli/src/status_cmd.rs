//! `keel status`: one row per member, asked of every member directly so that a
//! member that is down shows as such.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use keel_client::{Client, StatusResponse};
use serde_json::json;

use crate::client_cmds::ConnArgs;

#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    conn: ConnArgs,
}

/// One member's row: its answer, or why it did not answer.
pub(crate) struct Row {
    pub(crate) id: u64,
    pub(crate) address: String,
    pub(crate) status: Result<StatusResponse, String>,
}

/// Asks every member for its status. Members come from any reachable endpoint;
/// if none answers, the endpoints themselves are listed.
pub(crate) async fn collect(client: &Client, endpoints: &[String]) -> Vec<Row> {
    let members: Vec<(u64, String)> = match client.members().await {
        Ok(m) => m.members.into_iter().map(|m| (m.id, m.address)).collect(),
        Err(_) => endpoints.iter().map(|e| (0, e.clone())).collect(),
    };
    let mut rows = Vec::new();
    for (id, address) in members {
        let status = client.status(&address).await.map_err(|e| e.to_string());
        let id = status.as_ref().map_or(id, |s| s.id);
        rows.push(Row {
            id,
            address,
            status,
        });
    }
    rows
}

/// Renders rows as the status table.
pub(crate) fn table(rows: &[Row]) -> String {
    let leader_commit = rows
        .iter()
        .filter_map(|r| r.status.as_ref().ok())
        .filter(|s| s.role == "leader")
        .map(|s| s.commit_index)
        .max();
    let mut out = format!(
        "{:<4} {:<22} {:<10} {:>6} {:>9} {:>9} {:>7} {:>6}  {}\n",
        "ID", "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "LEADER", "LAG", "HEALTH"
    );
    for r in rows {
        match &r.status {
            Ok(s) => {
                let lag = leader_commit
                    .map(|c| c.saturating_sub(s.applied_index).to_string())
                    .unwrap_or_else(|| "-".into());
                let health = if s.leader_id != 0 { "ok" } else { "no leader" };
                out.push_str(&format!(
                    "{:<4} {:<22} {:<10} {:>6} {:>9} {:>9} {:>7} {:>6}  {}\n",
                    s.id,
                    r.address,
                    s.role,
                    s.term,
                    s.commit_index,
                    s.applied_index,
                    s.leader_id,
                    lag,
                    health
                ));
            }
            Err(e) => {
                let id = if r.id == 0 {
                    "?".to_string()
                } else {
                    r.id.to_string()
                };
                let reason: String = e.chars().take(60).collect();
                out.push_str(&format!(
                    "{:<4} {:<22} {:<10} {:>6} {:>9} {:>9} {:>7} {:>6}  unreachable: {reason}\n",
                    id, r.address, "-", "-", "-", "-", "-", "-"
                ));
            }
        }
    }
    out
}

pub(crate) fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let client = args.conn.client()?;
        let endpoints: Vec<String> = args
            .conn
            .endpoints
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        let rows = collect(
            &client.with_deadline(std::time::Duration::from_secs(2)),
            &endpoints,
        )
        .await;
        if args.conn.json {
            for r in &rows {
                let v = match &r.status {
                    Ok(s) => json!({
                        "id": s.id, "address": r.address, "role": s.role, "term": s.term,
                        "commit": s.commit_index, "applied": s.applied_index, "leader": s.leader_id,
                    }),
                    Err(e) => json!({"id": r.id, "address": r.address, "error": e}),
                };
                println!("{v}");
            }
        } else {
            print!("{}", table(&rows));
        }
        let any_up = rows.iter().any(|r| r.status.is_ok());
        Ok(if any_up {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}
