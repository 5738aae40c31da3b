//! A blocking connection to a stat server, for the command line's short conversations.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use spud_server::client::endpoint::{Connection, Endpoint};

/// Why a conversation with the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// It could not be reached, or it went away.
    #[error("cannot talk to the stat server at {addr}: {source}")]
    Unreachable {
        addr: String,
        source: std::io::Error,
    },
    /// It answered with an error line.
    #[error("the server says: {0}")]
    Refused(String),
}

impl ClientError {
    /// The exit code a script can rely on: 69 (EX_UNAVAILABLE) for an unreachable server,
    /// 1 for an error answer.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Unreachable { .. } => 69,
            ClientError::Refused(_) => 1,
        }
    }
}

pub struct Client {
    addr: String,
    reader: BufReader<Connection>,
    writer: Connection,
}

impl Client {
    pub fn connect(server: &Endpoint) -> Result<Client, ClientError> {
        let unreachable = |source: std::io::Error| match source.kind() {
            std::io::ErrorKind::PermissionDenied => ClientError::Refused(source.to_string()),
            _ => ClientError::Unreachable {
                addr: server.to_string(),
                source,
            },
        };
        let stream = server.connect().map_err(unreachable)?;
        let writer = stream.try_clone().map_err(unreachable)?;
        Ok(Client {
            addr: server.to_string(),
            reader: BufReader::new(stream),
            writer,
        })
    }

    fn gone(&self, source: std::io::Error) -> ClientError {
        ClientError::Unreachable {
            addr: self.addr.clone(),
            source,
        }
    }

    /// Sends one line (a line ending is added).
    pub fn send(&mut self, line: &str) -> Result<(), ClientError> {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .map_err(|e| self.gone(e))
    }

    /// The next line from the server, without its line ending; None when it closed.
    pub fn line(&mut self) -> Result<Option<String>, ClientError> {
        let mut buf = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| self.gone(e))?;
        if n == 0 {
            return Ok(None);
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
    }

    /// Sends a command whose answer is `OK` lines ending with `OK done` (or one `ERR`), and
    /// returns the lines' text without the `OK `.
    pub fn multi(&mut self, command: &str) -> Result<Vec<String>, ClientError> {
        self.send(command)?;
        let mut out = Vec::new();
        loop {
            let line = self.expect_line()?;
            if let Some(err) = line.strip_prefix("ERR ") {
                return Err(ClientError::Refused(err.to_string()));
            }
            match line.strip_prefix("OK ") {
                Some("done") => return Ok(out),
                Some(text) => out.push(text.to_string()),
                None => {} // a push to a subscription on this connection
            }
        }
    }

    /// Sends a command answered by one line: `OK ...` or `ERR ...`.
    pub fn single(&mut self, command: &str) -> Result<String, ClientError> {
        self.send(command)?;
        let line = self.expect_line()?;
        match line.strip_prefix("ERR ") {
            Some(err) => Err(ClientError::Refused(err.to_string())),
            None => Ok(line.strip_prefix("OK ").unwrap_or(&line).to_string()),
        }
    }

    fn expect_line(&mut self) -> Result<String, ClientError> {
        self.line()?
            .ok_or_else(|| self.gone(std::io::ErrorKind::UnexpectedEof.into()))
    }

    /// Gives up on reads after `timeout` (for tools that must not hang on a server).
    pub fn set_timeout(&self, timeout: Duration) {
        self.writer.set_read_timeout(Some(timeout)).ok();
        self.writer.set_write_timeout(Some(timeout)).ok();
    }
}
