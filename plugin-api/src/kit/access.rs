//! Locks for receivers. `allow = ["10.0.0.0/8", …]` lists the networks a receiver takes
//! data from: anything else is counted as `refused` and logged at most once a second. And
//! a receiver follows the stat server's protected mode: it listens beyond loopback only
//! with a lock (`allow`, or tokens where its protocol carries them) or `open = true`.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};

use ipnet::IpNet;

use crate::kit::intake::Intake;

/// Source networks a receiver takes data from; empty allows every source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allow(Vec<IpNet>);

impl Allow {
    /// Networks as `10.0.0.0/8`, `2001:db8::/32`, or single addresses (`192.0.2.7`).
    pub fn new<S: AsRef<str>>(networks: &[S]) -> Result<Allow, String> {
        networks
            .iter()
            .map(|n| {
                let n = n.as_ref().trim();
                n.parse::<IpNet>()
                    .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("allow: {n:?} is not a network (10.0.0.0/8) or an address")
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Allow)
    }

    /// Whether a list was given at all (a lock for protected mode).
    pub fn is_set(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether data from `ip` is taken. An IPv4 address reaching an IPv6 socket
    /// (`::ffff:10.1.2.3`) is matched as the IPv4 address it is.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Whether a connection from `peer` is served; one that is not is counted as refused.
    pub fn admits(&self, peer: SocketAddr, intake: &Intake) -> bool {
        let ok = self.permits(peer.ip());
        if !ok {
            intake.refused(peer);
        }
        ok
    }

    /// Receives one datagram on `socket`: its length, or None for one from a source not
    /// allowed (counted as refused, its bytes dropped). Without a list, a plain `recv`.
    pub fn recv(
        &self,
        socket: &UdpSocket,
        buf: &mut [u8],
        intake: &Intake,
    ) -> std::io::Result<Option<usize>> {
        if !self.is_set() {
            return socket.recv(buf).map(Some);
        }
        let (n, from) = socket.recv_from(buf)?;
        Ok(self.admits(from, intake).then_some(n))
    }
}

/// The lock of a receiver listening on `listen`: its `allow` list (options `allow` and
/// `open`), refused by protected mode when neither is given and `listen` reaches beyond
/// loopback.
pub fn source_lock<S: AsRef<str>>(listen: &str, allow: &[S], open: bool) -> Result<Allow, String> {
    let allow = Allow::new(allow)?;
    receiver_guard(
        listen,
        allow.is_set(),
        open,
        "allow = [\"10.0.0.0/8\", …] (the networks that may send)",
    )?;
    Ok(allow)
}

/// Protected mode for a receiver listening on `address` (`host:port`): beyond loopback it
/// needs its `lock` (named in the message: `allow`, `auth = true`) or `open = true`.
pub fn receiver_guard(address: &str, locked: bool, open: bool, lock: &str) -> Result<(), String> {
    if locked || open {
        return Ok(());
    }
    let addrs = address
        .to_socket_addrs()
        .map_err(|e| format!("listen {address:?}: {e}"))?;
    match addrs.into_iter().find(|a| !a.ip().is_loopback()) {
        None => Ok(()),
        Some(addr) => Err(format!(
            "refusing to listen on {addr} without a lock: anyone reaching it could write \
             keys. Give {lock}, or open = true to allow it knowingly (see docs/security.md)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_addresses_are_allowed_and_others_not() {
        let allow = Allow::new(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]).unwrap();
        assert!(allow.permits("10.1.2.3".parse().unwrap()));
        assert!(allow.permits("::ffff:10.1.2.3".parse().unwrap()));
        assert!(allow.permits("192.0.2.7".parse().unwrap()));
        assert!(!allow.permits("192.0.2.8".parse().unwrap()));
        assert!(allow.permits("2001:db8::1".parse().unwrap()));
        assert!(!allow.permits("127.0.0.1".parse().unwrap()));
        assert!(Allow::default().permits("203.0.113.1".parse().unwrap()));
        let e = Allow::new(&["10.0.0/8"]).unwrap_err();
        assert!(e.contains("\"10.0.0/8\" is not a network"), "{e}");
    }

    #[test]
    fn a_receiver_beyond_loopback_needs_a_lock_or_open() {
        assert!(receiver_guard("127.0.0.1:0", false, false, "allow").is_ok());
        let e = receiver_guard("0.0.0.0:0", false, false, "allow").unwrap_err();
        assert!(
            e.contains("refusing to listen on 0.0.0.0:0 without a lock"),
            "{e}"
        );
        assert!(e.contains("Give allow, or open = true"), "{e}");
        assert!(receiver_guard("0.0.0.0:0", true, false, "allow").is_ok());
        assert!(receiver_guard("0.0.0.0:0", false, true, "allow").is_ok());
    }
}
