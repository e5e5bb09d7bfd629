//! How this node connects to its peers: plain, or with mutual TLS under the
//! cluster CA (trusting only it, presenting the node's certificate).

use std::sync::Arc;

use tonic::transport::Endpoint;

/// Makes endpoints for peer addresses. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct PeerConnector {
    tls: Option<Arc<keel_client::TlsConfig>>,
}

impl PeerConnector {
    /// Plain connections (no TLS configured).
    pub fn plain() -> Self {
        PeerConnector::default()
    }

    /// Connections with `tls` (the node's [`crate::tls::NodeTls::peer_client`]).
    pub fn with_tls(tls: keel_client::TlsConfig) -> Self {
        PeerConnector {
            tls: Some(Arc::new(tls)),
        }
    }

    /// The TLS settings, if any.
    pub fn tls(&self) -> Option<&keel_client::TlsConfig> {
        self.tls.as_deref()
    }

    /// An endpoint for the peer at `addr` (`host:port`).
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, String> {
        keel_client::endpoint(&format!("http://{addr}"), self.tls())
    }
}
