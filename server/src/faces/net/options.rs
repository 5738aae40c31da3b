//! How the TCP layer treats clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How the TCP layer treats clients.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Longest line accepted; a longer one gets `ERR line_too_long` and the connection closes.
    pub max_line: usize,
    /// Without tokens: whether any client may `shutdown` the server and control the host
    /// (only when listening on loopback).
    pub allow_shutdown: bool,
    /// Tokens and their roles; None: no authentication, as the original.
    pub tokens: Option<Arc<crate::access::auth::Tokens>>,
    /// TLS on every connection (see `crate::access::tls::server_config`); None: plain TCP.
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
