//! Redis' protected mode, for every server face: reachable beyond loopback only with
//! authentication, or when told knowingly that anyone may use it.

use std::net::SocketAddr;

/// A server reachable beyond loopback must either check tokens or have been told
/// explicitly that anyone may use it. `with_tokens` and `open` name the settings that say
/// so, for the message.
pub fn protected_mode(
    authenticated: bool,
    addrs: impl IntoIterator<Item = SocketAddr>,
    with_tokens: &str,
    open: &str,
) -> Result<(), String> {
    if authenticated {
        return Ok(());
    }
    match addrs.into_iter().find(|a| !a.ip().is_loopback()) {
        None => Ok(()),
        Some(addr) => Err(format!(
            "refusing to listen on {addr} without authentication: anyone reaching it could \
             read and write every key. Give {with_tokens} or a TLS client CA (see \
             docs/security.md), or {open} to allow it knowingly"
        )),
    }
}
