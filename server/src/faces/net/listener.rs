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
use super::options::ServeOptions;
use crate::access::tls::TlsListener;
use crate::Server;

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
