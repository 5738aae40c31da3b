//! `spud get KEY|PATTERN`: a key's history, or the newest value of every matching key. An
//! argument without `*` that could be a key is a key: when no such key exists the answer is
//! exit 1 and says so, even though the server, as the original did, takes an argument with a
//! `.` that names no key as a pattern (which matches anywhere in a key).

use crate::client::{Client, ClientError};
use crate::cmd::when;
use crate::out;
use spud_server::client::endpoint::Endpoint;

struct Row {
    /// The key (pattern answers), or the position in history.
    first: String,
    time: u64,
    value: String,
}

pub fn run(server: &Endpoint, arg: &str, json: bool) -> Result<i32, ClientError> {
    let mut client = Client::connect(server)?;
    let lines = match client.multi(&format!("get {arg}")) {
        Ok(lines) => lines,
        Err(ClientError::Refused(e)) if e.starts_with("not_found") => {
            eprintln!("spud: {arg}: no such key");
            return Ok(1);
        }
        Err(e) => return Err(e),
    };
    let rows: Vec<Row> = lines
        .iter()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ' ');
            Some(Row {
                first: parts.next()?.to_string(),
                time: parts.next()?.parse().ok()?,
                value: parts.next().unwrap_or("").to_string(),
            })
        })
        .collect();
    // A key's history is numbered 1, 2, 3...; a pattern's answer names keys.
    let history = !rows.is_empty()
        && rows
            .iter()
            .enumerate()
            .all(|(i, r)| r.first == (i + 1).to_string());
    if !history && !arg.contains('*') && spud_plugin_api::is_valid_key(arg) {
        eprintln!(
            "spud: {arg}: no such key (as a pattern, which matches anywhere in a key, it matches {} key{}: write {arg}* to list them)",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" }
        );
        return Ok(1);
    }
    if json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut o = serde_json::json!({ "time": r.time, "value": r.value });
                if !history {
                    o["key"] = r.first.clone().into();
                }
                o
            })
            .collect();
        out::lines([serde_json::Value::Array(items)]);
        return Ok(0);
    }
    if history {
        out::lines(
            rows.iter()
                .map(|r| format!("{}  {}", when(r.time), r.value)),
        );
    } else {
        let width = rows.iter().map(|r| r.first.len()).max().unwrap_or(0);
        out::lines(
            rows.iter()
                .map(|r| format!("{:width$}  {}  {}", r.first, when(r.time), r.value)),
        );
    }
    Ok(0)
}
