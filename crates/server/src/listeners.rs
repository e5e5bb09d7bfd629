//! Serving the gRPC and HTTP listeners, plain or with TLS (`tls/`).

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::{Router, TcpIncoming};

use crate::metrics::Metrics;
use crate::tls::{NodeTls, accept};

/// Resolves once `stop` turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves `router` on `listener` until `stop`.
pub(crate) fn spawn_grpc(
    router: Router,
    listener: TcpListener,
    tls: Option<&NodeTls>,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<JoinHandle<Result<(), tonic::transport::Error>>> {
    Ok(match tls {
        None => tokio::spawn(async move {
            // Serving from our own listener bypasses the builder's nodelay setting:
            // set it on every accepted socket, or small responses wait ~40 ms for a
            // delayed ACK (Nagle).
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            router
                .serve_with_incoming_shutdown(incoming, stopped(stop))
                .await
        }),
        Some(tls) => {
            // The accept task sets TCP_NODELAY on each socket before its handshake.
            let incoming = accept::start(listener, tls.grpc.clone(), "grpc", metrics)?;
            tokio::spawn(async move {
                router
                    .serve_with_incoming_shutdown(incoming.into_stream(), stopped(stop))
                    .await
            })
        }
    })
}

/// Serves the HTTP API `app` on `listener` until `stop`.
pub(crate) fn spawn_http(
    app: axum::Router,
    listener: TcpListener,
    tls: Option<&NodeTls>,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<JoinHandle<std::io::Result<()>>> {
    Ok(match tls {
        None => tokio::spawn(async move {
            use axum::serve::ListenerExt as _;
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!("cannot set TCP_NODELAY on an HTTP connection: {e}");
                }
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped(stop))
                .await
        }),
        Some(tls) => {
            let incoming = accept::start(listener, tls.client_ports.clone(), "http", metrics)?;
            tokio::spawn(async move {
                axum::serve(incoming, app)
                    .with_graceful_shutdown(stopped(stop))
                    .await
            })
        }
    })
}
