//! TLS on every listener and mutual TLS between nodes (`docs/security.md`).
//!
//! A node has one certificate (`--tls-cert`, `--tls-key`), issued by the cluster
//! CA (`--peer-ca`) for its host names, which it presents on the gRPC port (to
//! clients and peers alike: they share it), on the HTTP port and on the RESP port.
//! Toward its peers it presents the same certificate as a client certificate
//! (or `--peer-cert`, `--peer-key`). On the gRPC port the handshake asks for a
//! client certificate: peers must present one, and the peer service checks it is
//! a node certificate of the cluster CA ([`NodeCertCheck`]); clients need one
//! only with `--client-ca`, which then makes it mandatory on every client port.
//! Handshakes run off the accept loop ([`accept`]), bounded in number and time;
//! each failure is logged with the remote address and counted.

pub mod accept;
mod load;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ServerConfig, SupportedProtocolVersion};

pub use verify::NodeCertCheck;

/// Where the node's certificates come from (`keel serve`'s TLS flags).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// `--tls-cert`: this node's certificate chain, PEM.
    pub cert: PathBuf,
    /// `--tls-key`: its private key, PEM.
    pub key: PathBuf,
    /// `--peer-ca`: the cluster CA, which signs every node's certificate.
    pub peer_ca: PathBuf,
    /// `--client-ca`: when set, clients must present a certificate it signed.
    pub client_ca: Option<PathBuf>,
    /// `--peer-cert` and `--peer-key`: the certificate presented to peers when
    /// connecting to them, if not `cert` and `key`.
    pub peer_identity: Option<(PathBuf, PathBuf)>,
}

/// A TLS setting that cannot be used; the node refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or does not hold what it must.
    #[error("{setting} {}: {reason}", path.display())]
    File {
        /// The flag naming the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The certificate is not one peers would accept (expired, not signed by the
    /// cluster CA, not for this node's host, a client certificate).
    #[error("{setting}: the certificate is unusable: {reason}")]
    Unusable {
        /// The flag naming the certificate.
        setting: &'static str,
        /// Why.
        reason: String,
    },
    /// rustls refused the combination (e.g. a key that does not match the
    /// certificate).
    #[error("{setting}: {reason}")]
    Rustls {
        /// The flag(s) concerned.
        setting: &'static str,
        /// rustls's explanation.
        reason: String,
    },
}

/// A node's loaded TLS material.
#[derive(Debug)]
pub struct NodeTls {
    /// The gRPC port: node certificate; client certificates requested (required
    /// with `--client-ca`), from the cluster CA or the client CA.
    pub grpc: Arc<ServerConfig>,
    /// The HTTP and RESP ports: node certificate; client certificates from the
    /// client CA required with `--client-ca`, not asked for otherwise.
    pub client_ports: Arc<ServerConfig>,
    /// Decides whether a connection's certificate is a peer's.
    pub nodes: Arc<NodeCertCheck>,
    /// The client side of node-to-node connections.
    pub peer_client: keel_client::TlsConfig,
}

const PROTOCOLS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl NodeTls {
    /// Loads and checks everything: the files parse, the key matches, and the
    /// node's certificate is one its peers will accept (signed by the cluster CA,
    /// not expired, for server and client use, valid for `advertised_host`).
    pub fn load(files: &TlsFiles, advertised_host: &str) -> Result<Self, TlsError> {
        let chain = load::certs("--tls-cert", &files.cert)?;
        let key = load::key("--tls-key", &files.key)?;
        let cluster_cas = load::certs("--peer-ca", &files.peer_ca)?;
        let nodes = NodeCertCheck::new(&cluster_cas).map_err(|reason| TlsError::File {
            setting: "--peer-ca",
            path: files.peer_ca.clone(),
            reason,
        })?;
        verify::own_certificate(&nodes, "--tls-cert", &chain, advertised_host)?;
        let (peer_cert_pem, peer_key_pem) = match &files.peer_identity {
            Some((cert, key)) => {
                let peer_chain = load::certs("--peer-cert", cert)?;
                load::key("--peer-key", key)?;
                nodes
                    .check(&peer_chain)
                    .map_err(|reason| TlsError::Unusable {
                        setting: "--peer-cert",
                        reason,
                    })?;
                (
                    load::pem("--peer-cert", cert)?,
                    load::pem("--peer-key", key)?,
                )
            }
            None => (
                load::pem("--tls-cert", &files.cert)?,
                load::pem("--tls-key", &files.key)?,
            ),
        };
        let cluster_roots = load::roots("--peer-ca", &files.peer_ca)?;
        let client_roots = match &files.client_ca {
            Some(path) => Some(load::roots("--client-ca", path)?),
            None => None,
        };

        // gRPC: peers and clients. Either CA may sign a client certificate.
        let mut grpc_roots = cluster_roots;
        if let Some(roots) = &client_roots {
            grpc_roots.roots.extend(roots.roots.iter().cloned());
        }
        let grpc_verifier = {
            let b = WebPkiClientVerifier::builder_with_provider(Arc::new(grpc_roots), provider());
            let b = if client_roots.is_some() {
                b
            } else {
                b.allow_unauthenticated()
            };
            b.build().map_err(|e| TlsError::Rustls {
                setting: "--peer-ca/--client-ca",
                reason: e.to_string(),
            })?
        };
        let grpc = server_config(grpc_verifier, &chain, &key, b"h2")?;
        let client_ports = match client_roots {
            Some(roots) => {
                let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .map_err(|e| TlsError::Rustls {
                        setting: "--client-ca",
                        reason: e.to_string(),
                    })?;
                server_config(v, &chain, &key, b"http/1.1")?
            }
            None => server_config(
                WebPkiClientVerifier::no_client_auth(),
                &chain,
                &key,
                b"http/1.1",
            )?,
        };
        Ok(NodeTls {
            grpc,
            client_ports,
            nodes: Arc::new(nodes),
            peer_client: keel_client::TlsConfig {
                ca_pem: load::pem("--peer-ca", &files.peer_ca)?,
                identity: Some(keel_client::TlsIdentity {
                    cert_pem: peer_cert_pem,
                    key_pem: peer_key_pem,
                }),
                server_name: None,
            },
        })
    }
}

fn server_config(
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    chain: &[rustls_pki_types::CertificateDer<'static>],
    key: &rustls_pki_types::PrivateKeyDer<'static>,
    alpn: &[u8],
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOLS)
        .map_err(|e| TlsError::Rustls {
            setting: "--tls-cert",
            reason: e.to_string(),
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.to_vec(), key.clone_key())
        .map_err(|e| TlsError::Rustls {
            setting: "--tls-cert/--tls-key",
            reason: format!("the key does not fit the certificate: {e}"),
        })?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}
