//! A bounded set of open connections, one per member address.

use std::sync::{Arc, Mutex};

use tonic::transport::Endpoint;

use crate::address::Address;
use crate::channel::AuthChannel;
use crate::config::ClientConfig;
use crate::mux::Mux;
use crate::tls::TlsConfig;
use crate::token::BearerToken;

/// One open connection and its batch stream.
#[derive(Clone)]
pub(crate) struct Conn {
    pub(crate) channel: AuthChannel,
    /// `None` when batching is off.
    pub(crate) mux: Option<Arc<Mux>>,
}

/// Open connections, least recently used first out.
///
/// Connections are made on first use and *before* a request is handed to them: a
/// failure to connect then proves the request never left (see [`crate::failure`]).
/// Leader hints may name addresses outside the configured endpoints, so the set is
/// capped at `max_channels`.
pub(crate) struct Pool {
    settings: Settings,
    max: usize,
    slots: Mutex<Slots>,
}

/// Connection settings taken from the config.
struct Settings {
    batching: bool,
    max_message_bytes: usize,
    connect_timeout: std::time::Duration,
    keepalive_interval: std::time::Duration,
    keepalive_timeout: std::time::Duration,
    tls: Option<TlsConfig>,
    token: Option<BearerToken>,
}

#[derive(Default)]
struct Slots {
    /// Few entries (`max_channels`), so a linear scan beats a map plus a list.
    entries: Vec<Slot>,
    /// Logical clock for recency.
    tick: u64,
}

struct Slot {
    address: Address,
    conn: Conn,
    last_used: u64,
}

impl Pool {
    pub(crate) fn new(cfg: &ClientConfig) -> Self {
        Pool {
            settings: Settings {
                batching: cfg.batching,
                max_message_bytes: cfg.max_message_bytes,
                connect_timeout: cfg.connect_timeout,
                keepalive_interval: cfg.keepalive_interval,
                keepalive_timeout: cfg.keepalive_timeout,
                tls: cfg.tls.clone(),
                token: cfg.token.clone(),
            },
            max: cfg.max_channels,
            slots: Mutex::new(Slots::default()),
        }
    }

    /// A connection to `address`, established now if there is none.
    ///
    /// Concurrent callers may both connect to the same new address; the first to
    /// finish is kept and the other connection is dropped.
    pub(crate) async fn conn(&self, address: &Address) -> Result<Conn, tonic::Status> {
        if let Some(conn) = self.lookup(address) {
            return Ok(conn);
        }
        let endpoint = self.endpoint(address)?;
        // Status::from_error keeps the transport error as the status's source, with
        // tonic's ConnectError in its chain.
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| tonic::Status::from_error(Box::new(e)))?;
        let channel = AuthChannel::new(channel, self.settings.token.as_ref());
        Ok(self.insert(address, channel))
    }

    /// Drops the connection to `address`, if any (callers still holding it finish
    /// their calls on it).
    pub(crate) fn evict(&self, address: &Address) {
        let mut slots = self.lock();
        slots.entries.retain(|s| &s.address != address);
    }

    /// How many connections are open, for tests.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }

    fn lookup(&self, address: &Address) -> Option<Conn> {
        let mut slots = self.lock();
        slots.tick += 1;
        let tick = slots.tick;
        let slot = slots.entries.iter_mut().find(|s| &s.address == address)?;
        slot.last_used = tick;
        // A batch stream that ended is replaced on the same connection (unless
        // the member has no Batch method: then calls stay unary).
        if let Some(mux) = &slot.conn.mux
            && mux.is_closed()
            && !mux.is_unsupported()
        {
            slot.conn.mux = Some(self.mux(&slot.conn.channel));
        }
        Some(slot.conn.clone())
    }

    fn mux(&self, channel: &AuthChannel) -> Arc<Mux> {
        Arc::new(Mux::new(channel.clone(), self.settings.max_message_bytes))
    }

    fn insert(&self, address: &Address, channel: AuthChannel) -> Conn {
        let mut slots = self.lock();
        slots.tick += 1;
        let tick = slots.tick;
        if let Some(existing) = slots.entries.iter_mut().find(|s| &s.address == address) {
            existing.last_used = tick;
            return existing.conn.clone();
        }
        if slots.entries.len() >= self.max
            && let Some(oldest) = slots
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(i, _)| i)
        {
            slots.entries.swap_remove(oldest);
        }
        let conn = Conn {
            mux: self.settings.batching.then(|| self.mux(&channel)),
            channel,
        };
        slots.entries.push(Slot {
            address: address.clone(),
            conn: conn.clone(),
            last_used: tick,
        });
        conn
    }

    fn endpoint(&self, address: &Address) -> Result<Endpoint, tonic::Status> {
        let endpoint = crate::tls::endpoint(address.uri(), self.settings.tls.as_ref())
            .map_err(tonic::Status::invalid_argument)?;
        Ok(endpoint
            .connect_timeout(self.settings.connect_timeout)
            .http2_keep_alive_interval(self.settings.keepalive_interval)
            .keep_alive_timeout(self.settings.keepalive_timeout)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // The lock is never held across an await or a call that can panic, so a
        // poisoned lock still guards consistent data.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(max: usize) -> Pool {
        Pool::new(&ClientConfig {
            max_channels: max,
            ..ClientConfig::default()
        })
    }

    fn addr(port: u16) -> Address {
        Address::parse(&format!("127.0.0.1:{port}")).expect("valid")
    }

    #[tokio::test]
    async fn keeps_at_most_max_and_evicts_least_recently_used() {
        let p = pool(2);
        // connect_lazy makes a channel without a peer; the pool does not care.
        let lazy = |a: &Address| {
            let channel = Endpoint::from_shared(a.uri().to_owned())
                .expect("valid")
                .connect_lazy();
            AuthChannel::new(channel, None)
        };
        let (a, b, c) = (addr(1), addr(2), addr(3));
        p.insert(&a, lazy(&a));
        p.insert(&b, lazy(&b));
        assert!(p.lookup(&a).is_some()); // a is now more recent than b
        p.insert(&c, lazy(&c));
        assert_eq!(p.len(), 2);
        assert!(
            p.lookup(&b).is_none(),
            "least recently used should be evicted"
        );
        assert!(p.lookup(&a).is_some());
        assert!(p.lookup(&c).is_some());

        p.evict(&a);
        assert!(p.lookup(&a).is_none());
        assert_eq!(p.len(), 1);
    }
}
