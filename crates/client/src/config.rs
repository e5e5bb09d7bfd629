//! The client's configuration.

use std::time::Duration;

use crate::address::Address;
use crate::tls::TlsConfig;
use crate::token::BearerToken;

/// How a [`crate::Client`] finds the cluster and how long it keeps trying.
///
/// Three time limits nest: `connect_timeout` bounds establishing one connection,
/// `request_timeout` bounds one attempt (connecting included), and `deadline` bounds
/// a whole call, every retry and backoff included. A call never takes longer than its
/// deadline (plus scheduling noise).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// gRPC addresses of some or all cluster members, as `host:port` (an
    /// `http://host:port` URI is accepted too). The client learns the leader's address
    /// from the members' answers, so the leader need not be listed.
    pub endpoints: Vec<String>,
    /// Longest wait for a TCP connection (and HTTP/2 handshake) to one endpoint.
    pub connect_timeout: Duration,
    /// Longest wait for one attempt: connecting, sending, and the answer.
    pub request_timeout: Duration,
    /// Longest wait for a whole call, all retries and backoff included.
    pub deadline: Duration,
    /// First backoff between retries. Each further backoff doubles, up to
    /// `backoff_max`; each is jittered to between half and all of its nominal value, so
    /// that many clients do not retry in lockstep.
    pub backoff_initial: Duration,
    /// Upper bound of the backoff between retries.
    pub backoff_max: Duration,
    /// Most connections kept open at once (one per member address). The least
    /// recently used is closed when a new one is needed.
    pub max_channels: usize,
    /// Largest request or response message, in bytes.
    pub max_message_bytes: usize,
    /// Interval of HTTP/2 pings on an open connection, which detect a dead peer even
    /// when no call is waiting.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
    /// Give the client a session that makes its writes exactly-once, so that a
    /// write whose outcome is unknown can be retried safely (and is, for up to 30
    /// seconds). On by default; turn it off only for clusters older than sessions,
    /// which would ignore the session and apply a retried write twice.
    pub sessions: bool,
    /// Send key-value calls made at the same time to the same member together,
    /// several per message of one gRPC stream (`keel.v1.Kv/Batch`), instead of one
    /// gRPC call each. Each call keeps its own timeout, retries and errors; only
    /// the per-call cost of gRPC is shared. On by default; calls to a member
    /// without the Batch method fall back to unary calls by themselves.
    pub batching: bool,
    /// Connect with TLS (`https`), verifying the members' certificates and
    /// presenting a client certificate if configured. `None`: plain connections.
    pub tls: Option<TlsConfig>,
    /// Send this bearer token with every request (`keel serve --auth-token-file`).
    pub token: Option<BearerToken>,
}

impl Default for ClientConfig {
    /// Endpoints of `keel demo`'s local cluster; timeouts suited to a LAN.
    fn default() -> Self {
        ClientConfig {
            endpoints: vec![
                "127.0.0.1:7001".to_owned(),
                "127.0.0.1:7002".to_owned(),
                "127.0.0.1:7003".to_owned(),
            ],
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(15),
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_secs(1),
            max_channels: 16,
            max_message_bytes: 16 * 1024 * 1024,
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
            sessions: true,
            batching: true,
            tls: None,
            token: None,
        }
    }
}

impl ClientConfig {
    /// The default configuration with the given endpoints.
    pub fn with_endpoints<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        ClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..ClientConfig::default()
        }
    }

    /// Checks that the configuration can work: at least one endpoint, every endpoint
    /// a valid address, every duration and limit non-zero, and the backoff bounds in
    /// order.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::NoEndpoints);
        }
        for e in &self.endpoints {
            Address::parse(e)?;
        }
        let durations = [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("deadline", self.deadline),
            ("backoff_initial", self.backoff_initial),
            ("backoff_max", self.backoff_max),
            ("keepalive_interval", self.keepalive_interval),
            ("keepalive_timeout", self.keepalive_timeout),
        ];
        for (field, value) in durations {
            if value.is_zero() {
                return Err(ConfigError::Zero(field));
            }
        }
        if self.max_channels == 0 {
            return Err(ConfigError::Zero("max_channels"));
        }
        if self.max_message_bytes == 0 {
            return Err(ConfigError::Zero("max_message_bytes"));
        }
        if self.backoff_initial > self.backoff_max {
            return Err(ConfigError::BackoffOrder {
                initial: self.backoff_initial,
                max: self.backoff_max,
            });
        }
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        Ok(())
    }
}

/// A [`ClientConfig`] that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `endpoints` is empty.
    #[error("no endpoints configured")]
    NoEndpoints,
    /// An endpoint is not a valid `host:port`.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A duration or limit that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// `backoff_initial` is larger than `backoff_max`.
    #[error("backoff_initial ({initial:?}) exceeds backoff_max ({max:?})")]
    BackoffOrder {
        /// The configured initial backoff.
        initial: Duration,
        /// The configured maximum backoff.
        max: Duration,
    },
    /// The TLS settings are unusable (a file cannot be read, or holds no
    /// certificate or key).
    #[error("TLS: {0}")]
    Tls(String),
    /// The bearer token is unusable.
    #[error("bearer token: {0}")]
    Token(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(ClientConfig::default().validate(), Ok(()));
    }

    #[test]
    fn rejects_what_cannot_work() {
        let ok = ClientConfig::with_endpoints(["127.0.0.1:1"]);
        assert_eq!(ok.validate(), Ok(()));

        let none = ClientConfig::with_endpoints(Vec::<String>::new());
        assert_eq!(none.validate(), Err(ConfigError::NoEndpoints));

        let bad = ClientConfig::with_endpoints(["not an address"]);
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::InvalidEndpoint { .. })
        ));

        let zero = ClientConfig {
            request_timeout: Duration::ZERO,
            ..ok.clone()
        };
        assert_eq!(zero.validate(), Err(ConfigError::Zero("request_timeout")));

        let channels = ClientConfig {
            max_channels: 0,
            ..ok.clone()
        };
        assert_eq!(channels.validate(), Err(ConfigError::Zero("max_channels")));

        let order = ClientConfig {
            backoff_initial: Duration::from_secs(2),
            backoff_max: Duration::from_secs(1),
            ..ok
        };
        assert!(matches!(
            order.validate(),
            Err(ConfigError::BackoffOrder { .. })
        ));
    }
}
