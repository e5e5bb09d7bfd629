//! Member addresses: parsed once, compared and hashed cheaply.

use std::fmt;
use std::sync::Arc;

use tonic::transport::Endpoint;

use crate::config::ConfigError;

/// A member's gRPC address in canonical form (`http://host:port`).
///
/// Configured endpoints and leader hints from the servers go through the same
/// parsing, so a hint naming a configured endpoint compares equal to it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Address(Arc<str>);

impl Address {
    /// Parses `host:port`, `http://host:port` or `https://host:port` (TLS is the
    /// client's setting, not the address's: all three name the same member).
    pub(crate) fn parse(s: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: &str| ConfigError::InvalidEndpoint {
            endpoint: s.to_owned(),
            reason: reason.to_owned(),
        };
        let s = s.trim();
        let uri = if let Some(rest) = s.strip_prefix("https://") {
            format!("http://{rest}")
        } else if s.contains("://") {
            if !s.starts_with("http://") {
                return Err(invalid("only http:// and https:// are supported"));
            }
            s.to_owned()
        } else {
            format!("http://{s}")
        };
        let endpoint = Endpoint::from_shared(uri.clone()).map_err(|e| invalid(&e.to_string()))?;
        let parsed = endpoint.uri();
        if parsed.host().is_none_or(str::is_empty) {
            return Err(invalid("missing host"));
        }
        if parsed.port_u16().is_none() {
            return Err(invalid("missing port"));
        }
        if parsed.path() != "/" && !parsed.path().is_empty() {
            return Err(invalid("unexpected path"));
        }
        Ok(Address(uri.trim_end_matches('/').into()))
    }

    /// The canonical URI.
    pub(crate) fn uri(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Address {
    /// Shown as `host:port`, the way users write it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.strip_prefix("http://").unwrap_or(&self.0))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_and_uri_forms_are_the_same_address() {
        let a = Address::parse("127.0.0.1:7001").expect("valid");
        let b = Address::parse("http://127.0.0.1:7001/").expect("valid");
        assert_eq!(a, b);
        assert_eq!(a, Address::parse("https://127.0.0.1:7001").expect("valid"));
        assert_eq!(a.uri(), "http://127.0.0.1:7001");
        assert_eq!(a.to_string(), "127.0.0.1:7001");
        assert!(Address::parse("node-3.keel.internal:7000").is_ok());
        assert!(Address::parse("[::1]:7000").is_ok());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "127.0.0.1",
            "host:notaport",
            "ftp://host:1",
            "http://host:1/path",
            "a b:1",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
