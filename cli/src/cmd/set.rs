//! `spud set [--time T] KEY VALUE`.

use crate::client::{Client, ClientError};
use spud_server::client::endpoint::Endpoint;

pub fn run(
    server: &Endpoint,
    time: Option<u64>,
    key: &str,
    value: &str,
) -> Result<i32, ClientError> {
    if !spud_plugin_api::is_valid_key(key) {
        eprintln!("spud: {key:?} is not a key: keys are letters, digits and - _ . :");
        return Ok(2);
    }
    if value.is_empty() || value.contains(['\n', '\r']) {
        eprintln!("spud: a value is one line of at least one character");
        return Ok(2);
    }
    let mut client = Client::connect(server)?;
    let time = time.map(|t| format!("{t} ")).unwrap_or_default();
    client.single(&format!("set {time}{key} {value}"))?;
    Ok(0)
}
