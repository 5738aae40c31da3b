//! Listening sockets for collectors that receive (StatsD, Graphite, collectd, Influx).
//!
//! A hot reload makes the job's new generation before it stops the old one. To keep the port
//! through that, a socket is **handed over**: the first generation binds it and records it
//! here under (protocol, address, job); the next generation of the same job, made while the
//! old one still holds it, gets the very same socket, so no datagram or connection falls in a
//! gap. When the last generation holding it stops, it closes. A generation made by another
//! copy of the plugin (its `.so` replaced) cannot see this table; for it the socket is bound
//! with `SO_REUSEPORT`, so it binds beside the old one rather than failing.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::Error;

/// How long a blocking `recv` or `accept` waits before its loop looks at the stop flag.
pub const POLL: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Udp,
    Tcp,
}

struct Record {
    kind: Kind,
    address: SocketAddr,
    job: String,
    socket: Weak<Socket>,
}

static HELD: Mutex<Vec<Record>> = Mutex::new(Vec::new());

/// A socket this job holds: a descriptor of the shared socket, which stays open while any
/// generation holds it.
pub struct Held<T> {
    socket: T,
    _shared: Arc<Socket>,
}

impl<T> std::ops::Deref for Held<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.socket
    }
}

/// A UDP socket on `address` for `job`, shared with the job's previous generation if it
/// still holds one. Reads time out after [`POLL`]. `recv_buffer` asks the kernel for a
/// receive buffer of that many bytes (it may grant less: `net.core.rmem_max`).
pub fn udp(address: &str, job: &str, recv_buffer: Option<usize>) -> Result<Held<UdpSocket>, Error> {
    let shared = shared(Kind::Udp, address, job, |socket| match recv_buffer {
        Some(bytes) => socket.set_recv_buffer_size(bytes),
        None => Ok(()),
    })?;
    let socket: UdpSocket = shared.try_clone().map_err(|e| io(address, e))?.into();
    socket
        .set_read_timeout(Some(POLL))
        .map_err(|e| io(address, e))?;
    Ok(Held {
        socket,
        _shared: shared,
    })
}

/// A TCP listener on `address` for `job`, shared with the job's previous generation if it
/// still holds one. `accept` times out after [`POLL`].
pub fn tcp(address: &str, job: &str) -> Result<Held<TcpListener>, Error> {
    let shared = shared(Kind::Tcp, address, job, |_| Ok(()))?;
    let socket: TcpListener = shared.try_clone().map_err(|e| io(address, e))?.into();
    Ok(Held {
        socket,
        _shared: shared,
    })
}

/// The receive buffer the kernel granted a UDP socket, in bytes.
pub fn recv_buffer(socket: &UdpSocket) -> usize {
    socket2::SockRef::from(socket)
        .recv_buffer_size()
        .unwrap_or(0)
}

fn shared(
    kind: Kind,
    address: &str,
    job: &str,
    configure: impl FnOnce(&Socket) -> std::io::Result<()>,
) -> Result<Arc<Socket>, Error> {
    let resolved = address
        .to_socket_addrs()
        .map_err(|e| format!("listen = {address:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("listen = {address:?}: the name has no address"))?;
    let mut held = HELD.lock().unwrap();
    held.retain(|h| h.socket.strong_count() > 0);
    if resolved.port() != 0 {
        if let Some(h) = held
            .iter()
            .find(|h| h.kind == kind && h.address == resolved)
        {
            if h.job != job {
                return Err(format!(
                    "listen = {address:?}: job {} of this plugin listens there already",
                    h.job
                ));
            }
            if let Some(socket) = h.socket.upgrade() {
                return Ok(socket);
            }
        }
    }
    let socket = bind(kind, resolved, configure).map_err(|e| io(address, e))?;
    // Recorded under the port it got, so `:0` can be handed over too.
    let address = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(resolved);
    let socket = Arc::new(socket);
    held.push(Record {
        kind,
        address,
        job: job.to_string(),
        socket: Arc::downgrade(&socket),
    });
    Ok(socket)
}

fn bind(
    kind: Kind,
    address: SocketAddr,
    configure: impl FnOnce(&Socket) -> std::io::Result<()>,
) -> std::io::Result<Socket> {
    let domain = Domain::for_address(address);
    let socket = match kind {
        Kind::Udp => Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?,
        Kind::Tcp => Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?,
    };
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    configure(&socket)?;
    socket.bind(&address.into())?;
    if kind == Kind::Tcp {
        socket.listen(1024)?;
        socket.set_read_timeout(Some(POLL))?;
    }
    Ok(socket)
}

fn io(address: &str, e: std::io::Error) -> Error {
    format!("listen = {address:?}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_generation_of_a_job_gets_the_same_socket() {
        let old = udp("127.0.0.1:0", "j", None).unwrap();
        let address = old.local_addr().unwrap().to_string();
        let new = udp(&address, "j", None).unwrap();
        // One datagram sent; whichever generation reads, it is the same socket.
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(b"x", &address).unwrap();
        drop(old);
        let mut buf = [0; 8];
        assert_eq!(new.recv(&mut buf).unwrap(), 1);
    }

    #[test]
    fn another_job_on_a_held_address_is_refused() {
        let listener = tcp("127.0.0.1:0", "x").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let _held = tcp(&address, "x").unwrap();
        let e = tcp(&address, "y").err().unwrap();
        assert!(e.contains("job x"), "{e}");
    }

    #[test]
    fn a_released_address_binds_again() {
        let listener = tcp("127.0.0.1:0", "r").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let held = tcp(&address, "r").unwrap();
        drop(held);
        drop(listener);
        let again = tcp(&address, "other").unwrap();
        assert_eq!(again.local_addr().unwrap().to_string(), address);
    }
}
