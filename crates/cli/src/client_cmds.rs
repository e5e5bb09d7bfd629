//! `keel put/get/del/scan/cas`: one call each through the Rust client, which finds
//! the leader and retries what is safe to retry. `put --if-absent`,
//! `put --if-version N`, `cas --version N` and `del --if-version N` are the
//! conditional writes; a conflict exits with 1 and changes nothing.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use keel_client::{
    BearerToken, Client, ClientConfig, Error, Precondition, ReadMode, ScanOptions, TlsConfig,
};
use serde_json::json;

use crate::DEFAULT_ENDPOINTS;

/// Exit code for "the write may or may not have been applied".
const EXIT_OUTCOME_UNKNOWN: u8 = 3;

/// Where the cluster is and how long to try.
#[derive(Args, Debug, Clone)]
pub(crate) struct ConnArgs {
    /// gRPC addresses of cluster members, comma-separated.
    #[arg(long, env = "KEEL_ENDPOINTS", default_value = DEFAULT_ENDPOINTS, global = true)]
    pub(crate) endpoints: String,
    /// Give up after this many milliseconds (retries included).
    #[arg(long, env = "KEEL_TIMEOUT_MS", default_value_t = 10_000, global = true)]
    pub(crate) timeout_ms: u64,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Connect with TLS, trusting this CA (PEM) for the members' certificates.
    #[arg(long = "ca", env = "KEEL_CA", global = true, value_name = "FILE")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// With --ca: present this client certificate (PEM), for clusters started
    /// with --client-ca.
    #[arg(
        long = "cert",
        env = "KEEL_CERT",
        global = true,
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(
        long = "key",
        env = "KEEL_KEY",
        global = true,
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub(crate) tls_key: Option<PathBuf>,
    /// With --ca: the name the members' certificates must carry, instead of the
    /// host in the endpoint.
    #[arg(long, env = "KEEL_SERVER_NAME", global = true)]
    pub(crate) server_name: Option<String>,
    /// Send this bearer token with every request (for clusters started with
    /// --auth-token-file). Visible to other local users in the process list:
    /// prefer --token-file or KEEL_TOKEN.
    #[arg(
        long,
        env = "KEEL_TOKEN",
        global = true,
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub(crate) token: Option<String>,
    /// Send the bearer token in this file (its first line).
    #[arg(long, env = "KEEL_TOKEN_FILE", global = true, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
}

impl ConnArgs {
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        let endpoints: Vec<String> = self
            .endpoints
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let deadline = Duration::from_millis(self.timeout_ms.max(1));
        let cfg = ClientConfig {
            endpoints,
            deadline,
            request_timeout: deadline.min(ClientConfig::default().request_timeout),
            tls: self.tls()?,
            token: self.bearer_token()?,
            ..ClientConfig::default()
        };
        Client::new(cfg).context("cannot create the client")
    }

    fn tls(&self) -> anyhow::Result<Option<TlsConfig>> {
        let Some(ca) = &self.tls_ca else {
            if self.tls_cert.is_some() || self.server_name.is_some() {
                anyhow::bail!("--cert, --key and --server-name need --ca (TLS)");
            }
            return Ok(None);
        };
        let identity = self.tls_cert.as_deref().zip(self.tls_key.as_deref());
        Ok(Some(TlsConfig::from_files(
            ca,
            identity,
            self.server_name.clone(),
        )?))
    }

    fn bearer_token(&self) -> anyhow::Result<Option<BearerToken>> {
        Ok(match (&self.token, &self.token_file) {
            (Some(t), _) => Some(BearerToken::new(t).context("--token")?),
            (None, Some(path)) => Some(BearerToken::from_file(path)?),
            (None, None) => None,
        })
    }
}

/// How a read is served.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum ModeArg {
    /// The node's default (linearizable unless configured otherwise).
    Default,
    /// Linearizable.
    Linearizable,
    /// Leader lease.
    Lease,
    /// Any node's local state; may be stale.
    Stale,
}

impl From<ModeArg> for ReadMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Default => ReadMode::Default,
            ModeArg::Linearizable => ReadMode::Linearizable,
            ModeArg::Lease => ReadMode::Lease,
            ModeArg::Stale => ReadMode::Stale,
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct PutArgs {
    /// The key.
    key: String,
    /// The value.
    value: String,
    /// Write only if the key does not exist yet (create).
    #[arg(long, conflicts_with = "if_version")]
    if_absent: bool,
    /// Write only if the key's version is N (compare-and-set).
    #[arg(long, value_name = "N")]
    if_version: Option<u64>,
    #[command(flatten)]
    conn: ConnArgs,
}

