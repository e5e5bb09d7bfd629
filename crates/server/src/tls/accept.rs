//! The TLS side of a listener: accepts TCP connections, runs each handshake in
//! its own task (so a slow or silent client holds up nobody), and hands the
//! established streams to the server. A failed handshake — wrong CA, expired or
//! missing certificate, not TLS at all — is logged with the remote address and
//! the reason, and counted in `keel_tls_handshake_failures_total`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::metrics::Metrics;

/// A handshake not done by then is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on handshakes in progress at once, per listener; further connections
/// wait in the kernel's accept queue.
const MAX_HANDSHAKES: usize = 256;
/// Established connections not yet taken by the server.
const READY_QUEUE: usize = 64;

/// Established TLS connections of one listener.
#[derive(Debug)]
pub struct TlsIncoming {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

/// Starts accepting on `listener` with `config`. `name` (`grpc`, `http`,
/// `redis`) labels the log lines and the metric. The accept task ends once the
/// returned [`TlsIncoming`] is dropped.
pub fn start(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    name: &'static str,
    metrics: Arc<Metrics>,
) -> io::Result<TlsIncoming> {
    let local = listener.local_addr()?;
    let (tx, ready) = mpsc::channel(READY_QUEUE);
    tokio::spawn(accept_loop(
        listener,
        TlsAcceptor::from(config),
        name,
        metrics,
        tx,
    ));
    Ok(TlsIncoming { ready, local })
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    name: &'static str,
    metrics: Arc<Metrics>,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause, as hyper does.
                    tracing::warn!(listener = name, "cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(listener = name, %peer, "cannot set TCP_NODELAY: {e}");
        }
        let acceptor = acceptor.clone();
        let metrics = metrics.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
            let failure = match outcome {
                Ok(Ok(stream)) => {
                    let _ = tx.send((stream, peer)).await;
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no handshake within {HANDSHAKE_TIMEOUT:?}"),
            };
            tracing::warn!(
                listener = name,
                %peer,
                "refused a TLS connection from {peer}: {failure}"
            );
            metrics.tls_handshake_failed(name);
        });
    }
}

impl TlsIncoming {
    /// The next established connection; `None` once the accept task is gone.
    pub async fn next(&mut self) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
        self.ready.recv().await
    }

    /// The connections as a stream, for tonic's `serve_with_incoming`.
    pub fn into_stream(
        self,
    ) -> impl futures::Stream<Item = Result<TlsStream<TcpStream>, io::Error>> + Send + 'static {
        futures::stream::unfold(self, |mut incoming| async move {
            let (stream, _) = incoming.next().await?;
            Some((Ok(stream), incoming))
        })
    }
}

impl axum::serve::Listener for TlsIncoming {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.next().await {
            Some(connection) => connection,
            // The accept task only ends when this is dropped; never here.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
