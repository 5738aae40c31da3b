//! Verbs that print what the server answers: `uptime`, `list`, and spud-host's `jobs`,
//! `pause`, `resume`, `run` and `reload`.

use crate::client::{Client, ClientError};
use spud_server::client::endpoint::Endpoint;

pub fn print(server: &Endpoint, command: &str) -> Result<i32, ClientError> {
    let mut client = Client::connect(server)?;
    crate::out::lines(client.multi(command)?);
    Ok(0)
}