impl PutArgs {
    fn precondition(&self) -> Option<Precondition> {
        match (self.if_absent, self.if_version) {
            (true, _) => Some(Precondition::Absent),
            (false, Some(v)) => Some(Precondition::Version(v)),
            (false, None) => None,
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct GetArgs {
    /// The key.
    key: String,
    /// Read mode.
    #[arg(long, value_enum, default_value = "default")]
    mode: ModeArg,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Args, Debug)]
pub(crate) struct DelArgs {
    /// The key.
    key: String,
    /// Delete only if the key's version is N.
    #[arg(long = "if-version", alias = "version", value_name = "N")]
    if_version: Option<u64>,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Args, Debug)]
pub(crate) struct ScanArgs {
    /// Key prefix (empty lists every key).
    #[arg(default_value = "")]
    prefix: String,
    /// Most keys to list.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Read mode.
    #[arg(long, value_enum, default_value = "default")]
    mode: ModeArg,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Args, Debug)]
pub(crate) struct CasArgs {
    /// The key.
    key: String,
    /// Expected current version (0: the key must not exist).
    #[arg(long)]
    version: u64,
    /// The new value.
    value: String,
    #[command(flatten)]
    conn: ConnArgs,
}

pub(crate) enum Op {
    Put(PutArgs),
    Get(GetArgs),
    Del(DelArgs),
    Scan(ScanArgs),
    Cas(CasArgs),
}

pub(crate) fn run(op: Op) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_async(op))
}

async fn run_async(op: Op) -> anyhow::Result<ExitCode> {
    let out = &mut std::io::stdout();
    match op {
        Op::Put(a) => {
            let client = a.conn.client()?;
            let r = match a.precondition() {
                Some(pre) => client.put_with(a.key.clone(), a.value, pre).await,
                None => client.put(a.key.clone(), a.value).await,
            };
            write_result(
                out,
                a.conn.json,
                r.map(|rev| json!({"revision": rev})),
                |v| format!("OK revision {}", v["revision"]),
            )
        }
        Op::Cas(a) => {
            let client = a.conn.client()?;
            let pre = if a.version == 0 {
                Precondition::Absent
            } else {
                Precondition::Version(a.version)
            };
            let r = client.put_with(a.key.clone(), a.value, pre).await;
            write_result(
                out,
                a.conn.json,
                r.map(|rev| json!({"revision": rev})),
                |v| format!("OK revision {}", v["revision"]),
            )
        }
        Op::Del(a) => {
            let client = a.conn.client()?;
            let r = match a.if_version {
                Some(v) => {
                    client
                        .delete_with(a.key.clone(), Precondition::Version(v))
                        .await
                }
                None => client.delete(a.key.clone()).await,
            };
            write_result(
                out,
                a.conn.json,
                r.map(|d| json!({"revision": d.revision, "deleted": d.existed})),
                |v| {
                    if v["deleted"] == true {
                        format!("OK deleted, revision {}", v["revision"])
                    } else {
                        format!("OK (no such key), revision {}", v["revision"])
                    }
                },
            )
        }
        Op::Get(a) => {
            let client = a.conn.client()?;
            match client.get(a.key.clone(), a.mode.into()).await {
                Ok(r) => match r.kv {
                    Some(kv) => {
                        if a.conn.json {
                            let v = json!({
                                "key": a.key,
                                "value": String::from_utf8_lossy(&kv.value),
                                "version": kv.version,
                                "revision": r.revision,
                            });
                            writeln!(out, "{v}")?;
                        } else {
                            out.write_all(&kv.value)?;
                            writeln!(out)?;
                        }
                        Ok(ExitCode::SUCCESS)
                    }
                    None => {
                        eprintln!("keel: key {:?} not found", a.key);
                        Ok(ExitCode::from(1))
                    }
                },
                Err(e) => Ok(report(&e)),
            }
        }
        Op::Scan(a) => {
            let client = a.conn.client()?;
            let opts = ScanOptions::default()
                .limit(a.limit)
                .read_mode(a.mode.into());
            match client.scan(a.prefix, &opts).await {
                Ok(r) => {
                    for kv in &r.kvs {
                        if a.conn.json {
                            let v = json!({
                                "key": String::from_utf8_lossy(&kv.key),
                                "value": String::from_utf8_lossy(&kv.value),
                                "version": kv.version,
                            });
                            writeln!(out, "{v}")?;
                        } else {
                            writeln!(
                                out,
                                "{} = {}",
                                String::from_utf8_lossy(&kv.key),
                                String::from_utf8_lossy(&kv.value)
                            )?;
                        }
                    }
                    if r.more && !a.conn.json {
                        eprintln!("(more keys; raise --limit)");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(report(&e)),
            }
        }
    }
}

fn write_result(
    out: &mut impl std::io::Write,
    as_json: bool,
    r: Result<serde_json::Value, Error>,
    text: impl Fn(&serde_json::Value) -> String,
) -> anyhow::Result<ExitCode> {
    match r {
        Ok(v) => {
            if as_json {
                writeln!(out, "{v}")?;
            } else {
                writeln!(out, "{}", text(&v))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(report(&e)),
    }
}

/// Prints an error and picks the exit code that says whether a write may have
/// been applied.
pub(crate) fn report(e: &Error) -> ExitCode {
    eprintln!("keel: {e}");
    if e.outcome_unknown() {
        ExitCode::from(EXIT_OUTCOME_UNKNOWN)
    } else {
        ExitCode::from(1)
    }
}
