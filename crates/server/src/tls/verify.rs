//! What makes a certificate a node's: it chains to the cluster CA (`--peer-ca`)
//! and is issued for server authentication as well as client authentication.
//!
//! Nodes and clients share the gRPC port, and a client certificate from the same
//! CA passes the handshake there. What tells them apart is the extended key usage:
//! `keel certs` issues node certificates for `serverAuth` and `clientAuth` (a node
//! is a server to its peers and their client), client certificates for
//! `clientAuth` only. The peer service (`keel.raft.v1.Raft`) checks the
//! certificate a connection presented as a *server* certificate of the cluster
//! CA, which a client certificate cannot pass.

use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

use super::TlsError;

/// Checks that a certificate chain is a node certificate of this cluster.
#[derive(Debug)]
pub struct NodeCertCheck {
    anchors: Vec<TrustAnchor<'static>>,
}

impl NodeCertCheck {
    /// Trusts the CA certificates `cas` (the `--peer-ca` file).
    pub(crate) fn new(cas: &[CertificateDer<'static>]) -> Result<Self, String> {
        let anchors = cas
            .iter()
            .map(|c| {
                webpki::anchor_from_trusted_cert(c)
                    .map(|a| a.to_owned())
                    .map_err(|e| format!("not a usable CA certificate: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(NodeCertCheck { anchors })
    }

    /// Whether `chain` (leaf first) is a node certificate, valid now. The error
    /// says why not.
    pub fn check(&self, chain: &[CertificateDer<'_>]) -> Result<(), String> {
        self.check_at(chain, UnixTime::now(), None)
    }

    /// The check at `now`; with `name`, the certificate must also be valid for
    /// that host name or IP address.
    pub(crate) fn check_at(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
        name: Option<&ServerName<'_>>,
    ) -> Result<(), String> {
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or_else(|| "no certificate presented".to_string())?;
        let cert = EndEntityCert::try_from(leaf)
            .map_err(|e| format!("the certificate cannot be parsed: {e}"))?;
        cert.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            intermediates,
            now,
            KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| match e {
            webpki::Error::RequiredEkuNotFoundContext(_) => {
                "it is not a node certificate (no serverAuth usage: a client certificate?)"
                    .to_string()
            }
            webpki::Error::UnknownIssuer => "it is not signed by the cluster CA".to_string(),
            other => other.to_string(),
        })?;
        // Node certificates serve as client certificates toward peers too.
        cert.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            intermediates,
            now,
            KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| format!("it cannot authenticate a client (clientAuth usage): {e}"))?;
        if let Some(name) = name {
            cert.verify_is_valid_for_subject_name(name)
                .map_err(|e| format!("it is not valid for {}: {e}", name.to_str()))?;
        }
        Ok(())
    }
}

/// Checks this node's own certificate at start, so that a certificate its peers
/// would refuse stops the node with a clear message instead.
pub(crate) fn own_certificate(
    check: &NodeCertCheck,
    setting: &'static str,
    chain: &[CertificateDer<'_>],
    advertised_host: &str,
) -> Result<(), TlsError> {
    let host = advertised_host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let name = ServerName::try_from(host.as_str()).map_err(|e| TlsError::Unusable {
        setting,
        reason: format!("the advertised host {host:?} is not a valid name: {e}"),
    })?;
    check
        .check_at(chain, UnixTime::now(), Some(&name))
        .map_err(|reason| TlsError::Unusable { setting, reason })
}
