//! Executing a batch of pipelined requests in order.
//!
//! The batch is cut into runs: consecutive reads (one barrier, `reads.rs`),
//! consecutive writes (proposed together, `writes.rs`), and single local commands
//! between them (which may change how later commands run: HELLO, READMODE). A run
//! starts only after the one before it was answered, so every command sees the
//! effects of the commands before it, as in Redis. Replies are encoded as they
//! come and written out whenever enough have gathered.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::Shared;
use super::command::{self, Cmd};
use super::conn::ConnState;
use super::local::{self, Flow};
use super::resp::Reply;
use super::{reads, writes};

/// Where replies go: a buffer, written to the socket once it holds enough.
pub(crate) struct Output<'a, W> {
    pub(crate) buf: &'a mut BytesMut,
    pub(crate) writer: &'a mut W,
    pub(crate) flush_bytes: usize,
}

impl<W: AsyncWrite + Unpin> Output<'_, W> {
    /// Encodes `reply` in the connection's protocol.
    fn push(&mut self, conn: &ConnState, reply: &Reply) {
        reply.encode(conn.protocol, self.buf);
    }

    /// Writes the buffer out if it holds at least the flush threshold.
    async fn maybe_flush(&mut self) -> std::io::Result<()> {
        if self.buf.len() >= self.flush_bytes {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes the buffer out.
    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.writer.write_all(self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Runs `requests` in order, writing their replies to `out`.
pub(crate) async fn execute<W: AsyncWrite + Unpin>(
    shared: &Shared,
    conn: &mut ConnState,
    requests: &[Vec<Bytes>],
    out: &mut Output<'_, W>,
) -> std::io::Result<Flow> {
    let cmds: Vec<Result<Cmd, Reply>> = requests
        .iter()
        .map(|args| command::parse(args, &shared.limits))
        .collect();
    shared.ctx.metrics.redis_commands.inc_by(cmds.len() as u64);
    let mut i = 0;
    while i < cmds.len() {
        if !conn.authenticated && !may_run_unauthenticated(&cmds[i]) {
            out.push(
                conn,
                &Reply::Error("NOAUTH Authentication required.".into()),
            );
            i += 1;
            out.maybe_flush().await?;
            continue;
        }
        match &cmds[i] {
            Ok(Cmd::Read(_)) => {
                let run = run_of(&cmds[i..], |c| match c {
                    Cmd::Read(r) => Some(r),
                    _ => None,
                });
                let replies = reads::run(shared, conn, &run).await;
                for r in &replies {
                    out.push(conn, r);
                }
                // `run` answers at least one read; the rest comes next round.
                i += replies.len().max(1);
            }
            Ok(Cmd::Write(_)) => {
                let run = run_of(&cmds[i..], |c| match c {
                    Cmd::Write(w) => Some(w),
                    _ => None,
                });
                for r in &writes::run(shared, &run).await {
                    out.push(conn, r);
                }
                i += run.len();
            }
            Ok(Cmd::Local(l)) => {
                let (reply, flow) = local::run(l, shared, conn);
                out.push(conn, &reply);
                if flow == Flow::Close {
                    out.flush().await?;
                    return Ok(Flow::Close);
                }
                i += 1;
            }
            Err(reply) => {
                out.push(conn, reply);
                i += 1;
            }
        }
        out.maybe_flush().await?;
    }
    Ok(Flow::Continue)
}

/// AUTH, HELLO and QUIT run before a connection has authenticated (Redis's
/// `noauth` commands); so does answering a malformed command with its error.
fn may_run_unauthenticated(cmd: &Result<Cmd, Reply>) -> bool {
    use super::command::Local;
    matches!(
        cmd,
        Ok(Cmd::Local(
            Local::Auth(_) | Local::Hello { .. } | Local::Quit
        )) | Err(_)
    )
}

/// The commands at the start of `cmds` that `pick` accepts, up to the first one
/// it does not.
fn run_of<'a, T>(
    cmds: &'a [Result<Cmd, Reply>],
    pick: impl Fn(&'a Cmd) -> Option<&'a T>,
) -> Vec<&'a T> {
    cmds.iter()
        .map_while(|c| c.as_ref().ok().and_then(&pick))
        .collect()
}
