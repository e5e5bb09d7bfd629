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

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose as Eku, IsCa, Issuer,
        KeyPair,
    };

    use super::*;

    /// A CA named `name` (certificates name their issuer: two CAs of one name
    /// would be told apart by a failing signature instead).
    fn ca(name: &str) -> (CertificateDer<'static>, Issuer<'static, KeyPair>) {
        let mut p = CertificateParams::new(Vec::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let cert = p.self_signed(&key).expect("CA");
        (cert.der().clone(), Issuer::new(p, key))
    }

    fn leaf(
        issuer: &Issuer<'_, KeyPair>,
        ekus: Vec<Eku>,
        expired: bool,
    ) -> Vec<CertificateDer<'static>> {
        let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
        p.extended_key_usages = ekus;
        if expired {
            let now = time::OffsetDateTime::now_utc();
            p.not_before = now - time::Duration::days(10);
            p.not_after = now - time::Duration::days(1);
        }
        let key = KeyPair::generate().expect("key");
        vec![p.signed_by(&key, issuer).expect("sign").der().clone()]
    }

    #[test]
    fn only_current_node_certificates_of_the_cluster_ca_pass() {
        let (ca_cert, issuer) = ca("cluster CA");
        let check = NodeCertCheck::new(&[ca_cert]).expect("CA");
        let node = leaf(&issuer, vec![Eku::ServerAuth, Eku::ClientAuth], false);
        check.check(&node).expect("a node certificate passes");

        let client = leaf(&issuer, vec![Eku::ClientAuth], false);
        let why = check.check(&client).expect_err("a client certificate");
        assert!(why.contains("not a node certificate"), "{why}");

        let expired = leaf(&issuer, vec![Eku::ServerAuth, Eku::ClientAuth], true);
        let why = check.check(&expired).expect_err("expired");
        assert!(why.to_lowercase().contains("expired"), "{why}");

        let (_, other) = ca("another CA");
        let foreign = leaf(&other, vec![Eku::ServerAuth, Eku::ClientAuth], false);
        let why = check.check(&foreign).expect_err("another CA's");
        assert!(why.contains("not signed by the cluster CA"), "{why}");

        assert!(check.check(&[]).is_err());
    }

    #[test]
    fn the_own_certificate_must_name_the_advertised_host() {
        let (ca_cert, issuer) = ca("cluster CA");
        let check = NodeCertCheck::new(&[ca_cert]).expect("CA");
        let node = leaf(&issuer, vec![Eku::ServerAuth, Eku::ClientAuth], false);
        own_certificate(&check, "--tls-cert", &node, "127.0.0.1").expect("names it");
        let e = own_certificate(&check, "--tls-cert", &node, "10.9.9.9")
            .expect_err("does not name it")
            .to_string();
        assert!(e.contains("--tls-cert") && e.contains("10.9.9.9"), "{e}");
    }
}
