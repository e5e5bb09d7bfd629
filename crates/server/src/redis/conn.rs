//! One client connection: read what arrives, split off complete requests (at
//! most a pipeline's worth), run them, write the replies, repeat. Bytes are only
//! read when no complete request is waiting, so a client that sends faster than
//! it is served is held back by TCP, not buffered. A malformed request is
//! answered with a protocol error and ends this connection only.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use keel_proto::v1::ReadMode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::Shared;
use super::local::Flow;
use super::parse::RequestParser;
use super::pipeline::{self, Output};
use super::resp::{Protocol, Reply};

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 << 10;

/// What a connection remembers between commands.
#[derive(Debug)]
pub(crate) struct ConnState {
    /// Unique on this node (CLIENT ID, HELLO).
    pub(crate) id: u64,
    /// RESP2 until HELLO 3.
    pub(crate) protocol: Protocol,
    /// CLIENT SETNAME.
    pub(crate) name: Option<Bytes>,
    /// READMODE; `Default` is the node's `--default-read-mode`.
    pub(crate) read_mode: ReadMode,
    /// Whether the connection may run commands: from the start without a
    /// bearer token configured, after AUTH (or HELLO AUTH) with one.
    pub(crate) authenticated: bool,
    /// The client's address, for the log.
    pub(crate) peer: Option<SocketAddr>,
}

impl ConnState {
    /// A fresh connection's state.
    pub(crate) fn new(id: u64, authenticated: bool, peer: Option<SocketAddr>) -> Self {
        ConnState {
            id,
            protocol: Protocol::Resp2,
            name: None,
            read_mode: ReadMode::Default,
            authenticated,
            peer,
        }
    }
}

/// Serves one connection (its two halves, plain or TLS) until the client
/// leaves, breaks the protocol, or the node stops.
pub(crate) async fn serve<R, W>(
    shared: Arc<Shared>,
    (mut reader, mut writer): (R, W),
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let id = shared.next_client_id();
    let mut conn = ConnState::new(id, shared.token.is_none(), Some(peer));
    let mut parser = RequestParser::default();
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut output = BytesMut::with_capacity(READ_CHUNK);
    let limits = &shared.limits;
    loop {
        let mut batch = Vec::new();
        let mut broken = None;
        while batch.len() < limits.max_pipeline {
            match parser.next(&mut input, limits) {
                Ok(Some(args)) => batch.push(args),
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        let mut out = Output {
            buf: &mut output,
            writer: &mut writer,
            flush_bytes: limits.flush_bytes,
        };
        if !batch.is_empty() {
            match pipeline::execute(&shared, &mut conn, &batch, &mut out).await {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close) | Err(_) => return,
            }
        }
        if let Some(e) = broken {
            // Answer what came before, then say why, then hang up: there is no
            // telling where the next request would start.
            shared.ctx.metrics.redis_protocol_errors.inc();
            tracing::debug!(client = id, "closing a Redis connection: {e}");
            Reply::err(e.to_string()).encode(conn.protocol, out.buf);
            let _ = out.flush().await;
            let _ = writer.shutdown().await;
            return;
        }
        if out.flush().await.is_err() {
            return;
        }
        if batch.len() == limits.max_pipeline {
            // More complete requests may be waiting in the buffer.
            continue;
        }
        input.reserve(READ_CHUNK);
        tokio::select! {
            read = reader.read_buf(&mut input) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            () = super::stopped(&mut stop) => return,
        }
    }
}
