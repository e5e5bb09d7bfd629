//! TLS for the cluster tests: certificates made by `keel certs` (and, for what
//! `keel certs` will not make, expired ones signed by the same CA with rcgen),
//! the flags that give a cluster TLS, and an HTTPS request helper.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keel_client::{TlsConfig, TlsIdentity};
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};

/// A directory of certificates from `keel certs`.
pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    /// Runs `keel certs --out DIR` with a node certificate for ids `1..=nodes`
    /// (all on `ip`) and a client certificate `alice`.
    pub fn make(dir: &Path, ip: IpAddr, nodes: u64) -> Certs {
        let mut cmd = std::process::Command::new(super::keel_bin());
        cmd.arg("certs").arg("--out").arg(dir);
        for id in 1..=nodes {
            cmd.args(["--node", &format!("{id}={ip},localhost")]);
        }
        let out = cmd
            .args(["--client", "alice"])
            .output()
            .expect("run keel certs");
        assert!(
            out.status.success(),
            "keel certs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Certs {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn path_str(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    /// `keel serve` flags: TLS everywhere, this CA for peers and clients,
    /// each node its own certificate (`{id}`).
    pub fn serve_flags(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.path_str("node-{id}.pem"),
            "--tls-key".into(),
            self.path_str("node-{id}-key.pem"),
            "--peer-ca".into(),
            self.path_str("ca.pem"),
            "--client-ca".into(),
            self.path_str("ca.pem"),
        ]
    }

    /// A client's TLS: trusts this CA, presents certificate `stem` if given
    /// (`client-alice`, `node-1`, ...).
    pub fn client_tls(&self, stem: Option<&str>) -> TlsConfig {
        TlsConfig {
            ca_pem: std::fs::read(self.path("ca.pem")).expect("ca.pem"),
            identity: stem.map(|s| TlsIdentity {
                cert_pem: std::fs::read(self.path(&format!("{s}.pem"))).expect("cert"),
                key_pem: std::fs::read(self.path(&format!("{s}-key.pem"))).expect("key"),
            }),
            server_name: None,
        }
    }

    /// Writes `<stem>.pem` and `<stem>-key.pem`: a certificate signed by this
    /// CA that expired yesterday, for `hosts`, a node's (server and client
    /// authentication) or a client's.
    pub fn expired(&self, stem: &str, hosts: Vec<String>, node: bool) {
        let ca = std::fs::read_to_string(self.path("ca.pem")).expect("ca.pem");
        let ca_key = std::fs::read_to_string(self.path("ca-key.pem")).expect("ca-key.pem");
        let issuer =
            Issuer::from_ca_cert_pem(&ca, KeyPair::from_pem(&ca_key).expect("CA key")).expect("CA");
        let mut params = CertificateParams::new(hosts).expect("hosts");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("expired {stem}"));
        params.extended_key_usages = if node {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(30);
        params.not_after = now - time::Duration::days(1);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &issuer).expect("sign");
        std::fs::write(self.path(&format!("{stem}.pem")), cert.pem()).expect("write");
        std::fs::write(self.path(&format!("{stem}-key.pem")), key.serialize_pem()).expect("write");
    }
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to `addr`, trusting the CA in `tls.ca_pem` and presenting
/// its identity, if any.
fn connect(tls: &TlsConfig, addr: SocketAddr) -> std::io::Result<TlsStream> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&tls.ca_pem) {
        roots.add(c.expect("CA PEM")).expect("CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match &tls.identity {
        Some(id) => {
            let chain = CertificateDer::pem_slice_iter(&id.cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .expect("cert PEM");
            let key = PrivateKeyDer::from_pem_slice(&id.key_pem).expect("key PEM");
            builder.with_client_auth_cert(chain, key).expect("identity")
        }
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::from(addr.ip());
    let conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    tcp.set_read_timeout(Some(Duration::from_secs(15)))?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// Everything the server sends until it closes the connection.
fn read_all(stream: &mut TlsStream) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        // The server may close without a close_notify.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(e),
    }
}

/// One HTTPS/1.1 request (connection closed after) with `tls`. Returns status,
/// head and body.
pub fn https(
    tls: &TlsConfig,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut stream = connect(tls, addr)?;
    stream.write_all(super::request_head(addr, method, path, headers, body.len()).as_bytes())?;
    stream.write_all(body)?;
    Ok(super::parse_response(&read_all(&mut stream)?))
}

/// Sends Redis inline `commands` over TLS, then QUIT, and returns every reply
/// as text.
pub fn resp(tls: &TlsConfig, addr: SocketAddr, commands: &[&str]) -> std::io::Result<String> {
    let mut stream = connect(tls, addr)?;
    for c in commands.iter().chain(&["QUIT"]) {
        stream.write_all(format!("{c}\r\n").as_bytes())?;
    }
    Ok(String::from_utf8_lossy(&read_all(&mut stream)?).into_owned())
}
