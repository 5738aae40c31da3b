//! Listening sockets for collectors that receive (StatsD, Graphite, collectd, Influx).
//!
//! A hot reload makes the job's new generation before it stops the old one. To keep the port
//! through that, the socket is **held by the host** and shared: the first generation asks the
//! host for it in `new_job` (the host binds it and records it under protocol, address and
//! job), and every later generation of the same job, the generations of a replaced `.so`
//! included, gets a descriptor of the very same socket. No datagram or connection falls in a gap, and what
//! waits in the socket when the old generation stops is read by the new one. When the last
//! generation holding it is gone, it closes. Under a host that keeps no sockets (an older
//! host, an isolated job's worker, a call outside `new_job`) the plugin keeps the table itself, shared by the
//! generations of one copy of the plugin; each socket is then bound with `SO_REUSEPORT`, so
//! a replaced `.so` binds beside the old one rather than failing.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::Error;

/// How long a blocking `recv` or `accept` waits before its loop looks at the stop flag.
pub const POLL: Duration = Duration::from_millis(100);

/// The same, on a socket the host keeps: a host of plugin-api 0.1.6 or later wakes a
/// stopping job's reads itself (an empty datagram, a connection closed at once; a receiver
/// takes either as nothing, and the host wakes again until the job has stopped), so an
/// idle receiver wakes once in five seconds, not ten times a second.
pub const HELD_POLL: Duration = Duration::from_secs(5);

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

/// Sockets by (protocol, address, job): a job's generations share one socket while any of
/// them holds it. The host keeps one such table for every plugin; a plugin whose host keeps
/// none uses its own.
pub struct Sockets(Mutex<Vec<Record>>);

impl Default for Sockets {
    fn default() -> Sockets {
        Sockets::new()
    }
}

/// This plugin library's own table, for a host that keeps no sockets.
static LOCAL: Sockets = Sockets::new();

/// A descriptor of the socket the host keeps for `job` on `address`; None where it keeps none.
fn from_host(
    tcp: bool,
    address: &str,
    job: &str,
    recv_buffer: Option<usize>,
) -> Option<Result<Socket, Error>> {
    let hook = crate::ffi::sockets_hook()?;
    let answer = (hook.held_socket)(
        tcp,
        address.into(),
        job.into(),
        recv_buffer.unwrap_or(0) as u64,
    );
    Some(match answer.into_option()?.into_result() {
        // SAFETY: the host made this descriptor for this plugin to own and close.
        Ok(fd) => Ok(unsafe { <Socket as std::os::fd::FromRawFd>::from_raw_fd(fd) }),
        Err(e) => Err(e.into()),
    })
}

/// A socket this job holds: a descriptor of the shared socket, which stays open while any
/// generation holds it.
pub struct Held<T> {
    socket: T,
    /// The plugin's own table's socket; None when the host holds it.
    _shared: Option<Arc<Socket>>,
}

impl<T> std::ops::Deref for Held<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.socket
    }
}

/// A UDP socket on `address` for `job`, the one its other generations hold if any does.
/// Reads time out after [`HELD_POLL`] (the host keeps the socket) or [`POLL`]. `recv_buffer` asks the kernel for a receive buffer of that
/// many bytes (it may grant less: `net.core.rmem_max`).
pub fn udp(address: &str, job: &str, recv_buffer: Option<usize>) -> Result<Held<UdpSocket>, Error> {
    let (socket, shared) = match from_host(false, address, job, recv_buffer) {
        Some(socket) => (socket?, None),
        None => {
            let shared = LOCAL.udp(address, job, recv_buffer)?;
            (
                shared.try_clone().map_err(|e| io(address, e))?,
                Some(shared),
            )
        }
    };
    let socket: UdpSocket = socket.into();
    socket
        .set_read_timeout(Some(poll(&shared)))
        .map_err(|e| io(address, e))?;
    Ok(Held {
        socket,
        _shared: shared,
    })
}

/// A TCP listener on `address` for `job`, the one its other generations hold if any does.
/// `accept` times out after [`HELD_POLL`] (the host keeps the socket) or [`POLL`].
pub fn tcp(address: &str, job: &str) -> Result<Held<TcpListener>, Error> {
    let (socket, shared) = match from_host(true, address, job, None) {
        Some(socket) => (socket?, None),
        None => {
            let shared = LOCAL.tcp(address, job)?;
            (
                shared.try_clone().map_err(|e| io(address, e))?,
                Some(shared),
            )
        }
    };
    socket
        .set_read_timeout(Some(poll(&shared)))
        .map_err(|e| io(address, e))?;
    Ok(Held {
        socket: socket.into(),
        _shared: shared,
    })
}

/// How long reads wait: `HELD_POLL` on a socket the host keeps (and wakes), else `POLL`.
fn poll(own: &Option<Arc<Socket>>) -> Duration {
    match own {
        None => HELD_POLL,
        Some(_) => POLL,
    }
}

impl Sockets {
    /// An empty table.
    pub const fn new() -> Sockets {
        Sockets(Mutex::new(Vec::new()))
    }

    /// The UDP socket on `address` for `job`: the one held already, or a new one.
    pub fn udp(
        &self,
        address: &str,
        job: &str,
        recv_buffer: Option<usize>,
    ) -> Result<Arc<Socket>, Error> {
        self.shared(Kind::Udp, address, job, |socket| match recv_buffer {
            Some(bytes) => socket.set_recv_buffer_size(bytes),
            None => Ok(()),
        })
    }

    /// The TCP listener on `address` for `job`: the one held already, or a new one.
    pub fn tcp(&self, address: &str, job: &str) -> Result<Arc<Socket>, Error> {
        self.shared(Kind::Tcp, address, job, |_| Ok(()))
    }

    fn shared(
        &self,
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
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|h| h.socket.strong_count() > 0);
        if resolved.port() != 0 {
            if let Some(h) = held
                .iter()
                .find(|h| h.kind == kind && h.address == resolved)
            {
                if h.job != job {
                    return Err(format!(
                        "listen = {address:?}: job {} listens there already",
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
}

/// The receive buffer the kernel granted a UDP socket, in bytes.
pub fn recv_buffer(socket: &UdpSocket) -> usize {
    socket2::SockRef::from(socket)
        .recv_buffer_size()
        .unwrap_or(0)
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

    fn udp(address: &str, job: &str) -> Result<UdpSocket, Error> {
        let shared = TABLE.udp(address, job, None)?;
        Ok(shared.try_clone().unwrap().into())
    }

    fn tcp(address: &str, job: &str) -> Result<Arc<Socket>, Error> {
        TABLE.tcp(address, job)
    }

    static TABLE: Sockets = Sockets::new();

    fn address_of(socket: &Socket) -> String {
        socket
            .local_addr()
            .unwrap()
            .as_socket()
            .unwrap()
            .to_string()
    }

    #[test]
    fn the_next_generation_of_a_job_gets_the_same_socket() {
        let old = TABLE.udp("127.0.0.1:0", "j", None).unwrap();
        let address = address_of(&old);
        let new = udp(&address, "j").unwrap();
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
        let address = address_of(&listener);
        let _held = tcp(&address, "x").unwrap();
        let e = tcp(&address, "y").err().unwrap();
        assert!(e.contains("job x"), "{e}");
    }

    #[test]
    fn a_released_address_binds_again() {
        let listener = tcp("127.0.0.1:0", "r").unwrap();
        let address = address_of(&listener);
        let held = tcp(&address, "r").unwrap();
        drop(held);
        drop(listener);
        let again = tcp(&address, "other").unwrap();
        assert_eq!(address_of(&again), address);
    }
}
