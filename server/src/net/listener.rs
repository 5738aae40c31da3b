//! Accepting connections, and stopping gracefully: stop accepting, let every connection
//! flush what it owes, then return.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection;
use crate::tls::TlsListener;
use crate::Server;

/// How the TCP layer treats clients.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Longest line accepted; a longer one gets `ERR line_too_long` and the connection closes.
    pub max_line: usize,
    /// Without tokens: whether any client may `shutdown` the server and control the host
    /// (only when listening on loopback).
    pub allow_shutdown: bool,
    /// Tokens and their roles; None: no authentication, as the original.
    pub tokens: Option<Arc<crate::auth::Tokens>>,
    /// TLS on every connection (see `crate::tls::server_config`); None: plain TCP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How long connections get to flush their replies when the server stops.
    pub drain_timeout: Duration,
}

impl ServeOptions {
    /// The defaults for a server listening on `addr`.
    pub fn for_addr(addr: SocketAddr) -> ServeOptions {
        ServeOptions {
            max_line: 128 * 1024,
            allow_shutdown: addr.ip().is_loopback(),
            tokens: None,
            tls: None,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// Serves `server` on `listener` until `shutdown` is cancelled (by the caller or by a
/// client's `shutdown`), then waits for connections to flush.
pub async fn serve(
    server: Server,
    listener: TcpListener,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let options = Arc::new(options);
    let tracker = TaskTracker::new();
    match options.tls.clone() {
        None => {
            loop {
                let accepted = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    accepted = listener.accept() => accepted,
                };
                match accepted {
                    Ok((stream, peer)) => {
                        connection::configure(&stream);
                        let halves = stream.into_split();
                        spawn(&tracker, halves, peer, &server, &options, &shutdown);
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: say so, and keep serving.
                        tracing::warn!("accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            // No new connections while the others drain.
            drop(listener);
        }
        Some(config) => {
            let mut tls = TlsListener::new(listener, config, connection::configure)?;
            loop {
                let accepted = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    accepted = tls.next() => accepted,
                };
                let Some((stream, peer)) = accepted else {
                    break;
                };
                let halves = tokio::io::split(stream);
                spawn(&tracker, halves, peer, &server, &options, &shutdown);
            }
        }
    }
    tracker.close();
    if tokio::time::timeout(options.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} connections had not finished writing after {:?}; closing them",
            tracker.len(),
            options.drain_timeout
        );
    }
    Ok(())
}

/// Serves one accepted connection, plain or TLS, on a task the tracker waits for.
fn spawn<R, W>(
    tracker: &TaskTracker,
    (reader, writer): (R, W),
    peer: SocketAddr,
    server: &Server,
    options: &Arc<ServeOptions>,
    shutdown: &CancellationToken,
) where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tracker.spawn(connection::run(
        reader,
        writer,
        peer,
        server.clone(),
        Arc::clone(options),
        shutdown.clone(),
    ));
}
