//! TLS (rustls, with ring) for the line protocol's and HTTP's listeners, and for the
//! blocking clients (`spud`, spud-host's remote sink, the replicator). Certificates and
//! keys are PEM files. A client CA on the server makes TLS mutual: only clients with a
//! certificate it signed get through the handshake.

use std::io;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long a handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// A private key: its PEM file (refused if others may read it), or `env:NAME` / `file:PATH`.
fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = spud_access::read_secret_setting(path)?;
    PrivateKeyDer::from_pem_slice(pem.expose().as_bytes())
        .map_err(|e| format!("{}: not a PEM private key: {e}", path.display()))
}

fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certs(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// A server's TLS: its certificate chain and key, and with `client_ca`, mutual TLS.
pub fn server_config(
    cert: &Path,
    key_file: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, String> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            )
            .build()
            .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs(cert)?, key(key_file)?)
        .map_err(|e| format!("{} and {}: {e}", cert.display(), key_file.display()))?;
    Ok(Arc::new(config))
}

/// A client's TLS: the CA that signed the server's certificate, and a certificate of its
/// own for a server that asks for one.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(ca)?);
    let config = match identity {
        Some((cert, key_file)) => builder
            .with_client_auth_cert(certs(cert)?, key(key_file)?)
            .map_err(|e| format!("{}: {e}", cert.display()))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The name a server's certificate must carry: the host part of `host:port`.
fn server_name(addr: &str) -> io::Result<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    };
    ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))
}

/// Connects to `addr` over TLS for a blocking client. The TLS session runs on a thread of
/// its own, bridged to the returned socket: the caller reads and writes (from two threads,
/// if it likes) plain bytes. Handshake errors (an unknown CA, a refused client
/// certificate) come back here.
pub fn connect(addr: &str, config: Arc<ClientConfig>) -> io::Result<UnixStream> {
    let name = server_name(addr)?;
    let (ours, theirs) = UnixStream::pair()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let addr = addr.to_string();
    std::thread::Builder::new()
        .name("tls".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => return drop(tx.send(Err(e))),
            };
            runtime.block_on(async move {
                let handshake = async {
                    let tcp = TcpStream::connect(&addr).await?;
                    tcp.set_nodelay(true)?;
                    TlsConnector::from(config).connect(name, tcp).await
                };
                let mut tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => return drop(tx.send(Err(e))),
                    Err(_) => {
                        let e = io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out");
                        return drop(tx.send(Err(e)));
                    }
                };
                let local = theirs
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::UnixStream::from_std(theirs));
                let mut local = match local {
                    Ok(l) => l,
                    Err(e) => return drop(tx.send(Err(e))),
                };
                let _ = tx.send(Ok(()));
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut local).await;
            });
        })?;
    rx.recv()
        .unwrap_or_else(|_| Err(io::Error::other("the TLS thread ended")))?;
    Ok(ours)
}

/// Accepts TLS connections: the handshakes run on tasks of their own (a slow client holds
/// up no one), and finished ones are handed out in order.
pub struct TlsListener {
    ready: mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // Closes the listening socket with it.
        self.accepting.abort();
    }
}

impl TlsListener {
    /// Accepts on `listener`; `prepare` sets each new socket's options before the handshake.
    pub fn new(
        listener: tokio::net::TcpListener,
        config: Arc<ServerConfig>,
        prepare: fn(&TcpStream),
    ) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!("accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                prepare(&tcp);
                let (acceptor, handed) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = handed.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::info!("TLS handshake with {peer} failed: {e}"),
                        Err(_) => tracing::info!("TLS handshake with {peer} timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(TlsListener {
            ready,
            local,
            accepting,
        })
    }

    /// The next connection whose handshake succeeded; None once nobody accepts any more.
    pub async fn next(
        &mut self,
    ) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)> {
        self.ready.recv().await
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.next().await {
            Some(accepted) => accepted,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}
