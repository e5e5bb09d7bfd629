//! `keel certs`: a development CA and certificates signed by it, for trying TLS
//! and for tests (`docs/security.md`). Production clusters may use any CA; what
//! keel requires of the certificates is said there.
//!
//! Node certificates are issued for server *and* client authentication (a node
//! is its peers' server and their client) and name the node's hosts and IP
//! addresses; client certificates are for client authentication only, which is
//! what the peer service checks to refuse them.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// `keel certs`'s flags.
#[derive(Args, Debug)]
pub(crate) struct CertsArgs {
    /// Directory for the files (created if missing). A CA already there
    /// (`ca.pem`, `ca-key.pem`) signs the new certificates; otherwise a new one
    /// is made.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// A node certificate, `ID=HOST[,HOST...]`: the node's DNS names and IP
    /// addresses (every name clients and peers use to reach it). Repeatable.
    /// Writes `node-ID.pem` and `node-ID-key.pem`.
    #[arg(long = "node", value_name = "ID=HOSTS")]
    nodes: Vec<String>,
    /// A client certificate for NAME (client authentication only). Repeatable.
    /// Writes `client-NAME.pem` and `client-NAME-key.pem`.
    #[arg(long = "client", value_name = "NAME")]
    clients: Vec<String>,
    /// How long node and client certificates are valid, in days (the CA: ten
    /// years).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    /// Replace node and client files that exist (the CA is never replaced).
    #[arg(long)]
    force: bool,
}

/// The CA's files in the output directory.
const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca-key.pem";

pub(crate) fn run(args: CertsArgs) -> anyhow::Result<ExitCode> {
    let nodes = args
        .nodes
        .iter()
        .map(|n| parse_node(n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for name in &args.clients {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            bail!("--client {name:?}: use letters, digits, '-', '_' and '.' only");
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let issuer = ca(&args.out)?;
    let now = OffsetDateTime::now_utc();
    let validity = (
        now - Duration::hours(1),
        now + Duration::days(args.days.into()),
    );
    for (id, hosts) in &nodes {
        let mut params = CertificateParams::new(hosts.clone())
            .with_context(|| format!("--node {id}: invalid host name"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("keel node {id}"));
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, "keel nodes");
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        issue(&args, &issuer, params, validity, &format!("node-{id}"))?;
    }
    for name in &args.clients {
        let mut params = CertificateParams::new(Vec::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, name.as_str());
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, "keel clients");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        issue(&args, &issuer, params, validity, &format!("client-{name}"))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `ID=HOST[,HOST...]`.
fn parse_node(spec: &str) -> anyhow::Result<(u64, Vec<String>)> {
    let (id, hosts) = spec
        .split_once('=')
        .with_context(|| format!("--node {spec:?} is not ID=HOST[,HOST...]"))?;
    let id: u64 = id
        .trim()
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .with_context(|| format!("--node {spec:?}: {id:?} is not a node id"))?;
    let hosts: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect();
    if hosts.is_empty() {
        bail!("--node {spec:?} names no host");
    }
    Ok((id, hosts))
}

/// The CA in `dir`: loaded if there, made (and written) otherwise.
fn ca(dir: &Path) -> anyhow::Result<Issuer<'static, KeyPair>> {
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {
            let cert = std::fs::read_to_string(&cert_path)
                .with_context(|| format!("cannot read {}", cert_path.display()))?;
            let key = std::fs::read_to_string(&key_path)
                .with_context(|| format!("cannot read {}", key_path.display()))?;
            let key = KeyPair::from_pem(&key)
                .with_context(|| format!("{} holds no usable key", key_path.display()))?;
            let issuer = Issuer::from_ca_cert_pem(&cert, key)
                .with_context(|| format!("{} is not a usable CA", cert_path.display()))?;
            println!("using the CA in {}", cert_path.display());
            Ok(issuer)
        }
        (false, false) => {
            let mut params = CertificateParams::new(Vec::new())?;
            // A name of its own: certificates name their issuer, and two CAs of
            // one name would be told apart only by a failing signature.
            params.distinguished_name.push(
                DnType::CommonName,
                format!("keel development CA {}", ca_tag()),
            );
            params
                .distinguished_name
                .push(DnType::OrganizationName, "keel");
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let now = OffsetDateTime::now_utc();
            params.not_before = now - Duration::hours(1);
            params.not_after = now + Duration::days(3650);
            let key = KeyPair::generate()?;
            let cert = params.self_signed(&key)?;
            write(&key_path, &key.serialize_pem(), true, false)?;
            write(&cert_path, &cert.pem(), false, false)?;
            println!(
                "wrote a new CA: {} (key {})",
                cert_path.display(),
                key_path.display()
            );
            Ok(Issuer::new(params, key))
        }
        _ => bail!(
            "{} holds one of {CA_CERT} and {CA_KEY} but not the other",
            dir.display()
        ),
    }
}

/// A tag telling this CA from other development CAs: the time of its making
/// and the process, in hex.
fn ca_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}", nanos ^ (u128::from(std::process::id()) << 64))
}

/// Signs `params` (with a new key) and writes `<stem>.pem` and `<stem>-key.pem`.
fn issue(
    args: &CertsArgs,
    issuer: &Issuer<'_, KeyPair>,
    mut params: CertificateParams,
    (not_before, not_after): (OffsetDateTime, OffsetDateTime),
    stem: &str,
) -> anyhow::Result<()> {
    params.not_before = not_before;
    params.not_after = not_after;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    let cert_path = args.out.join(format!("{stem}.pem"));
    write(
        &args.out.join(format!("{stem}-key.pem")),
        &key.serialize_pem(),
        true,
        args.force,
    )?;
    write(&cert_path, &cert.pem(), false, args.force)?;
    println!("wrote {}", cert_path.display());
    Ok(())
}

/// Writes `text` to a new file (mode 0600 for keys), refusing to replace one
/// unless `replace`.
fn write(path: &Path, text: &str, secret: bool, replace: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(if secret { 0o600 } else { 0o644 });
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut f = options.open(path).with_context(|| {
        if path.exists() && !replace {
            format!("{} exists (pass --force to replace it)", path.display())
        } else {
            format!("cannot create {}", path.display())
        }
    })?;
    if secret {
        // A replaced file keeps its old mode: make sure.
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", path.display()))?;
    }
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_specs_are_parsed_and_checked() {
        assert_eq!(
            parse_node("2=127.0.0.1, node2.example").expect("valid"),
            (
                2,
                vec!["127.0.0.1".to_string(), "node2.example".to_string()]
            )
        );
        for bad in ["2", "0=host", "x=host", "3=", "3= , "] {
            assert!(parse_node(bad).is_err(), "{bad:?} accepted");
        }
    }
}
