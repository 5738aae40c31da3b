//! `spud alerts [PATTERN]`: alert instances that are not ok, as a table (or JSON lines),
//! from the server's `alerts` command.

use crate::client::{Client, ClientError};
use spud_server::client::endpoint::Endpoint;

pub fn run(server: &Endpoint, pattern: Option<&str>, json: bool) -> Result<i32, ClientError> {
    let mut client = Client::connect(server)?;
    let command = match pattern {
        Some(p) => format!("alerts {p}"),
        None => "alerts".to_string(),
    };
    let lines = client.multi(&command)?;
    let rows: Vec<Row> = lines.iter().filter_map(|l| Row::parse(l)).collect();
    let now = spud_server::unix_now();
    if json {
        crate::out::lines(rows.iter().map(|r| {
            serde_json::json!({
                "state": r.state, "since": r.since, "alert": r.alert, "key": r.key,
                "value": r.value.parse::<f64>().ok(), "summary": r.summary,
            })
        }));
        return Ok(0);
    }
    let mut table = vec![format!(
        "{:<9} {:<12} {:<20} {:<32} {:>10}  SUMMARY",
        "STATE", "SINCE", "ALERT", "KEY", "VALUE"
    )];
    table.extend(rows.iter().map(|r| {
        format!(
            "{:<9} {:<12} {:<20} {:<32} {:>10}  {}",
            r.state,
            ago(now.saturating_sub(r.since)),
            r.alert,
            r.key,
            r.value,
            r.summary
        )
    }));
    if rows.is_empty() {
        table = vec!["no alerts: everything is ok".to_string()];
    }
    crate::out::lines(table);
    Ok(0)
}

struct Row<'a> {
    state: &'a str,
    since: u64,
    alert: &'a str,
    key: &'a str,
    value: &'a str,
    summary: &'a str,
}

impl<'a> Row<'a> {
    /// `<state> <since> <rule> <key> <value> <summary>`.
    fn parse(line: &'a str) -> Option<Row<'a>> {
        let mut parts = line.splitn(6, ' ');
        Some(Row {
            state: parts.next()?,
            since: parts.next()?.parse().ok()?,
            alert: parts.next()?,
            key: parts.next()?,
            value: parts.next()?,
            summary: parts.next().unwrap_or(""),
        })
    }
}

/// `95` → `1m35s ago`.
fn ago(seconds: u64) -> String {
    let text = match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    };
    format!("{text} ago")
}
