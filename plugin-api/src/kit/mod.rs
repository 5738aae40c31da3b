//! Small things several collectors need: talking to line-oriented services over TCP within
//! a deadline, running another program within one ([`run`]), reporting a target's
//! health without flooding the log, and, for collectors that receive, sockets that survive a
//! reload ([`listen`]), figures about what arrived ([`intake`]) and locks on who may send
//! ([`access`]).

pub mod access;
pub mod intake;
pub mod lines;
pub mod listen;
pub mod run;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::{Error, Host};

/// A connection to a line-oriented service (memcached, perlbal, mogilefsd), kept open
/// between collects and made again when it breaks. Every read and write has a deadline.
pub struct LineClient {
    address: String,
    timeout: Duration,
    conn: Option<BufReader<TcpStream>>,
}

impl LineClient {
    /// A client for `address` (`host:port`); nothing is connected yet.
    pub fn new(address: impl Into<String>, timeout: Duration) -> LineClient {
        LineClient {
            address: address.into(),
            timeout,
            conn: None,
        }
    }

    /// Sends `command` (a line ending is added) and returns the reply's lines, without
    /// their line endings, up to the line for which `is_end` is true (not included).
    pub fn request(
        &mut self,
        command: &str,
        is_end: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, Error> {
        let result = self.try_request(command, &is_end);
        if result.is_err() {
            // Whatever state the connection is in, the next collect starts afresh.
            self.conn = None;
        }
        result
    }

    fn try_request(
        &mut self,
        command: &str,
        is_end: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>, Error> {
        if self.conn.is_none() {
            self.conn = Some(BufReader::new(self.connect()?));
        }
        // One deadline for the whole request, however the answer trickles in.
        let deadline = std::time::Instant::now() + self.timeout;
        let conn = self.conn.as_mut().expect("connected");
        let address = &self.address;
        conn.get_mut()
            .write_all(format!("{command}\r\n").as_bytes())
            .map_err(|e| format!("{address}: sending {command:?}: {e}"))?;
        let mut lines = Vec::new();
        let mut line = String::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let timeout = self.timeout;
            let too_slow =
                || format!("{address}: no whole answer to {command:?} within {timeout:?}");
            if left.is_zero() {
                return Err(too_slow());
            }
            conn.get_ref().set_read_timeout(Some(left)).ok();
            line.clear();
            let n = conn.read_line(&mut line).map_err(|e| match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => too_slow(),
                _ => format!("{address}: reading the answer to {command:?}: {e}"),
            })?;
            if n == 0 {
                return Err(format!("{address} closed the connection"));
            }
            let text = line.trim_end_matches(['\r', '\n']);
            if is_end(text) {
                return Ok(lines);
            }
            lines.push(text.to_string());
        }
    }

    fn connect(&self) -> Result<TcpStream, Error> {
        let address = &self.address;
        let addrs = address
            .to_socket_addrs()
            .map_err(|e| format!("{address}: {e}"))?;
        let mut last = format!("{address}: no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(self.timeout)).ok();
                    stream.set_write_timeout(Some(self.timeout)).ok();
                    stream.set_nodelay(true).ok();
                    return Ok(stream);
                }
                Err(e) => last = format!("{address}: {e}"),
            }
        }
        Err(last)
    }
}

/// A target's health as the `status` sample, set on every collect. The log gets one line
/// when the status changes (down, back up), not one per collect.
#[derive(Default)]
pub struct Health {
    last: Option<String>,
}

impl Health {
    /// Sets `status` to `status`; logs when it differs from the last one. `detail` says why,
    /// for a status other than the usual.
    pub fn report(&mut self, host: &Host, status: &str, detail: Option<&str>) {
        self.report_as(host, "status", status, detail);
    }

    /// The same under another key (one `Health` per target when a job has several).
    pub fn report_as(&mut self, host: &Host, key: &str, status: &str, detail: Option<&str>) {
        host.set(key, status);
        if self.last.as_deref() != Some(status) {
            match (detail, &self.last) {
                (Some(why), _) => host.warn(format_args!("{key} {status}: {why}")),
                (None, Some(before)) => host.info(format_args!("{key} {status} (was {before})")),
                (None, None) => {}
            }
            self.last = Some(status.to_string());
        }
    }
}

/// `name value` lines (the original's `^([\w:]+)\s+(.+)$`, widened to every character a
/// key may hold, `-` and `.` included): the name, and the rest.
pub fn name_value(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once(char::is_whitespace)?;
    let value = value.trim();
    (crate::is_valid_key(name) && !value.is_empty()).then_some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_value_lines() {
        assert_eq!(name_value("uptime 100"), Some(("uptime", "100")));
        assert_eq!(
            name_value("queries  7 per s "),
            Some(("queries", "7 per s"))
        );
        assert_eq!(name_value("."), None);
        assert_eq!(name_value("queue.depth 17"), Some(("queue.depth", "17")));
        assert_eq!(name_value("bad/name 1"), None);
        assert_eq!(name_value("lonely"), None);
    }
}
