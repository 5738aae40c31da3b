//! `spud sub PATTERN...`: every matching set as it happens.

use spud_server::client::endpoint::Endpoint;
use std::io::Write;

use crate::client::{Client, ClientError};
use crate::cmd::when;

pub fn run(server: &Endpoint, patterns: &[String], json: bool) -> Result<i32, ClientError> {
    let mut client = Client::connect(server)?;
    for p in patterns {
        client.single(&format!("sub {p}"))?;
    }
    let stdout = std::io::stdout();
    loop {
        let Some(line) = client.line()? else {
            eprintln!("spud: the server closed the connection");
            return Ok(69);
        };
        if let Some(err) = line.strip_prefix("ERR ") {
            return Err(ClientError::Refused(err.to_string()));
        }
        let Some(rest) = line.strip_prefix("SET ") else {
            continue;
        };
        let mut parts = rest.splitn(3, ' ');
        let (Some(time), Some(key), value) =
            (parts.next(), parts.next(), parts.next().unwrap_or(""))
        else {
            continue;
        };
        let time: u64 = time.parse().unwrap_or(0);
        let mut out = stdout.lock();
        let written = if json {
            writeln!(
                out,
                "{}",
                serde_json::json!({ "time": time, "key": key, "value": value })
            )
        } else {
            writeln!(out, "{}  {key}  {value}", when(time))
        };
        // Piped into `head`: the reader is gone, and so are we.
        if written.and_then(|()| out.flush()).is_err() {
            return Ok(0);
        }
    }
}
