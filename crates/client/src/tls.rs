//! TLS for the connections to the members: the CA their certificates must chain
//! to, the certificate this client presents (mutual TLS), and the name to check.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::config::ConfigError;

/// How a client verifies the members it connects to, and proves who it is.
///
/// With TLS, every connection is `https`: the member's certificate must chain to
/// one of the certificates in `ca_pem` and name the host the client dialled (or
/// `server_name`). The PEM text is kept as given and checked by
/// [`crate::ClientConfig::validate`].
#[derive(Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM of the CA certificate(s) trusted to sign members' certificates.
    pub ca_pem: Vec<u8>,
    /// PEM certificate chain and private key presented to members that ask for a
    /// client certificate (`keel serve --client-ca`, and between nodes).
    pub identity: Option<TlsIdentity>,
    /// The name the members' certificates must carry, instead of the host of the
    /// address dialled (useful when members are reached through IP addresses
    /// their certificates do not list).
    pub server_name: Option<String>,
}

/// A certificate chain and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsIdentity {
    /// The certificate, then any intermediates, PEM.
    pub cert_pem: Vec<u8>,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: Vec<u8>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca_pem", &format_args!("{} bytes", self.ca_pem.len()))
            .field("identity", &self.identity)
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl fmt::Debug for TlsIdentity {
    /// The key is never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// How long a TLS handshake with a member may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsConfig {
    /// Reads the CA file and, if given, the certificate and key files. The
    /// contents are checked by [`TlsConfig::validate`].
    pub fn from_files(
        ca: &Path,
        identity: Option<(&Path, &Path)>,
        server_name: Option<String>,
    ) -> Result<Self, ConfigError> {
        let identity = match identity {
            Some((cert, key)) => Some(TlsIdentity {
                cert_pem: read(cert)?,
                key_pem: read(key)?,
            }),
            None => None,
        };
        Ok(TlsConfig {
            ca_pem: read(ca)?,
            identity,
            server_name,
        })
    }

    /// Checks that the PEM text holds what it must: at least one CA certificate,
    /// and, for the identity, at least one certificate and a private key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        certificates("the CA", &self.ca_pem)?;
        if let Some(id) = &self.identity {
            certificates("the client certificate", &id.cert_pem)?;
            PrivateKeyDer::from_pem_slice(&id.key_pem).map_err(|e| {
                ConfigError::Tls(format!("the client key holds no private key: {e}"))
            })?;
        }
        if let Some(name) = &self.server_name
            && rustls_pki_types::ServerName::try_from(name.as_str()).is_err()
        {
            return Err(ConfigError::Tls(format!(
                "server name {name:?} is neither a DNS name nor an IP address"
            )));
        }
        Ok(())
    }

    /// `endpoint` (an `http://host:port` URI) as an `https` endpoint with this
    /// configuration.
    pub fn endpoint(&self, uri: &str) -> Result<Endpoint, String> {
        let https = match uri.strip_prefix("http://") {
            Some(rest) => format!("https://{rest}"),
            None => uri.to_owned(),
        };
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .assume_http2(true)
            .timeout(HANDSHAKE_TIMEOUT);
        if let Some(id) = &self.identity {
            tls = tls.identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
        }
        if let Some(name) = &self.server_name {
            tls = tls.domain_name(name.clone());
        }
        Endpoint::from_shared(https)
            .map_err(|e| format!("bad address {uri}: {e}"))?
            .tls_config(tls)
            .map_err(|e| format!("bad TLS settings for {uri}: {e}"))
    }
}

/// An `http://host:port` URI as an endpoint: plain, or with `tls`.
pub fn endpoint(uri: &str, tls: Option<&TlsConfig>) -> Result<Endpoint, String> {
    match tls {
        Some(tls) => tls.endpoint(uri),
        None => {
            Endpoint::from_shared(uri.to_owned()).map_err(|e| format!("bad address {uri}: {e}"))
        }
    }
}

fn certificates(what: &str, pem: &[u8]) -> Result<(), ConfigError> {
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|e| ConfigError::Tls(format!("{what} is not valid PEM: {e}")))?;
        n += 1;
    }
    if n == 0 {
        return Err(ConfigError::Tls(format!("{what} holds no PEM certificate")));
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError::Tls(format!("cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOT_PEM: &[u8] = b"hello";

    #[test]
    fn validate_names_what_is_missing() {
        let bad_ca = TlsConfig {
            ca_pem: NOT_PEM.to_vec(),
            identity: None,
            server_name: None,
        };
        let e = bad_ca.validate().expect_err("refused").to_string();
        assert!(e.contains("the CA holds no PEM certificate"), "{e}");
        let bad_name = TlsConfig {
            server_name: Some("not a name!".into()),
            ..bad_ca
        };
        assert!(bad_name.validate().is_err());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let id = TlsIdentity {
            cert_pem: b"cert".to_vec(),
            key_pem: b"SECRET KEY".to_vec(),
        };
        assert!(!format!("{id:?}").contains("SECRET"));
    }

    #[test]
    fn endpoints_become_https_with_tls() {
        let tls = TlsConfig {
            ca_pem: Vec::new(),
            identity: None,
            server_name: None,
        };
        let e = endpoint("http://127.0.0.1:7001", Some(&tls)).expect("valid");
        assert_eq!(e.uri().scheme_str(), Some("https"));
        let e = endpoint("http://127.0.0.1:7001", None).expect("valid");
        assert_eq!(e.uri().scheme_str(), Some("http"));
    }
}
