//! One client: a reader task that runs each complete line, and a writer task that sends
//! whatever the outbox holds (replies and pushes alike).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::options::ServeOptions;
use crate::access::auth::Roles;
use crate::faces::cmd::{self, Session};
use crate::faces::protocol::frame::Lines;
use crate::faces::protocol::reply::Error;
use crate::store::counters::{LocalCounts, Stat};
use crate::store::outbox::{Outbox, SLOW_SUBSCRIBER};
use crate::store::server::unix_now;
use crate::Server;

const READ_CHUNK: usize = 64 * 1024;
/// A client that sends requests faster than it reads the answers is not read from
/// until it catches up below this many bytes.
const OWN_BACKLOG: usize = 1 << 20;

/// Serves one client, plain or TLS: its two directions as `reader` and `writer`.
pub(super) async fn run<R, W>(
    mut reader: R,
    writer: W,
    peer: SocketAddr,
    server: Server,
    options: Arc<ServeOptions>,
    shutdown: CancellationToken,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let outbox = Arc::new(Outbox::new(server.config().max_pending_pushes));
    let id = server.next_id();
    let sink = server.connection_sink(format!("{peer}#{id}"), Arc::clone(&outbox));
    tracing::debug!(client = %sink.label, "connected");
    let writer = tokio::spawn(write_loop(writer, Arc::clone(&outbox)));

    let mut session = Session {
        server,
        sink,
        outbox: Arc::clone(&outbox),
        counts: LocalCounts::default(),
        buffering: false,
        now: unix_now(),
        quit: false,
        roles: match &options.tokens {
            Some(tokens) => tokens.anonymous(),
            None if options.allow_shutdown => Roles::ALL,
            None => Roles::READ_WRITE,
        },
        tokens: options.tokens.clone(),
        failed_auths: 0,
        journal_ticket: None,
        acks: Vec::new(),
        shutdown,
    };
    session.counts.incr(Stat::ClientsTotal);
    session.flush_counts();

    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let read = tokio::select! {
            _ = session.shutdown.cancelled() => break,
            _ = outbox.cut_off().cancelled() => break,
            read = reader.read_buf(&mut buf) => read,
        };
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(client = %session.sink.label, "read failed: {e}");
                session.counts.incr(Stat::EventErrs);
                break;
            }
        }
        session.counts.incr(Stat::EventReads);
        session.now = unix_now();

        let mut lines = Lines::new(&buf);
        for line in &mut lines {
            if line.len() > options.max_line {
                too_long(&mut session, options.max_line);
                break;
            }
            cmd::execute(line, &mut session);
            if session.quit {
                break;
            }
        }
        let consumed = lines.consumed();
        buf.advance(consumed);
        if !session.quit && buf.len() > options.max_line {
            too_long(&mut session, options.max_line);
        }
        session.flush_counts();
        commit_journal(&mut session).await;
        outbox.wake_writer();
        if session.quit {
            break;
        }
        tokio::select! {
            _ = session.shutdown.cancelled() => break,
            _ = outbox.wait_below(OWN_BACKLOG) => {}
        }
    }

    // No more pushes for a connection that is going away.
    session.server.subscriptions().remove_sink(session.sink.id);
    session.flush_counts();
    outbox.close();
    let _ = writer.await;
    tracing::debug!(client = %session.sink.label, "closed");
}

/// The batch's samples to the write-ahead log: with `fsync = always`, on disk before the
/// held acknowledgements leave (one fsync covers every connection waiting at that moment),
/// or refused if they cannot be; otherwise the log's writer is nudged and nobody waits.
async fn commit_journal(session: &mut Session) {
    let acks = std::mem::take(&mut session.acks);
    let Some(ticket) = session.journal_ticket.take() else {
        return;
    };
    if acks.is_empty() {
        if let Some(journal) = session.server.journal() {
            journal.nudge();
        }
        return;
    }
    let server = session.server.clone();
    let committed = tokio::task::spawn_blocking(move || server.commit_journal(ticket)).await;
    match committed {
        Ok(Ok(())) => session.outbox.release(),
        _ => {
            session
                .outbox
                .release_refusing(&acks, &Error::NotDurable.line());
            session.counts.add(Stat::ErrImmediate, acks.len() as u64);
        }
    }
}

fn too_long(session: &mut Session, max: usize) {
    tracing::warn!(client = %session.sink.label, "line longer than {max} bytes; disconnecting");
    session.counts.incr(Stat::LinesTooLong);
    session.reply().err(Error::LineTooLong(max));
    session.quit = true;
}

async fn write_loop<W: AsyncWrite + Unpin>(mut writer: W, outbox: Arc<Outbox>) {
    let mut buf = Vec::with_capacity(READ_CHUNK);
    let cut_off = outbox.cut_off();
    loop {
        let more = outbox.take(&mut buf).await;
        let written = if cut_off.is_cancelled() || !more {
            None
        } else {
            tokio::select! {
                written = writer.write_all(&buf) => Some(written),
                _ = cut_off.cancelled() => None,
            }
        };
        buf.clear();
        let Some(written) = written else { break };
        if buf.capacity() > 4 * READ_CHUNK {
            buf.shrink_to(READ_CHUNK);
        }
        outbox.written();
        if written.is_err() {
            // The client went away; its reader notices too.
            outbox.close();
            break;
        }
    }
    if cut_off.is_cancelled() {
        // Too far behind: what it did not read was dropped; tell it why, then hang up.
        let _ =
            tokio::time::timeout(Duration::from_secs(5), writer.write_all(SLOW_SUBSCRIBER)).await;
    }
    let _ = writer.shutdown().await;
}

/// As the original: no Nagle delay, and keepalives so dead peers are noticed.
pub(super) fn configure(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(30))
        .with_retries(10);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive);
}
