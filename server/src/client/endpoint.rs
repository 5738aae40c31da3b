//! A stat server as its clients see it (`spud`, spud-host's remote sink, the replicator):
//! an address, TLS if it speaks it, and the token to authenticate with. `connect` hands
//! back a connection that has already authenticated, so no client has to know about
//! `auth` or TLS.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Where a stat server is and how to prove who we are to it.
#[derive(Clone)]
pub struct Endpoint {
    addr: String,
    token: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.addr)
    }
}

impl Endpoint {
    /// A server at `addr` (`host:port`), without authentication.
    pub fn new(addr: impl Into<String>) -> Endpoint {
        Endpoint {
            addr: addr.into(),
            token: None,
            tls: None,
        }
    }

    /// Speaks TLS, trusting the server certificates `ca` signed; with `identity` (a
    /// certificate and its key), presents it to a server that asks (mutual TLS).
    pub fn tls(
        mut self,
        ca: Option<&Path>,
        identity: Option<(&Path, &Path)>,
    ) -> Result<Endpoint, String> {
        match (ca, identity) {
            (Some(ca), identity) => {
                self.tls = Some(crate::access::tls::client_config(ca, identity)?)
            }
            (None, Some(_)) => {
                return Err(
                    "a client certificate needs the CA of the server's certificate too".into(),
                )
            }
            (None, None) => {}
        }
        Ok(self)
    }

    /// Authenticates with the token on the first line of `file` (see `auth::read_token_file`).
    pub fn token_file(mut self, file: Option<&Path>) -> Result<Endpoint, String> {
        if let Some(file) = file {
            self.token = Some(crate::access::auth::read_token_file(file)?);
        }
        Ok(self)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Connects and, with a token, authenticates. A refused token is an error of kind
    /// `PermissionDenied` carrying the server's answer.
    pub fn connect(&self) -> io::Result<Connection> {
        let stream = match &self.tls {
            None => {
                let stream = TcpStream::connect(&self.addr)?;
                stream.set_nodelay(true)?;
                Stream::Tcp(stream)
            }
            Some(config) => {
                Stream::Tls(crate::access::tls::connect(&self.addr, Arc::clone(config))?)
            }
        };
        let mut conn = Connection { stream };
        if let Some(token) = &self.token {
            conn.authenticate(token)?;
        }
        Ok(conn)
    }
}

/// One connection to a stat server: read and write it like a socket.
#[derive(Debug)]
pub struct Connection {
    stream: Stream,
}

/// Plain TCP, or the local end of a TLS session's bridge (see `crate::access::tls::connect`).
#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Tls(UnixStream),
}

macro_rules! either {
    ($stream:expr, $s:ident => $e:expr) => {
        match $stream {
            Stream::Tcp($s) => $e,
            Stream::Tls($s) => $e,
        }
    };
}

impl Connection {
    fn authenticate(&mut self, token: &str) -> io::Result<()> {
        self.set_read_timeout(Some(Duration::from_secs(10)))?;
        self.write_all(format!("auth {token}\r\n").as_bytes())?;
        // Byte by byte: nothing after this line may be read into a buffer we then drop.
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while line.last() != Some(&b'\n') {
            if self.read(&mut byte)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection during auth",
                ));
            }
            line.push(byte[0]);
        }
        self.set_read_timeout(None)?;
        let line = String::from_utf8_lossy(&line);
        match line.trim_end().strip_prefix("ERR ") {
            Some(refused) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("the server refused the token: {refused}"),
            )),
            None => Ok(()),
        }
    }

    /// A second handle on the same connection (one thread reads, another writes).
    pub fn try_clone(&self) -> io::Result<Connection> {
        let stream = match &self.stream {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Tls(s) => Stream::Tls(s.try_clone()?),
        };
        Ok(Connection { stream })
    }

    /// Ends it in both directions (a thread blocked reading a clone wakes up).
    pub fn shutdown(&self) -> io::Result<()> {
        either!(&self.stream, s => s.shutdown(Shutdown::Both))
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        either!(&self.stream, s => s.set_read_timeout(timeout))
    }

    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        either!(&self.stream, s => s.set_write_timeout(timeout))
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        either!(&mut self.stream, s => s.read(buf))
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        either!(&mut self.stream, s => s.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        either!(&mut self.stream, s => s.flush())
    }
}
