//! Listening sockets the host keeps for receiving jobs, so that every generation of a job,
//! those of a replaced `.so` included, reads from one socket and nothing sent to it falls in
//! a gap (`spud_plugin_api::kit::listen`). A plugin asks through the hook the loader hands
//! every library (`loading::library::offer_sockets`); the answer comes from the job being
//! made on this thread at that moment, whose generation then keeps the socket open.

use std::cell::RefCell;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::IntoRawFd;
use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::{RErr, RNone, ROk, ROption, RResult, RSome, RStr, RString};
use spud_plugin_api::ffi::SocketsHook;

use crate::jobs::job_host::JobHost;

thread_local! {
    /// The job whose plugin's `new_job` runs on this thread now.
    static MAKING: RefCell<Option<Arc<JobHost>>> = const { RefCell::new(None) };
}

/// The hook plugins call.
pub const HOOK: SocketsHook = SocketsHook { held_socket };

/// Runs `make` (a plugin's `new_job`) with `host` as the job a socket is asked for.
pub fn while_making<R>(host: &Arc<JobHost>, make: impl FnOnce() -> R) -> R {
    let before = MAKING.with(|m| m.replace(Some(Arc::clone(host))));
    let made = make();
    MAKING.with(|m| *m.borrow_mut() = before);
    made
}

extern "C" fn held_socket(
    tcp: bool,
    address: RStr<'_>,
    _job: RStr<'_>,
    recv_buffer: u64,
) -> ROption<RResult<i32, RString>> {
    let Some(host) = MAKING.with(|m| m.borrow().clone()) else {
        return RNone;
    };
    let recv_buffer = (recv_buffer > 0).then_some(recv_buffer as usize);
    // The plugin owns the descriptor from here on.
    match host.held_socket(tcp, address.as_str(), recv_buffer) {
        Ok(fd) => RSome(ROk(fd.into_raw_fd())),
        Err(e) => RSome(RErr(e.into())),
    }
}

/// Wakes a reader blocked on `socket`: an empty datagram to a UDP socket, a connection
/// closed at once to a TCP listener. A receiver takes either as nothing.
pub fn wake(socket: &socket2::Socket) {
    let Some(mut to) = socket.local_addr().ok().and_then(|a| a.as_socket()) else {
        return;
    };
    if to.ip().is_unspecified() {
        to.set_ip(match to {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    match socket.r#type() {
        Ok(socket2::Type::DGRAM) => {
            let from: SocketAddr = match to {
                SocketAddr::V4(_) => (Ipv4Addr::LOCALHOST, 0).into(),
                SocketAddr::V6(_) => (Ipv6Addr::LOCALHOST, 0).into(),
            };
            if let Ok(udp) = UdpSocket::bind(from) {
                let _ = udp.send_to(&[], to);
            }
        }
        Ok(socket2::Type::STREAM) => {
            let _ = TcpStream::connect_timeout(&to, Duration::from_millis(50));
        }
        _ => {}
    }
}
